"""Training throughput per encoder, the memory and time of loading a large channel, and dense vs
row_sparse updates over a vocabulary sweep (``prose/train_throughput.md``, ``prose/sparse.md``).

    .venv/bin/python benchmarks/train_throughput.py                  # every section (~15 min)
    .venv/bin/python benchmarks/train_throughput.py --quick          # smoke run, seconds
    .venv/bin/python benchmarks/train_throughput.py --sections sparse --sparse-runs 1 --no-results

Sections (``--sections``, default all, in this order): ``load`` -- ``load_channel`` of a
1,000,000-pair channel in a child process (time, peak RSS ``VmHWM``), before this process imports
torch; ``throughput`` -- ``Trainer.train_step`` samples/s per encoder on synthetic data, batch
building (``EpochPlan.batch``) timed apart; ``sparse`` -- the document-embedding configuration,
dense vs ``row_sparse`` Adam over a vocabulary sweep with Zipf-distributed ids, each configuration
in its own child process (``THP_MEM_ALLOC_ENABLE=1``), ``--sparse-runs`` whole sweeps one after the
other. A full run writes ``results/train_throughput.json`` (load and throughput: only when both ran)
and ``results/sparse.json``; ``--quick`` never writes.
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

import numpy as np
from o2vtools.results import (
    RESULTS_DIR,
    Conditions,
    bullet,
    cpu,
    load_average,
    markdown_table,
    median_and_runs,
    plural,
    table,
    value_range,
    write_results,
)

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
    zipf_support: int | None = None  # draw only the first N ranks (same statistics at any vocab)
    threads: int | None = None  # torch threads of the sparse section's children (None: torch's)
    sparse_runs: int = 4  # whole sweeps of the sparse section (median and each run reported)
    quick: bool = False

    def quick_version(self) -> Config:
        return replace(self, vocab=2_000, min_len=5, max_len=10, enc_dim=16, batch_size=64,
                       warmup=1, steps=2, repeats=2, load_records=5_000, load_len=10,
                       sparse_vocabs=(1_000, 20_000), dense_vocabs=(1_000,), sparse_warmup=1,
                       sparse_steps=2, sparse_runs=2, quick=True)


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
    """``n`` pairs of ``length``-token sequences whose ids follow a Zipf law truncated at
    ``support`` (default ``vocab``): P(rank r) ~ 1 / r**exponent, r = 1..support; rank -> id is the
    identity (``ids="ranked"``) or a seeded permutation of the whole vocabulary (``"shuffled"``).
    Labels 0/1 at random. ``support < vocab`` keeps a small vocabulary's statistics on a large
    table."""
    from object2vec.data.records import PairData, Side

    rng = np.random.default_rng(seed)
    support = min(support or vocab, vocab)
    cdf = np.cumsum(1.0 / np.arange(1, support + 1, dtype=np.float64) ** exponent)
    order = rng.permutation(vocab) if ids == "shuffled" else np.arange(vocab)
    rank_to_id = order.astype(np.int32)
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
        trainer.train_step(plan.batch(data, b))
        b += 1
    step_times, build_times = [], []
    for _ in range(cfg.repeats):
        build = step = 0.0
        for _ in range(cfg.steps):
            t0 = time.perf_counter()
            batch = plan.batch(data, b)
            t1 = time.perf_counter()
            trainer.train_step(batch)
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


def load_section(cfg: Config) -> dict:
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
    c = json.loads(out.stdout.strip().splitlines()[-1])
    verdict = "met" if c["peak_rss_mb"] < RSS_LIMIT_MB else "**not met**"
    load = table(["load s", "records/s", "arrays MB", "RSS before load MB", "peak RSS (VmHWM) MB",
                  "limit"],
                 [[f"{c['seconds']:.1f}", f"{c['records'] / c['seconds']:,.0f}",
                   f"{c['arrays_mb']:,.0f}", f"{c['rss_before_mb']:,.0f}",
                   f"{c['peak_rss_mb']:,.0f}", f"< {RSS_LIMIT_MB:,} MB: {verdict}"]], "rrrrrl")
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"tables": {"load": load}, "values": {
        "records": f"{c['records']:,}", "load_len": cfg.load_len, "file_mb": f"{size / MB:,.0f}",
        "written_s": f"{written:.1f}", "load_bullets": "\n".join([
            bullet(f"""The loaded data is {c['arrays_mb']:,.0f} MB (int32 ids, int64 offsets, int64
                   labels); the peak is {c['peak_rss_mb'] / c['arrays_mb']:.1f}x that because the
                   builder's growing `array` buffers are copied into numpy arrays at the end."""),
            bullet(f"""`getrusage(RUSAGE_CHILDREN).ru_maxrss` gave {children_mb:,.0f} MB in this
                   run. It is not used as the figure because Linux keeps the parent's peak in a
                   vfork()ed child's ru_maxrss (an earlier version of the script, with torch
                   loaded in the parent, reported 363 MB for a 5,000-record load).""")])}}


