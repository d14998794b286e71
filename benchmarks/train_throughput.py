"""Training throughput per encoder, and the memory and time of loading a large channel.

    .venv/bin/python benchmarks/train_throughput.py                  # every section (~3 min)
    .venv/bin/python benchmarks/train_throughput.py --quick          # smoke run, seconds
    .venv/bin/python benchmarks/train_throughput.py --sections load  # one section
    .venv/bin/python benchmarks/train_throughput.py --sections throughput --networks hcnn

Sections (``--sections``, default all, run in this order):

* ``load``: a 1,000,000-pair channel of 50-token sequences (both sides) is written as JSON Lines to
  a temporary directory, then ``load_channel`` reads it in a child process, which reports its load
  time and peak RSS (``VmHWM`` from ``/proc/self/status``; ``getrusage(RUSAGE_CHILDREN).ru_maxrss``
  is shown beside it, but it can include the parent's peak, see ``_child_load``). Runs first,
  before the parent imports torch. Target: peak RSS under 1.5 GB.
* ``throughput``: training samples/s of one ``Trainer._train_step`` for each encoder
  (pooled_embedding, hcnn, bilstm) at vocab 100,000, enc0/enc1_max_seq_len 50, enc_dim 300,
  mini_batch_size 512, softmax with 2 classes, other hyperparameters at their defaults. Data is
  synthetic ``PairData`` built in memory (random ids, lengths 25-50). Each repeat times ``--steps``
  steps after ``--warmup`` untimed ones; the figure is the median over ``--repeats`` repeats. Batch
  building (``EpochPlan.batch``: numpy gather -> tensors) is timed separately from the step, so a
  data-pipeline bottleneck shows up as its own column.

Adding a section: write ``def my_section(cfg: Config) -> list[str]`` (returns report lines) that
reuses :func:`synthetic_pairs`, :func:`make_trainer` and :func:`measure_training` -- e.g. dense vs
row_sparse is ``make_trainer(..., extra={"token_embedding_storage_type": "row_sparse"})`` and a
vocabulary sweep is ``replace(cfg, vocab=v)`` in a loop -- and register it with
``@section("name")``.

Timings depend on the machine's load: the report prints the load average before each section.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

NETWORKS = ("pooled_embedding", "hcnn", "bilstm")
MB = 1024 * 1024
RSS_LIMIT_MB = 1536


@dataclass(frozen=True)
class Config:
    """Benchmark sizes; ``quick()`` shrinks them to a smoke run."""

    vocab: int = 100_000
    min_len: int = 25
    max_len: int = 50
    enc_dim: int = 300
    batch_size: int = 512
    networks: tuple[str, ...] = NETWORKS
    warmup: int = 1
    steps: int = 2
    repeats: int = 3
    load_records: int = 1_000_000
    load_len: int = 50
    quick: bool = False

    def quick_version(self) -> "Config":
        return replace(self, vocab=2_000, min_len=5, max_len=10, enc_dim=16, batch_size=64,
                       warmup=1, steps=2, repeats=2, load_records=5_000, load_len=10, quick=True)


# -- shared building blocks ------------------------------------------------------------------------


def synthetic_pairs(n: int, vocab: int, min_len: int, max_len: int, seed: int = 0):
    """``n`` random pairs as PairData (ids uniform in [0, vocab), lengths uniform in [min, max])."""
    from object2vec.data.records import PairData, Side

    rng = np.random.default_rng(seed)

    def side() -> Side:
        lengths = rng.integers(min_len, max_len + 1, n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Side(rng.integers(0, vocab, int(offsets[-1])).astype(np.int32), offsets)

    return PairData(side(), side(), rng.integers(0, 2, n).astype(np.int64))


def hyperparameters(network: str, cfg: Config,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    """The benchmark's hyperparameters as SageMaker would send them."""
    return {"enc0_network": network, "enc0_vocab_size": str(cfg.vocab),
            "enc0_max_seq_len": str(cfg.max_len), "enc_dim": str(cfg.enc_dim),
            "mini_batch_size": str(cfg.batch_size), **(extra or {})}


