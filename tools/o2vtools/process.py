"""The container's entry programs as real processes: ``container/train`` to completion,
``container/serve`` started, polled on ``/ping`` and stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTAINER = REPO / "container"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def container_env(base: Path, **extra: str) -> dict[str, str]:
    """This environment with ``SAGEMAKER_BASE_DIR=base``, this interpreter's bin/ first on PATH
    (as ``make`` runs the programs) and ``extra``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return dict(os.environ, SAGEMAKER_BASE_DIR=str(base), PYTHONUNBUFFERED="1", PATH=path, **extra)


@dataclass(frozen=True)
class TrainRun:
    """One finished ``container/train``: exit status, its whole log, wall seconds."""

    code: int
    log: str
    seconds: float


def run_train(base: Path, log_path: Path, threads: int | None = None, **extra: str) -> TrainRun:
    """``container/train`` on the tree ``base``, stdout and stderr to ``log_path``; ``threads``:
    OMP_NUM_THREADS; ``extra``: more environment variables."""
    if threads:
        extra["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run([str(CONTAINER / "train")], cwd=base, stdout=log, check=False,
                              env=container_env(base, **extra), stderr=subprocess.STDOUT).returncode
    return TrainRun(code, log_path.read_text(), time.perf_counter() - start)


def failure_reason(base: Path, log: str) -> str:
    """Why a job failed: ``output/failure`` as SageMaker shows it, else the end of the log."""
    failure = base / "output" / "failure"
    return failure.read_text() if failure.exists() else log[-3000:]


def train_tree(base: Path, hyperparameters: dict[str, str], channels: dict[str, Path],
               threads: int | None = None) -> TrainRun:
    """Write a SageMaker tree (config files, each channel's file hard-linked or copied) and run
    ``container/train`` on it (log in ``base/train.log``); exits with the reason if it failed."""
    from o2vtools.tree import link_channel_file, write_config

    write_config(base, hyperparameters, list(channels))
    for name, source in channels.items():
        link_channel_file(base, name, source)
    run = run_train(base, base / "train.log", threads)
    if run.code != 0:
        raise SystemExit(f"container/train failed (exit {run.code}) in {base}:\n"
                         f"{failure_reason(base, run.log)}")
    return run


def start_server(base: Path, port: int, extra_env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.Popen:
    """``container/serve`` on ``base/model`` at ``port`` (its own process group, log in
    ``base/serve.log``), returned once ``/ping`` answers 200."""
    env = container_env(base, SAGEMAKER_BIND_TO_PORT=str(port), **(extra_env or {}))
    with open(base / "serve.log", "wb") as log:
        proc = subprocess.Popen([str(CONTAINER / "serve")], env=env, cwd=base, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
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
    stop_server(proc)
    raise RuntimeError(f"container/serve did not answer /ping within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (gunicorn and its workers), SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def serving(base: Path, extra_env: dict[str, str] | None = None
            ) -> Iterator[tuple[int, subprocess.Popen]]:
    """``with serving(base) as (port, proc):`` -- a started server on a free port, stopped after."""
    port = free_port()
    proc = start_server(base, port, extra_env)
    try:
        yield port, proc
    finally:
        stop_server(proc)


def invocations(port: int, instances: list, key: str = "embeddings", batch: int = 100, **extra) -> list:
    """``POST /invocations`` of ``{"in0": x, **extra}`` for each of ``instances``, ``batch`` per
    request: each prediction's ``key`` (``embeddings``, ``neighbors``...), in order."""
    out = []
    for start in range(0, len(instances), batch):
        body = json.dumps({"instances": [{"in0": x, **extra} for x in instances[start:start + batch]]})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                         {"Content-Type": "application/json", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as resp:
            out += [p[key] for p in json.loads(resp.read())["predictions"]]
    return out
