"""Token-embedding tables, and the per-batch row view that makes training cost independent of vocab size.

Training never reads a table through the raw ids. Each step first collects the distinct ids of every
side that reads a table (both sides when ``tied_token_embedding_weight=True``), gathers just those rows
``(U, dim)``, and runs the encoders on the small :class:`EmbeddingRows` view with remapped ids:

* ``dense`` storage: the rows are gathered through autograd, so the table gets an ordinary dense gradient
  (one ``index_put`` of ``U`` rows, instead of the generic embedding backward);
* ``row_sparse`` storage: the rows are a fresh leaf tensor; after ``backward`` its ``(U, dim)`` gradient
  and the ``U`` row ids go to a lazy optimizer (``object2vec.training.sparse``) that updates only those
  rows. No step allocates or touches anything of size ``vocab_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from object2vec.model.tokens import Tokens


class _Lookup:
    """``bag_mean``/``lookup`` over a ``(rows, dim)`` matrix ``self.matrix``, whose rows may carry
    pooling weights ``self.pool_weight (rows,)`` (``token_weighting``; None: plain mean)."""

    matrix: torch.Tensor
    pool_weight: torch.Tensor | None

    def bag_mean(self, tokens: Tokens) -> torch.Tensor:
        """Mean embedding of each sequence: ``(B, dim)`` (one fused kernel, forward and backward);
        with pooling weights, the weighted mean ``sum_t w_t e_t / sum_t w_t``."""
        if self.pool_weight is None:
            return F.embedding_bag(tokens.ids, self.matrix, tokens.offsets, mode="mean")
        w = self.pool_weight[tokens.ids]  # (N,)
        seq = torch.repeat_interleave(torch.arange(len(tokens), device=w.device), tokens.lengths)
        totals = w.new_zeros(len(tokens)).index_add_(0, seq, w)  # (B,)
        return self.bag_sum(tokens) / totals.clamp_min(1e-12)[:, None]

    def bag_sum(self, tokens: Tokens) -> torch.Tensor:
        """Sum of the token embeddings of each sequence: ``(B, dim)``; with pooling weights, the
        weighted sum ``sum_t w_t e_t``."""
        w = None if self.pool_weight is None else self.pool_weight[tokens.ids]  # (N,)
        return F.embedding_bag(tokens.ids, self.matrix, tokens.offsets, mode="sum",
                               per_sample_weights=w)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``ids`` of any shape: ``(*ids.shape, dim)``."""
        return F.embedding(ids, self.matrix)


class TokenEmbedding(nn.Module, _Lookup):
    """A ``(vocab_size, dim)`` table. ``sparse=True`` (row_sparse) means its rows are updated lazily by
    the training loop, so the parameter itself takes no gradient."""

    def __init__(self, vocab_size: int, dim: int, sparse: bool = False, weighted: bool = False
                 ) -> None:
        super().__init__()
        self.sparse = sparse
        self.weight = nn.Parameter(torch.empty(vocab_size, dim), requires_grad=not sparse)
        self.trainable = True  # False once pretrained vectors are frozen
        nn.init.normal_(self.weight, std=dim ** -0.5)
        # token_weighting: per-token pooling weights, set from the training data before training
        # and saved with the weights (so serving pools exactly as training did)
        self.pool_weight: torch.Tensor | None
        if weighted:
            self.register_buffer("pool_weight", torch.ones(vocab_size))
        else:
            self.pool_weight = None

    @property
    def matrix(self) -> torch.Tensor:
        return self.weight

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def freeze(self) -> None:
        """Keep the table fixed (pretrained vectors with ``encN_freeze_pretrained_embedding``)."""
        self.trainable = False
        self.weight.requires_grad_(False)

    def rows(self, unique_ids: torch.Tensor) -> "EmbeddingRows":
        """The view of rows ``unique_ids (U,)`` used by one training step."""
        # index_select is several times faster than advanced indexing (weight[ids]) on CPU
        if self.sparse:
            rows = self.weight.detach().index_select(0, unique_ids).requires_grad_(self.trainable)
        else:
            rows = self.weight.index_select(0, unique_ids)  # dense gradient flows into the table
        # rows: (U, dim)
        weight = None if self.pool_weight is None else self.pool_weight.index_select(0, unique_ids)
        return EmbeddingRows(rows, unique_ids, weight)


@dataclass
class EmbeddingRows(_Lookup):
    """Rows ``ids`` of a table for one step; token ids are remapped to positions ``0..U-1``."""

    matrix: torch.Tensor  # (U, dim)
    ids: torch.Tensor  # (U,) int64 row ids in the table, sorted
    pool_weight: torch.Tensor | None = None  # (U,) the rows' pooling weights, if the table has them


def remap_tables(tables: list[TokenEmbedding], reads: list[tuple[int, Tokens]]
                 ) -> tuple[list[EmbeddingRows | None], list[Tokens]]:
    """Gather the rows each table needs for this batch.

    Args:
        tables: the model's token tables.
        reads: ``(table index, tokens)`` for each side, in side order.

    Returns:
        One :class:`EmbeddingRows` per table (None if unread) and each side's tokens remapped to it.
    """
    views: list[EmbeddingRows | None] = [None] * len(tables)
    remapped: list[Tokens | None] = [None] * len(reads)
    for t, table in enumerate(tables):
        sides = [i for i, (ti, _) in enumerate(reads) if ti == t]
        if not sides:
            continue
        ids = torch.cat([reads[i][1].ids for i in sides])  # (N0 + N1,)
        unique, inverse = torch.unique(ids, sorted=True, return_inverse=True)
        views[t] = table.rows(unique)
        start = 0
        for i in sides:
            tok = reads[i][1]
            n = tok.ids.shape[0]
            remapped[i] = Tokens(inverse[start:start + n], tok.offsets, tok.lengths)
            start += n
    return views, remapped  # type: ignore[return-value]
