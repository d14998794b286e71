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

from dataclasses import dataclass

from object2vec.config.hyperparameters import EncoderConfig, Hyperparameters
from object2vec.errors import UserError
from object2vec.platform.memory import Available

BYTES = 4  # float32
DENSE_STATES = {"adam": 2, "adadelta": 2, "adagrad": 1, "rmsprop": 1, "sgd": 0}
LAZY_STATES = {"adam": 2, "adagrad": 1, "sgd": 0}  # row_sparse: per-row state of the whole table
COMPARATOR_WIDTH = {"hadamard": 1, "concat": 2, "abs_diff": 1}  # in units of enc_dim
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


def _encoder_values(cfg: EncoderConfig, enc_dim: int) -> int:
    """Parameters of one encoder (``object2vec.model.encoders``), weights and biases."""
    if cfg.network == "pooled_embedding":
        return 0
    if cfg.network == "hcnn":
        dims = [cfg.token_embedding_dim] + [enc_dim] * cfg.layers
        convs = sum(enc_dim * dims[i] * cfg.cnn_filter_width + enc_dim for i in range(cfg.layers))
        return convs + enc_dim * cfg.layers * enc_dim + enc_dim  # + projection of the levels
    if cfg.network == "bilstm":
        hidden = max(1, enc_dim // 2)
        total = 0
        for layer in range(cfg.layers):
            inputs = cfg.token_embedding_dim if layer == 0 else 2 * hidden
            # per direction: W_ih (4H, in), W_hh (4H, H), b_ih and b_hh (4H,)
            total += 2 * (4 * hidden * inputs + 4 * hidden * hidden + 2 * 4 * hidden)
        return total + 2 * hidden * enc_dim + enc_dim  # + projection
    raise AssertionError(f"unknown encoder network {cfg.network}")


def _mlp_values(hp: Hyperparameters) -> int:
    """The comparator's output through ``mlp_layers`` hidden layers to the output layer."""
    width = hp.enc_dim * sum(COMPARATOR_WIDTH[c] for c in hp.comparator_list)
    total = 0
    for _ in range(hp.mlp_layers):
        total += width * hp.mlp_dim + hp.mlp_dim
        width = hp.mlp_dim
    return total + width * hp.num_outputs + hp.num_outputs


def _size_keys(hp: Hyperparameters, side: int) -> tuple[str, str]:
    """The hyperparameters that size encoder ``side``'s table (enc0's when enc1 clones it)."""
    src = 0 if side == 1 and hp.enc1_network == "enc0" else side
    dim = "enc_dim" if hp.encoder(side).network == "pooled_embedding" else \
        f"enc{src}_token_embedding_dim"
    return f"enc{src}_vocab_size", dim


def model_parts(hp: Hyperparameters) -> list[Part]:
    """The model's blocks as :class:`~object2vec.model.object2vec.Object2Vec` builds them."""
    tied = hp.tied_token_embedding_weight
    lazy = hp.token_embedding_storage_type == "row_sparse"
    parts = []
    for side in (0,) if tied else (0, 1):
        enc = hp.encoder(side)  # a tied table is enc0's
        frozen = bool(enc.pretrained_embedding_file) and enc.freeze_pretrained_embedding
        parts.append(Part(f"enc{side} token embedding", enc.vocab_size * enc.token_embedding_dim,
                          (enc.vocab_size, enc.token_embedding_dim), trainable=not frozen,
                          lazy=lazy, buffers=enc.vocab_size if hp.token_weighting != "none" else 0,
                          tied=tied, keys=_size_keys(hp, side)))
    for side in (0, 1):
        enc = hp.encoder(side)
        values = _encoder_values(enc, hp.enc_dim)
        if values:
            parts.append(Part(f"enc{side} {enc.network} encoder", values))
    parts.append(Part("mlp", _mlp_values(hp)))
    return parts


def estimate_training_memory(hp: Hyperparameters, distributed: bool = False) -> MemoryEstimate:
    """Bytes one training process holds at once for ``hp`` (see the module docstring)."""
    parts = tuple(model_parts(hp))
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
