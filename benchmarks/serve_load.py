"""Load test of ``container/serve``: requests/s and latency from separate client processes.

    .venv/bin/python benchmarks/serve_load.py            # full run (about a minute on 2 cores)
    .venv/bin/python benchmarks/serve_load.py --quick    # smoke run, a few seconds

Serves an untrained pooled_embedding model (``FULL_MODEL``, written with ``save_artifact``) with the
real ``container/serve`` and drives it from client processes, one keep-alive ``http.client``
connection each: ``pair-1`` (single-pair scores, 1 client), ``pair-16`` (16 clients), ``embed-1000``
(1,000-instance embeddings, 1 client). Each scenario runs ``--repeat`` times (3); the median counts.
A full run writes ``results/serve_load.json`` (``prose/serve_load.md`` explains it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from o2vtools.process import serving
from o2vtools.results import Conditions, add_results_arguments, markdown_table, plural, table, write_results

FULL_MODEL = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "100000",
              "enc0_max_seq_len": "50", "enc_dim": "300", "output_layer": "softmax",
              "num_classes": "2", "mlp_dim": "512", "mlp_layers": "2"}
QUICK_MODEL = {**FULL_MODEL, "enc0_vocab_size": "5000", "enc_dim": "32",
               "enc0_token_embedding_dim": "32", "mlp_dim": "32"}
START_TIMEOUT_S = 120
CLIENT_TIMEOUT_S = 300


@dataclass
class Figures:
    """One run of one scenario: requests/s over all clients and latency quantiles."""

    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Target:
    """A scenario's goal on a 2-core CPU: the ``Figures`` field ``metric`` under ``limit``, or at
    least ``limit`` for a rate."""

    metric: str  # "rps", "p50_ms" or "p99_ms"
    limit: float

    def text(self) -> str:
        if self.metric == "rps":
            return f">= {self.limit:,.0f} requests/s"
        return f"{self.metric.split('_')[0]} < {self.limit:g} ms"

    def met(self, figures: Figures) -> bool:
        value = getattr(figures, self.metric)
        return value >= self.limit if self.metric == "rps" else value < self.limit


@dataclass
class Scenario:
    name: str
    clients: int
    requests: int  # per client, measured
    warmup: int  # per client, not measured
    body: str  # "pair" or "embed"
    target: Target

    @property
    def label(self) -> str:
        """The table's scenario cell."""
        what = "single-pair scores" if self.body == "pair" else "1,000 x 50-token embeddings"
        return f"{what} (`{self.name}`)"


@dataclass
class Measured:
    """One scenario's figures, one per run."""

    scenario: Scenario
    runs: list[Figures]

    @property
    def median(self) -> Figures:
        return Figures(*(statistics.median(getattr(r, f) for r in self.runs)
                         for f in ("rps", "p50_ms", "p99_ms")))


def build_model(base: Path, hyperparameters: dict[str, str]) -> int:
    """Write an untrained model to ``base/model``; returns its vocabulary size."""
    import torch

    from object2vec.artifact import save_artifact
    from object2vec.config.hyperparameters import parse_hyperparameters
    from object2vec.model.object2vec import ModelConfig, Object2Vec

    torch.manual_seed(0)
    hp = parse_hyperparameters(hyperparameters)
    save_artifact(base / "model", Object2Vec(ModelConfig.from_hyperparameters(hp)), hp)
    return hp.enc0.vocab_size


def make_body(kind: str, vocab: int, rng: random.Random) -> bytes:
    if kind == "pair":
        inst = [{"in0": [rng.randrange(vocab) for _ in range(rng.randint(1, 20))],
                 "in1": [rng.randrange(vocab) for _ in range(rng.randint(1, 20))]}]
    else:
        inst = [{"in0": [rng.randrange(vocab) for _ in range(50)]} for _ in range(1000)]
    return json.dumps({"instances": inst}).encode()


def client(port: int, scenario: Scenario, vocab: int, seed: int, barrier, results) -> None:
    """One client process; puts ``(start, end, latencies)`` or an error message on ``results``."""
    try:
        results.put(_client(port, scenario, vocab, seed, barrier))
    except Exception as exc:  # report instead of leaving the parent waiting
        barrier.abort()
        results.put(f"client {seed}: {type(exc).__name__}: {exc}")


