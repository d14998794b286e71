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

REPO = Path(__file__).resolve().parents[1]
FULL_MODEL = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "100000",
              "enc0_max_seq_len": "50", "enc_dim": "300", "output_layer": "softmax",
              "num_classes": "2", "mlp_dim": "512", "mlp_layers": "2"}
QUICK_MODEL = {**FULL_MODEL, "enc0_vocab_size": "5000", "enc_dim": "32",
               "enc0_token_embedding_dim": "32", "mlp_dim": "32"}
START_TIMEOUT_S = 120
CLIENT_TIMEOUT_S = 300


@dataclass
class Scenario:
    name: str
    clients: int
    requests: int  # per client, measured
    warmup: int  # per client, not measured
    body: str  # "pair" or "embed"


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float


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


def scenarios(quick: bool) -> list[Scenario]:
    if quick:
        return [Scenario("pair-1", 1, 50, 5, "pair"), Scenario("pair-16", 4, 25, 2, "pair"),
                Scenario("embed-1000", 1, 3, 1, "embed")]
    return [Scenario("pair-1", 1, 1000, 50, "pair"), Scenario("pair-16", 16, 200, 10, "pair"),
            Scenario("embed-1000", 1, 30, 3, "embed")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model and few requests (smoke test)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per scenario (3; 1 with --quick)")
    parser.add_argument("--workers", type=int, help="MODEL_SERVER_WORKERS (default: the server's)")
    parser.add_argument("--threads", type=int, help="MODEL_SERVER_THREADS (default: the server's)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    extra = {}
    if args.workers:
        extra["MODEL_SERVER_WORKERS"] = str(args.workers)
    if args.threads:
        extra["MODEL_SERVER_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        base = Path(tmp)
        vocab = build_model(base, QUICK_MODEL if args.quick else FULL_MODEL)
        port = free_port()
        server = start_server(base, port, extra)
        try:
            print(f"container/serve on port {port}, {os.cpu_count()} CPUs (load average "
                  f"{os.getloadavg()[0]:.1f}), env {extra or 'defaults'}, "
                  f"median of {repeat} run(s)")
            print(f"{'scenario':<12} {'clients':>7} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
            for sc in scenarios(args.quick):
                if args.only and sc.name not in args.only:
                    continue
                runs = [run_scenario(port, sc, vocab, seed) for seed in range(repeat)]
                med = Figures(*(statistics.median(getattr(r, f) for r in runs)
                                for f in ("rps", "p50_ms", "p99_ms")))
                print(f"{sc.name:<12} {sc.clients:>7} {med.rps:>11.1f} {med.p50_ms:>8.2f} "
                      f"{med.p99_ms:>8.2f}", flush=True)
        finally:
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
