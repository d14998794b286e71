"""The Object2Vec network: two encoders, a comparator, an MLP and an output layer. No I/O.

    in0 -> enc0 -> u (B, enc_dim) \
                                   comparator -> (B, k * enc_dim) -> MLP -> output (B, num_outputs)
    in1 -> enc1 -> v (B, enc_dim) /

Dropout (``dropout``) is applied to the encodings and after every hidden MLP layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from object2vec.config.hyperparameters import EncoderConfig, Hyperparameters
from object2vec.model.comparator import Comparator
from object2vec.model.embedding import EmbeddingRows, TokenEmbedding, remap_tables
from object2vec.model.encoders import ACTIVATIONS, build_encoder
from object2vec.model.tokens import Tokens


@dataclass(frozen=True)
class ModelConfig:
    """What the network needs to be built: a projection of :class:`Hyperparameters`."""

    enc0: EncoderConfig
    enc1: EncoderConfig
    enc_dim: int
    comparators: tuple[str, ...]
    mlp_layers: int
    mlp_dim: int
    mlp_activation: str
    dropout: float
    num_outputs: int
    tied: bool = False
    sparse: bool = False
    token_weighting: str = "none"  # "idf": every table carries per-token pooling weights

    @classmethod
    def from_hyperparameters(cls, hp: Hyperparameters) -> "ModelConfig":
        return cls(enc0=hp.enc0, enc1=hp.enc1, enc_dim=hp.enc_dim, comparators=hp.comparator_list,
                   mlp_layers=hp.mlp_layers, mlp_dim=hp.mlp_dim, mlp_activation=hp.mlp_activation,
                   dropout=hp.dropout, num_outputs=hp.num_outputs, tied=hp.tied_token_embedding_weight,
                   sparse=hp.token_embedding_storage_type == "row_sparse",
                   token_weighting=hp.token_weighting)

    def encoder(self, side: int) -> EncoderConfig:
        return (self.enc0, self.enc1)[side]


class Object2Vec(nn.Module):
    """Pair model. ``forward`` gives logits (softmax) or the regression value; ``encode`` an embedding."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        sides = (0,) if config.tied else (0, 1)
        # One table when tied (both encoders read embeddings[0]); otherwise one per side.
        self.embeddings = nn.ModuleList(
            TokenEmbedding(config.encoder(s).vocab_size, config.encoder(s).token_embedding_dim,
                           sparse=config.sparse, weighted=config.token_weighting != "none")
            for s in sides)
        self.encoders = nn.ModuleList(build_encoder(config.encoder(s), config.enc_dim) for s in (0, 1))
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
        # Row views of the last training forward; the lazy (row_sparse) optimizer reads their gradients.
        self.batch_rows: list[EmbeddingRows | None] = []

    def table_index(self, side: int) -> int:
        """Index in ``embeddings`` of the table encoder ``side`` reads (0 for both when tied)."""
        return 0 if self.config.tied else side

    def embedding(self, side: int) -> TokenEmbedding:
        """The token table encoder ``side`` reads (the same object for both sides when tied)."""
        return self.embeddings[self.table_index(side)]

    def encode(self, side: int, tokens: Tokens) -> torch.Tensor:
        """Embed one side's sequences: ``(B, enc_dim)``, reading the whole table (inference)."""
        return self.encoders[side](self.embedding(side), tokens)

    def forward(self, in0: Tokens, in1: Tokens, return_encodings: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs ``(B, num_outputs)``: class logits, or the predicted value for regression.
        With ``return_encodings``, ``(outputs, u, v)`` where ``u, v (B, enc_dim)`` are the two
        encodings before dropout (what an in-batch loss compares).

        In training mode the encoders read only this batch's rows of each table (see
        ``object2vec.model.embedding``); in eval mode they read the tables directly. Same numbers.
        """
        if len(in0) != len(in1):
            raise ValueError(f"in0 has {len(in0)} sequences but in1 has {len(in1)}")
        if self.training:
            views, (t0, t1) = remap_tables(list(self.embeddings),
                                           [(self.table_index(0), in0), (self.table_index(1), in1)])
            self.batch_rows = views
            u = self.encoders[0](views[self.table_index(0)], t0)
            v = self.encoders[1](views[self.table_index(1)], t1)
        else:
            u, v = self.encode(0, in0), self.encode(1, in1)
        out = self.mlp(self.comparator(self.dropout(u), self.dropout(v)))
        return (out, u, v) if return_encodings else out

    def scores(self, in0: Tokens, in1: Tokens) -> torch.Tensor:
        """What ``/invocations`` answers: class probabilities ``(B, C)`` or the value ``(B, 1)``."""
        out = self(in0, in1)
        return out if self.config.num_outputs == 1 else torch.softmax(out, dim=1)