def _client(port: int, scenario: Scenario, vocab: int, seed: int, barrier) -> tuple:
    """Warm up, wait for the other clients, then time ``scenario.requests`` calls."""
    rng = random.Random(seed)
    bodies = [make_body(scenario.body, vocab, rng) for _ in range(8)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    def call(body: bytes) -> None:
        conn.request("POST", "/invocations", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")

    for i in range(scenario.warmup):
        call(bodies[i % len(bodies)])
    barrier.wait(timeout=CLIENT_TIMEOUT_S)
    latencies = []
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    for i in range(scenario.requests):
        t0 = time.perf_counter()
        call(bodies[i % len(bodies)])
        latencies.append(time.perf_counter() - t0)
    end = time.perf_counter()
    conn.close()
    return start, end, latencies


def run_scenario(port: int, scenario: Scenario, vocab: int, seed: int) -> Figures:
    ctx = mp.get_context("fork")  # clients import nothing heavy; fork starts them fast
    barrier, results = ctx.Barrier(scenario.clients), ctx.Queue()
    procs = [ctx.Process(target=client,
                         args=(port, scenario, vocab, seed * 1000 + i, barrier, results))
             for i in range(scenario.clients)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=CLIENT_TIMEOUT_S) for _ in procs]
    for p in procs:
        p.join(timeout=CLIENT_TIMEOUT_S)
    failures = [o for o in outcomes if isinstance(o, str)]
    if failures:
        raise RuntimeError(f"{scenario.name}: " + "; ".join(failures))
    begin = min(o[0] for o in outcomes)
    end = max(o[1] for o in outcomes)
    latencies = sorted(x for o in outcomes for x in o[2])

    def quantile_ms(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return Figures(len(latencies) / (end - begin), quantile_ms(0.50), quantile_ms(0.99))


TARGETS = {"pair-1": Target("p99_ms", 20), "pair-16": Target("rps", 400),
           "embed-1000": Target("p50_ms", 150)}


def scenarios(quick: bool) -> list[Scenario]:
    if quick:
        sizes = [("pair-1", 1, 50, 5, "pair"), ("pair-16", 4, 25, 2, "pair"),
                 ("embed-1000", 1, 3, 1, "embed")]
    else:
        sizes = [("pair-1", 1, 1000, 50, "pair"), ("pair-16", 16, 200, 10, "pair"),
                 ("embed-1000", 1, 30, 3, "embed")]
    return [Scenario(*size, TARGETS[size[0]]) for size in sizes]


def server_description(extra: dict[str, str]) -> str:
    """Workers, threads and torch threads as ``container/serve`` resolves them from this
    environment (the same code the server runs), and whether they are its defaults."""
    from object2vec.serving.environment import ServingEnv

    env = ServingEnv.from_env({**os.environ, **extra})
    where = ", ".join(f"{k}={v}" for k, v in extra.items()) or "its defaults"
    return (f"{plural(env.workers, 'worker')} x {plural(env.threads, 'gthread thread')}, "
            f"{plural(env.torch_threads, 'torch thread')} per worker ({where})")


def model_description(hp: dict[str, str]) -> str:
    """The served model in words, from its hyperparameters."""
    return (f"untrained {hp['enc0_network']} model (enc_dim {hp['enc_dim']}, vocab "
            f"{int(hp['enc0_vocab_size']):,}, max_seq_len {hp['enc0_max_seq_len']}, "
            f"{hp['output_layer']} with {hp['num_classes']} classes, {hp['mlp_layers']} MLP layers "
            f"of {hp['mlp_dim']})")


def _fig(x: float) -> str:
    """Whole numbers from 100 up, one decimal from 10, two below (``1,008``, ``73.1``, ``1.46``)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def scenarios_table(measured: list[Measured]) -> dict:
    """Medians per scenario with the target and whether the median meets it."""
    rows = []
    for m in measured:
        med, target = m.median, m.scenario.target
        rows.append([m.scenario.label, str(m.scenario.clients), _fig(med.rps), _fig(med.p50_ms),
                     _fig(med.p99_ms), target.text(), "yes" if target.met(med) else "**no**"])
    header = ["scenario", "clients", "requests/s", "p50 ms", "p99 ms", "target", "met"]
    return table(header, rows, "lrrrrll")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model and few requests (smoke test); writes no results")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per scenario (3; 1 with --quick)")
    parser.add_argument("--workers", type=int, help="MODEL_SERVER_WORKERS (default: the server's)")
    parser.add_argument("--threads", type=int, help="MODEL_SERVER_THREADS (default: the server's)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    add_results_arguments(parser, "serve_load")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.no_results = args.no_results or args.quick
    return args


def measure(base: Path, args: argparse.Namespace, extra: dict[str, str]) -> list[Measured]:
    """Build the model, start the server, run every chosen scenario ``args.repeat`` times."""
    vocab = build_model(base, QUICK_MODEL if args.quick else FULL_MODEL)
    measured = []
    with serving(base, extra) as (port, _):
        print(f"container/serve on port {port}, {os.cpu_count()} CPUs (load average "
              f"{os.getloadavg()[0]:.1f}), env {extra or 'defaults'}, "
              f"median of {args.repeat} run(s)", flush=True)
        for sc in scenarios(args.quick):
            if args.only and sc.name not in args.only:
                continue
            m = Measured(sc, [run_scenario(port, sc, vocab, seed) for seed in range(args.repeat)])
            measured.append(m)
            print(f"{sc.name}: " + "; ".join(f"{r.rps:.1f} requests/s, p50 {r.p50_ms:.2f} ms, "
                                             f"p99 {r.p99_ms:.2f} ms" for r in m.runs), flush=True)
    return measured


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = {}
    if args.workers:
        extra["MODEL_SERVER_WORKERS"] = str(args.workers)
    if args.threads:
        extra["MODEL_SERVER_THREADS"] = str(args.threads)
    conditions = Conditions.start()
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        measured = measure(Path(tmp), args, extra)
    conditions.finish()
    scenarios_md = scenarios_table(measured)
    print(f"\n{markdown_table(**scenarios_md)}")
    if not args.no_results:
        sizes = "; ".join(f"`{m.scenario.name}` {plural(m.scenario.clients, 'client')} x "
                          f"{plural(m.scenario.requests, 'request')} after {m.scenario.warmup} "
                          f"warm-up" for m in measured)
        write_results(args.results, "serve_load.py", args.argv, conditions,
                      {"scenarios": scenarios_md},
                      {"model": model_description(FULL_MODEL), "server": server_description(extra),
                       "sizes": sizes, "repeat": plural(args.repeat, "run")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
