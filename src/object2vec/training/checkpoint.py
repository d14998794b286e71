"""Resumable training state in ``/opt/ml/checkpoints`` (SageMaker syncs that folder with S3).

One file, ``object2vec-checkpoint.pt``, replaced atomically (write to a temp file, fsync, rename) so an
interruption at any moment leaves either the previous or the new checkpoint, never half of one. It holds
only tensors and plain types, and is read back with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "object2vec-checkpoint.pt"


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Atomically replace the checkpoint in ``directory`` with ``state``."""
    path = directory / CHECKPOINT_FILE
    tmp = directory / (CHECKPOINT_FILE + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is no checkpoint yet."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
