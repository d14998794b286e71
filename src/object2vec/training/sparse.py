"""The per-step row mechanism of training: gather the batch's rows of each token table, and update
``row_sparse`` tables lazily (only the rows a step used), as MXNet's lazy_update did.

Each step the trainer

1. gathers the rows each table needs for the batch (:func:`gather_rows`): the distinct ids of every
   side that reads the table (both sides when ``tied_token_embedding_weight=True``), their rows
   ``(U, dim)`` as an :class:`~object2vec.model.embedding.EmbeddingRows` view, and the batch's tokens
   remapped to positions ``0..U-1`` in it;
2. runs the model on those views (``Object2Vec.forward(..., tables=rows.tables)``), which reads
   nothing else of the tables;
3. after ``backward``, hands each ``row_sparse`` table's row gradient to :class:`LazyRowOptimizer`
   (:func:`row_gradient`; averaged over ranks by exchanging the touched rows when distributed).

``dense`` storage: the rows are gathered through autograd, so the table gets an ordinary dense gradient
(one ``index_put`` of ``U`` rows, instead of the generic embedding backward). ``row_sparse`` storage:
the rows are a fresh leaf tensor; its ``(U, dim)`` gradient and the ``U`` row ids become the table's
sparse gradient, and the lazy optimizer updates only those rows. Work and allocation per step are
``O(U * dim)``; optimizer state (moments, accumulators) is kept per row and changes only when the row
is used. Weight decay is added to the gradient of the used rows only (L2, like the dense optimizers).
No step allocates or touches anything of size ``vocab_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from object2vec.model.embedding import EmbeddingRows, TokenEmbedding
from object2vec.model.tokens import Tokens
from object2vec.registry import Registry

if TYPE_CHECKING:  # annotations only: the parser imports this module for LAZY_UPDATES
    from object2vec.model.object2vec import Object2Vec

# update(state, table, ids, rows, grad, lr, step) -> new rows (may update ``rows`` in place);
# ``state`` is the table's optimizer state (its (V, ...) tensors are allocated on first use)
RowUpdate = Callable[[dict, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, int],
                     torch.Tensor]
LAZY_UPDATES: Registry[RowUpdate] = Registry("row_sparse optimizer")
ADAM_BETAS, ADAM_EPS, ADAGRAD_EPS = (0.9, 0.999), 1e-8, 1e-10  # torch's defaults, as for dense


# -- gathering a batch's rows ------------------------------------------------------------------------


@dataclass
class BatchRows:
    """One step's rows of every table, and the batch's two sides remapped to them."""

    tables: list[EmbeddingRows | None]  # one per ``model.embeddings`` (None: no side reads it)
    in0: Tokens
    in1: Tokens


def table_rows(table: TokenEmbedding, unique_ids: torch.Tensor) -> EmbeddingRows:
    """The view of rows ``unique_ids (U,)`` of ``table`` that one training step reads."""
    # index_select is several times faster than advanced indexing (weight[ids]) on CPU
    if table.sparse:  # a fresh leaf: its gradient goes to the lazy optimizer
        rows = table.weight.detach().index_select(0, unique_ids).requires_grad_(table.trainable)
    else:
        rows = table.weight.index_select(0, unique_ids)  # dense gradient flows into the table
    # rows: (U, dim)
    weight = None if table.pool_weight is None else table.pool_weight.index_select(0, unique_ids)
    return EmbeddingRows(rows, unique_ids, weight)


def remap_tables(tables: list[TokenEmbedding], reads: list[tuple[int, Tokens]],
                 always: list[torch.Tensor] | None = None
                 ) -> tuple[list[EmbeddingRows | None], list[Tokens]]:
    """Gather the rows each table needs for this batch.

    Args:
        tables: the model's token tables.
        reads: ``(table index, tokens)`` for each side, in side order.
        always: per table, ids gathered whatever the batch holds (a transformer's special tokens).

    Returns:
        One :class:`EmbeddingRows` per table (None if unread) and each side's tokens remapped to it.
    """
    views: list[EmbeddingRows | None] = [None] * len(tables)
    remapped: list[Tokens | None] = [None] * len(reads)
    for t, table in enumerate(tables):
        sides = [i for i, (ti, _) in enumerate(reads) if ti == t]
        if not sides:
            continue
        extra = [always[t]] if always is not None and len(always[t]) else []
        ids = torch.cat([reads[i][1].ids for i in sides] + extra)  # (N0 + N1 [+ extra],)
        unique, inverse = torch.unique(ids, sorted=True, return_inverse=True)
        views[t] = table_rows(table, unique)
        start = 0
        for i in sides:
            tok = reads[i][1]
            n = tok.ids.shape[0]
            remapped[i] = Tokens(inverse[start:start + n], tok.offsets, tok.lengths)
            start += n
    return views, remapped  # type: ignore[return-value]


def gather_rows(model: Object2Vec, in0: Tokens, in1: Tokens) -> BatchRows:
    """The rows of ``model``'s tables that the batch ``(in0, in1)`` reads (see the module docstring)."""
    views, (t0, t1) = remap_tables(list(model.embeddings),
                                   [(model.table_index(0), in0), (model.table_index(1), in1)],
                                   [model.always_read(t) for t in range(len(model.embeddings))])
    return BatchRows(views, t0, t1)


def row_gradient(table: TokenEmbedding, ids: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The sparse ``(vocab_size, dim)`` gradient of ``table`` with rows ``ids (U,)`` (sorted, distinct)
    equal to ``grad (U, dim)``: what :class:`LazyRowOptimizer` reads from ``weight.grad``. Shares
    ``ids`` and ``grad`` (no copy)."""
    return torch.sparse_coo_tensor(ids[None], grad, table.weight.shape, is_coalesced=True,
                                   check_invariants=False)


# -- lazy updates ------------------------------------------------------------------------------------


def _state(state: dict, name: str, table: torch.Tensor, *shape: int) -> torch.Tensor:
    """The optimizer-state tensor ``name`` of one table (allocated on first use, zeros)."""
    if name not in state:
        state[name] = torch.zeros(table.shape[0], *shape, dtype=table.dtype, device=table.device)
    return state[name]


@LAZY_UPDATES.register("adam")
def _adam(state, table, ids, rows, grad, lr, step):
    b1, b2 = ADAM_BETAS
    # Both moments of a row sit side by side: one gather and one scatter of (U, 2, dim) instead of
    # two each. Random row access into a large table is what this step's time is spent on.
    moments = _state(state, "moments", table, 2, rows.shape[1])  # (V, 2, dim): exp_avg, exp_avg_sq
    mv = moments.index_select(0, ids)  # (U, 2, dim)
    m_rows, v_rows = mv[:, 0], mv[:, 1]
    m_rows.mul_(b1).add_(grad, alpha=1 - b1)
    v_rows.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    moments.index_copy_(0, ids, mv)
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    denom = v_rows.sqrt().div_(bc2 ** 0.5).add_(ADAM_EPS)
    return rows.addcdiv_(m_rows, denom, value=-lr / bc1)


@LAZY_UPDATES.register("adagrad")
def _adagrad(state, table, ids, rows, grad, lr, step):
    s = _state(state, "sum", table, rows.shape[1])  # (V, dim)
    s_rows = s.index_select(0, ids).addcmul_(grad, grad)  # (U, dim)
    s.index_copy_(0, ids, s_rows)
    return rows.addcdiv_(grad, s_rows.sqrt_().add_(ADAGRAD_EPS), value=-lr)


@LAZY_UPDATES.register("sgd")
def _sgd(state, table, ids, rows, grad, lr, step):
    return rows.add_(grad, alpha=-lr)


class LazyRowOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` over ``row_sparse`` table weights that updates only the rows in
    each table's gradient, with the lazy update ``name`` (:data:`LAZY_UPDATES`).

    A table's gradient is sparse (``weight.grad`` from :func:`row_gradient`: the step's row ids and
    their gradient rows); a table without one (frozen) is skipped. ``step(rows=...)`` may be given
    the current values of those rows where the caller already gathered them, which saves a gather.
    State per table (``state[weight]``): ``step`` (its updates so far) and the update's tensors
    (``moments``, ``sum``), allocated for the whole table on first use and changed only in the
    used rows. ``state_dict``/``load_state_dict`` are torch's.
    """

    def __init__(self, params: Iterable[torch.Tensor], name: str, lr: float, weight_decay: float
                 ) -> None:
        LAZY_UPDATES.get(name)  # an unknown name fails here, not at the first step
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "update": name})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None,
             rows: Mapping[torch.Tensor, torch.Tensor] | None = None) -> float | None:
        """Update the rows in each table's sparse gradient. ``rows``: ``{weight: (U, dim) current
        values of its gradient's rows}`` where already gathered (updated in place)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            update = LAZY_UPDATES.get(group["update"])
            lr, weight_decay = group["lr"], group["weight_decay"]
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                ids, grad = weight.grad._indices()[0], weight.grad._values()  # (U,), (U, dim)
                state = self.state[weight]
                state["step"] = state.get("step", 0) + 1
                current = rows.get(weight) if rows is not None else None
                if current is None:
                    current = weight.index_select(0, ids)  # (U, dim), updated in place below
                grad = grad.add(current, alpha=weight_decay) if weight_decay else grad
                new = update(state, weight, ids, current, grad, lr, state["step"])
                weight.index_copy_(0, ids, new)
        return loss
