"""Reliability of ``container/serve`` under sustained load and when a worker dies.

    .venv/bin/python benchmarks/reliability.py           # 16 clients x 60 s, twice (~2.5 min)
    .venv/bin/python benchmarks/reliability.py --quick   # smoke run: 2 clients x 3 s, tiny model

Serves ``serve_load.py``'s model with ``container/serve`` and runs two loads of single-pair requests
from its clients: ``steady``, then the same with one worker sent SIGKILL half-way; RSS of master and
workers before and after. A full run writes ``results/reliability.json`` (``prose/reliability.md``
explains it). Exits 1, writing nothing, if no replacement worker served within ``RECOVERY_GRACE_S``
of the end of the load.
"""

import argparse
import contextlib
import http.client
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil
from o2vtools.process import serving
from o2vtools.results import Conditions, add_results_arguments, markdown_table, table, write_results
from serve_load import build_model, make_bodies, post, run_clients, server_values, summary

WARMUP = 5  # requests per client before the measured load
RECOVERY_GRACE_S = 30  # how long after the load ends the kill monitor keeps waiting for recovery


def workers_of(master: psutil.Process) -> list[psutil.Process]:
    """The master's live children (a killed worker stays a zombie until the master reaps it)."""
    alive = []
    for child in master.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
    return alive


def rss_mb(master: psutil.Process) -> dict[str, float]:
    """``{"master": MB, "<worker pid>": MB, ...}``."""
    return {"master": master.memory_info().rss / 2**20,
            **{str(w.pid): w.memory_info().rss / 2**20 for w in workers_of(master)}}


def probe_owner(port: int, body: bytes, master: psutil.Process) -> int | None:
    """One request on a fresh connection; the pid of the worker that holds that connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with contextlib.closing(conn), contextlib.suppress(psutil.Error):
        if post(conn, body) is None:
            mine = conn.sock.getsockname()[1]
            for w in workers_of(master):
                if any(c.raddr and c.raddr.port == mine for c in w.net_connections(kind="tcp")):
                    return w.pid
    return None


def kill_one_worker(master: psutil.Process, port: int, body: bytes, t0: float, seconds: float) -> dict:
    """SIGKILL a worker half-way through the load; how soon the worker count is back and a new one serves."""
    time.sleep(max(0.0, t0 + seconds / 2 - time.perf_counter()))
    before = workers_of(master)
    os.kill(before[0].pid, signal.SIGKILL)
    killed = time.perf_counter()
    out = {"victim": before[0].pid, "killed_at": killed, "count_back_s": None, "serving_s": None}
    while out["serving_s"] is None and time.perf_counter() < t0 + seconds + RECOVERY_GRACE_S:
        now = workers_of(master)
        new = {w.pid for w in now} - {w.pid for w in before}
        if out["count_back_s"] is None and new and len(now) == len(before):
            out["count_back_s"] = time.perf_counter() - killed
        if new and probe_owner(port, body, master) in new:
            out["serving_s"] = time.perf_counter() - killed
        time.sleep(0.02)
    return out


def kill_values(kill: dict, t0: float, records: list) -> dict[str, str]:
    """The prose's figures of the kill: when, failed requests (ms from it), recovery, requests/s around it."""
    at, end = kill["killed_at"], max(start + latency for start, latency, _ in records)
    failed = [(start - at) * 1000 for start, _, error in records if error is not None]
    ok_before = sum(error is None and start < at for start, _, error in records)
    ok_after = sum(error is None and start >= at for start, _, error in records)
    return {"victim": str(kill["victim"]), "kill_at": f"{at - t0:.1f}", "failed": str(len(failed)),
            "failed_from": f"{min(failed, default=0):+.0f}", "failed_to": f"{max(failed, default=0):+.0f}",
            **{k: "-" if kill[k] is None else f"{kill[k]:.2f}" for k in ("count_back_s", "serving_s")},
            "rps_before": f"{ok_before / (at - t0):,.0f}", "rps_after": f"{ok_after / (end - at):,.0f}"}


def rss_table(start: dict[str, float], end: dict[str, float], victim: int) -> dict:
    """RSS of the master and of every worker seen, at the start of the first load and after the last."""
    role = {str(victim): " (killed)", **{p: " (replacement)" for p in end.keys() - start.keys()}}
    rows = [[p if p == "master" else f"worker {p}{role.get(p, '')}",
             *(f"{rss[p]:.0f}" if p in rss else "-" for rss in (start, end))]
            for p in ["master", *sorted((start.keys() | end.keys()) - {"master"}, key=int)]]
    return table(["process", "RSS at start MB", "RSS at end MB"], rows, "lrr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 clients x 3 s; writes no results")
    add_results_arguments(parser, "reliability")
    args = parser.parse_args(argv)
    clients, seconds = (2, 3.0) if args.quick else (16, 60.0)
    conditions = Conditions.start()
    with tempfile.TemporaryDirectory(prefix="reliability_") as tmp:
        vocab = build_model(Path(tmp), args.quick)
        bodies = [make_bodies("pair", vocab, i) for i in range(clients)]  # the same for both loads
        with serving(Path(tmp)) as (port, server):  # container/serve as this environment sets it up
            master = psutil.Process(server.pid)
            print(f"container/serve on port {port}, {server_values()}", flush=True)
            t0, records, rss_start = run_clients(port, bodies, WARMUP, seconds=seconds,
                                                 during=lambda t0: rss_mb(master))
            steady = summary(t0, records)
            t0, records, kill = run_clients(port, bodies, WARMUP, seconds=seconds, during=lambda t0:
                                            kill_one_worker(master, port, bodies[0][0], t0, seconds))
            rss_end = rss_mb(master)
    conditions.finish()
    # one row per load: its figures from summary(), the errors by kind
    rows = [[name, f"{clients} x {seconds:g} s", f"{f['requests']:,}", f"{f['rps']:,.0f}", f"{f['p50']:.2f}",
             f"{f['p99']:.2f}", ", ".join(f"{n} {kind}" for kind, n in f["errors"].most_common()) or "0"]
            for name, f in (("steady", steady), ("worker killed half-way", summary(t0, records)))]
    loads = table(["load", "clients x time", "ok requests", "requests/s", "p50 ms", "p99 ms", "errors"],
                  rows, "llrrrrl")
    memory, kill_figures = rss_table(rss_start, rss_end, kill["victim"]), kill_values(kill, t0, records)
    print(f"{markdown_table(**loads)}\n\n{markdown_table(**memory)}\n\nthe kill:",
          ", ".join(f"{k} {v}" for k, v in kill_figures.items()))
    if kill["serving_s"] is None:
        print(f"no replacement worker served within {RECOVERY_GRACE_S} s of the end of the load")
        return 1
    print(f"a replacement worker answered a request after {kill_figures['serving_s']} s")
    if not (args.quick or args.no_results):
        write_results(args.results, "reliability.py", sys.argv[1:] if argv is None else argv, conditions,
                      {"loads": loads, "rss": memory}, {**kill_figures, **server_values(), "warmup": WARMUP})
    return 0


if __name__ == "__main__":
    sys.exit(main())
