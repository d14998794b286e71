"""Reliability of ``container/serve`` under sustained load and when a worker dies.

    .venv/bin/python benchmarks/reliability.py           # 16 clients x 60 s, twice (~2.5 min)
    .venv/bin/python benchmarks/reliability.py --quick   # smoke run: 2 clients x 3 s, tiny model

Serves ``serve_load.py``'s model with ``container/serve``'s defaults and runs two loads of
``--clients`` processes x ``--seconds`` s of single-pair requests: ``steady``, then the same with
one worker sent SIGKILL half-way; RSS of master and workers before and after. A full run writes
``results/reliability.json`` (``prose/reliability.md`` explains it). Exits 1 if no replacement
worker served within 30 s of the end of the load.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
from o2vtools.process import serving
from o2vtools.results import (
    Conditions,
    add_results_arguments,
    bullet,
    markdown_table,
    plural,
    table,
    write_results,
)
from serve_load import FULL_MODEL, QUICK_MODEL, build_model, make_body, model_description, server_description

HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
WARMUP = 5  # requests per client before the measured load
RECOVERY_GRACE_S = 30  # how long after the load ends the kill monitor keeps waiting for recovery


def client(port: int, vocab: int, seed: int, seconds: float, barrier, results) -> None:
    """One client process (processes, not threads: 16 request loops in one interpreter would
    contend for its GIL). Puts ``[(start, latency, error or None), ...]`` on ``results``."""
    rng = random.Random(seed)
    bodies = [make_body("pair", vocab, rng) for _ in range(8)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    records = []

    def call(body: bytes) -> str | None:
        nonlocal conn
        try:
            conn.request("POST", "/invocations", body=body, headers=HEADERS)
            resp = conn.getresponse()
            resp.read()
            return None if resp.status == 200 else f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            # A connection to a killed worker fails once; the next request opens a new one.
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            time.sleep(0.01)  # no busy loop if the port refused connections
            return type(exc).__name__

    try:
        for i in range(WARMUP):
            call(bodies[i % len(bodies)])
        barrier.wait(timeout=120)
        deadline = time.monotonic() + seconds  # CLOCK_MONOTONIC: shared by all processes
        i = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            error = call(bodies[i % len(bodies)])
            records.append((t0, time.monotonic() - t0, error))
            i += 1
    except Exception as exc:  # report instead of leaving the parent waiting
        barrier.abort()
        records.append((time.monotonic(), 0.0, f"client crashed: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()
        results.put(records)


def workers_of(master: psutil.Process) -> list[psutil.Process]:
    """The master's live children (a killed worker stays a zombie until the master reaps it)."""
    alive = []
    for child in master.children():
        try:
            alive += [child] if child.status() != psutil.STATUS_ZOMBIE else []
        except psutil.NoSuchProcess:
            pass
    return alive


def rss_mb(master: psutil.Process) -> dict[str, float]:
    """``{"master": MB, "<worker pid>": MB, ...}``."""
    return {"master": master.memory_info().rss / 2**20,
            **{str(w.pid): w.memory_info().rss / 2**20 for w in workers_of(master)}}