def encoder_label(network: str, cfg: Config) -> str:
    """``hcnn (4 layers, auto)``: the layers the trainer resolves for ``enc0_layers=auto``."""
    from object2vec.config.hyperparameters import parse_hyperparameters

    if network == "pooled_embedding":  # no layers to speak of
        return network
    layers = parse_hyperparameters(hyperparameters(network, cfg)).enc0.layers
    return f"{network} ({layers} layer{'s' if layers > 1 else ''}, auto)"


def throughput_section(cfg: Config) -> dict:
    """Samples/s per encoder, with batch building timed on its own."""
    import torch

    n = cfg.batch_size * (cfg.warmup + cfg.steps * cfg.repeats)
    data = synthetic_pairs(n, cfg.vocab, cfg.min_len, cfg.max_len)
    rows = []
    for network in cfg.networks:
        torch.manual_seed(0)
        t = measure_training(make_trainer(network, cfg, data), data, cfg)
        rows.append((encoder_label(network, cfg), t))
        print(f"{network}: {t.step_s:.3f} s / step, {t.step_rate:,.0f} samples/s", file=sys.stderr,
              flush=True)
    worst = max((t for _, t in rows), key=lambda t: t.build_share)
    return {"tables": {"throughput": table(
        ["encoder", "s / step", "train samples/s", "batch build ms", "samples/s incl. build",
         "build share"],
        [[label, f"{t.step_s:.3f}", f"{t.step_rate:,.0f}", f"{t.build_s * 1e3:.2f}",
          f"{t.end_to_end_rate:,.0f}", f"{t.build_share * 100:.2f} %"] for label, t in rows],
        "lrrrrr")}, "values": {
        "vocab": f"{cfg.vocab:,}", "max_len": cfg.max_len, "min_len": cfg.min_len,
        "enc_dim": cfg.enc_dim, "batch_size": cfg.batch_size,
        "threads": plural(torch.get_num_threads(), "torch thread"),
        "repeats": plural(cfg.repeats, "repeat"), "steps": plural(cfg.steps, "step"),
        "warmup": plural(cfg.warmup, "warm-up step"), "pipeline": bullet(
            f"""The data pipeline is not a bottleneck while the build share stays small: in this
            run building a {cfg.batch_size}-pair batch of {cfg.min_len}-{cfg.max_len}-token
            sequences took at most {worst.build_s * 1e3:.2f} ms, at most
            {worst.build_share * 100:.2f} % of a step.""")}}


# The published document-embedding configuration (object2vec.md, sparse-update launch notes).
DOC_CONFIG = {"enc1_network": "enc0", "tied_token_embedding_weight": "true",
              "comparator_list": "hadamard", "mlp_dim": "512", "mlp_layers": "2",
              "optimizer": "adam"}
# The sparse section's targets (2-core CPU), from the published single-GPU figures; a target is
# reported only when the run measured the vocabularies it names.
TARGET_SAMPLES = (10_000, 14_000)  # row_sparse samples/s at vocab 10,000
TARGET_DENSE_RATIO = (300_000, 2.8)  # row_sparse speed / dense speed at vocab 300,000
TARGET_VOCAB_RATIO = (10_000, 3_000_000, 0.9)  # row_sparse speed at 3,000,000 / at 10,000


