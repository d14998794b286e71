"""Scaling: training throughput by number of processes, and bytes exchanged per step on paper.

    .venv/bin/python benchmarks/scaling.py          # 1 and 2 CPU processes (gloo), 3 runs, ~3-6 min
    .venv/bin/python benchmarks/scaling.py --quick  # smoke run
    .venv/bin/python benchmarks/scaling.py --procs 1 2 --runs 1 --no-results

Every run goes through the real ``container/train`` with ``OBJECT2VEC_NPROC_PER_HOST`` set, on the
published document-embedding configuration (pooled_embedding, tied, hadamard, row_sparse, Adam), and
reads the trainer's own ``#throughput_metric`` line (records/s summed over the ranks). Every process
count is timed ``--runs`` times (default 3), the counts one after the other in each run.

The tables are printed and, after a full run and unless ``--no-results``, written with the command,
the date, the versions and the load average to the section "## Scaling out (benchmarks/scaling.py)"
of ``benchmarks/RESULTS.md`` (``--results PATH``: another file). ``--quick`` never writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from results_md import (Conditions, add_results_arguments, command, fill, markdown_table,
                        median_and_runs, plural, run_line, write_section)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Scaling out (benchmarks/scaling.py)"
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

# Explanations and a dated measurement made outside this script, written under the generated tables
# (update them when they stop being true; they are not this run's figures).
PROCESS_NOTES = """\
On a 2-core machine a second process cannot add compute: 1 process runs 2 torch threads over the
whole batch, 2 processes run 1 thread each over half of it. What the second process adds is the
exchange, measured on its own on 2026-11-29 (a separate microbenchmark, not part of this script: 2
gloo processes on loopback, 1 thread each, median of 10): all-gather of one rank's 8,564 touched
rows x 300 floats (10.3 MB) 11.3 ms, all-gather of their ids 0.2 ms, DDP's all-reduce of the MLP's
0.42 M parameters 2.0 ms, and merging the gathered rows (`unique` + `index_add_` over 17,128 rows)
6.3 ms: about 20 ms on top of a 34 ms step, plus the lazy Adam update of the merged rows now running
on one thread per process. The table shows that the multi-process path works and what it costs on
one small host; the speed-up it exists for comes from more devices (one process per GPU, one host
each), which this script does not use. It does not run the NCCL path either (one worker per visible
GPU, `nccl` backend, `NCCL_SOCKET_IFNAME` from `resourceconfig.json`; as of 2026-11-29 no GPU had
been available to run it): its launch configuration is covered by
`tests/unit/test_distributed_plan.py`, and the row exchange (`DistEnv.all_gather_rows`) uses only
`all_gather` of dense, equal-size (padded) tensors, which NCCL supports."""

BYTES_NOTES = """\
A dense 3,000,000 x 300 gradient is 3.6 GB per step whatever the batch; the row exchange grows with
the rows the batch touches, and its all-gather grows with W (each rank receives every other rank's
rows), so beyond a few dozen ranks a sparse all-reduce (reduce-scatter by row id) would be the next
step."""


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
        for row in ids:
            fh.write(json.dumps({"in0": row[0].tolist(), "in1": row[1].tolist(), "label": 1}) + "\n")
    hp = dict(HYPERPARAMETERS, enc0_max_seq_len=sizes.seq_len, enc0_vocab_size=sizes.vocab)
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hp.items()}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(base: Path, nproc: int) -> float:
    """Train through container/train; the best epoch throughput (epoch 0 includes warm-up)."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), OBJECT2VEC_NPROC_PER_HOST=str(nproc),
               OBJECT2VEC_MASTER_PORT=str(free_port()),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run([str(REPO / "container" / "train")], env=env, capture_output=True,
                         text=True, timeout=1800)
    if out.returncode:
        raise SystemExit(f"training with {nproc} process(es) failed:\n{out.stdout[-3000:]}")
    rates = [float(x) for x in THROUGHPUT.findall(out.stdout)]
    return max(rates)


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


def throughput_table(rates: dict[int, list[float]]) -> str:
    """records/s per process count (median and each run) and the speed-up of the medians against
    the first count."""
    runs = len(next(iter(rates.values())))
    base = statistics.median(next(iter(rates.values())))
    return markdown_table(
        ["processes", "backend", f"records/s ({plural(runs, 'run')})", "speed-up"],
        [[str(nproc), "gloo", median_and_runs(values, "{:,.0f}".format),
          f"{statistics.median(values) / base:.2f}x"] for nproc, values in rates.items()], "lllr")


def bytes_table(rows: list[tuple[int, int, dict[str, float]]]) -> str:
    return markdown_table(
        ["ranks", "unique rows per rank", "dense embedding + MLP", "row_sparse + MLP", "ratio"],
        [[str(world), f"{unique:,}", f"{b['dense'] / 1e9:.2f} GB",
          f"{b['row_sparse'] / 1e6:.1f} MB", f"{b['dense'] / b['row_sparse']:,.0f}x"]
         for world, unique, b in rows], "rrrrr")


def section(command_line: str, conditions: Conditions, sizes: Sizes,
            rates: dict[int, list[float]], paper: list[tuple[int, int, dict[str, float]]]) -> str:
    """The RESULTS.md section of one full run."""
    hp = HYPERPARAMETERS
    procs = " and ".join(str(n) for n in rates)
    return "\n\n".join([
        SECTION,
        run_line(command_line, conditions),
        fill(f"""The real `container/train` with `OBJECT2VEC_NPROC_PER_HOST` {procs} (gloo, one
             host), the document-embedding configuration with row_sparse Adam (pooled_embedding,
             tied, hadamard, enc_dim {hp['enc_dim']}, MLP {hp['mlp_layers']} x {hp['mlp_dim']},
             global batch {hp['mini_batch_size']}, negative_sampling_rate
             {hp['negative_sampling_rate']}), vocab {sizes.vocab:,}, {sizes.records:,} records of
             {sizes.seq_len} + {sizes.seq_len}
             Zipf(1.1) tokens (seed 0), {hp['epochs']} epochs; the figure is the trainer's own
             `#throughput_metric` (records/s summed over ranks, best epoch). Each worker gets
             `cpus // local_world_size` torch threads ({os.cpu_count()} CPUs here). records/s gives
             the median over the runs in bold and each run's figure in run order (every run trains
             each process count once, in turn); the speed-up compares the medians."""),
        throughput_table(rates),
        PROCESS_NOTES,
        fill(f"""Bytes each rank sends per step, on paper (`bytes_per_step` in the script): vocab
             {PAPER_VOCAB:,}, dim {PAPER_DIM}, global batch {PAPER_BATCH}, 50 + 50 tokens per
             sample, ring all-reduce for dense tensors (each rank sends 2 (W-1)/W of the buffer),
             all-gather of (id, row) pairs for row_sparse (each rank sends its rows to W-1 peers);
             unique rows per rank counted on Zipf(1.1) ids (seed 0):"""),
        bytes_table(paper),
        BYTES_NOTES,
    ]) + "\n"


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small data, 1 run (smoke test); never writes RESULTS.md")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, help="runs of every process count (3; 1 with --quick)")
    add_results_arguments(parser)
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
    print(f"\n{throughput_table(rates)}\n\n# bytes sent per rank per step, vocab {PAPER_VOCAB:,}, "
          f"dim {PAPER_DIM}, global batch {PAPER_BATCH}, 50 + 50 tokens per sample\n\n"
          f"{bytes_table(paper)}")
    if not args.no_results:
        write_section(SECTION, section(command("scaling.py", args.argv), conditions, sizes, rates,
                                       paper), args.results)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
