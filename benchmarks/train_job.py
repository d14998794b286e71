"""Run the real ``container/train`` on a SageMaker tree, as the quality benchmarks do.

    from train_job import failure_reason, run_train  # benchmarks/ is on sys.path for its scripts
    run = run_train(base, base / "train.log")
    if run.code != 0:
        raise SystemExit(failure_reason(base, run.log))
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "container" / "train"


@dataclass(frozen=True)
class TrainRun:
    """One finished ``container/train``: exit status, its whole log, wall seconds."""

    code: int
    log: str
    seconds: float


def run_train(base: Path, log_path: Path, threads: int | None = None) -> TrainRun:
    """``container/train`` with ``SAGEMAKER_BASE_DIR=base`` (this interpreter's bin/ first on
    PATH, as ``make`` runs it), stdout and stderr to ``log_path``; ``threads``: OMP_NUM_THREADS."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run([str(TRAIN)], cwd=base, env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    return TrainRun(code, log_path.read_text(), time.perf_counter() - start)


def failure_reason(base: Path, log: str) -> str:
    """Why a job failed: ``output/failure`` as SageMaker shows it, else the end of the log."""
    failure = base / "output" / "failure"
    return failure.read_text() if failure.exists() else log[-3000:]
