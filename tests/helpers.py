"""Shared test helpers (importable as `helpers`: pyproject sets pythonpath=tests): a temporary SageMaker
tree, the environment for real subprocesses, free ports, a strict decoder for the PNGs we write."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

from object2vec.data.records import PairData, Side

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


TRAIN = REPO / "container" / "train"


def tiny_data(n: int = 64, seed: int = 0) -> PairData:
    """``n`` random pairs of 1-3 ids below 20 each, binary labels (seeded)."""
    rng = np.random.default_rng(seed)

    def side() -> Side:
        lengths = rng.integers(1, 4, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Side(rng.integers(0, 20, int(offsets[-1])).astype(np.int32), offsets)

    return PairData(side(), side(), rng.integers(0, 2, n).astype(np.int64))


def train_all(trees: dict[str, Path], root: Path, timeout: float = 240) -> dict[str, tuple[int, str]]:
    """Run ``container/train`` on every tree at once (cwd ``root/cwd_<name>``, one OpenMP thread
    each: the jobs share the cores, and tiny ops on spin-waiting thread pools of several processes
    get slower, not faster); wait for all. Returns ``name -> (exit status, log)``."""
    procs = {}
    for name, base in trees.items():
        cwd = root / f"cwd_{name}"
        cwd.mkdir(exist_ok=True)
        with (cwd / "log.txt").open("w") as log:  # a file, not a pipe: no process blocks on output
            procs[name] = subprocess.Popen([str(TRAIN)], cwd=cwd,
                                           env=subprocess_env(base, OMP_NUM_THREADS="1"),
                                           stdout=log, stderr=subprocess.STDOUT)
    out = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out[name] = (proc.returncode, (root / f"cwd_{name}" / "log.txt").read_text())
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) pixels of an 8-bit RGB PNG as ``object2vec.reporting.plot`` writes it, checking every
    chunk's CRC and the header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    w, h, depth, color_type, compression, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color_type, compression, filt, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == h * (1 + 3 * w)
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)
    assert not rows[:, 0].any()  # filter type 0 (None) on every row: no unfiltering needed
    return rows[:, 1:].reshape(h, w, 3)
