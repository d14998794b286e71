"""Load test of ``container/serve``: requests/s and latency from separate client processes.

    .venv/bin/python benchmarks/serve_load.py            # full run (about a minute on 2 cores)
    .venv/bin/python benchmarks/serve_load.py --quick    # smoke run, a few seconds

Builds an untrained pooled_embedding model (enc_dim 300, vocab 100,000, max_seq_len 50, softmax
with 2 classes, 2 MLP layers of 512) into a temporary ``model/`` with ``save_artifact``, starts the
real ``container/serve`` on a free loopback port, and drives it from client processes, each with
one keep-alive ``http.client`` connection:

* ``pair-1``: single-pair scoring requests, 1 client;
* ``pair-16``: single-pair scoring requests, 16 concurrent clients;
* ``embed-1000``: 1,000-instance embedding requests (50 tokens each), 1 client.

Each scenario runs ``--repeat`` times (default 3); the table shows the median of the runs. Targets
on a 2-core CPU: pair-1 p99 < 20 ms, pair-16 >= 400 requests/s, embed-1000 p50 < 150 ms.

The markdown table is printed and, after a full run and unless ``--no-results``, written with the
command, the date, the versions and the load average to the section "## Serving
(benchmarks/serve_load.py)" of ``benchmarks/RESULTS.md`` (``--results PATH``: another file).
``--quick`` never writes it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from results_md import (Conditions, add_results_arguments, command, fill, markdown_table, plural,
                        run_line, write_section)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Serving (benchmarks/serve_load.py)"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), SAGEMAKER_BIND_TO_PORT=str(port),
               PYTHONUNBUFFERED="1", **extra_env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(base / "serve.log", "wb")
    proc = subprocess.Popen([str(REPO / "container" / "serve")], env=env, cwd=base, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"container/serve exited with {proc.returncode}:\n"
                               f"{(base / 'serve.log').read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"container/serve did not answer /ping within {START_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (gunicorn and its workers), SIGKILL after 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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


# -- report ----------------------------------------------------------------------------------------

# Explanations and dated earlier measurements, printed under the generated table (update them when
# they stop being true; they are not this run's figures).
NOTES = """What limits these figures, and what earlier runs gave:

- Clients and server share the machine: with 2 cores, latency is an upper bound whenever the load
  average above exceeds what the server and its clients bring themselves. Earlier runs of the same
  script and defaults (2026-11-29, median of 3): under a load average of 2.8 from other jobs, pair-1
  692 requests/s, p50 1.46 ms, p99 2.20 ms; pair-16 1,008 requests/s, p50 11.95 ms, p99 43.15 ms;
  embed-1000 13.8 requests/s, p50 73.1 ms, p99 87.4 ms. At load average 1.1 (a quiet `make bench`):
  pair-1 963 requests/s, p50 1.03 ms, p99 1.37 ms; pair-16 1,151 requests/s, p50 8.27 ms, p99 46.4
  ms; embed-1000 18.9 requests/s, p50 53.2 ms, p99 57.8 ms. Under heavier load (load average 4-6):
  pair-1 370-415 requests/s with p99 7.5-9.7 ms, pair-16 733-971 requests/s, embed-1000 p50 88-119
  ms (p99 144-179 ms); at about 4 (single runs) embed-1000 p50 was 56-58 ms.
- `MODEL_SERVER_THREADS` 1 / 2 / 4 (`--threads`) gave pair-16 885 / 995 / 1073 requests/s in
  back-to-back runs on 2026-11-29: 4 stays the default (it also lets `/ping` be answered while long
  requests run).
- Where the time of one 1,000-instance embedding request goes (profiled in process, 1 torch thread,
  2026-11-29): decoding the JSON body 3 ms, validation and batching 6 ms, the forward pass 7 ms,
  writing the 300,000 floats 23 ms. The writer is vectorised with numpy (same text as `"%.9g"`, 9
  significant digits = full float32 precision); `json.dumps(tensor.tolist())` took 155 ms for the
  same floats.
"""


def _fig(x: float) -> str:
    """Whole numbers from 100 up, one decimal from 10, two below (``1,008``, ``73.1``, ``1.46``)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def table(measured: list[Measured]) -> str:
    """Medians per scenario with the target and whether the median meets it."""
    rows = []
    for m in measured:
        med, target = m.median, m.scenario.target
        rows.append([m.scenario.label, str(m.scenario.clients), _fig(med.rps), _fig(med.p50_ms),
                     _fig(med.p99_ms), target.text(), "yes" if target.met(med) else "**no**"])
    header = ["scenario", "clients", "requests/s", "p50 ms", "p99 ms", "target", "met"]
    return markdown_table(header, rows, "lrrrrll")


def section(command_line: str, conditions: Conditions, model: str, server: str, repeat: int,
            measured: list[Measured]) -> str:
    """The RESULTS.md section of one full run."""
    sizes = "; ".join(f"`{m.scenario.name}` {plural(m.scenario.clients, 'client')} x "
                      f"{plural(m.scenario.requests, 'request')} after {m.scenario.warmup} warm-up"
                      for m in measured)
    return "\n\n".join([
        SECTION,
        run_line(command_line, conditions),
        fill(f"""Model: an {model}, written with `save_artifact` (torch seed 0). Server: the real
             `container/serve` on a loopback port with {server}. Clients: separate processes on the
             same machine, one keep-alive `http.client` connection each; {sizes}. Each figure is the
             median of {plural(repeat, 'run')} of its scenario (request bodies seeded by run and
             client); the targets are for a 2-core CPU."""),
        table(measured),
        NOTES,
    ])


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model and few requests (smoke test); never writes RESULTS.md")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per scenario (3; 1 with --quick)")
    parser.add_argument("--workers", type=int, help="MODEL_SERVER_WORKERS (default: the server's)")
    parser.add_argument("--threads", type=int, help="MODEL_SERVER_THREADS (default: the server's)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    add_results_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.no_results = args.no_results or args.quick
    return args


def measure(base: Path, args: argparse.Namespace, extra: dict[str, str]) -> list[Measured]:
    """Build the model, start the server, run every chosen scenario ``args.repeat`` times."""
    vocab = build_model(base, QUICK_MODEL if args.quick else FULL_MODEL)
    port = free_port()
    server = start_server(base, port, extra)
    measured = []
    try:
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
    finally:
        stop_server(server)
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
    print()
    print(table(measured))
    if not args.no_results:
        text = section(command("serve_load.py", args.argv), conditions,
                       model_description(FULL_MODEL), server_description(extra), args.repeat,
                       measured)
        write_section(SECTION, text, args.results)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
