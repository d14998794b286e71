"""Training throughput per encoder, the memory and time of loading a large channel, dense vs
row_sparse updates over a vocabulary sweep, and the catalog's vector index (``prose/*.md``).

    .venv/bin/python benchmarks/train_throughput.py                  # every section (~17 min)
    .venv/bin/python benchmarks/train_throughput.py --quick          # smoke run, seconds
    .venv/bin/python benchmarks/train_throughput.py --sections sparse --sparse-runs 1 --no-results

A full run writes ``results/train_throughput.json`` (sections load and throughput),
``results/sparse.json`` (sparse) and ``results/neighbors.json`` (index); ``--quick`` never writes.
"""

import argparse
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from o2vtools import results

NETWORKS = ("pooled_embedding", "hcnn", "bilstm")
RSS_LIMIT_MB = 1536
ZIPF = 1.1  # exponent of the sparse section's token frequencies (about that of words in text)
# A row of the load table each: (how one side of a record is written, the tokenizer of a text
# side, worker processes); the text rows load the same pairs, word i written as "w<i>".
LOAD_FORMATS = {"id lists": (list, None, 1), **{
    f"text, {tok}, {n} process{'es' * (n > 1)}": (lambda ids: " ".join(f"w{i}" for i in ids), tok, n)
    for tok in ("wordlevel", "wordpiece") for n in (1, len(os.sched_getaffinity(0)))}}
# The published document-embedding configuration (object2vec.md, sparse-update launch notes).
DOC_CONFIG = {"enc1_network": "enc0", "tied_token_embedding_weight": "true",
              "comparator_list": "hadamard", "mlp_dim": "512", "mlp_layers": "2", "optimizer": "adam"}


@dataclass(frozen=True)
class Config:
    """Benchmark sizes: the defaults are the full run's, ``QUICK`` a smoke run's."""

    vocab: int = 100_000
    min_len: int = 25
    max_len: int = 50
    enc_dim: int = 300
    batch_size: int = 512
    warmup: int = 1
    steps: int = 2
    repeats: int = 3
    load_records: int = 1_000_000
    load_len: int = 50
    vocabs: tuple[int, ...] = (10_000, 300_000, 1_000_000, 3_000_000)  # the sparse sweep
    dense_max_vocab: int = 1_000_000  # dense Adam at 3,000,000: weights, grad, 2 moments = 4 x 3.6 GB
    sparse_warmup: int = 5
    sparse_steps: int = 10
    sparse_runs: int = 4
    index_items: tuple[int, ...] = (100_000, 1_000_000)  # catalog sizes of the index section


QUICK = Config(vocab=2_000, min_len=5, max_len=10, enc_dim=16, batch_size=64, repeats=2,
               load_records=5_000, load_len=10, vocabs=(1_000, 20_000), dense_max_vocab=1_000,
               sparse_warmup=1, sparse_steps=2, sparse_runs=2, index_items=(3_000,))


def pairs(cfg: Config, zipf: bool = False):
    """Seeded random pairs for ``measure_training``, labels 0/1: lengths in [min_len, max_len] and
    uniform ids; or, with ``zipf``, ``max_len`` tokens of ``zipf_ids``."""
    from object2vec.data.records import PairData, Side

    rng = np.random.default_rng(0)
    n, vocab, max_len = cfg.batch_size * (cfg.warmup + cfg.steps * cfg.repeats), cfg.vocab, cfg.max_len
    draw = zipf_ids(rng, vocab) if zipf else lambda size: rng.integers(0, vocab, size)

    def side() -> Side:
        lengths = np.full(n, max_len) if zipf else rng.integers(cfg.min_len, max_len + 1, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Side(draw(int(offsets[-1])).astype(np.int32), offsets)

    return PairData(side(), side(), rng.integers(0, 2, n).astype(np.int64))


def zipf_ids(rng: np.random.Generator, vocab: int):
    """``draw(shape)``: ids < ``vocab``, P(rank r) ~ 1 / r**ZIPF, ranks scattered (vocabularies are
    rarely sorted by frequency)."""
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1, dtype=np.float64) ** ZIPF)
    rank_to_id = rng.permutation(vocab)
    return lambda shape: rank_to_id[np.minimum(np.searchsorted(cdf, rng.random(shape) * cdf[-1], "right"),
                                               vocab - 1)]