def _child_sparse(cfg: Config, storage: str, vocab: int) -> None:
    """Child process: time the document configuration at one storage type and vocabulary size and
    print JSON figures (step seconds per repeat, unique rows per batch, peak RSS in MB)."""
    import torch

    torch.manual_seed(0)
    n = cfg.batch_size * (cfg.sparse_warmup + cfg.sparse_steps * cfg.repeats)
    data = zipf_pairs(n, cfg.max_len, vocab, cfg.zipf_exponent, cfg.zipf_ids,
                      support=cfg.zipf_support)
    cfg = replace(cfg, vocab=vocab, warmup=cfg.sparse_warmup, steps=cfg.sparse_steps)
    trainer = make_trainer("pooled_embedding", cfg, data,
                           extra={**DOC_CONFIG, "token_embedding_storage_type": storage})
    t = measure_training(trainer, data, cfg)
    plan = trainer.sampler.plan(0)
    batches = [plan.batch(data, b) for b in range(min(len(plan), 8))]
    # tied: one table for both sides
    unique = [torch.cat([b.in0.ids, b.in1.ids]).unique().numel() for b in batches]
    print(json.dumps({"step_s": t.step_s, "build_s": t.build_s,
                      "unique_rows": float(np.mean(unique)), "peak_rss_mb": status_mb("VmHWM"),
                      "threads": torch.get_num_threads()}))


@dataclass
class SparseFigures:
    """Every run of the sparse sweep: per run, the child's JSON per (storage, vocab)."""

    runs: list[dict[tuple[str, int], dict]]
    conditions: list[Conditions]  # when each run took place, under what load

    def configs(self) -> list[tuple[str, int]]:
        return list(self.runs[0])

    def values(self, storage: str, vocab: int, key: str) -> list[float]:
        """``key`` of one configuration in every run, in run order."""
        return [run[storage, vocab][key] for run in self.runs]

    def step_ms(self, storage: str, vocab: int) -> float:
        """The median step time over the runs, in ms."""
        return statistics.median(self.values(storage, vocab, "step_s")) * 1e3

    def has(self, storage: str, vocab: int) -> bool:
        return (storage, vocab) in self.runs[0]

    def table(self, cfg: Config) -> dict:
        runs = len(self.runs)
        rows = []
        for storage, vocab in self.configs():
            steps = [s * 1e3 for s in self.values(storage, vocab, "step_s")]
            rows.append([storage, f"{vocab:,}", median_and_runs(steps, _ms),
                         f"{cfg.batch_size / self.step_ms(storage, vocab) * 1e3:,.0f}",
                         f"{statistics.median(self.values(storage, vocab, 'unique_rows')):,.0f}",
                         value_range(self.values(storage, vocab, "peak_rss_mb"), "{:,.0f}".format)])
        return table(["storage", "vocab", f"step ms ({plural(runs, 'run')})", "samples/s",
                      "unique rows / batch", "peak RSS MB"], rows, "lrlrrr")

    def targets(self, cfg: Config) -> dict:
        """The targets table, with the rows whose vocabularies this run measured."""
        rows = []
        vocab, samples = TARGET_SAMPLES
        if self.has("row_sparse", vocab):
            rate = cfg.batch_size / self.step_ms("row_sparse", vocab) * 1e3
            rows.append([f"row_sparse >= {samples:,} samples/s at vocab {vocab:,} (published "
                         f"single-GPU figure)", f"{rate:,.0f} samples/s",
                         _met(rate >= samples) + f" ({rate / samples:.1f}x)"])
        vocab, ratio = TARGET_DENSE_RATIO
        if self.has("row_sparse", vocab) and self.has("dense", vocab):
            sparse, dense = self.step_ms("row_sparse", vocab), self.step_ms("dense", vocab)
            rows.append([f"row_sparse >= {ratio}x dense at vocab {vocab:,} (published single-GPU "
                         f"ratio)", f"{dense / sparse:.1f}x ({_ms(sparse)} vs {_ms(dense)} ms)",
                         _met(dense / sparse >= ratio)])
        small, large, ratio = TARGET_VOCAB_RATIO
        if self.has("row_sparse", small) and self.has("row_sparse", large):
            fast, slow = self.step_ms("row_sparse", small), self.step_ms("row_sparse", large)
            rows.append([f"row_sparse at vocab {large:,} >= {ratio}x its vocab-{small:,} speed",
                         f"{fast / slow:.2f}x ({_ms(slow)} vs {_ms(fast)} ms)",
                         _met(fast / slow >= ratio)])
        return table(["target", "figure", "met"], rows, "lll")

    def derived(self, cfg: Config) -> list[str]:
        """Speed ratios and per-row costs from the medians, for any vocabularies."""
        lines = []
        for vocab in cfg.dense_vocabs:
            if self.has("row_sparse", vocab) and self.has("dense", vocab):
                speedup = self.step_ms("dense", vocab) / self.step_ms("row_sparse", vocab)
                lines.append(f"row_sparse / dense speed at vocab {vocab:,}: {speedup:.1f}x")
        small, large = cfg.sparse_vocabs[0], cfg.sparse_vocabs[-1]
        ratio = self.step_ms("row_sparse", small) / self.step_ms("row_sparse", large)
        lines.append(f"row_sparse speed at vocab {large:,} / at vocab {small:,}: {ratio:.2f}")
        rows = {v: statistics.median(self.values("row_sparse", v, "unique_rows"))
                for v in (small, large)}
        per_row = {v: self.step_ms("row_sparse", v) * 1e3 / rows[v] for v in (small, large)}
        lines.append(f"unique rows per batch at vocab {large:,} / at vocab {small:,}: "
                     f"{rows[large] / rows[small]:.1f}x; row_sparse step time per unique row: "
                     f"{per_row[small]:.1f} us at vocab {small:,}, {per_row[large]:.1f} us at "
                     f"{large:,}")
        return lines

