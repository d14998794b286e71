"""The ``auxiliary`` channel: a vocabulary (JSON token -> id) and pretrained vectors (GloVe text format).

``encN_vocab_file`` maps tokens to the ids used in ``in0``/``in1``; ``encN_pretrained_embedding_file``
holds one token and its floats per line (``word v1 ... vD``; a word2vec ``count dim`` header line is
skipped; a token may contain spaces, so the last ``D`` fields are the vector). The file is streamed: only
the rows of vocabulary tokens are kept, written straight into the table, so memory stays about the size
of the table itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from object2vec.config.hyperparameters import EncoderConfig
from object2vec.data.records import open_text
from object2vec.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class PretrainedStats:
    """How many vocabulary rows a file filled."""

    loaded: int
    vocab: int
    lines: int


def resolve_aux_file(aux_dir: Path, name: str, key: str) -> Path:
    """The file ``name`` inside the auxiliary channel; it must exist and may not escape the channel."""
    path = (aux_dir / name).resolve()
    if aux_dir.resolve() not in path.parents:
        raise UserError(f"{key}={name!r} must name a file inside the auxiliary channel {aux_dir}")
    if not path.is_file():
        raise UserError(f"{key}={name!r}: file not found in the auxiliary channel ({aux_dir})")
    return path


def read_vocab(path: Path, vocab_size: int, key: str) -> dict[str, int]:
    """A JSON object token -> id, every id in ``[0, vocab_size)``."""
    try:
        with open_text(path) as fh:
            vocab = json.load(fh)
    except ValueError as exc:
        raise UserError(f"{key} {path.name}: not valid JSON ({exc})") from None
    if not isinstance(vocab, dict):
        raise UserError(f"{key} {path.name}: must be a JSON object mapping token -> id")
    for token, idx in vocab.items():
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < vocab_size:
            raise UserError(f"{key} {path.name}: token {token!r} has id {idx!r}, ids must be integers "
                            f"in [0, {vocab_size - 1}] (vocab_size={vocab_size})")
    return vocab


def load_pretrained_into(table: torch.Tensor, path: Path, vocab: dict[str, int], key: str
                         ) -> PretrainedStats:
    """Stream ``path`` and copy the vector of every vocabulary token into ``table (V, D)`` in place."""
    dim = table.shape[1]
    out = table.detach().numpy() if table.device.type == "cpu" else None
    loaded, number = 0, 0
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header: "count dim"
            if not line.strip():
                continue
            if len(parts) < dim + 1:
                if loaded == 0 and number <= 2:
                    raise UserError(f"{key} {path.name}, line {number}: vectors have {len(parts) - 1} "
                                    f"values but the token embedding dim is {dim}")
                raise UserError(f"{key} {path.name}, line {number}: expected a token and {dim} "
                                f"numbers, got {len(parts)} fields")
            token = " ".join(parts[:-dim])
            idx = vocab.get(token)
            if idx is None:
                continue
            try:
                vec = np.asarray(parts[-dim:], dtype=np.float32)
            except ValueError:
                raise UserError(f"{key} {path.name}, line {number}: the {dim} values after token "
                                f"{token!r} are not all numbers") from None
            if out is not None:
                out[idx] = vec
            else:
                table.data[idx] = torch.from_numpy(vec).to(table.device)
            loaded += 1
    return PretrainedStats(loaded, len(vocab), number)


def apply_pretrained(tables: list, configs: list[EncoderConfig], aux_dir: Path | None) -> None:
    """Load each table's pretrained vectors (and freeze it) as its encoder config asks.

    Args:
        tables: the model's ``TokenEmbedding`` tables.
        configs: the encoder config that owns each table (enc0's for a tied table).
        aux_dir: the auxiliary channel directory, or None if the job has none.
    """
    for index, (table, cfg) in enumerate(zip(tables, configs)):
        if not cfg.pretrained_embedding_file:
            if cfg.vocab_file:
                log.warning("enc%d_vocab_file is set but no pretrained embedding file: ignored", index)
            continue
        side = f"enc{index}"
        if aux_dir is None or not aux_dir.is_dir():
            raise UserError(f"{side}_pretrained_embedding_file={cfg.pretrained_embedding_file!r} needs "
                            f"the 'auxiliary' channel, which this job does not have")
        if not cfg.vocab_file:
            raise UserError(f"{side}_pretrained_embedding_file needs {side}_vocab_file to map its "
                            f"tokens to ids")
        vocab = read_vocab(resolve_aux_file(aux_dir, cfg.vocab_file, f"{side}_vocab_file"),
                           cfg.vocab_size, f"{side}_vocab_file")
        path = resolve_aux_file(aux_dir, cfg.pretrained_embedding_file,
                                f"{side}_pretrained_embedding_file")
        with torch.no_grad():
            stats = load_pretrained_into(table.weight, path, vocab, f"{side}_pretrained_embedding_file")
        log.info("%s: %d of %d vocabulary tokens found in %s (%d lines)%s", side, stats.loaded,
                 stats.vocab, path.name, stats.lines, ", frozen" if cfg.freeze_pretrained_embedding else "")
        if cfg.freeze_pretrained_embedding:
            table.freeze()
