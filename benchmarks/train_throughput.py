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
* ``sparse``: dense vs ``token_embedding_storage_type=row_sparse`` and a vocabulary sweep (10,000 /
  300,000 / 1,000,000 / 3,000,000) in the published document-embedding configuration
  (pooled_embedding, tied token embedding, comparator hadamard, max_seq_len 50 both sides, enc_dim 300,
  mlp_dim 512, 2 MLP layers, mini-batch 512, Adam). Token ids are Zipf-distributed over the vocabulary
  (exponent 1.1, truncated at the vocabulary size), every sequence 50 tokens long; the frequency rank
  of a token is mapped to its id by a seeded random permutation (``--zipf-ids shuffled``, the default:
  frequent tokens scattered over the table, the hardest case for memory locality) or by the identity
  (``ranked``: id = frequency rank, as a vocabulary built by counting gives). Each configuration runs in
  its own child process (with ``THP_MEM_ALLOC_ENABLE=1``, as ``container/train`` sets) that reports its
  step time, the unique token rows per batch and its peak RSS. Dense Adam at vocab 3,000,000 needs
  about 15 GB (weights, gradient, two moments) and is left out unless ``--dense-vocabs`` names it.

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
    sparse_vocabs: tuple[int, ...] = (10_000, 300_000, 1_000_000, 3_000_000)
    dense_vocabs: tuple[int, ...] = (10_000, 300_000, 1_000_000)
    sparse_warmup: int = 5
    sparse_steps: int = 10
    zipf_exponent: float = 1.1
    zipf_ids: str = "shuffled"
    zipf_support: int | None = None  # draw only the first N ranks (same data statistics at any vocab)
    threads: int | None = None  # torch threads of the sparse section's children (None: torch's)
    quick: bool = False

    def quick_version(self) -> "Config":
        return replace(self, vocab=2_000, min_len=5, max_len=10, enc_dim=16, batch_size=64,
                       warmup=1, steps=2, repeats=2, load_records=5_000, load_len=10,
                       sparse_vocabs=(1_000, 20_000), dense_vocabs=(1_000,), sparse_warmup=1,
                       sparse_steps=2, quick=True)


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


def zipf_pairs(n: int, length: int, vocab: int, exponent: float, ids: str, seed: int = 0,
               support: int | None = None):
    """``n`` pairs of ``length``-token sequences whose ids follow a Zipf law truncated at ``support``
    (default ``vocab``): P(rank r) ~ 1 / r**exponent, r = 1..support; rank -> id is the identity
    (``ids="ranked"``) or a seeded permutation of the whole vocabulary (``"shuffled"``). Labels 0/1 at
    random. ``support < vocab`` keeps the token statistics of a small vocabulary on a large table."""
    from object2vec.data.records import PairData, Side

    rng = np.random.default_rng(seed)
    support = min(support or vocab, vocab)
    cdf = np.cumsum(1.0 / np.arange(1, support + 1, dtype=np.float64) ** exponent)
    rank_to_id = (rng.permutation(vocab) if ids == "shuffled" else np.arange(vocab)).astype(np.int32)
    offsets = np.arange(0, (n + 1) * length, length, dtype=np.int64)

    def side() -> Side:
        ranks = np.searchsorted(cdf, rng.random(n * length) * cdf[-1], side="right")
        return Side(rank_to_id[np.minimum(ranks, support - 1)], offsets)

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


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


# The published document-embedding configuration (object2vec.md, sparse-update launch notes).
DOC_CONFIG = {"enc1_network": "enc0", "tied_token_embedding_weight": "true",
              "comparator_list": "hadamard", "mlp_dim": "512", "mlp_layers": "2", "optimizer": "adam"}


def _child_sparse(cfg: Config, storage: str, vocab: int) -> None:
    """Child process: time the document configuration at one storage type and vocabulary size and
    print JSON figures (step seconds per repeat, unique rows per batch, peak RSS in MB)."""
    import torch

    torch.manual_seed(0)
    n = cfg.batch_size * (cfg.sparse_warmup + cfg.sparse_steps * cfg.repeats)
    data = zipf_pairs(n, cfg.max_len, vocab, cfg.zipf_exponent, cfg.zipf_ids, support=cfg.zipf_support)
    cfg = replace(cfg, vocab=vocab, warmup=cfg.sparse_warmup, steps=cfg.sparse_steps)
    trainer = make_trainer("pooled_embedding", cfg, data,
                           extra={**DOC_CONFIG, "token_embedding_storage_type": storage})
    t = measure_training(trainer, data, cfg)
    plan = trainer.sampler.plan(0)
    batches = [plan.batch(data, b) for b in range(min(len(plan), 8))]
    unique = [torch.cat([b.in0.ids, b.in1.ids]).unique().numel() for b in batches]  # tied: one table
    print(json.dumps({"step_s": t.step_s, "build_s": t.build_s, "unique_rows": float(np.mean(unique)),
                      "peak_rss_mb": status_mb("VmHWM"), "threads": torch.get_num_threads()}))


