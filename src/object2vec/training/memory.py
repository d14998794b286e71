"""Will the model fit? An estimate of what training holds in memory, made from the hyperparameters
before anything is allocated, so that a model too big for the machine fails with a message naming
its biggest tables instead of being killed by the OOM killer (which leaves no reason at all).

    estimate = estimate_training_memory(hp, distributed=world_size > 1)   # pure: no I/O, no tensors
    check_fits(estimate, host_available(), processes=local_world_size)    # UserError if not

Every value is float32 (4 bytes). Held at once during training:

* weights: every parameter and buffer (token tables ``vocab x dim``, the idf pooling weights
  ``vocab``, encoders, MLP);
* gradients: one per trainable dense parameter. ``row_sparse`` tables take none (a step's
  ``(U, dim)`` row gradient is negligible), nor do frozen pretrained tables;
* optimizer state: per trainable value, adam 2 (both moments), adadelta 2, adagrad 1, rmsprop 1
  (square average; no momentum), sgd 0 (no momentum). The lazy ``row_sparse`` optimizers keep theirs
  per table row too, for the whole table;
* the best epoch's copy of the weights (``state_dict`` deep-copied after an improving epoch);
* with several processes, DistributedDataParallel's gradient buckets: another copy of the gradients.

Not counted: activations (a batch's, small next to the tables), the data, CUDA's context. The
estimate is therefore a floor: a model over it cannot train, one under it may still run short.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from object2vec.config.hyperparameters import Hyperparameters
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.platform.memory import Available

BYTES = 4  # float32
DENSE_STATES = {"adam": 2, "adadelta": 2, "adagrad": 1, "rmsprop": 1, "sgd": 0}
LAZY_STATES = {"adam": 2, "adagrad": 1, "sgd": 0}  # row_sparse: per-row state of the whole table
GiB = 1024 ** 3


@dataclass(frozen=True)
class Part:
    """One block of the model: a token table, an encoder's layers, or the MLP."""

    name: str
    values: int  # parameters
    shape: tuple[int, int] | None = None  # a table's (vocab_size, dim)
    trainable: bool = True
    lazy: bool = False  # a row_sparse table: updated by the lazy optimizer, no full gradient
    buffers: int = 0  # idf pooling weights: one value per row
    tied: bool = False
    keys: tuple[str, ...] = ()  # the hyperparameters that set a table's size

    def describe(self) -> str:
        """e.g. ``enc0 token embedding 3000000 x 10000``."""
        if self.shape is None:
            return f"{self.name} ({self.values} values)"
        return f"{self.name} {self.shape[0]} x {self.shape[1]}" + (" (tied)" if self.tied else "")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes training holds at once, by kind; :attr:`parts` says where the weights are."""

    parts: tuple[Part, ...]
    optimizer: str
    weights: int
    gradients: int
    optimizer_state: int
    best_copy: int
    ddp_buckets: int

    @property
    def total(self) -> int:
        return (self.weights + self.gradients + self.optimizer_state + self.best_copy
                + self.ddp_buckets)

    def biggest(self, n: int = 2) -> list[Part]:
        """The ``n`` largest parts (ties keep model order)."""
        return sorted(self.parts, key=lambda p: -(p.values + p.buffers))[:n]


def _size_keys(hp: Hyperparameters, side: int) -> tuple[str, str]:
    """The hyperparameters that size encoder ``side``'s table (enc0's when enc1 clones it)."""
    src = 0 if side == 1 and hp.enc1_network == "enc0" else side
    dim = "enc_dim" if hp.encoder(side).network == "pooled_embedding" else \
        f"enc{src}_token_embedding_dim"
    return f"enc{src}_vocab_size", dim


def _count(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors)


def model_parts(hp: Hyperparameters, transformers: tuple = (None, None)) -> list[Part]:
    """The model's blocks, counted on the model itself built on PyTorch's ``meta`` device, which
    gives every parameter its shape but allocates no storage (so no second copy of the
    architecture's arithmetic to keep in step with ``object2vec.model``)."""
    with torch.device("meta"):
        model = Object2Vec(ModelConfig.from_hyperparameters(hp, transformers))
    tied = hp.tied_token_embedding_weight
    lazy = hp.token_embedding_storage_type == "row_sparse"
    parts = []
    for side, table in enumerate(model.embeddings):  # one table when tied: enc0's
        enc = hp.encoder(side)
        frozen = bool(enc.pretrained_embedding_file) and enc.freeze_pretrained_embedding
        parts.append(Part(f"enc{side} token embedding", table.weight.numel(),
                          tuple(table.weight.shape), trainable=not frozen, lazy=lazy,
                          buffers=_count(table.buffers()), tied=tied, keys=_size_keys(hp, side)))
    for side, encoder in enumerate(model.encoders):
        if not model.owns_encoder(side):
            continue  # tied transformers: one encoder
        values = _count(encoder.parameters())
        if values:
            parts.append(Part(f"enc{side} {hp.encoder(side).network} encoder", values))
    parts.append(Part("mlp", _count(model.mlp.parameters()) + _count(model.comparator.parameters())))
    return parts


def estimate_training_memory(hp: Hyperparameters, distributed: bool = False,
                             transformers: tuple = (None, None)) -> MemoryEstimate:
    """Bytes one training process holds at once for ``hp`` (see the module docstring); a
    transformer side's architecture is its ``TransformerSpec`` in ``transformers``."""
    parts = tuple(model_parts(hp, transformers))
    weights = BYTES * sum(p.values + p.buffers for p in parts)
    dense = BYTES * sum(p.values for p in parts if p.trainable and not p.lazy)
    lazy = BYTES * sum(p.values for p in parts if p.trainable and p.lazy)
    state = DENSE_STATES[hp.optimizer] * dense + LAZY_STATES.get(hp.optimizer, 0) * lazy
    return MemoryEstimate(parts, hp.optimizer, weights=weights, gradients=dense,
                          optimizer_state=state, best_copy=weights,
                          ddp_buckets=dense if distributed else 0)


def format_bytes(n: float) -> str:
    """``1.3 GiB``, ``12.6 KiB``: a size for people."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def check_fits(estimate: MemoryEstimate, available: Available, processes: int = 1,
               need: int | None = None, what: str | None = None) -> None:
    """Raise :class:`UserError` unless ``processes`` times ``need`` bytes (default: the whole
    estimate) fit in ``available``; the message names the biggest tables, the estimate (``what``
    it counts) and the room."""
    need = estimate.total if need is None else need
    what = what or f"weights, gradients, {estimate.optimizer} state and the best epoch's copy"
    if need * processes <= available.bytes:
        return
    biggest = estimate.biggest(2)
    tables = ", ".join(f"{p.describe()} ({BYTES * p.values / GiB:.1f} GiB)" for p in biggest)
    keys = list(dict.fromkeys(k for p in biggest for k in p.keys)) or ["enc_dim", "mlp_dim"]
    each = f" for each of the {processes} processes on this host" if processes > 1 else ""
    raise UserError(
        f"the model does not fit in memory: {tables}; estimated {need / GiB:.1f} GiB "
        f"({what}){each}, but {available.bytes / GiB:.1f} GiB available "
        f"({available.source}). Lower {' or '.join(keys)}, or use an instance with more memory")
