"""Shared test helpers (importable as `helpers`: pyproject sets pythonpath=tests): a temporary SageMaker
tree, the environment for real subprocesses, free ports."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write ``records`` as JSON Lines (one object per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_tree(base: Path, hyperparameters: dict, channels: dict[str, list[dict]],
              resource: dict | None = None) -> Path:
    """A SageMaker ``/opt/ml`` tree under ``base``: config files (every hyperparameter a string, as
    SageMaker sends them) and one ``data.jsonl`` per channel."""
    cfg = base / "input" / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    (cfg / "inputdataconfig.json").write_text(json.dumps(
        {c: {"ContentType": "application/jsonlines", "TrainingInputMode": "File",
             "S3DistributionType": "FullyReplicated"} for c in channels}))
    if resource is not None:
        (cfg / "resourceconfig.json").write_text(json.dumps(resource))
    for name, records in channels.items():
        write_jsonl(base / "input" / "data" / name / "data.jsonl", records)
    return base


def subprocess_env(base: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for running ``container/*`` as real processes: the venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if base is not None:
        env["SAGEMAKER_BASE_DIR"] = str(base)
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

