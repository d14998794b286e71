"""The model artifact in ``model/``: versioned, self-describing, loadable without unpickling code.

Layout (SageMaker tars the directory into ``model.tar.gz``)::

    model/object2vec.pt     {"format", "format_version", "hyperparameters", "metadata", "state_dict"}
                            read back with torch.load(weights_only=True): plain types and tensors only
    model/object2vec.json   the same minus the weights, for people and tools
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
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec

FORMAT = "object2vec"
FORMAT_VERSION = 1
WEIGHTS_FILE = "object2vec.pt"
CONFIG_FILE = "object2vec.json"


@dataclass
class LoadedModel:
    """A model rebuilt from an artifact, in eval mode."""

    model: Object2Vec
    hyperparameters: Hyperparameters
    metadata: dict[str, Any] = field(default_factory=dict)


def _describe(hp: Hyperparameters, metadata: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in hp.to_dict().items() if v is not None}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "object2vec_version": __version__,
            "hyperparameters": params, "metadata": metadata}


def save_artifact(model_dir: Path, model: Object2Vec, hp: Hyperparameters,
                  metadata: dict[str, Any] | None = None) -> Path:
    """Write the artifact atomically (temp file + rename) and return the weights file path."""
    model_dir.mkdir(parents=True, exist_ok=True)
    desc = _describe(hp, dict(metadata or {}))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
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
    model = Object2Vec(ModelConfig.from_hyperparameters(hp)).to(device)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:  # missing, unexpected or mis-shaped weights (torch lists them all)
        raise UserError(f"{path} does not match its own hyperparameters: {exc}") from exc
    model.eval()
    return LoadedModel(model, hp, blob.get("metadata", {}))
