"""The Object2Vec network: two encoders, a comparator, an MLP and an output layer. No I/O.

    in0 -> enc0 -> u (B, enc_dim) \
                                   comparator -> (B, k * enc_dim) -> MLP -> output (B, num_outputs)
    in1 -> enc1 -> v (B, enc_dim) /

Dropout (``dropout``) is applied to the encodings and after every hidden MLP layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from object2vec.model.comparator import Comparator
from object2vec.model.config import ModelConfig
from object2vec.model.embedding import EmbeddingRows, TokenEmbedding
from object2vec.model.encoders import ACTIVATIONS, build_encoder
from object2vec.model.tokens import TOKEN_BUDGET, Tokens

TRANSFORMER_TOKEN_BUDGET = 1 << 14


class Object2Vec(nn.Module):
    """Pair model. ``forward`` gives logits (softmax) or the regression value; ``encode`` an embedding."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        sides = (0,) if config.tied else (0, 1)
        # One table when tied (both encoders read embeddings[0]); otherwise one per side.
        # a transformer side's table is its word embeddings: (vocab_size, hidden_size)
        dims = [cfg.token_embedding_dim if spec is None else spec.hidden_size
                for cfg, spec in zip((config.enc0, config.enc1), config.transformers)]
        self.embeddings = nn.ModuleList(
            TokenEmbedding(config.encoder(s).vocab_size, dims[s], sparse=config.sparse,
                           weighted=config.token_weighting != "none")
            for s in sides)
        enc0 = build_encoder(config.encoder(0), config.enc_dim, config.transformers[0])
        # tied transformers are one encoder (a siamese bi-encoder): one table, one set of layers
        shared = config.tied and config.transformers[0] is not None
        enc1 = enc0 if shared else build_encoder(config.encoder(1), config.enc_dim, config.transformers[1])
        self.encoders = nn.ModuleList([enc0, enc1])
        self.dropout = nn.Dropout(config.dropout)
        self.comparator = Comparator(config.comparators, config.enc_dim)
        layers: list[nn.Module] = []
        width = self.comparator.out_dim
        for _ in range(config.mlp_layers):
            layers += [nn.Linear(width, config.mlp_dim), ACTIVATIONS[config.mlp_activation](),
                       nn.Dropout(config.dropout)]
            width = config.mlp_dim
        layers.append(nn.Linear(width, config.num_outputs))
        self.mlp = nn.Sequential(*layers)

    def table_index(self, side: int) -> int:
        """Index in ``embeddings`` of the table encoder ``side`` reads (0 for both when tied)."""
        return 0 if self.config.tied else side

    def embedding(self, side: int) -> TokenEmbedding:
        """The token table encoder ``side`` reads (the same object for both sides when tied)."""
        return self.embeddings[self.table_index(side)]

    def owns_encoder(self, side: int) -> bool:
        """False for side 1 when it reads side 0's encoder (tied transformers are one module)."""
        return side == 0 or self.encoders[1] is not self.encoders[0]

    @property
    def has_transformer(self) -> bool:
        """Whether an encoder is a pretrained transformer (``encN_network=transformer``)."""
        return any(spec is not None for spec in self.config.transformers)

    @property
    def token_budget(self) -> int:
        """Padded tokens one inference forward may take (serving, catalog and evaluation batches):
        a transformer's attention is quadratic in the length, so it gets a smaller budget."""
        return TRANSFORMER_TOKEN_BUDGET if self.has_transformer else TOKEN_BUDGET

    def always_read(self, table: int) -> torch.Tensor:
        """Ids of table ``table`` that every forward reads besides the batch's tokens ``(k,)``: the
        special tokens of the transformer encoders that read it (none for the other encoders)."""
        ids = [enc.special_ids() for s, enc in enumerate(self.encoders)
               if self.table_index(s) == table and hasattr(enc, "special_ids")]
        return torch.cat(ids) if ids else torch.zeros(0, dtype=torch.int64,
                                                      device=self.embeddings[table].weight.device)

    def encode(self, side: int, tokens: Tokens) -> torch.Tensor:
        """Embed one side's sequences: ``(B, enc_dim)``, reading the whole table (inference)."""
        return self.encoders[side](self.embedding(side), tokens)

    def forward(self, in0: Tokens, in1: Tokens, return_encodings: bool = False,
                tables: Sequence[EmbeddingRows | None] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs ``(B, num_outputs)``: class logits, or the predicted value for regression.
        With ``return_encodings``, ``(outputs, u, v)`` where ``u, v (B, enc_dim)`` are the two
        encodings before dropout (what an in-batch loss compares).

        ``tables``: what to read instead of each of ``embeddings`` -- one step's rows of every table,
        with ``in0``/``in1`` remapped to them (the trainer's ``object2vec.training.sparse.gather_rows``,
        so that a step does no work in proportion to the vocabulary). By default the encoders read
        the tables themselves. Same numbers either way; nothing is stored on the module.
        """
        if len(in0) != len(in1):
            raise ValueError(f"in0 has {len(in0)} sequences but in1 has {len(in1)}")
        if tables is None:
            u, v = self.encode(0, in0), self.encode(1, in1)
        else:
            if len(tables) != len(self.embeddings):
                raise ValueError(f"{len(tables)} table views for {len(self.embeddings)} tables")
            u = self.encoders[0](tables[self.table_index(0)], in0)
            v = self.encoders[1](tables[self.table_index(1)], in1)
        out = self.mlp(self.comparator(self.dropout(u), self.dropout(v)))
        return (out, u, v) if return_encodings else out

    def scores(self, in0: Tokens, in1: Tokens) -> torch.Tensor:
        """What ``/invocations`` answers: class probabilities ``(B, C)`` or the value ``(B, 1)``."""
        out = self(in0, in1)
        return out if self.config.num_outputs == 1 else torch.softmax(out, dim=1)
