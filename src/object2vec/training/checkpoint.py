"""Resumable training state in ``/opt/ml/checkpoints`` (SageMaker syncs that folder with S3).

One file, ``object2vec-checkpoint.pt``, replaced atomically (write to a temp file, fsync, rename) so an
interruption at any moment leaves either the previous or the new checkpoint, never half of one. It holds
only tensors and plain types, and is read back with ``weights_only=True``.

The folder outlives the job: a second job with the same ``checkpoint_s3_uri`` finds the first
one's checkpoint. So a checkpoint carries the fingerprint of what produced it -- the resolved
hyperparameters and a digest of every channel's data -- and the trainer resumes only when both
match (see ``Trainer.resume``). A file that cannot be used (truncated, not a checkpoint, keys
missing, an older format) raises :class:`CheckpointUnusable`; the trainer reports it and trains
from scratch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from object2vec.data.records import channel_files

CHECKPOINT_FILE = "object2vec-checkpoint.pt"
# 2: with a fingerprint of the hyperparameters and the data; 3: the lazy (row_sparse) optimizer's
# state in torch.optim's state_dict format, like the dense optimizer's
CHECKPOINT_VERSION = 3
REQUIRED_KEYS = ("version", "fingerprint", "epoch", "next_batch", "partial_totals", "model",
                 "optimizer", "lazy_optimizer", "stopper", "best_state", "history", "rng")

# The data digest reads, per file, its size and SAMPLED_BLOCKS blocks of BLOCK bytes: the head,
# the tail and evenly spaced blocks between them (a file of at most SAMPLED_BLOCKS blocks is read
# whole). Why not a hash of every byte: a channel can hold hundreds of GB, and the digest is
# computed on every start of a checkpointed job, spot restarts included -- a full hash would read
# all of it once more on each host, minutes of I/O to decide whether to resume. Sampling costs
# O(files) small reads.
# What it can miss: an edit that keeps a file's size and changes no sampled block, e.g. one label
# flipped (or two records swapped) in the middle of a file over SAMPLED_BLOCKS * BLOCK = 128 KiB.
# Such a job resumes the old checkpoint; remove the checkpoint to force a fresh start.
# (File times are left out on purpose: SageMaker downloads the data anew for every job, restarts of
# the same job included, so they always differ.)
BLOCK = 16 * 1024
SAMPLED_BLOCKS = 8


class CheckpointUnusable(Exception):
    """The checkpoint file exists but cannot be resumed from; the message says why."""


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
    """The saved state, or None when there is no checkpoint yet.

    Raises:
        CheckpointUnusable: the file cannot be read or loaded, or is not a checkpoint of this
            format.
    """
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files, OSError too
        raise CheckpointUnusable(f"it cannot be loaded ({type(exc).__name__}: "
                                 f"{_first_sentence(str(exc))})") from exc
    if not isinstance(state, dict):
        raise CheckpointUnusable(f"it holds a {type(state).__name__}, not a checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointUnusable(f"it has format version {state.get('version')!r}, this container "
                                 f"writes and reads version {CHECKPOINT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointUnusable(f"it lacks {', '.join(missing)}")
    return state


def _first_sentence(text: str, limit: int = 120) -> str:
    """The start of an exception's message (torch's run to several sentences of advice)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = first.split(". ", 1)[0]
    return first if len(first) <= limit else first[:limit - 3] + "..."


# -- the data digest -------------------------------------------------------------------------------


def sample_offsets(size: int) -> list[int]:
    """Start offsets of the blocks :func:`file_digest` reads from a file of ``size`` bytes."""
    if size <= SAMPLED_BLOCKS * BLOCK:
        return list(range(0, size, BLOCK))  # small: every byte
    last = size - BLOCK
    return [round(i * last / (SAMPLED_BLOCKS - 1)) for i in range(SAMPLED_BLOCKS)]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's size and sampled blocks (see :data:`BLOCK`: what it reads and misses)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        for offset in sample_offsets(size):
            fh.seek(offset)
            h.update(fh.read(BLOCK))
    return h.hexdigest()


def channel_digest(directory: Path) -> str:
    """SHA-256 over every file the loader reads in ``directory``: relative path, size, samples."""
    h = hashlib.sha256()
    for path in channel_files(directory):
        rel = path.relative_to(directory).as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\0{file_digest(path)}\n".encode())
    return h.hexdigest()


def channel_digests(directories: dict[str, Path]) -> dict[str, str]:
    """:func:`channel_digest` of each named channel folder."""
    return {name: channel_digest(directory) for name, directory in directories.items()}


def combine_digests(gathered: list[dict[str, str] | None]) -> dict[str, list[str]]:
    """One job-wide digest per channel from every rank's :func:`channel_digests` (None from ranks
    that left it to their host's first rank), in rank order.

    A channel every host holds alike (``FullyReplicated``) collapses to one digest, so its
    fingerprint does not depend on the number of hosts; a sharded one keeps each host's.
    """
    hosts = [g for g in gathered if g is not None]
    out: dict[str, list[str]] = {}
    for name in sorted({c for g in hosts for c in g}):
        digests = [g.get(name, "") for g in hosts]
        out[name] = digests[:1] if len(set(digests)) == 1 else digests
    return out