def make_trainer(network: str, cfg: Config, data, extra: dict[str, str] | None = None):
    """A Trainer over ``data`` (as its train channel) that logs no metric lines."""
    from object2vec.config.hyperparameters import parse_hyperparameters
    from object2vec.training.metrics import MetricLogger
    from object2vec.training.trainer import Trainer

    hp = parse_hyperparameters(hyperparameters(network, cfg, extra))
    metrics = MetricLogger("algo-1", logging.getLogger("benchmark"), enabled=False)
    return Trainer(hp, {"train": data}, metrics)


@dataclass
class Throughput:
    """Medians over repeats: seconds per step and per batch build, and the derived rates."""

    step_s: float
    build_s: float
    batch_size: int

    @property
    def step_rate(self) -> float:
        return self.batch_size / self.step_s

    @property
    def end_to_end_rate(self) -> float:
        return self.batch_size / (self.step_s + self.build_s)

    @property
    def build_share(self) -> float:
        return self.build_s / (self.step_s + self.build_s)


def measure_training(trainer, data, cfg: Config) -> Throughput:
    """Time ``cfg.steps`` steps (after ``cfg.warmup``), ``cfg.repeats`` times; batch building and
    the step are timed separately, each batch is built just before its step (as in
    ``_train_epoch``)."""
    trainer.model.train()
    plan = trainer.sampler.plan(0)
    needed = cfg.warmup + cfg.steps * cfg.repeats
    if len(plan) < needed:
        raise ValueError(f"plan has {len(plan)} batches, need {needed}")
    b = 0
    for _ in range(cfg.warmup):
        trainer._train_step(plan.batch(data, b))
        b += 1
    step_times, build_times = [], []
    for _ in range(cfg.repeats):
        build = step = 0.0
        for _ in range(cfg.steps):
            t0 = time.perf_counter()
            batch = plan.batch(data, b)
            t1 = time.perf_counter()
            trainer._train_step(batch)
            t2 = time.perf_counter()
            build, step, b = build + t1 - t0, step + t2 - t1, b + 1
        build_times.append(build / cfg.steps)
        step_times.append(step / cfg.steps)
    return Throughput(statistics.median(step_times), statistics.median(build_times), cfg.batch_size)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# -- sections --------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Config], list[str]]] = {}


def section(name: str):
    def register(fn):
        SECTIONS[name] = fn
        return fn
    return register


def write_channel(path: Path, n: int, length: int, vocab: int, seed: int = 0) -> int:
    """Write ``n`` records with ``length``-token in0 and in1 as JSON Lines; returns its size."""
    rng = np.random.default_rng(seed)
    chunk = 20_000
    with path.open("w") as fh:
        for start in range(0, n, chunk):
            c = min(chunk, n - start)
            ids = rng.integers(0, vocab, (c, 2, length)).tolist()
            labels = rng.integers(0, 2, c).tolist()
            fh.write("".join(
                f'{{"in0": [{", ".join(map(str, a))}], "in1": [{", ".join(map(str, b))}], '
                f'"label": {y}}}\n' for (a, b), y in zip(ids, labels)))
    return path.stat().st_size


