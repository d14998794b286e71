"""Encoders: token sequences ``Tokens`` -> fixed vectors ``(B, enc_dim)``. One class per ``encN_network``.

Padding is handled with lengths and masks, never with a reserved id (id 0 is a real token).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from object2vec.model.config import EncoderConfig
from object2vec.model.embedding import EmbeddingRows, TokenEmbedding
from object2vec.model.tokens import Tokens
from object2vec.model.transformer import TRANSFORMER, TransformerEncoder, TransformerSpec
from object2vec.registry import Registry

Table = TokenEmbedding | EmbeddingRows  # a whole table (inference) or one batch's rows (training)

ENCODERS: Registry[type] = Registry("encoder")  # registered in the order error messages list
# mlp_activation, and pooled_embedding's encN_activation (which also allows sigmoid)
ACTIVATIONS = {"linear": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of ``x (B, T, C)`` where ``mask (B, T)`` is True: ``(B, C)``."""
    return x.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)


@ENCODERS.register("hcnn")
class HierarchicalCNNEncoder(nn.Module):
    """InferSent-style hierarchical ConvNet.

    ``layers`` stacked 1-D convolutions of width ``cnn_filter_width`` ("same" padding, ReLU), each with
    ``enc_dim`` channels; every level is max-pooled over the real tokens, the levels are concatenated and
    projected to ``enc_dim``.
    """

    auto_layers = 4  # encN_layers=auto

    def __init__(self, cfg: EncoderConfig, enc_dim: int) -> None:
        super().__init__()
        width = cfg.cnn_filter_width
        dims = [cfg.token_embedding_dim] + [enc_dim] * cfg.layers
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], width, padding="same") for i in range(cfg.layers))
        self.proj = nn.Linear(enc_dim * cfg.layers, enc_dim)

    def forward(self, emb: Table, tokens: Tokens) -> torch.Tensor:
        ids, mask = tokens.padded()  # (B, T), (B, T)
        keep = mask[:, None, :].to(emb.matrix.dtype)  # (B, 1, T): zero padded slots between levels
        x = emb.lookup(ids).transpose(1, 2) * keep  # (B, D, T)
        levels = []
        for conv in self.convs:
            x = torch.relu(conv(x)) * keep  # (B, enc_dim, T)
            levels.append(_masked_max(x.transpose(1, 2), mask))  # (B, enc_dim)
        return self.proj(torch.cat(levels, dim=1))  # (B, enc_dim)


@ENCODERS.register("bilstm")
class BiLSTMEncoder(nn.Module):
    """Multi-layer bidirectional LSTM (``enc_dim // 2`` units each way), max-pooled over the real tokens
    and projected to ``enc_dim``."""

    auto_layers = 1  # encN_layers=auto

    def __init__(self, cfg: EncoderConfig, enc_dim: int) -> None:
        super().__init__()
        hidden = max(1, enc_dim // 2)
        self.lstm = nn.LSTM(cfg.token_embedding_dim, hidden, num_layers=cfg.layers, batch_first=True,
                            bidirectional=True)
        self.proj = nn.Linear(2 * hidden, enc_dim)

    def forward(self, emb: Table, tokens: Tokens) -> torch.Tensor:
        ids, mask = tokens.padded()  # (B, T)
        packed = pack_padded_sequence(emb.lookup(ids), tokens.lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, T, 2H)
        return self.proj(_masked_max(out, mask))  # (B, enc_dim)


@ENCODERS.register("pooled_embedding")
class PooledEmbeddingEncoder(nn.Module):
    """Mean of the token embeddings over the real tokens. Token dim == ``enc_dim``, no extra layer.

    Extensions (``encN_pooling``, ``encN_activation``; the defaults are the original's mean): the sum
    instead of the mean, and an activation on the pooled vector. ``sum`` + ``sigmoid`` over a bag
    that repeats each token as often as its weight is an item-based autoencoder's encoder,
    ``sigmoid(V r)`` (I-AutoRec; see benchmarks/movielens.py).
    """

    auto_layers = 1  # no layers: encN_layers is ignored

    def __init__(self, cfg: EncoderConfig, enc_dim: int) -> None:
        super().__init__()
        if cfg.token_embedding_dim != enc_dim:
            raise ValueError(f"pooled_embedding needs token_embedding_dim == enc_dim, "
                             f"got {cfg.token_embedding_dim} vs {enc_dim}")
        self.sum = cfg.pooling == "sum"
        self.activation = ACTIVATIONS[cfg.activation]()

    def forward(self, emb: Table, tokens: Tokens) -> torch.Tensor:
        pooled = emb.bag_sum(tokens) if self.sum else emb.bag_mean(tokens)  # (B, enc_dim)
        return self.activation(pooled)


ENCODERS.register(TRANSFORMER)(TransformerEncoder)


def build_encoder(cfg: EncoderConfig, enc_dim: int, spec: TransformerSpec | None = None) -> nn.Module:
    """The encoder named by ``cfg.network`` (a transformer is built from its ``spec``)."""
    if cfg.network == TRANSFORMER:
        if spec is None:
            raise ValueError("a transformer encoder needs its TransformerSpec (read from its model folder)")
        return TransformerEncoder(cfg, enc_dim, spec)
    return ENCODERS.get(cfg.network)(cfg, enc_dim)
