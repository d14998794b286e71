"""What the network is built from: one :class:`EncoderConfig` per side and the :class:`ModelConfig`.

:class:`EncoderConfig` is also where the ``encN_*`` hyperparameters are declared: each field ``f``
is the keys ``enc0_f`` and ``enc1_f``, and its :func:`~object2vec.setting.setting` says the kind,
default, range or choices and help that ``object2vec.config.hyperparameters`` parses them with.
Adding a field adds both keys (parsing, validation, the resolved config and the saved map follow);
only the code that uses it remains to be written. Nothing here imports the parser.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from object2vec.registry import Registry
from object2vec.setting import setting


def _networks() -> Registry:
    from object2vec.model.encoders import ENCODERS  # imports this module

    return ENCODERS


def _tokenizers() -> Registry:
    from object2vec.text import TOKENIZERS

    return TOKENIZERS


POOLED = "pooled_embedding"
POOLS = "pools token embeddings"
TRANSFORMER = "transformer"
READS_FOLDER = "reads a pretrained model folder"


@dataclass(frozen=True)
class EncoderConfig:
    """One encoder's resolved settings (after cloning, ``auto`` layers and the pooled-embedding rule)."""

    network: str = setting("choice", "hcnn", options=_networks,
                           help="the encoder; enc1 also takes enc0: clone enc0's settings")
    max_seq_len: int = setting("int", None, 1, 5000, required=True,
                               help="longest sequence, in tokens (longer ones are cut)")
    vocab_size: int = setting("int", None, 2, 3_000_000, required=True,
                              help="number of token ids, 0 to vocab_size - 1")
    token_embedding_dim: int = setting("int", 300, 2, 1000,
                                       help="token embedding size (pooled_embedding: enc_dim)")
    layers: int = setting("layers", None, 1, 4,
                          help="hcnn or bilstm layers; auto: the network's default")
    cnn_filter_width: int = setting("int", 3, 1, 9, help="hcnn convolution width")
    vocab_file: str = setting("filename", "", help="vocabulary file in the auxiliary channel")
    pretrained_embedding_file: str = setting(
        "filename", "", help="pretrained token vectors in the auxiliary channel")
    freeze_pretrained_embedding: bool = setting(
        "bool", True, help="keep the pretrained vectors fixed during training")
    pooling: str = setting("choice", "mean", options=("mean", "sum"), network=POOLED, does=POOLS,
                           help="extension: sum instead of mean of the token embeddings")
    activation: str = setting("choice", "linear", options=("linear", "sigmoid", "tanh", "relu"),
                              network=POOLED, does=POOLS,
                              help="extension: activation applied to the pooled vector")
    # Text inputs (a side whose records hold strings): how the job's tokenizer is made.
    tokenizer: str = setting("choice", "wordpiece", options=_tokenizers,
                             help="extension, text inputs: the tokenizer model trained in the job "
                                  "(wordlevel: one id per word)")
    lowercase: bool = setting("bool", True, help="extension, text inputs: lower-case and strip "
                                                  "accents before tokenizing")
    tokenizer_file: str = setting("filename", "", help="extension, text inputs: a tokenizer.json in "
                                                       "the auxiliary channel, used as is")
    # A pretrained transformer (encN_network=transformer; object2vec.model.transformer).
    pretrained_model: str = setting("filename", "", network=TRANSFORMER, does=READS_FOLDER,
                                    help="extension, transformer: the Hugging Face model folder "
                                         "(config.json, model.safetensors, tokenizer.json) in the "
                                         "auxiliary channel")
    transformer_pooling: str = setting("choice", "mean", options=("mean", "cls"), network=TRANSFORMER,
                                       does=READS_FOLDER, help="extension, transformer: mean over the "
                                                               "real tokens, or the first token")
    frozen_layers: int = setting("int", 0, 0, 100, network=TRANSFORMER, does=READS_FOLDER,
                                 help="extension, transformer: the lowest layers kept fixed (1 or "
                                      "more also fixes the embeddings)")


@dataclass(frozen=True)
class ModelConfig:
    """What the network needs to be built: a projection of the parsed hyperparameters."""

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
    # per side, a transformer encoder's architecture (object2vec.model.transformer.TransformerSpec)
    transformers: tuple[Any, Any] = (None, None)

    @classmethod
    def from_hyperparameters(cls, hp: Any, transformers: tuple[Any, Any] = (None, None)) -> ModelConfig:
        """From ``object2vec.config.hyperparameters.Hyperparameters`` (not imported: the model does
        not depend on the parser). A field named like a hyperparameter takes its value; the
        others are derived here. ``transformers``: each transformer side's ``TransformerSpec``
        (read from its model folder)."""
        derived = {"enc0": hp.encoder(0), "enc1": hp.encoder(1), "comparators": hp.comparator_list,
                   "num_outputs": hp.num_outputs, "tied": hp.tied_token_embedding_weight,
                   "sparse": hp.token_embedding_storage_type == "row_sparse",
                   "transformers": tuple(transformers)}
        return cls(**{f.name: derived[f.name] if f.name in derived else getattr(hp, f.name)
                      for f in dataclasses.fields(cls)})

    def encoder(self, side: int) -> EncoderConfig:
        return (self.enc0, self.enc1)[side]
