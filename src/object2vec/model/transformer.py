"""``encN_network=transformer``: a pretrained Hugging Face encoder (BERT, MiniLM, RoBERTa, ...) as an
Object2Vec encoder. Pure model code: the architecture comes in a :class:`TransformerSpec` (the model
folder's ``config.json`` text and its tokenizer's special tokens); reading folders and weights is
``object2vec.data.pretrained_model``'s job.

The side's token table (``Object2Vec.embeddings``) *is* the transformer's word-embedding matrix: the
encoder feeds ``inputs_embeds`` looked up from the table it is given, so tied tables and the
per-step row gathering of training work as for every other encoder (the table trains densely:
``row_sparse`` is refused), and the transformer keeps no second copy of the matrix. What remains
of the Hugging Face model (positions, layers; its own word embeddings and pooler removed) lives in
``self.transformer``.

    tokens (B sequences of ids, no special tokens)
      -> [prefix] ids [suffix] (e.g. [CLS] ... [SEP])       (B, T + specials)
      -> table rows + positions -> transformer layers      (B, T', hidden)
      -> mean over real tokens (or the first token: cls)   (B, hidden)
      -> projection to enc_dim when enc_dim != hidden      (B, enc_dim)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn

from object2vec.model.config import TRANSFORMER, EncoderConfig
from object2vec.model.tokens import Tokens

__all__ = ["TRANSFORMER", "TransformerEncoder", "TransformerSpec", "build_hf_model"]
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"  # the Hugging Face key of the token table
# text encoders whose position ids start after the padding id (transformers'
# create_position_ids_from_input_ids): their last pad_token_id + 1 position embeddings are unreachable
POSITIONS_AFTER_PADDING = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet",
                                     "data2vec-text", "longformer", "ibert", "roberta-prelayernorm",
                                     "xmod"})


@dataclass(frozen=True)
class TransformerSpec:
    """What builds a transformer encoder: the model's ``config.json`` text, and the ids its tokenizer
    puts before (``prefix``) and after (``suffix``) every sequence."""

    config: str
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()

    @property
    def settings(self) -> dict:
        return json.loads(self.config)

    @property
    def hidden_size(self) -> int:
        return int(self.settings["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.settings["vocab_size"])

    @property
    def max_positions(self) -> int:
        """Positions (special tokens included) one sequence may take. The RoBERTa family numbers
        positions from ``pad_token_id + 1``: 514 embeddings hold 512 positions there."""
        settings = self.settings
        positions = int(settings.get("max_position_embeddings", 512))
        if settings.get("model_type") in POSITIONS_AFTER_PADDING:
            positions -= int(settings.get("pad_token_id", 1)) + 1
        return positions

    def to_dict(self) -> dict:
        return {"prefix": list(self.prefix), "suffix": list(self.suffix)}


def build_hf_model(spec: TransformerSpec) -> nn.Module:
    """The Hugging Face base model of ``spec`` (random weights; built on the current default device),
    without its word embeddings and pooler, which this container does not use."""
    from transformers import AutoConfig, AutoModel  # imported only by jobs that use a transformer

    settings = spec.settings
    config = AutoConfig.for_model(**settings)
    config._attn_implementation = "sdpa"  # fused attention with a padding mask, on CPU and CUDA
    model = AutoModel.from_config(config)
    embeddings = model.get_input_embeddings()
    for module in model.modules():  # the word embeddings: the side's token table holds them
        for name, child in list(module.named_children()):
            if child is embeddings:
                setattr(module, name, None)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused: a parameter without gradient would stall DDP
    return model


class TransformerEncoder(nn.Module):
    """A pretrained transformer reading its token table's rows, pooled to one vector per sequence."""

    auto_layers = 1  # encN_layers is not read: the model folder says how many layers

    def __init__(self, cfg: EncoderConfig, enc_dim: int, spec: TransformerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.transformer = build_hf_model(spec)
        self.cls = cfg.transformer_pooling == "cls"
        self.register_buffer("prefix", torch.tensor(spec.prefix, dtype=torch.int64), persistent=False)
        self.register_buffer("suffix", torch.tensor(spec.suffix, dtype=torch.int64), persistent=False)
        # the most tokens of a sequence the model reads beside its special tokens
        self.longest = spec.max_positions - len(spec.prefix) - len(spec.suffix)
        hidden = spec.hidden_size
        self.proj = nn.Identity() if enc_dim == hidden else nn.Linear(hidden, enc_dim)

    def layers(self) -> list[nn.Module]:
        """The transformer's layer blocks, lowest first (what ``encN_frozen_layers`` counts)."""
        for module in self.transformer.modules():
            if isinstance(module, nn.ModuleList) and len(module) == self.spec.settings.get(
                    "num_hidden_layers", len(module)):
                return list(module)
        return []

    def forward(self, emb, tokens: Tokens) -> torch.Tensor:
        ids, _ = tokens.padded()  # (B, T), padded with id 0
        pre, post = len(self.prefix), len(self.suffix)
        lengths = tokens.lengths.to(ids.device)
        if ids.shape[1] > self.longest:  # more than the model reads (serving's infer_max_seqlens): cut
            ids, lengths = ids[:, :self.longest], lengths.clamp(max=self.longest)
        batch, width = ids.shape
        full = torch.zeros(batch, pre + width + post, dtype=ids.dtype, device=ids.device)
        full[:, :pre] = emb.rows_of(self.prefix)  # the table's rows (a training view's positions)
        full[:, pre:pre + width] = ids
        # the suffix follows each sequence's last real token: (B, post) positions
        ends = pre + lengths[:, None] + torch.arange(post, device=ids.device)
        full.scatter_(1, ends, emb.rows_of(self.suffix).expand(batch, post))
        real = torch.arange(full.shape[1], device=ids.device) < (pre + post + lengths)[:, None]
        hidden = self.transformer(inputs_embeds=emb.lookup(full), attention_mask=real.long()
                                  ).last_hidden_state  # (B, T', hidden)
        if self.cls:
            pooled = hidden[:, 0]
        else:  # mean over the real tokens, special tokens included (as sentence-transformers does)
            weights = real.to(hidden.dtype)[:, :, None]
            pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.proj(pooled)  # (B, enc_dim)

    def special_ids(self) -> torch.Tensor:
        """The table ids every forward reads besides the batch's tokens: ``(specials,)``."""
        return torch.cat([self.prefix, self.suffix])

    def hf_state_dict(self, table: torch.Tensor) -> dict[str, torch.Tensor]:
        """The Hugging Face state dict of this encoder with ``table`` as its word embeddings (what a
        saved model folder holds)."""
        return {WORD_EMBEDDINGS: table, **self.transformer.state_dict()}
