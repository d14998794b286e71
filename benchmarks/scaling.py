"""Scaling: training throughput by number of processes, and bytes exchanged per step on paper.

    .venv/bin/python benchmarks/scaling.py            # 1 and 2 CPU processes (gloo), ~2 minutes
    .venv/bin/python benchmarks/scaling.py --quick    # smoke run

Every run goes through the real ``container/train`` with ``OBJECT2VEC_NPROC_PER_HOST`` set, on the
published document-embedding configuration (pooled_embedding, tied, hadamard, row_sparse, Adam), and
reads the trainer's own ``#throughput_metric`` line (records/s summed over the ranks).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT = re.compile(r"#throughput_metric: host=\S+, train throughput=(\S+) records/second")


def zipf_ids(rng: np.random.Generator, n: int, vocab: int, exponent: float = 1.1) -> np.ndarray:
    """``n`` token ids with a Zipf distribution truncated to the vocabulary (like words in text)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        draw = rng.zipf(exponent, 2 * n)
        out = np.concatenate([out, draw[draw <= vocab] - 1])
    return out[:n]


def write_tree(base: Path, records: int, vocab: int, seq_len: int, storage: str) -> None:
    rng = np.random.default_rng(0)
    ids = zipf_ids(rng, 2 * records * seq_len, vocab).reshape(records, 2, seq_len)
    data = base / "input" / "data" / "train"
    data.mkdir(parents=True)
    with open(data / "train.jsonl", "w") as fh:
        for row in ids:
            fh.write(json.dumps({"in0": row[0].tolist(), "in1": row[1].tolist(), "label": 1}) + "\n")
    hp = dict(enc0_max_seq_len=seq_len, enc0_vocab_size=vocab, enc0_network="pooled_embedding",
              enc_dim=300, mlp_dim=512, mlp_layers=2, mlp_activation="relu", mini_batch_size=512,
              epochs=2, tied_token_embedding_weight="true", comparator_list="hadamard",
              token_embedding_storage_type=storage, negative_sampling_rate=1, optimizer="adam",
              learning_rate=0.01)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    records, vocab, seq_len = (1024, 1000, 10) if args.quick else (40_000, 300_000, 50)
    print(f"# container/train, row_sparse doc-embedding config, vocab {vocab}, {records} records, "
          f"seq_len {seq_len}, global batch 512, {os.cpu_count()} CPU cores")
    print("| processes | backend | records/s | speed-up |\n|---|---|---|---|")
    base_rate = None
    for nproc in args.procs:
        with tempfile.TemporaryDirectory() as tmp:
            write_tree(Path(tmp), records, vocab, seq_len, "row_sparse")
            rate = run(Path(tmp), nproc)
        base_rate = base_rate or rate
        print(f"| {nproc} | gloo | {rate:,.0f} | {rate / base_rate:.2f}x |", flush=True)
    # On paper: vocab 3,000,000, dim 300, MLP of the doc config (hadamard 300 -> 512 -> 512 -> 2).
    mlp = 300 * 512 + 512 + 512 * 512 + 512 + 512 * 2 + 2
    rng = np.random.default_rng(0)
    print("\n# bytes sent per rank per step, vocab 3,000,000, dim 300, global batch 512, "
          "50 + 50 tokens per sample")
    print("| ranks | unique rows per rank (Zipf 1.1, measured) | dense | row_sparse | ratio |")
    print("|---|---|---|---|---|")
    for world in (2, 8, 16):
        tokens = 512 // world * 100
        unique = int(np.unique(zipf_ids(rng, tokens, 3_000_000)).size)
        b = bytes_per_step(3_000_000, 300, world, unique, mlp)
        print(f"| {world} | {unique:,} | {b['dense'] / 1e9:.2f} GB | {b['row_sparse'] / 1e6:.1f} MB | "
              f"{b['dense'] / b['row_sparse']:,.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
