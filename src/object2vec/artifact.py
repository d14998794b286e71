"""The model artifact in ``model/``: versioned, self-describing, loadable without unpickling code.

Layout (SageMaker tars the directory into ``model.tar.gz``)::

    model/object2vec.pt     {"format", "format_version", "hyperparameters", "metadata", "state_dict"}
                            read back with torch.load(weights_only=True): plain types and tensors only
    model/object2vec.json   the same minus the weights, for people and tools
    model/catalog.faiss     the catalog channel's index (FAISS's binary format) and catalog.json, its
                            item ids (format version 2, listed under "catalog")
    model/tokenizer-in0.json  a text side's tokenizer (Hugging Face tokenizer.json; format version 2,
                            listed under "tokenizers"; a shared tokenizer is one file named twice)
    model/transformer-in0/  a transformer encoder (encN_network=transformer; format version 3, listed
                            under "transformers" with its special tokens): a Hugging Face model folder
                            (config.json, model.safetensors, tokenizer.json) that
                            AutoModel.from_pretrained and sentence-transformers also read. Its
                            weights (layers and token table) are not repeated in object2vec.pt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from object2vec import __version__
from object2vec.config.hyperparameters import Hyperparameters, parse_hyperparameters
from object2vec.data.pretrained_model import (
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    load_transformer_weights,
    read_weights,
    save_model_folder,
)
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.transformer import TransformerSpec
from object2vec.neighbors import CatalogIndex
from object2vec.text import TextEncoder, read_text_encoder

FORMAT = "object2vec"
FORMAT_VERSION = 3  # 2: text sides' tokenizers, a catalog; 3: transformer folders
TEXT_FORMAT_VERSION = 2  # a model without a transformer is written as version 2 (1 without text)
IDS_FORMAT_VERSION = 1
SIDES = ("in0", "in1")
WEIGHTS_FILE = "object2vec.pt"
CONFIG_FILE = "object2vec.json"


@dataclass
class LoadedModel:
    """A model rebuilt from an artifact, in eval mode."""

    model: Object2Vec
    hyperparameters: Hyperparameters
    metadata: dict[str, Any] = field(default_factory=dict)
    text: tuple[TextEncoder | None, TextEncoder | None] = (None, None)  # per side; None: ids
    catalog: CatalogIndex | None = None  # the catalog channel's items, for top_k


def _describe(hp: Hyperparameters, metadata: dict[str, Any], tokenizers: dict[str, str | None],
              catalog: dict[str, Any] | None, transformers: dict[str, dict]) -> dict[str, Any]:
    params = {k: v for k, v in hp.to_dict().items() if v is not None}
    desc = {"format": FORMAT, "format_version": IDS_FORMAT_VERSION, "object2vec_version": __version__,
            "hyperparameters": params, "metadata": metadata}
    if any(tokenizers.values()):
        desc.update(format_version=TEXT_FORMAT_VERSION, tokenizers=tokenizers)
    if catalog:
        desc.update(format_version=TEXT_FORMAT_VERSION, catalog=catalog)
    if transformers:
        desc.update(format_version=FORMAT_VERSION, transformers=transformers)
    return desc


def _transformer_keys(model: Object2Vec) -> set[str]:
    """The state-dict keys a transformer side's folder holds instead of object2vec.pt."""
    keys = set()
    for side, spec in enumerate(model.config.transformers):
        if spec is not None:
            keys.add(f"embeddings.{model.table_index(side)}.weight")
            keys.update(k for k in model.state_dict() if k.startswith(f"encoders.{side}.transformer."))
    return keys


def _save_transformers(model_dir: Path, model: Object2Vec,
                       tokenizers: tuple[TextEncoder | None, TextEncoder | None]) -> dict[str, dict]:
    """Write each transformer side as a model folder (a shared encoder once); side -> its entry."""
    out: dict[str, dict] = {}
    for index, (side, spec) in enumerate(zip(SIDES, model.config.transformers)):
        if spec is None:
            continue
        folder = f"transformer-{side}"
        if not model.owns_encoder(index):
            folder = out[SIDES[0]]["folder"]
        else:
            save_model_folder(model_dir / folder, model, index)
            if tokenizers[index] is not None:
                (model_dir / folder / TOKENIZER).write_text(tokenizers[index].to_json(), encoding="utf-8")
        out[side] = {"folder": folder, **spec.to_dict()}
    return out


def _save_tokenizers(model_dir: Path, text: tuple[TextEncoder | None, TextEncoder | None]
                     ) -> dict[str, str | None]:
    """Write each text side's tokenizer (a shared one once); side -> file name (None: ids)."""
    names: dict[str, str | None] = {}
    for side, encoder in zip(SIDES, text):
        if encoder is not None and side == SIDES[1] and encoder is text[0]:
            names[side] = names[SIDES[0]]
        elif encoder is not None:
            names[side] = f"tokenizer-{side}.json"
            (model_dir / names[side]).write_text(encoder.to_json(), encoding="utf-8")
        else:
            names[side] = None
    return names


