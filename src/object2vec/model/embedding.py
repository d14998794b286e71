"""Token-embedding tables, and the per-batch row view that makes training cost independent of vocab size.

A :class:`TokenEmbedding` is a whole ``(vocab_size, dim)`` table (what inference reads). Training reads
a table through an :class:`EmbeddingRows` view instead: just the rows ``(U, dim)`` of one batch's
distinct ids, with the batch's ids remapped to positions in it. The trainer gathers the views and
passes them to the model (``object2vec.training.sparse``: the gathering, the gradient of each storage
type and the lazy ``row_sparse`` updates); the encoders read either kind through the same methods.
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

    def rows_of(self, table_ids: torch.Tensor) -> torch.Tensor:
        """Where the table's rows ``table_ids`` are in ``matrix`` (the ids a batch's tokens use)."""
        return table_ids


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


@dataclass
class EmbeddingRows(_Lookup):
    """Rows ``ids`` of a table for one step; token ids are remapped to positions ``0..U-1``."""

    matrix: torch.Tensor  # (U, dim)
    ids: torch.Tensor  # (U,) int64 row ids in the table, sorted
    pool_weight: torch.Tensor | None = None  # (U,) the rows' pooling weights, if the table has them

    def rows_of(self, table_ids: torch.Tensor) -> torch.Tensor:
        """Positions of the table's rows ``table_ids`` in this view (they must be in it: the
        gathering adds the ids a model always reads, ``Object2Vec.always_read``)."""
        return torch.searchsorted(self.ids, table_ids)
