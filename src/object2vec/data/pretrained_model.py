"""Pretrained transformer folders (``encN_network=transformer``): read one from the auxiliary channel,
load its weights into a model, and write a fine-tuned one into the artifact.

A folder is the Hugging Face / sentence-transformers layout (what ``save_pretrained`` writes)::

    auxiliary/all-MiniLM-L6-v2/
        config.json            the architecture (model_type, hidden_size, vocab_size, ...)
        model.safetensors      the weights (or model.safetensors.index.json and its shards)
        tokenizer.json         the fast tokenizer (Hugging Face tokenizers)
        ...                    anything else (modules.json, 1_Pooling/, vocab.txt) is not read

Weights are read with ``safetensors`` only: a folder whose weights exist only as pickles
(``pytorch_model.bin``) is refused, because unpickling runs code from the file.

    hp, folders = resolve_transformers(hp, aux_dir)      # read each folder; vocab size from it
    model = Object2Vec(ModelConfig.from_hyperparameters(hp, specs(folders)))
    load_transformer_weights(model, 0, read_weights(folders[0].weight_files, where), where)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from object2vec.config.hyperparameters import Hyperparameters, parse_hyperparameters
from object2vec.data.auxiliary import resolve_aux_file
from object2vec.errors import UserError
from object2vec.model.config import TRANSFORMER
from object2vec.model.transformer import WORD_EMBEDDINGS, TransformerSpec
from object2vec.text import TextEncoder, read_text_encoder

log = logging.getLogger(__name__)

CONFIG, TOKENIZER = "config.json", "tokenizer.json"
WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin", "model.ckpt")


@dataclass
class ModelFolder:
    """A readable model folder: its architecture and special tokens, its tokenizer, its weight files."""

    path: Path
    spec: TransformerSpec
    tokenizer: TextEncoder
    weight_files: tuple[Path, ...]


def _special_tokens(tokenizer: TextEncoder) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ids the tokenizer's post-processor puts before and after a sequence ([CLS] and [SEP] for
    BERT, <s> and </s> for RoBERTa): a probe text tokenized with and without them."""
    with_specials = tokenizer.tokenizer.encode("a", add_special_tokens=True).ids
    plain = tokenizer.tokenizer.encode("a", add_special_tokens=False).ids
    for start in range(len(with_specials) - len(plain) + 1):
        if with_specials[start:start + len(plain)] == plain:
            return tuple(with_specials[:start]), tuple(with_specials[start + len(plain):])
    return (), ()


