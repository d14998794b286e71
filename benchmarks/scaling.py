"""Scaling: training throughput by number of processes, and bytes exchanged per step on paper.

    .venv/bin/python benchmarks/scaling.py          # 1 and 2 CPU processes (gloo), 3 runs, ~3-6 min
    .venv/bin/python benchmarks/scaling.py --quick  # smoke run
    .venv/bin/python benchmarks/scaling.py --procs 1 2 --runs 1 --no-results

Every run trains the document-embedding configuration through ``container/train`` with
``OBJECT2VEC_NPROC_PER_HOST`` set and reads its ``#throughput_metric`` (``prose/scaling.md``).
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from o2vtools import results
from o2vtools.datasets import write_jsonl
from o2vtools.process import free_port, run_train
from o2vtools.tree import link_channel_file, write_json

THROUGHPUT = re.compile(r"#throughput_metric: host=\S+, train throughput=(\S+) records/second")
# The document-embedding configuration every run trains (row_sparse Adam).
HYPERPARAMETERS = dict(enc0_network="pooled_embedding", enc_dim="300", mlp_dim="512", mlp_layers="2",
                       mlp_activation="relu", mini_batch_size="512", epochs="2",
                       tied_token_embedding_weight="true", comparator_list="hadamard",
                       token_embedding_storage_type="row_sparse", negative_sampling_rate="1",
                       optimizer="adam", learning_rate="0.01")
FULL, QUICK = (40_000, 300_000, 50), (1024, 1000, 10)  # records, vocab, tokens per side
# The bytes-per-step table, on paper: a large vocabulary, the configuration above.
PAPER_VOCAB, PAPER_DIM, PAPER_BATCH, PAPER_TOKENS = 3_000_000, 300, 512, 100  # tokens: 50 + 50
PAPER_RANKS = (2, 8, 16)
MLP_PARAMETERS = 300 * 512 + 512 + 512 * 512 + 512 + 512 * 2 + 2  # hadamard 300 -> 512 -> 512 -> 2


def zipf_ids(rng: np.random.Generator, n: int, vocab: int, exponent: float = 1.1) -> np.ndarray:
    """``n`` token ids with a Zipf distribution truncated to the vocabulary (like words in text)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        draw = rng.zipf(exponent, 2 * n)
        out = np.concatenate([out, draw[draw <= vocab] - 1])
    return out[:n]


def train(tmp: Path, channel: Path, hp: dict[str, str], nproc: int) -> float:
    """container/train on a fresh tree in ``tmp`` (no checkpoint to resume); the best epoch's records/s."""
    with tempfile.TemporaryDirectory(dir=tmp) as base:
        # no resourceconfig.json: its network interface would become gloo's instead of loopback
        write_json(Path(base, "input", "config", "hyperparameters.json"), hp)
        link_channel_file(Path(base), "train", channel)
        run = run_train(Path(base), Path(base, "train.log"), OBJECT2VEC_NPROC_PER_HOST=str(nproc),
                        OBJECT2VEC_MASTER_PORT=str(free_port()))
    if run.code:
        raise SystemExit(f"training with {nproc} process(es) failed:\n{run.log[-3000:]}")
    return max(float(x) for x in THROUGHPUT.findall(run.log))  # the best: epoch 0 includes warm-up


def measure(records: int, vocab: int, seq_len: int, procs: list[int], runs: int) -> dict[int, list[float]]:
    """records/s per process count, one per run (each count in turn), on the same seeded Zipf records."""
    hp = dict(HYPERPARAMETERS, enc0_max_seq_len=str(seq_len), enc0_vocab_size=str(vocab))
    rates: dict[int, list[float]] = {nproc: [] for nproc in procs}
    with tempfile.TemporaryDirectory() as tmp:
        ids = zipf_ids(np.random.default_rng(0), 2 * records * seq_len, vocab).reshape(records, 2, seq_len)
        channel = Path(tmp, "train.jsonl")
        write_jsonl(channel, ({"in0": a.tolist(), "in1": b.tolist(), "label": 1} for a, b in ids))
        for k in range(runs):
            for nproc in procs:
                rates[nproc].append(train(Path(tmp), channel, hp, nproc))
                print(f"run {k + 1}: {nproc} process(es): {rates[nproc][-1]:,.0f} records/s", flush=True)
    return rates


def bytes_table() -> dict:
    """Bytes a rank sends per step on paper, W ranks: a ring all-reduce sends 2 (W-1)/W of a dense tensor,
    the row_sparse all-gather the rank's (id, row) pairs (unique ids of its share of a batch) to W-1 peers."""
    rng, rows = np.random.default_rng(0), []
    for world in PAPER_RANKS:
        unique = int(np.unique(zipf_ids(rng, PAPER_BATCH // world * PAPER_TOKENS, PAPER_VOCAB)).size)
        ring = 2 * (world - 1) / world
        mlp = ring * MLP_PARAMETERS * 4  # float32 gradients, all-reduced by DDP in both cases
        dense = ring * PAPER_VOCAB * PAPER_DIM * 4 + mlp
        sparse = (world - 1) * unique * (PAPER_DIM * 4 + 8) + mlp  # float32 row + int64 id
        rows.append([str(world), f"{unique:,}", f"{dense / 1e9:.2f} GB", f"{sparse / 1e6:.1f} MB",
                     f"{dense / sparse:,.0f}x"])
    return results.table(["ranks", "unique rows per rank", "dense embedding + MLP", "row_sparse + MLP",
                          "ratio"], rows, "rrrrr")


def throughput_table(rates: dict[int, list[float]]) -> dict:
    """records/s per process count (median and each run), the medians' speed-up against the first count."""
    first = next(iter(rates.values()))
    header = ["processes", "backend", f"records/s ({results.plural(len(first), 'run')})", "speed-up"]
    return results.table(header, [
        [str(nproc), "gloo", results.median_and_runs(values, "{:,.0f}".format),
         f"{statistics.median(values) / statistics.median(first):.2f}x"] for nproc, values in rates.items()],
        "lllr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: small data; writes nothing")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, help="runs of every process count (3; 1 with --quick)")
    results.add_results_arguments(parser, "scaling")
    args = parser.parse_args(argv)
    records, vocab, seq_len = QUICK if args.quick else FULL
    conditions = results.Conditions.start()
    rates = measure(records, vocab, seq_len, args.procs, args.runs or (1 if args.quick else 3))
    conditions.finish()
    tables = {"throughput": throughput_table(rates), "bytes": bytes_table()}
    print("\n\n".join(results.markdown_table(**t) for t in tables.values()))
    if not (args.no_results or args.quick):
        results.write_results(args.results, "scaling.py", sys.argv[1:] if argv is None else argv, conditions,
                              tables, {"procs": " and ".join(map(str, rates)), "vocab": f"{vocab:,}",
                                       "records": f"{records:,}", "seq_len": seq_len, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
