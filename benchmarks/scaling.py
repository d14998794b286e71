"""Scaling: training throughput by number of processes, and bytes exchanged per step on paper.

    .venv/bin/python benchmarks/scaling.py          # 1 and 2 CPU processes (gloo), 3 runs, ~3-6 min
    .venv/bin/python benchmarks/scaling.py --quick  # smoke run
    .venv/bin/python benchmarks/scaling.py --procs 1 2 --runs 1 --no-results

Every run trains the document-embedding configuration through ``container/train`` with
``OBJECT2VEC_NPROC_PER_HOST`` set and reads its ``#throughput_metric``; a full run writes
``results/scaling.json`` (``prose/scaling.md`` explains it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from o2vtools.process import free_port, run_train
from o2vtools.results import (
    Conditions,
    add_results_arguments,
    markdown_table,
    median_and_runs,
    plural,
    table,
    write_results,
)

THROUGHPUT = re.compile(r"#throughput_metric: host=\S+, train throughput=(\S+) records/second")
# The document-embedding configuration every run trains (row_sparse Adam).
HYPERPARAMETERS = dict(enc0_network="pooled_embedding", enc_dim=300, mlp_dim=512, mlp_layers=2,
                       mlp_activation="relu", mini_batch_size=512, epochs=2,
                       tied_token_embedding_weight="true", comparator_list="hadamard",
                       token_embedding_storage_type="row_sparse", negative_sampling_rate=1,
                       optimizer="adam", learning_rate=0.01)
# The bytes-per-step table, on paper: a large vocabulary, the configuration above.
PAPER_VOCAB, PAPER_DIM, PAPER_BATCH, PAPER_TOKENS = 3_000_000, 300, 512, 100  # tokens: 50 + 50
PAPER_RANKS = (2, 8, 16)
MLP_PARAMETERS = 300 * 512 + 512 + 512 * 512 + 512 + 512 * 2 + 2  # hadamard 300 -> 512 -> 512 -> 2

@dataclass(frozen=True)
class Sizes:
    """The training data of one run."""

    records: int
    vocab: int
    seq_len: int


FULL, QUICK = Sizes(40_000, 300_000, 50), Sizes(1024, 1000, 10)


def zipf_ids(rng: np.random.Generator, n: int, vocab: int, exponent: float = 1.1) -> np.ndarray:
    """``n`` token ids with a Zipf distribution truncated to the vocabulary (like words in text)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        draw = rng.zipf(exponent, 2 * n)
        out = np.concatenate([out, draw[draw <= vocab] - 1])
    return out[:n]


def write_tree(base: Path, sizes: Sizes) -> None:
    """A SageMaker tree: the seeded Zipf records (label 1, negatives from sampling) and the
    hyperparameters."""
    rng = np.random.default_rng(0)
    ids = zipf_ids(rng, 2 * sizes.records * sizes.seq_len, sizes.vocab).reshape(
        sizes.records, 2, sizes.seq_len)
    data = base / "input" / "data" / "train"
    data.mkdir(parents=True)
    with open(data / "train.jsonl", "w") as fh:
        fh.writelines(json.dumps({"in0": row[0].tolist(), "in1": row[1].tolist(), "label": 1})
                      + "\n" for row in ids)
    hp = dict(HYPERPARAMETERS, enc0_max_seq_len=sizes.seq_len, enc0_vocab_size=sizes.vocab)
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hp.items()}))


def run(base: Path, nproc: int) -> float:
    """Train through container/train; the best epoch throughput (epoch 0 includes warm-up)."""
    run = run_train(base, base / "train.log", OBJECT2VEC_NPROC_PER_HOST=str(nproc),
                    OBJECT2VEC_MASTER_PORT=str(free_port()))
    if run.code:
        raise SystemExit(f"training with {nproc} process(es) failed:\n{run.log[-3000:]}")
    return max(float(x) for x in THROUGHPUT.findall(run.log))