def make_trainer(network: str, cfg: Config, data, extra: dict[str, str] | None = None):
    """A Trainer over ``data`` (its train channel) that logs no metric lines."""
    from object2vec.config.hyperparameters import parse_hyperparameters
    from object2vec.training.metrics import MetricLogger
    from object2vec.training.trainer import Trainer

    hp = parse_hyperparameters({
        "enc0_network": network, "enc0_vocab_size": str(cfg.vocab), "enc0_max_seq_len": str(cfg.max_len),
        "enc_dim": str(cfg.enc_dim), "mini_batch_size": str(cfg.batch_size), **(extra or {})})
    return Trainer(hp, {"train": data}, MetricLogger("algo-1", logging.getLogger("bench"), enabled=False))


def measure_training(trainer, data, cfg: Config) -> tuple[float, float]:
    """Median seconds per step and per batch build over ``cfg.repeats`` repeats of ``cfg.steps``
    steps, after ``cfg.warmup``; each batch is built just before its step, as in training."""
    trainer.model.train()
    plan, times = trainer.sampler.plan(0), []
    for b in range(cfg.warmup + cfg.repeats * cfg.steps):
        build, batch = timed(plan.batch, data, b)  # an IndexError: the data has too few batches for cfg
        times.append((build, timed(trainer.train_step, batch)[0]))
    build, step = np.median(np.reshape(times[cfg.warmup:], (cfg.repeats, cfg.steps, 2)).mean(axis=1), axis=0)
    return float(step), float(build)


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def child(kind: str, **kwargs) -> dict:
    """``CHILDREN[kind](**kwargs)`` in a fresh interpreter with transparent huge pages on for torch,
    as ``container/train`` sets them; the JSON it printed last."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps({"kind": kind, **kwargs})],
                         capture_output=True, text=True, env={**os.environ, "THP_MEM_ALLOC_ENABLE": "1"})
    if out.returncode:
        raise RuntimeError(f"child {kind} {kwargs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_channel(path: Path, cfg: Config, side) -> int:
    """``cfg.load_records`` seeded records (``zipf_ids`` sides as ``side(ids)``) as JSON Lines; its size."""
    draw = zipf_ids(rng := np.random.default_rng(0), cfg.vocab)
    with path.open("w") as fh:
        for start in range(0, cfg.load_records, 20_000):  # in chunks: all ids as Python ints are GBs
            n = min(20_000, cfg.load_records - start)
            fh.writelines(json.dumps({"in0": side(a), "in1": side(b), "label": y}) + "\n" for (a, b), y
                          in zip(draw((n, 2, cfg.load_len)).tolist(), rng.integers(0, 2, n).tolist()))
    return path.stat().st_size


def child_load(channel: str, vocab: int, length: int, tokenizer: str | None, workers: int) -> None:
    """Child process, no torch: train the tokenizer of text sides (one for both, on the channel's
    text), load the channel, print the time and memory figures (MB) as JSON."""
    import resource

    from object2vec.data.records import RecordRules, channel_texts, load_channel
    from object2vec.text import train_text_encoder

    before, t0 = status_mb("VmRSS"), time.perf_counter()
    text = tokenizer and train_text_encoder(channel_texts(Path(channel), (0, 1)), tokenizer, vocab, True)
    trained, t0 = time.perf_counter() - t0, time.perf_counter()
    data = load_channel(Path(channel), RecordRules((vocab, vocab), (length, length), False, 2, (text, text)),
                        workers)
    seconds = time.perf_counter() - t0
    arrays = data.labels.nbytes + sum(s.ids.nbytes + s.offsets.nbytes for s in (data.in0, data.in1))
    # VmHWM is this process image's own peak; ru_maxrss is not (Linux keeps the parent's peak when
    # a vfork()ed child execs, so it can report the parent's size). The forked workers' peak is
    # RUSAGE_CHILDREN's (pages shared with this process at the fork included).
    print(json.dumps({"records": len(data), "seconds": seconds, "rss_before_mb": before,
                      "peak_rss_mb": status_mb("VmHWM"), "arrays_mb": arrays / 2**20, "tokenizer_s": trained,
                      "workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def load_section(cfg: Config) -> dict:
    """Time and peak RSS of ``load_channel``, one channel file per format in ``LOAD_FORMATS``."""
    rows, written, ids_s = [], 0.0, None
    for name, (side, tokenizer, workers) in LOAD_FORMATS.items():
        with tempfile.TemporaryDirectory(prefix="o2v-load-") as channel:
            seconds, size = timed(write_channel, Path(channel) / "data.jsonl", cfg, side)
            written += seconds
            c = child("load", channel=channel, vocab=cfg.vocab, length=cfg.load_len, tokenizer=tokenizer,
                      workers=workers)
        peak, ids_s = c["peak_rss_mb"], ids_s or c["seconds"]
        rows.append([name, f"{size / 2**20:,.0f}", f"{c['seconds']:.1f}",
                     f"{c['records'] / c['seconds']:,.0f}", f"{peak:,.0f}", f"{c['arrays_mb']:,.0f}",
                     f"{peak / c['arrays_mb']:.1f}x", f"{c['rss_before_mb']:,.0f}",
                     f"{c['workers_mb']:,.0f}" if workers > 1 else "", f"{c['seconds'] / ids_s:.2f}x",
                     f"{c['tokenizer_s']:.1f}" if tokenizer else "",
                     f"< {RSS_LIMIT_MB:,} MB: {'met' if peak < RSS_LIMIT_MB else '**not met**'}"])
    header = ["channel", "file MB", "load s", "records/s", "peak RSS (VmHWM) MB", "arrays MB",
              "peak / arrays", "RSS before load MB", "workers' peak RSS MB", "load s / id lists'",
              "tokenizer training s", "limit"]
    return {"tables": {"load": results.table(header, rows, "lrrrrrrrrrrl")}, "values": {
        "records": f"{cfg.load_records:,}", "load_len": cfg.load_len, "written_s": f"{written:.1f}"}}


def throughput_section(cfg: Config) -> dict:
    """Samples/s per encoder, with batch building timed on its own."""
    import torch

    data = pairs(cfg)
    rows, worst = [], (0.0, 0.0)  # the largest build share, and its build seconds
    for network in NETWORKS:
        trainer = make_trainer(network, cfg, data)
        step, build = measure_training(trainer, data, cfg)
        share = build / (step + build)
        worst = max(worst, (share, build))
        layers = results.plural(trainer.hp.enc0.layers, "layer")  # what enc0_layers=auto gave
        rows.append([network if network == "pooled_embedding" else f"{network} ({layers}, auto)",
                     f"{step:.3f}", f"{cfg.batch_size / step:,.0f}", f"{build * 1e3:.2f}",
                     f"{cfg.batch_size / (step + build):,.0f}", f"{share * 100:.2f} %"])
    header = ["encoder", "s / step", "train samples/s", "batch build ms", "samples/s incl. build",
              "build share"]
    return {"tables": {"throughput": results.table(header, rows, "lrrrrr")}, "values": {
        "vocab": f"{cfg.vocab:,}", "min_len": cfg.min_len, "max_len": cfg.max_len,
        "enc_dim": cfg.enc_dim, "batch_size": cfg.batch_size, "threads": torch.get_num_threads(),
        "repeats": cfg.repeats, "steps": cfg.steps, "warmup": cfg.warmup,
        "build_ms": f"{worst[1] * 1e3:.2f}", "build_share": f"{worst[0] * 100:.2f}"}}


def child_sparse(cfg: dict, storage: str, vocab: int) -> None:
    """Child process: time the document configuration at one storage type and vocabulary; print
    the median step ms, unique rows per batch and peak RSS (MB) as JSON."""
    import torch

    cfg = Config(**{**cfg, "vocab": vocab, "warmup": cfg["sparse_warmup"], "steps": cfg["sparse_steps"]})
    data = pairs(cfg, zipf=True)
    trainer = make_trainer("pooled_embedding", cfg, data,
                           {**DOC_CONFIG, "token_embedding_storage_type": storage})
    step_s, _ = measure_training(trainer, data, cfg)
    plan = trainer.sampler.plan(0)
    batches = [plan.batch(data, b) for b in range(min(len(plan), 8))]
    unique = [torch.cat([b.in0.ids, b.in1.ids]).unique().numel() for b in batches]  # tied: 1 table
    print(json.dumps({"step_ms": step_s * 1e3, "unique_rows": float(np.mean(unique)),
                      "peak_rss_mb": status_mb("VmHWM"), "threads": torch.get_num_threads()}))


def sparse_section(cfg: Config) -> dict:
    """Dense vs row_sparse Adam over the vocabularies, each configuration in its own process;
    ``cfg.sparse_runs`` whole sweeps one after another, so that a disturbance from other jobs lands
    in one run of every configuration rather than in every run of one."""
    figures = {("dense", v): [] for v in cfg.vocabs if v <= cfg.dense_max_vocab}
    figures.update({("row_sparse", v): [] for v in cfg.vocabs})
    runs = []
    for run in range(cfg.sparse_runs):
        runs.append(results.Conditions.start())
        for (storage, vocab), figs in figures.items():
            figs.append(child("sparse", cfg=asdict(cfg), storage=storage, vocab=vocab))
            print(f"run {run + 1}: {storage} at vocab {vocab:,}: {figs[-1]['step_ms']:,.1f} ms / step",
                  file=sys.stderr, flush=True)
        runs[-1].finish()
    return sparse_report(cfg, figures, runs)


def sparse_report(cfg: Config, figures: dict, runs: list) -> dict:
    """The sweep's table (median and each run), the targets its vocabularies allow, the prose's figures."""

    def median(storage: str, vocab: int, key: str = "step_ms") -> float:
        return statistics.median(f[key] for f in figures[storage, vocab])

    rows = []
    for (storage, vocab), figs in figures.items():
        ms, dense = median(storage, vocab), ("dense", vocab) in figures and storage == "row_sparse"
        steps = results.median_and_runs([f["step_ms"] for f in figs], "{:,.1f}".format)
        rows.append([storage, f"{vocab:,}", steps, f"{cfg.batch_size / ms * 1e3:,.0f}",
                     f"{median(storage, vocab, 'unique_rows'):,.0f}",
                     results.value_range([f["peak_rss_mb"] for f in figs], "{:,.0f}".format),
                     f"{median('dense', vocab) / ms:.1f}x" if dense else "-"])
    header = ["storage", "vocab", f"step ms ({results.plural(len(runs), 'run')})", "samples/s",
              "unique rows / batch", "peak RSS MB", "row_sparse / dense speed"]
    small, large = cfg.vocabs[0], cfg.vocabs[-1]
    fast, slow = median("row_sparse", small), median("row_sparse", large)
    unique = {v: median("row_sparse", v, "unique_rows") for v in (small, large)}
    print(f"row_sparse speed at vocab {large:,} / at vocab {small:,}: {fast / slow:.2f}")
    return {"tables": {"sparse": results.table(header, rows, "lrlrrrr"),
                       "targets": targets(cfg, figures.keys(), median)}, "values": {
        "max_len": cfg.max_len, "enc_dim": cfg.enc_dim, "batch_size": cfg.batch_size, "zipf_exponent": ZIPF,
        "threads": next(iter(figures.values()))[0]["threads"], "repeats": cfg.repeats,
        "steps": cfg.sparse_steps, "warmup": cfg.sparse_warmup, "times": len(runs), "cpu": results.cpu(),
        "runs": "; ".join(f"{k + 1}: {c.brief()}" for k, c in enumerate(runs)), "small": f"{small:,}",
        "large": f"{large:,}", "vocab_ratio": f"{fast / slow:.2f}",
        "rows_ratio": f"{unique[large] / unique[small]:.1f}", "us_small": f"{fast * 1e3 / unique[small]:.1f}",
        "us_large": f"{slow * 1e3 / unique[large]:.1f}"}}


def targets(cfg: Config, measured, median) -> dict:
    """The targets (2-core CPU, from the published single-GPU figures) whose configurations this
    run measured; ``median(storage, vocab)`` is a median step in ms."""
    rows, met = [], {True: "yes", False: "**no**"}
    if ("row_sparse", 10_000) in measured:
        rate = cfg.batch_size / median("row_sparse", 10_000) * 1e3
        rows.append(["row_sparse >= 14,000 samples/s at vocab 10,000 (published single-GPU figure)",
                     f"{rate:,.0f} samples/s", f"{met[rate >= 14_000]} ({rate / 14_000:.1f}x)"])
    if {("row_sparse", 300_000), ("dense", 300_000)} <= measured:
        sparse, dense = median("row_sparse", 300_000), median("dense", 300_000)
        rows.append(["row_sparse >= 2.8x dense at vocab 300,000 (published single-GPU ratio)",
                     f"{dense / sparse:.1f}x ({sparse:,.1f} vs {dense:,.1f} ms)", met[dense / sparse >= 2.8]])
    if {("row_sparse", 10_000), ("row_sparse", 3_000_000)} <= measured:
        fast, slow = median("row_sparse", 10_000), median("row_sparse", 3_000_000)
        rows.append(["row_sparse at vocab 3,000,000 >= 0.9x its vocab-10,000 speed",
                     f"{fast / slow:.2f}x ({slow:,.1f} vs {fast:,.1f} ms)", met[fast / slow >= 0.9]])
    return results.table(["target", "figure", "met"], rows, "lll")


def index_section(cfg: Config) -> dict:
    """The catalog's index (``object2vec.neighbors``) over clustered (1,000 Gaussian centres, unit noise)
    and isotropic stand-ins for embeddings (no structure for ivf's cells to follow): speed, recall."""
    from object2vec.neighbors import CatalogIndex

    rng, rows, met = np.random.default_rng(0), [], "not measured"
    centres = rng.standard_normal((1000, cfg.enc_dim), dtype=np.float32)

    def draw(size: int, clustered: bool) -> np.ndarray:
        noise = rng.standard_normal((size, cfg.enc_dim), np.float32)
        return noise + centres[rng.integers(0, 1000, size)] if clustered else noise

    for data, n in itertools.product(("clustered", "isotropic"), cfg.index_items):
        queries, exact = draw(200, data == "clustered"), None
        items = np.concatenate([draw(min(100_000, n - k), data == "clustered") for k in range(0, n, 100_000)])
        for kind in ("flat", "ivf"):  # flat first: its answers are the exact ones
            build, built = timed(CatalogIndex.build, items, list(range(n)), 1, kind=kind)
            with tempfile.TemporaryDirectory(prefix="o2v-index-") as tmp:  # searched as served:
                built.save(Path(tmp))  # saved, then loaded (memory-mapped; still mapped once deleted)
                index, built = CatalogIndex.load(Path(tmp), cfg.enc_dim), None
            single = [timed(index.search_rows, q[None], 10)[0] for q in queries]
            batch = statistics.median(timed(index.search_rows, queries[:100], 10)[0] for _ in range(5))
            found = index.search_rows(queries, 10)[1]
            exact = found if exact is None else exact
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), exact.tolist())])
            p50 = np.median(single) * 1e3
            cells = f" ({index.index.nlist:,} cells, {index.index.nprobe} probed)" if kind == "ivf" else ""
            rows.append([data, f"{n:,}", kind + cells, f"{build:.1f}", f"{p50:.2f}",
                         f"{np.percentile(single, 99) * 1e3:.2f}", f"{batch * 1e3:.1f}", f"{recall:.3f}"])
            if (data, n, kind) == ("clustered", 1_000_000, "ivf"):
                met = "met" if build < 600 and p50 < 10 and recall >= 0.95 else "**not met**"
    header = ["data", "items", "index", "build s", "top-10 p50 ms", "top-10 p99 ms", "100 queries ms",
              "recall@10"]
    return {"tables": {"index": results.table(header, rows, "lrlrrrrr")},
            "values": {"enc_dim": cfg.enc_dim, "met": met}}


