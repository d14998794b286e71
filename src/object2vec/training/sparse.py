"""Lazy (``row_sparse``) optimizers: update only the table rows a step used, as MXNet's lazy_update did.

A step's rows come from the model's :class:`~object2vec.model.embedding.EmbeddingRows` views: ``ids``
``(U,)`` and the gradient of the gathered rows ``(U, dim)``. Work and allocation per step are
``O(U * dim)``; optimizer state (moments, accumulators) is kept per row and changes only when the row is
used. Weight decay is added to the gradient of the used rows only (L2, like the dense optimizers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from object2vec.model.embedding import TokenEmbedding
from object2vec.registry import Registry

# update(state, ids, rows, grad, lr, step) -> new rows (may update ``rows`` in place);
# ``state`` holds (V, dim) tensors per table
RowUpdate = Callable[[dict, torch.Tensor, torch.Tensor, torch.Tensor, float, int], torch.Tensor]
LAZY_UPDATES: Registry[RowUpdate] = Registry("row_sparse optimizer")
ADAM_BETAS, ADAM_EPS, ADAGRAD_EPS = (0.9, 0.999), 1e-8, 1e-10  # torch's defaults, as for dense


def _state(state: dict, name: str, like: torch.Tensor, *shape: int) -> torch.Tensor:
    """The optimizer-state tensor ``name`` of one table (allocated on first use, zeros)."""
    if name not in state:
        state[name] = torch.zeros(state["vocab_size"], *shape, dtype=like.dtype, device=like.device)
    return state[name]


@LAZY_UPDATES.register("adam")
def _adam(state, ids, rows, grad, lr, step):
    b1, b2 = ADAM_BETAS
    # Both moments of a row sit side by side: one gather and one scatter of (U, 2, dim) instead of
    # two each. Random row access into a large table is what this step's time is spent on.
    moments = _state(state, "moments", rows, 2, rows.shape[1])  # (V, 2, dim): exp_avg, exp_avg_sq
    mv = moments.index_select(0, ids)  # (U, 2, dim)
    m_rows, v_rows = mv[:, 0], mv[:, 1]
    m_rows.mul_(b1).add_(grad, alpha=1 - b1)
    v_rows.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    moments.index_copy_(0, ids, mv)
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    denom = v_rows.sqrt().div_(bc2 ** 0.5).add_(ADAM_EPS)
    return rows.addcdiv_(m_rows, denom, value=-lr / bc1)


@LAZY_UPDATES.register("adagrad")
def _adagrad(state, ids, rows, grad, lr, step):
    s = _state(state, "sum", rows, rows.shape[1])  # (V, dim)
    s_rows = s.index_select(0, ids).addcmul_(grad, grad)  # (U, dim)
    s.index_copy_(0, ids, s_rows)
    return rows.addcdiv_(grad, s_rows.sqrt_().add_(ADAGRAD_EPS), value=-lr)


@LAZY_UPDATES.register("sgd")
def _sgd(state, ids, rows, grad, lr, step):
    return rows.add_(grad, alpha=-lr)


@dataclass
class RowGrad:
    """One table's gradient for a step: rows ``ids (U,)`` and their gradient ``grad (U, dim)``."""

    ids: torch.Tensor
    grad: torch.Tensor
    rows: torch.Tensor | None = None  # the current values of those rows if already gathered


class LazyRowOptimizer:
    """Applies a lazy update to the rows of each table that the last forward pass used."""

    def __init__(self, name: str, tables: list[TokenEmbedding], lr: float, weight_decay: float) -> None:
        self.update = LAZY_UPDATES.get(name)
        self.tables = tables
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0
        self.state: list[dict] = [{"vocab_size": t.vocab_size} for t in tables]

    @torch.no_grad()
    def step(self, grads: list[RowGrad | None]) -> None:
        """Update the rows ``grads[t].ids`` of each table ``t`` (None: frozen or unused table)."""
        self.steps += 1
        for table, g, state in zip(self.tables, grads, self.state):
            if g is None:
                continue
            # (U, dim) current values, updated in place below
            rows = g.rows if g.rows is not None else table.weight.index_select(0, g.ids)
            grad = g.grad.add(rows, alpha=self.weight_decay) if self.weight_decay else g.grad
            new = self.update(state, g.ids, rows, grad, self.lr, self.steps)
            table.weight.index_copy_(0, g.ids, new)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": self.state}

    def load_state_dict(self, sd: dict) -> None:
        self.steps = sd["steps"]
        self.state = sd["state"]