def measure(sizes: Sizes, procs: list[int], runs: int) -> dict[int, list[float]]:
    """records/s per process count, one per run; every run trains each count once, in turn, on a
    fresh tree (no checkpoint of an earlier run to resume from)."""
    rates: dict[int, list[float]] = {nproc: [] for nproc in procs}
    for k in range(runs):
        for nproc in procs:
            with tempfile.TemporaryDirectory() as tmp:
                write_tree(Path(tmp), sizes)
                rates[nproc].append(run(Path(tmp), nproc))
            print(f"run {k + 1}: {nproc} process(es): {rates[nproc][-1]:,.0f} records/s",
                  flush=True)
    return rates


def bytes_per_step(vocab: int, dim: int, world: int, unique_rows_per_rank: int,
                   dense_params: int) -> dict[str, float]:
    """Bytes each rank sends per step (ring all-reduce sends 2 (W-1)/W of the buffer; all-gather
    sends its own share to W-1 peers through the ring, i.e. (W-1)/W of the gathered total)."""
    ring = 2 * (world - 1) / world
    dense_mlp = ring * dense_params * 4
    return {
        "dense": ring * vocab * dim * 4 + dense_mlp,
        "row_sparse": (world - 1) * unique_rows_per_rank * (dim * 4 + 8) + dense_mlp,
    }


def paper_rows() -> list[tuple[int, int, dict[str, float]]]:
    """Per rank count: the unique rows of one rank's share of a batch (seeded Zipf ids) and the
    bytes per step."""
    rng = np.random.default_rng(0)
    rows = []
    for world in PAPER_RANKS:
        tokens = PAPER_BATCH // world * PAPER_TOKENS
        unique = int(np.unique(zipf_ids(rng, tokens, PAPER_VOCAB)).size)
        rows.append((world, unique, bytes_per_step(PAPER_VOCAB, PAPER_DIM, world, unique,
                                                   MLP_PARAMETERS)))
    return rows


# -- report ----------------------------------------------------------------------------------------


def throughput_table(rates: dict[int, list[float]]) -> dict:
    """records/s per process count (median and each run) and the speed-up of the medians against
    the first count."""
    runs = len(next(iter(rates.values())))
    base = statistics.median(next(iter(rates.values())))
    return table(
        ["processes", "backend", f"records/s ({plural(runs, 'run')})", "speed-up"],
        [[str(nproc), "gloo", median_and_runs(values, "{:,.0f}".format),
          f"{statistics.median(values) / base:.2f}x"] for nproc, values in rates.items()], "lllr")


def bytes_table(rows: list[tuple[int, int, dict[str, float]]]) -> dict:
    return table(
        ["ranks", "unique rows per rank", "dense embedding + MLP", "row_sparse + MLP", "ratio"],
        [[str(world), f"{unique:,}", f"{b['dense'] / 1e9:.2f} GB",
          f"{b['row_sparse'] / 1e6:.1f} MB", f"{b['dense'] / b['row_sparse']:,.0f}x"]
         for world, unique, b in rows], "rrrrr")


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small data, 1 run (smoke test); writes no results")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, help="runs of every process count (3; 1 with --quick)")
    add_results_arguments(parser, "scaling")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.no_results = args.no_results or args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    print(f"# container/train, row_sparse doc-embedding config, vocab {sizes.vocab}, "
          f"{sizes.records} records, seq_len {sizes.seq_len}, global batch 512, "
          f"{os.cpu_count()} CPU cores, {plural(args.runs, 'run')}", flush=True)
    conditions = Conditions.start()
    rates = measure(sizes, args.procs, args.runs)
    conditions.finish()
    paper = paper_rows()
    tables = {"throughput": throughput_table(rates), "bytes": bytes_table(paper)}
    print(f"\n{markdown_table(**tables['throughput'])}\n\n# bytes sent per rank per step, vocab "
          f"{PAPER_VOCAB:,}, dim {PAPER_DIM}, global batch {PAPER_BATCH}, 50 + 50 tokens per "
          f"sample\n\n{markdown_table(**tables['bytes'])}")
    if not args.no_results:
        write_results(args.results, "scaling.py", args.argv, conditions, tables, {
            "procs": " and ".join(str(n) for n in rates), "vocab": f"{sizes.vocab:,}",
            "records": f"{sizes.records:,}", "seq_len": sizes.seq_len, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