def _child_load(channel: str, vocab: int, length: int) -> None:
    """Child process: load the channel, print JSON figures (RSS in MB)."""
    from object2vec.data.records import RecordRules, load_channel

    def status_mb(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    before = status_mb("VmRSS")
    t0 = time.perf_counter()
    data = load_channel(Path(channel), RecordRules((vocab, vocab), (length, length), False, 2))
    seconds = time.perf_counter() - t0
    arrays = sum(a.nbytes for a in (data.in0.ids, data.in0.offsets, data.in1.ids, data.in1.offsets,
                                    data.labels))
    # VmHWM is this process image's own peak. ru_maxrss is not: Linux keeps the larger of it and the
    # parent's peak when a vfork()ed child execs, so it can report the parent's size.
    print(json.dumps({"records": len(data), "seconds": seconds, "rss_before_mb": before,
                      "rss_after_mb": status_mb("VmRSS"), "peak_rss_mb": status_mb("VmHWM"),
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "arrays_mb": arrays / MB}))


@section("load")
def load_section(cfg: Config) -> list[str]:
    """Peak RSS and time of load_channel on a large channel, measured in a child process."""
    with tempfile.TemporaryDirectory(prefix="o2v-load-") as tmp:
        channel = Path(tmp) / "train"
        channel.mkdir()
        t0 = time.perf_counter()
        size = write_channel(channel / "data.jsonl", cfg.load_records, cfg.load_len, cfg.vocab)
        written = time.perf_counter() - t0
        out = subprocess.run([sys.executable, __file__, "--child-load", str(channel),
                              str(cfg.vocab), str(cfg.load_len)],
                             capture_output=True, text=True, check=True)
        children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    verdict = "OK" if fig["peak_rss_mb"] < RSS_LIMIT_MB else "OVER"
    lines = [f"{fig['records']:,} pairs x {cfg.load_len} tokens per side, file {size / MB:,.0f} MB "
             f"(written in {written:.1f} s)",
             "",
             "| load s | records/s | arrays MB | RSS before load MB | peak RSS (VmHWM) MB "
             "| RUSAGE_CHILDREN ru_maxrss MB | limit |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
             f"| {fig['seconds']:.1f} | {fig['records'] / fig['seconds']:,.0f} | "
             f"{fig['arrays_mb']:,.0f} | {fig['rss_before_mb']:,.0f} | {fig['peak_rss_mb']:,.0f} | "
             f"{children_mb:,.0f} | {verdict} (< {RSS_LIMIT_MB} MB) |"]
    print(lines[-1], file=sys.stderr, flush=True)
    return lines


@section("throughput")
def throughput_section(cfg: Config) -> list[str]:
    """Samples/s per encoder, with batch building timed on its own."""
    import torch

    n = cfg.batch_size * (cfg.warmup + cfg.steps * cfg.repeats)
    data = synthetic_pairs(n, cfg.vocab, cfg.min_len, cfg.max_len)
    lines = [f"vocab {cfg.vocab:,}, max_seq_len {cfg.max_len} "
             f"(lengths {cfg.min_len}-{cfg.max_len}), enc_dim {cfg.enc_dim}, mini_batch_size "
             f"{cfg.batch_size}, torch threads {torch.get_num_threads()}; median of "
             f"{cfg.repeats} x {cfg.steps} steps after {cfg.warmup} warm-up",
             "",
             "| encoder | step s | train samples/s (step) | batch build ms | samples/s incl. build "
             "| build share |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for network in cfg.networks:
        torch.manual_seed(0)
        trainer = make_trainer(network, cfg, data)
        t = measure_training(trainer, data, cfg)
        lines.append(f"| {network} | {t.step_s:.3f} | {t.step_rate:,.0f} | {t.build_s * 1e3:.2f} | "
                     f"{t.end_to_end_rate:,.0f} | {t.build_share:.2%} |")
        print(lines[-1], file=sys.stderr, flush=True)
        del trainer
    return lines


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS),
                        help="sections to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, help="encoders to time")
    parser.add_argument("--steps", type=int, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, help="repeats (the median is reported)")
    parser.add_argument("--load-records", type=int, help="pairs in the load section's channel")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's; 1 with --quick)")
    parser.add_argument("--child-load", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_load:
        _child_load(args.child_load[0], int(args.child_load[1]), int(args.child_load[2]))
        return 0
    logging.basicConfig(level=logging.ERROR)  # keep the pooled_embedding warning out of the report
    cfg = Config().quick_version() if args.quick else Config()
    overrides = {"networks": tuple(args.networks) if args.networks else None, "steps": args.steps,
                 "repeats": args.repeats, "load_records": args.load_records}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    threads = args.threads or (1 if cfg.quick else None)
    print(f"# train_throughput: {os.cpu_count()} CPUs{', QUICK' if cfg.quick else ''}", flush=True)
    for name in sorted(args.sections, key=list(SECTIONS).index):
        if name != "load":  # load measures a child; keep torch out of this process until needed
            import torch

            if threads:
                torch.set_num_threads(threads)
        print(f"\n## {name} (load average {load_average()})", flush=True)
        start = time.perf_counter()
        lines = SECTIONS[name](cfg)
        print("\n".join(["", *lines, "", f"({time.perf_counter() - start:.0f} s)"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