def save_artifact(model_dir: Path, model: Object2Vec, hp: Hyperparameters,
                  metadata: dict[str, Any] | None = None,
                  text: tuple[TextEncoder | None, TextEncoder | None] = (None, None),
                  catalog: CatalogIndex | None = None,
                  transformer_tokenizers: tuple[TextEncoder | None, TextEncoder | None] = (None, None)
                  ) -> Path:
    """Write the artifact (the weights file atomically: temp file + rename) and return the weights
    file path. ``text``: each text side's tokenizer, ``catalog``: the items' index, written beside
    the weights; ``transformer_tokenizers``: each transformer side's tokenizer, written into its
    model folder."""
    model_dir.mkdir(parents=True, exist_ok=True)
    desc = _describe(hp, dict(metadata or {}), _save_tokenizers(model_dir, text),
                     catalog.save(model_dir) if catalog else None,
                     _save_transformers(model_dir, model, transformer_tokenizers))
    skip = _transformer_keys(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in skip}
    path = model_dir / WEIGHTS_FILE
    tmp = path.with_suffix(".tmp")
    torch.save({**desc, "state_dict": state}, tmp)
    os.replace(tmp, path)
    (model_dir / CONFIG_FILE).write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
    return path


def load_artifact(model_dir: Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model saved by :func:`save_artifact`.

    Raises:
        UserError: the directory holds no artifact, one of another format or a newer version, or
            one whose weights do not fit its hyperparameters.
    """
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"no Object2Vec model found: {path} does not exist")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise UserError(f"cannot read model {path}: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path} is not an Object2Vec model artifact")
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} has format version {blob['format_version']}; this container reads "
                        f"versions up to {FORMAT_VERSION}")
    missing = [key for key in ("hyperparameters", "state_dict") if not isinstance(blob.get(key), dict)]
    if missing:
        raise UserError(f"{path} is incomplete: it has no {' and no '.join(missing)}")
    hp = parse_hyperparameters(blob["hyperparameters"], saved=True)  # warned when it was trained
    folders = _transformer_folders(path.parent, blob)
    model = Object2Vec(ModelConfig.from_hyperparameters(
        hp, tuple(None if f is None else f[1] for f in folders))).to(device)
    try:
        missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
        missing = sorted(set(missing) - _transformer_keys(model))
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {sorted(unexpected)[:5]}")
    except RuntimeError as exc:  # missing, unexpected or mis-shaped weights (torch lists them all)
        raise UserError(f"{path} does not match its own hyperparameters: {exc}") from exc
    for index, folder in enumerate(folders):
        if folder is not None and model.owns_encoder(index):
            where = f"model {folder[0].name}"
            load_transformer_weights(model, index, read_weights((folder[0] / WEIGHTS,), where), where)
    model.eval()
    catalog = (CatalogIndex.load(path.parent, model.config.enc_dim) if blob.get("catalog") else None)
    return LoadedModel(model, hp, blob.get("metadata", {}), _load_tokenizers(path.parent, blob, model),
                       catalog)


def _transformer_folders(model_dir: Path, blob: dict) -> list[tuple[Path, TransformerSpec] | None]:
    """Each transformer side's folder and architecture, as the artifact lists them."""
    entries = blob.get("transformers") or {}
    out: list[tuple[Path, TransformerSpec] | None] = [None, None]
    for index, side in enumerate(SIDES):
        entry = entries.get(side) if isinstance(entries, dict) else None
        if entry is None:
            continue
        folder = model_dir / Path(str(entry.get("folder", ""))).name
        try:
            config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            spec = TransformerSpec(json.dumps(config, sort_keys=True), tuple(entry["prefix"]),
                                   tuple(entry["suffix"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{model_dir / WEIGHTS_FILE}: its {side} transformer folder {folder.name} "
                            f"is not readable ({exc})") from None
        out[index] = (folder, spec)
    return out


def _load_tokenizers(model_dir: Path, blob: dict, model: Object2Vec
                     ) -> tuple[TextEncoder | None, TextEncoder | None]:
    """The text sides' tokenizers the artifact lists, each checked against its table's rows."""
    names = blob.get("tokenizers") or {}
    if not isinstance(names, dict):
        raise UserError(f"{model_dir / WEIGHTS_FILE}: 'tokenizers' must map in0/in1 to file names")
    out: list[TextEncoder | None] = [None, None]
    for index, side in enumerate(SIDES):
        name = names.get(side)
        if not name:
            continue
        if index == 1 and name == names.get(SIDES[0]):
            out[1] = out[0]
            continue
        encoder = read_text_encoder(model_dir / Path(str(name)).name, f"model tokenizer {name}")
        rows = model.config.encoder(index).vocab_size
        if encoder.vocab_size > rows:
            raise UserError(f"model tokenizer {name} has {encoder.vocab_size} tokens but enc{index}'s "
                            f"vocabulary has {rows} rows: the tokenizer is not this model's")
        out[index] = encoder
    return out[0], out[1]