@section("sparse")
def sparse_section(cfg: Config) -> list[str]:
    """Dense vs row_sparse Adam and a vocabulary sweep in the document-embedding configuration."""
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1"}
    runs = [("dense", v) for v in cfg.dense_vocabs] + [("row_sparse", v) for v in cfg.sparse_vocabs]
    figures: dict[tuple[str, int], dict] = {}
    lines = [f"pooled_embedding, tied, comparator hadamard, max_seq_len {cfg.max_len} (every sequence "
             f"full), enc_dim {cfg.enc_dim}, mlp 2 x 512, mini_batch_size {cfg.batch_size}, Adam; "
             f"Zipf({cfg.zipf_exponent}) token ids, {cfg.zipf_ids}"
             f"{f' (first {cfg.zipf_support:,} ranks only)' if cfg.zipf_support else ''}; median of {cfg.repeats} x "
             f"{cfg.sparse_steps} steps after {cfg.sparse_warmup} warm-up steps",
             "",
             "| storage | vocab | step ms | samples/s | unique rows / batch | peak RSS MB "
             "| vs row_sparse @ smallest vocab |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for storage, vocab in runs:
        out = subprocess.run([sys.executable, __file__, "--child-sparse", storage, str(vocab),
                              json.dumps({k: getattr(cfg, k) for k in (
                                  "enc_dim", "batch_size", "max_len", "repeats", "sparse_warmup",
                                  "sparse_steps", "zipf_exponent", "zipf_ids", "zipf_support",
                                  "threads",
                                  "quick")})],
                             capture_output=True, text=True, env=env)
        if out.returncode:
            raise RuntimeError(f"{storage} at vocab {vocab} failed:\n{out.stderr[-3000:]}")
        fig = figures[storage, vocab] = json.loads(out.stdout.strip().splitlines()[-1])
        base = figures.get(("row_sparse", cfg.sparse_vocabs[0]))
        ratio = f"{base['step_s'] / fig['step_s']:.2f}x" if base else "-"
        lines.append(f"| {storage} | {vocab:,} | {fig['step_s'] * 1e3:,.1f} | "
                     f"{cfg.batch_size / fig['step_s']:,.0f} | {fig['unique_rows']:,.0f} | "
                     f"{fig['peak_rss_mb']:,.0f} | {ratio} |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines.append("")
    for vocab in cfg.dense_vocabs:
        if ("row_sparse", vocab) in figures:
            speedup = figures["dense", vocab]["step_s"] / figures["row_sparse", vocab]["step_s"]
            lines.append(f"row_sparse / dense speed at vocab {vocab:,}: {speedup:.1f}x")
    small, large = cfg.sparse_vocabs[0], cfg.sparse_vocabs[-1]
    ratio = figures["row_sparse", small]["step_s"] / figures["row_sparse", large]["step_s"]
    lines.append(f"row_sparse speed at vocab {large:,} / at vocab {small:,}: {ratio:.2f}")
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
    parser.add_argument("--sparse-vocabs", type=int, nargs="+", help="row_sparse vocabularies")
    parser.add_argument("--dense-vocabs", type=int, nargs="*", help="dense vocabularies")
    parser.add_argument("--zipf-ids", choices=("shuffled", "ranked"),
                        help="token frequency rank -> id: a random permutation or the identity")
    parser.add_argument("--zipf-support", type=int,
                        help="draw ids from the first N frequency ranks only, at every vocabulary")
    parser.add_argument("--child-load", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-sparse", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_load:
        _child_load(args.child_load[0], int(args.child_load[1]), int(args.child_load[2]))
        return 0
    if args.child_sparse:
        import torch

        fields = json.loads(args.child_sparse[2])
        if fields["threads"]:
            torch.set_num_threads(fields["threads"])
        _child_sparse(Config(**fields), args.child_sparse[0], int(args.child_sparse[1]))
        return 0
    logging.basicConfig(level=logging.ERROR)  # keep the pooled_embedding warning out of the report
    cfg = Config().quick_version() if args.quick else Config()
    overrides = {"networks": tuple(args.networks) if args.networks else None, "steps": args.steps,
                 "repeats": args.repeats, "load_records": args.load_records,
                 "sparse_vocabs": tuple(args.sparse_vocabs) if args.sparse_vocabs else None,
                 "dense_vocabs": tuple(args.dense_vocabs) if args.dense_vocabs is not None else None,
                 "zipf_ids": args.zipf_ids, "zipf_support": args.zipf_support}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    threads = args.threads or (1 if cfg.quick else None)
    cfg = replace(cfg, threads=threads)
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