def probe_owner(port: int, body: bytes, master: psutil.Process) -> int | None:
    """One request on a fresh connection; the pid of the worker that holds that connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/invocations", body=body, headers=HEADERS)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            return None
        mine = conn.sock.getsockname()[1]
        for w in workers_of(master):
            if any(c.raddr and c.raddr.port == mine for c in w.net_connections(kind="tcp")):
                return w.pid
    except (OSError, http.client.HTTPException, psutil.Error):
        pass
    finally:
        conn.close()
    return None


def kill_one_worker(master: psutil.Process, port: int, body: bytes, t_kill: float,
                    end: float) -> dict:
    """At ``t_kill``: SIGKILL one worker, then poll until the worker count is back and a
    replacement worker answers a probe request (or ``RECOVERY_GRACE_S`` after ``end``)."""
    time.sleep(max(0.0, t_kill - time.monotonic()))
    before = workers_of(master)
    victim = before[0].pid
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    out = {"victim": victim, "killed_at": killed_at, "count_back_s": None, "serving_s": None}
    old = {w.pid for w in before}
    while out["serving_s"] is None and time.monotonic() < end + RECOVERY_GRACE_S:
        now = workers_of(master)
        new = {w.pid for w in now} - old
        if out["count_back_s"] is None and new and len(now) == len(before):
            out["count_back_s"] = time.monotonic() - killed_at
        if new and probe_owner(port, body, master) in new:
            out["serving_s"] = time.monotonic() - killed_at
        time.sleep(0.02)
    return out


def run_load(port: int, vocab: int, clients: int, seconds: float, seed: int,
             master: psutil.Process, kill: bool) -> tuple[list, dict]:
    """``clients`` processes for ``seconds``; returns all records and what happened meanwhile."""
    ctx = mp.get_context("fork")  # clients import nothing heavy; fork starts them fast
    barrier, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=client, args=(port, vocab, seed * 1000 + i, seconds, barrier,
                                              results)) for i in range(clients)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)  # the parent is a party: t0 is when the clients start
        info = {"t0": time.monotonic(), "rss_start": rss_mb(master)}
        if kill:
            body = make_body("pair", vocab, random.Random(seed))
            info.update(kill_one_worker(master, port, body, info["t0"] + seconds / 2,
                                        info["t0"] + seconds))
        records = [r for _ in procs for r in results.get(timeout=seconds + 120)]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return records, info


def figures(records: list, t0: float) -> dict:
    """Successful requests, their rate and latency quantiles (ms), and the errors by kind."""
    ok = sorted(lat for _, lat, err in records if err is None)
    end = max(start + lat for start, lat, _ in records)
    ms = ok or [float("nan")]
    return {"requests": len(ok), "rps": len(ok) / (end - t0), "p50": ms[len(ms) // 2] * 1000,
            "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))] * 1000,
            "errors": Counter(err for _, _, err in records if err is not None)}


def errors_text(errors: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in errors.most_common()) or "0"


def span_ms(offsets: list[float]) -> str:
    """``-8 to +0`` (seconds in, signed milliseconds out), or ``-8`` when they round the same."""
    low, high = (f"{x * 1000:+.0f}" for x in (min(offsets), max(offsets)))
    return low if low == high else f"{low} to {high}"


def report(args, steady: dict, killed: dict, kill: dict, records: list, rss: dict) -> dict:
    """The loads' table, the kill's bullets and the RSS table."""
    rows = [[name, f"{args.clients} x {args.seconds:g} s", f"{f['requests']:,}", f"{f['rps']:,.0f}",
             f"{f['p50']:.2f}", f"{f['p99']:.2f}", errors_text(f["errors"])]
            for name, f in (("steady", steady), ("worker killed half-way", killed))]
    k, t0, t1 = kill["killed_at"], kill["t0"], max(s + lat for s, lat, _ in records)
    failed = [s - k for s, _, err in records if err is not None]
    before = sum(1 for s, _, e in records if e is None and s < k) / (k - t0)
    after = sum(1 for s, _, e in records if e is None and s >= k) / (t1 - k)

    def back(s: float | None) -> str:
        return f"after {s:.2f} s" if s is not None else "not within the run"

    bullets = [
        f"SIGKILL to worker {kill['victim']} at +{k - t0:.1f} s: "
        f"{plural(len(failed), 'failed request')}" + (
            f" ({errors_text(killed['errors'])}), sent {span_ms(failed)} ms relative to the kill"
            if failed else "") + ".",
        f"Worker count back {back(kill['count_back_s'])}; a replacement worker answered a request "
        f"{back(kill['serving_s'])} (it loads and warms up the model first).",
        f"Successful requests/s before the kill {before:,.0f}, after it {after:,.0f}."]
    pids = sorted({p for sample in rss.values() for p in sample if p != "master"}, key=int)
    role = {str(kill["victim"]): " (killed)", **{p: " (replacement)" for p in rss["end"]
                                                 if p not in rss["start"]}}
    mem = [[p if p == "master" else f"worker {p}{role.get(p, '')}",
            *(f"{rss[when][p]:.0f}" if p in rss[when] else "-" for when in ("start", "end"))]
           for p in ["master", *pids]]
    header = ["load", "clients x time", "ok requests", "requests/s", "p50 ms", "p99 ms", "errors"]
    return {"loads": table(header, rows, "llrrrrl"), "kill": "\n".join(bullet(b) for b in bullets),
            "rss": table(["process", "RSS at start MB", "RSS at end MB"], mem, "lrr")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model, 2 clients x 3 s unless given; writes no results")
    parser.add_argument("--clients", type=int, help="client processes (16; 2 with --quick)")
    parser.add_argument("--seconds", type=float, help="seconds per load (60; 3 with --quick)")
    add_results_arguments(parser, "reliability")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    args.clients = args.clients or (2 if args.quick else 16)
    args.seconds = args.seconds or (3.0 if args.quick else 60.0)
    hp = QUICK_MODEL if args.quick else FULL_MODEL
    conditions = Conditions.start()
    with tempfile.TemporaryDirectory(prefix="reliability_") as tmp:
        vocab = build_model(Path(tmp), hp)
        with serving(Path(tmp)) as (port, server):  # container/serve's defaults
            master = psutil.Process(server.pid)
            print(f"container/serve on port {port}, {server_description({})}", flush=True)
            records, info = run_load(port, vocab, args.clients, args.seconds, 1, master, False)
            steady = figures(records, info["t0"])
            records, kill = run_load(port, vocab, args.clients, args.seconds, 2, master, True)
            killed = figures(records, kill["t0"])
            rss = {"start": info["rss_start"], "end": rss_mb(master)}
    conditions.finish()
    parts = report(args, steady, killed, kill, records, rss)
    print(f"{markdown_table(**parts['loads'])}\n\n{parts['kill']}\n\n{markdown_table(**parts['rss'])}")
    if not (args.quick or args.no_results):
        write_results(args.results, "reliability.py", argv, conditions,
                      {"loads": parts["loads"], "rss": parts["rss"]},
                      {"kill": parts["kill"], "model": model_description(hp),
                       "server": server_description({}), "warmup": WARMUP})
    return 0 if kill["serving_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
