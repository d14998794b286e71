"""The token-embedding table, shared by both encoders when ``tied_token_embedding_weight=True``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from object2vec.model.tokens import Tokens


class TokenEmbedding(nn.Module):
    """A ``(vocab_size, dim)`` table read either as bag means or per position.

    With ``sparse=True`` (``token_embedding_storage_type=row_sparse``) the weight's gradient is a sparse
    tensor holding only the rows used in the batch, so the optimizer touches only those rows.
    """

    def __init__(self, vocab_size: int, dim: int, sparse: bool = False) -> None:
        super().__init__()
        self.sparse = sparse
        self.weight = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.normal_(self.weight, std=dim ** -0.5)

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def bag_mean(self, tokens: Tokens) -> torch.Tensor:
        """Mean embedding of each sequence: ``(B, dim)``. One fused kernel, forward and backward."""
        return F.embedding_bag(tokens.ids, self.weight, tokens.offsets, mode="mean", sparse=self.sparse)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``ids`` of any shape: ``(*ids.shape, dim)``."""
        return F.embedding(ids, self.weight, sparse=self.sparse)