def _ms(ms: float) -> str:
    """Step milliseconds as the table gives them: ``42.1``, ``1,678``."""
    return f"{ms:,.1f}" if ms < 1000 else f"{ms:,.0f}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _run_sparse_child(cfg: Config, storage: str, vocab: int) -> dict:
    """One configuration in its own process (THP on, as ``container/train`` sets); its JSON."""
    fields = json.dumps({k: getattr(cfg, k) for k in (
        "enc_dim", "batch_size", "max_len", "repeats", "sparse_warmup", "sparse_steps",
        "zipf_exponent", "zipf_ids", "zipf_support", "threads", "quick")})
    out = subprocess.run([sys.executable, __file__, "--child-sparse", storage, str(vocab), fields],
                         capture_output=True, text=True,
                         env={**os.environ, "THP_MEM_ALLOC_ENABLE": "1"})
    if out.returncode:
        raise RuntimeError(f"{storage} at vocab {vocab} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sparse_section(cfg: Config) -> SparseFigures:
    """Dense vs row_sparse Adam and a vocabulary sweep in the document-embedding configuration,
    ``cfg.sparse_runs`` times over: whole sweeps one after another, so that a disturbance from other
    jobs lands in one run of every configuration rather than in every run of one."""
    configs = ([("dense", v) for v in cfg.dense_vocabs]
               + [("row_sparse", v) for v in cfg.sparse_vocabs])
    figures = SparseFigures([], [])
    for run in range(cfg.sparse_runs):
        conditions = Conditions.start()
        figures.runs.append({})
        for storage, vocab in configs:
            fig = figures.runs[-1][storage, vocab] = _run_sparse_child(cfg, storage, vocab)
            print(f"run {run + 1}: {storage} at vocab {vocab:,}: "
                  f"{fig['step_s'] * 1e3:,.1f} ms / step", file=sys.stderr, flush=True)
        figures.conditions.append(conditions.finish())
    return figures


def sparse_values(cfg: Config, sparse: SparseFigures) -> dict:
    """What prose/sparse.md quotes of one sparse run."""
    return {"max_len": cfg.max_len, "enc_dim": cfg.enc_dim, "batch_size": cfg.batch_size,
            "zipf_exponent": cfg.zipf_exponent,
            "support": (f", drawn from the first {cfg.zipf_support:,} ranks only"
                        if cfg.zipf_support else ""),
            "ids": ("scattered over the table by a seeded permutation" if cfg.zipf_ids == "shuffled"
                    else "equal to the ids (id = frequency rank)"),
            "threads": plural(sparse.runs[0][sparse.configs()[0]]["threads"], "torch thread"),
            "repeats": plural(cfg.repeats, "repeat"), "steps": plural(cfg.sparse_steps, "step"),
            "warmup": plural(cfg.sparse_warmup, "warm-up step"),
            "times": plural(len(sparse.runs), "time"), "cpu": cpu(),
            "runs": "; ".join(f"{k + 1}: {c.brief()}" for k, c in enumerate(sparse.conditions)),
            "derived": "\n".join(bullet(line) for line in sparse.derived(cfg))}


SECTIONS = {"load": load_section, "throughput": throughput_section, "sparse": sparse_section}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS),
                        help="sections to run (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (smoke test); writes no results")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, help="encoders to time")
    parser.add_argument("--steps", type=int, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, help="repeats (the median is reported)")
    parser.add_argument("--load-records", type=int, help="pairs in the load section's channel")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's; 1 with --quick)")
    parser.add_argument("--sparse-vocabs", type=int, nargs="+", help="row_sparse vocabularies")
    parser.add_argument("--dense-vocabs", type=int, nargs="*", help="dense vocabularies")
    parser.add_argument("--sparse-runs", type=int,
                        help=f"runs of the whole sparse sweep; the table gives the median and each "
                             f"run's figure (default {Config.sparse_runs}; 2 with --quick)")
    parser.add_argument("--zipf-ids", choices=("shuffled", "ranked"),
                        help="token frequency rank -> id: a random permutation or the identity")
    parser.add_argument("--zipf-support", type=int,
                        help="draw ids from the first N frequency ranks only, at every vocabulary")
    parser.add_argument("--no-results", action="store_true", help="write no results files")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help="folder of train_throughput.json and sparse.json (benchmarks/results)")
    parser.add_argument("--child-load", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-sparse", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.no_results = args.no_results or args.quick
    return args


def config(args: argparse.Namespace) -> Config:
    """The sizes: the defaults (or ``--quick``'s) with the options given on top."""
    cfg = Config().quick_version() if args.quick else Config()
    overrides = {"networks": tuple(args.networks) if args.networks else None, "steps": args.steps,
                 "repeats": args.repeats, "load_records": args.load_records,
                 "sparse_vocabs": tuple(args.sparse_vocabs) if args.sparse_vocabs else None,
                 "dense_vocabs": (tuple(args.dense_vocabs) if args.dense_vocabs is not None
                                  else None),
                 "sparse_runs": args.sparse_runs, "zipf_ids": args.zipf_ids,
                 "zipf_support": args.zipf_support}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    return replace(cfg, threads=args.threads or (1 if cfg.quick else None))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    cfg = config(args)
    print(f"# train_throughput: {os.cpu_count()} CPUs{', QUICK' if cfg.quick else ''}", flush=True)
    done: dict[str, tuple[object, Conditions]] = {}
    for name in sorted(args.sections, key=list(SECTIONS).index):
        if name != "load":  # load measures a child; keep torch out of this process until needed
            import torch

            if cfg.threads:
                torch.set_num_threads(cfg.threads)
        print(f"\n## {name} (load average {load_average()})", flush=True)
        conditions = Conditions.start()
        figures = SECTIONS[name](cfg)
        done[name] = (figures, conditions.finish())
        if name == "sparse":
            parts = [figures.table(cfg), figures.targets(cfg)]
            print("\n\n".join(markdown_table(**t) for t in parts if t["rows"]))
            print("\n".join(figures.derived(cfg)))
        else:
            print("\n\n".join(markdown_table(**t) for t in figures["tables"].values()))
        print(f"\n({conditions.seconds:.0f} s)", flush=True)
    if args.no_results:
        return 0
    if "load" in done and "throughput" in done:
        (load, load_run), (throughput, throughput_run) = done["load"], done["throughput"]
        write_results(args.results / "train_throughput.json", "train_throughput.py", args.argv,
                      Conditions.spanning(load_run, throughput_run),
                      {**load["tables"], **throughput["tables"]},
                      {**load["values"], **throughput["values"], "load_run": load_run.brief(),
                       "throughput_run": throughput_run.brief()})
    elif "load" in done or "throughput" in done:
        print("not written: train_throughput.json needs --sections load throughput in one run")
    if "sparse" in done:
        sparse, run = done["sparse"]
        write_results(args.results / "sparse.json", "train_throughput.py", args.argv, run,
                      {"sparse": sparse.table(cfg), "targets": sparse.targets(cfg)},
                      sparse_values(cfg, sparse))
    return 0


if __name__ == "__main__":
    sys.exit(main())