def _weight_files(path: Path, where: str) -> tuple[Path, ...]:
    if (path / WEIGHTS).is_file():
        return (path / WEIGHTS,)
    if (path / WEIGHTS_INDEX).is_file():
        try:
            shards = sorted(set(json.loads((path / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{where}: {WEIGHTS_INDEX} is not a safetensors index ({exc})") from None
        missing = [s for s in shards if not (path / Path(s).name).is_file()]
        if missing:
            raise UserError(f"{where}: {WEIGHTS_INDEX} names shards that are not in the folder: "
                            f"{', '.join(missing[:5])}")
        return tuple(path / Path(s).name for s in shards)
    pickles = [p for p in PICKLES if (path / p).is_file()]
    if pickles:
        raise UserError(f"{where}: the folder holds its weights only as a pickle ({', '.join(pickles)}), "
                        f"which this container does not load (unpickling runs code from the file); "
                        f"save them as safetensors: model.save_pretrained(folder, safe_serialization=True)")
    raise UserError(f"{where}: the folder has no {WEIGHTS} (the weights, in safetensors)")


def read_model_folder(path: Path, where: str) -> ModelFolder:
    """Check and read the model folder at ``path`` (weights are only located, not loaded).

    Raises:
        UserError: naming ``where`` and the file: no folder, no or unreadable config.json, no
            safetensors weights (pickles only), no or unreadable tokenizer.json.
    """
    if not path.is_dir():
        raise UserError(f"{where}: {path.name!r} is not a folder in the auxiliary channel")
    try:
        settings = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: the folder has no {CONFIG} (the model's architecture)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: {CONFIG} is not readable JSON ({exc})") from None
    missing = [k for k in ("model_type", "hidden_size", "vocab_size")
               if not isinstance(settings, dict) or k not in settings]
    if missing:
        raise UserError(f"{where}: {CONFIG} is not a Hugging Face model config: it has no "
                        f"{', '.join(missing)}")
    files = _weight_files(path, where)
    if not (path / TOKENIZER).is_file():
        raise UserError(f"{where}: the folder has no {TOKENIZER} (a fast tokenizer; save one with "
                        f"AutoTokenizer.from_pretrained(folder).save_pretrained(folder))")
    tokenizer = read_text_encoder(path / TOKENIZER, f"{where} {TOKENIZER}")
    prefix, suffix = _special_tokens(tokenizer)
    spec = TransformerSpec(json.dumps(settings, sort_keys=True), prefix, suffix)
    if tokenizer.vocab_size > spec.vocab_size:
        raise UserError(f"{where}: {TOKENIZER} has {tokenizer.vocab_size} tokens but {CONFIG} says "
                        f"vocab_size={spec.vocab_size}: they are not one model's")
    try:
        from transformers import AutoConfig

        AutoConfig.for_model(**settings)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{where}: {CONFIG}: model_type {settings.get('model_type')!r} is not one the "
                        f"transformers library builds ({str(exc)[:200]})") from None
    return ModelFolder(path, spec, tokenizer, files)


def resolve_transformers(hp: Hyperparameters, aux_dir: Path | None
                         ) -> tuple[Hyperparameters, tuple[ModelFolder | None, ModelFolder | None]]:
    """Read each transformer side's model folder and complete ``hp`` from it: ``encN_vocab_size`` is
    the model's vocabulary (its token table is ``hidden_size`` wide whatever
    ``encN_token_embedding_dim`` says). Unchanged without one.

    Raises:
        UserError: no auxiliary channel, a bad folder, a vocabulary size that contradicts the
            model's, or ``encN_max_seq_len`` plus the special tokens beyond its positions.
    """
    folders: list[ModelFolder | None] = [None, None]
    values = hp.to_dict()
    for side in (0, 1):
        cfg = hp.encoder(side)
        if cfg.network != TRANSFORMER:
            continue
        cloned = side == 1 and hp.enc1_network == "enc0"
        if cloned:
            folders[1] = folders[0]
            continue
        key = f"enc{side}_pretrained_model"
        if aux_dir is None or not aux_dir.is_dir():
            raise UserError(f"{key}={cfg.pretrained_model!r} needs the 'auxiliary' channel, which this "
                            f"job does not have")
        folder = read_model_folder(resolve_aux_file(aux_dir, cfg.pretrained_model, key, folder=True),
                                   f"{key} {cfg.pretrained_model}")
        spec = folder.spec
        given = getattr(hp, f"enc{side}_vocab_size")
        if given is not None and given != spec.vocab_size:
            raise UserError(f"enc{side}_vocab_size={given}: the model in {cfg.pretrained_model} has "
                            f"{spec.vocab_size} tokens; leave enc{side}_vocab_size out")
        longest = cfg.max_seq_len + len(spec.prefix) + len(spec.suffix)
        if longest > spec.max_positions:
            raise UserError(f"enc{side}_max_seq_len={cfg.max_seq_len}: with its {longest - cfg.max_seq_len} "
                            f"special tokens the model in {cfg.pretrained_model} reads at most "
                            f"{spec.max_positions} positions; set enc{side}_max_seq_len to at most "
                            f"{spec.max_positions - longest + cfg.max_seq_len}")
        values[f"enc{side}_vocab_size"] = spec.vocab_size  # the table's width is the hidden size
        own = _sentence_transformers_pooling(folder.path)
        if own is not None and own != cfg.transformer_pooling:
            log.warning("enc%d: %s was trained with %s pooling (1_Pooling/config.json) but "
                        "enc%d_transformer_pooling=%s", side, cfg.pretrained_model, own, side,
                        cfg.transformer_pooling)
        folders[side] = folder
        log.info("enc%d: %s model from %s: hidden size %d, %d tokens, special tokens %s + %s; "
                 "%s pooling%s", side, spec.settings["model_type"], cfg.pretrained_model, spec.hidden_size,
                 spec.vocab_size, list(spec.prefix), list(spec.suffix), cfg.transformer_pooling,
                 "" if hp.enc_dim == spec.hidden_size else f", projected to enc_dim={hp.enc_dim}")
    if folders == [None, None]:
        return hp, (None, None)
    return parse_hyperparameters(values, saved=True), (folders[0], folders[1])


def _sentence_transformers_pooling(path: Path) -> str | None:
    """``mean`` or ``cls`` when the folder is a sentence-transformers model that pools that way
    (its ``1_Pooling/config.json``), else None."""
    try:
        pooling = json.loads((path / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    modes = [m for m in ("mean", "cls") if isinstance(pooling, dict)
             and pooling.get(f"pooling_mode_{m}_{'tokens' if m == 'mean' else 'token'}")]
    return modes[0] if len(modes) == 1 else None


def specs(folders: tuple[ModelFolder | None, ModelFolder | None]) -> tuple:
    """Each side's :class:`TransformerSpec` (None for other encoders): what ``ModelConfig`` takes."""
    return tuple(None if f is None else f.spec for f in folders)


def tokenizers(folders: tuple[ModelFolder | None, ModelFolder | None]) -> tuple:
    """Each side's model-folder tokenizer (None for other encoders)."""
    return tuple(None if f is None else f.tokenizer for f in folders)


def read_weights(files: tuple[Path, ...], where: str) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors ``files`` (no unpickling)."""
    state: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            state.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{where}: {path.name} is not readable safetensors ({str(exc)[:200]})") from None
    return state


def load_transformer_weights(model: torch.nn.Module, side: int, state: dict[str, torch.Tensor],
                             where: str) -> None:
    """Put a Hugging Face state dict into encoder ``side`` of ``model`` and its token table.

    Keys may carry the prefix of a task model (``bert.embeddings...`` from BertForMaskedLM); the
    pooler and the position-id buffer are not used.

    Raises:
        UserError: naming the weights the folder lacks, or those of another shape.
    """
    word = next((k for k in state if k.endswith(WORD_EMBEDDINGS)), None)
    if word is None:
        raise UserError(f"{where}: the weights have no {WORD_EMBEDDINGS}")
    prefix = word[:-len(WORD_EMBEDDINGS)]
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    encoder, table = model.encoders[side], model.embedding(side)
    own = encoder.transformer.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UserError(f"{where}: the weights lack {len(missing)} of the model's tensors "
                        f"({', '.join(missing[:4])}{', ...' * (len(missing) > 4)})")
    wrong = [f"{k} {tuple(state[k].shape)} (the model's: {tuple(v.shape)})"
             for k, v in [(WORD_EMBEDDINGS, table.weight), *own.items()] if state[k].shape != v.shape]
    if wrong:
        raise UserError(f"{where}: weights of another shape than {CONFIG} says: {'; '.join(wrong[:3])}")
    with torch.no_grad():
        table.weight.copy_(state[WORD_EMBEDDINGS])
        encoder.transformer.load_state_dict({k: state[k] for k in own})


def save_model_folder(path: Path, model: torch.nn.Module, side: int) -> None:
    """Write encoder ``side`` of ``model`` as a Hugging Face model folder (config.json,
    model.safetensors, tokenizer.json is the caller's), loadable with ``AutoModel.from_pretrained``
    and by this container."""
    path.mkdir(parents=True, exist_ok=True)
    encoder = model.encoders[side]
    state = {k: v.detach().cpu().contiguous().clone()
             for k, v in encoder.hf_state_dict(model.embedding(side).weight).items()}
    save_file(state, str(path / WEIGHTS), metadata={"format": "pt"})
    (path / CONFIG).write_text(json.dumps(encoder.spec.settings, indent=2, sort_keys=True) + "\n")