def timed(call, *args, **kwargs) -> tuple[float, object]:
    """Seconds ``call(*args, **kwargs)`` took, and what it returned."""
    t0 = time.perf_counter()
    out = call(*args, **kwargs)
    return time.perf_counter() - t0, out


SECTIONS = {"load": load_section, "throughput": throughput_section, "sparse": sparse_section,
            "index": index_section}
CHILDREN = {"load": child_load, "sparse": child_sparse}
FILES = {"train_throughput.json": ("load", "throughput"), "sparse.json": ("sparse",),
         "neighbors.json": ("index",)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                        help="sections to run, in this order (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test); writes no results")
    parser.add_argument("--sparse-runs", type=int, help="whole sparse sweeps (default 4)")
    parser.add_argument("--no-results", action="store_true", help="write no results files")
    parser.add_argument("--results", type=Path, default=results.RESULTS_DIR, metavar="DIR",
                        help="folder of the results files (benchmarks/results)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv, argparse.Namespace(argv=list(sys.argv[1:] if argv is None else argv)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        kwargs = json.loads(args.child)
        return CHILDREN[kwargs.pop("kind")](**kwargs) or 0
    logging.basicConfig(level=logging.ERROR)  # keep the pooled_embedding warning out of the report
    if args.quick:  # one torch thread here and in the children: smoke tests share the machine
        os.environ["OMP_NUM_THREADS"] = "1"
    cfg = QUICK if args.quick else Config()
    cfg = replace(cfg, sparse_runs=args.sparse_runs or cfg.sparse_runs)
    done = {}
    for name in sorted(args.sections, key=list(SECTIONS).index):
        print(f"\n## {name} (load average {results.load_average()})", flush=True)
        conditions = results.Conditions.start()
        figures = SECTIONS[name](cfg)
        figures["values"][f"{name}_run"] = conditions.finish().brief()
        done[name] = figures, conditions
        print("\n\n".join(results.markdown_table(**t) for t in figures["tables"].values() if t["rows"]))
        print(f"\n({conditions.seconds:.0f} s)", flush=True)
    for file, names in FILES.items():  # a file is written when all its sections ran
        if not (args.no_results or args.quick) and set(names) <= done.keys():
            parts = [done[name] for name in names]
            results.write_results(args.results / file, "train_throughput.py", args.argv,
                                  results.Conditions.spanning(parts[0][1], parts[-1][1]),
                                  *({k: v for figures, _ in parts for k, v in figures[key].items()}
                                    for key in ("tables", "values")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
