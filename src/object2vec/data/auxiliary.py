"""The ``auxiliary`` channel: a vocabulary (JSON token -> id) and pretrained vectors (GloVe text format).

``encN_vocab_file`` maps tokens to the ids used in ``in0``/``in1``; ``encN_pretrained_embedding_file``
holds one token and its floats per line (``word v1 ... vD``; a word2vec ``count dim`` header line is
skipped; a token may contain spaces, so the last ``D`` fields are the vector). The file is streamed: only
the rows of vocabulary tokens are kept, written straight into the table, so memory stays about the size
of the table itself. Both files may be gzip; a UTF-8 byte order mark opening them is skipped.

Every problem with these files is a :class:`UserError` naming the hyperparameter, the file and
(where there is one) the line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from object2vec.data.records import READ_ERRORS, open_bytes, open_text, read_problem, resolve_in_channel
from object2vec.errors import UserError
from object2vec.model.config import EncoderConfig
from object2vec.text import TextEncoder

log = logging.getLogger(__name__)

NAMED_IN_WARNING = 5  # vocabulary entries named in the warning about ids beyond vocab_size


@dataclass
class PretrainedStats:
    """How many vocabulary rows a file filled."""

    loaded: int
    vocab: int
    lines: int


def resolve_aux_file(aux_dir: Path, name: str, key: str, folder: bool = False) -> Path:
    """The file (or with ``folder``, the folder) ``name`` inside the auxiliary channel; it must exist
    and, like every channel's files, may not be a link leading out of the channel."""
    # The hyperparameter check allows only plain file names (no '/', no '..'): only a link can
    # lead elsewhere, and the data channels' rule decides.
    path = resolve_in_channel(aux_dir, aux_dir / name, f"{key}={name!r}")
    if not (path.is_dir() if folder else path.is_file()):
        raise UserError(f"{key}={name!r}: {'folder' if folder else 'file'} not found in the auxiliary "
                        f"channel ({aux_dir})")
    return path


def _load_json(path: Path, key: str) -> object:
    """The JSON document in ``path`` (plain or gzip)."""
    try:
        with open_text(path) as fh:
            return json.load(fh)
    except RecursionError:
        raise UserError(f"{key} {path.name}: not valid JSON (nested too deeply)") from None
    except UnicodeDecodeError as exc:  # before ValueError, its base class
        raise UserError(f"{key} {path.name}: not UTF-8 text ({exc.reason}, byte "
                        f"{exc.object[exc.start:exc.start + 1]!r})") from None
    except ValueError as exc:
        raise UserError(f"{key} {path.name}: not valid JSON ({exc})") from None
    except READ_ERRORS as exc:
        raise UserError(f"{key} {path.name}: cannot read file: {read_problem(exc)}") from None


def read_vocab(path: Path, vocab_size: int, key: str) -> dict[str, int]:
    """A JSON object token -> id, every id an integer >= 0.

    Entries whose id is ``>= vocab_size`` are dropped with one warning: AWS's multilabel-genre
    notebook sets ``enc0_vocab_size = len(vocab)`` and gives ``<unk>`` the id ``len(vocab)``, and
    the original trained on that. No valid record can use such an id (records are checked against
    ``vocab_size``), so the entry has no row to fill.

    Raises:
        UserError: the file is unreadable, not a JSON object, or holds a negative or non-integer id.
    """
    vocab = _load_json(path, key)
    if not isinstance(vocab, dict):
        raise UserError(f"{key} {path.name}: must be a JSON object mapping token -> id")
    beyond = []
    for token, idx in vocab.items():
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            raise UserError(f"{key} {path.name}: token {token!r} has id {idx!r}, ids must be integers "
                            f"in [0, {vocab_size - 1}] (vocab_size={vocab_size})")
        if idx >= vocab_size:
            beyond.append(token)
    if beyond:
        _warn_beyond(path, key, vocab_size, [(t, vocab[t]) for t in beyond])
        vocab = {token: idx for token, idx in vocab.items() if idx < vocab_size}
    return vocab


def _warn_beyond(path: Path, key: str, vocab_size: int, entries: list[tuple[str, int]]) -> None:
    """One warning for every vocabulary entry dropped for an id beyond ``vocab_size``."""
    named = ", ".join(f"{token!r} (id {idx})" for token, idx in entries[:NAMED_IN_WARNING])
    more = f" and {len(entries) - NAMED_IN_WARNING} more" if len(entries) > NAMED_IN_WARNING else ""
    count = f"{len(entries)} token{'s' if len(entries) > 1 else ''}"
    log.warning("%s %s: ignoring %s whose id is not less than vocab_size=%d (no valid record can "
                "use such an id): %s%s", key, path.name, count, vocab_size, named, more)


def load_pretrained_into(table: torch.Tensor, path: Path, vocab: dict[str, int], key: str
                         ) -> PretrainedStats:
    """Stream ``path`` and copy the vector of every vocabulary token into ``table (V, D)`` in place.

    Lines of tokens outside the vocabulary are skipped without parsing their numbers.

    Raises:
        UserError: naming ``key``, the file and the line: an unreadable or damaged (gzip) file,
            bytes that are not UTF-8, a line without a token and ``D`` numbers, or a vocabulary
            token's vector holding nan, inf or a value beyond float32 (which would otherwise only
            show up as a diverged training run).
    """
    dim = table.shape[1]
    out = table.detach().numpy() if table.device.type == "cpu" else None
    loaded, number = 0, 0
    # Read bytes and decode each line: a text wrapper decodes blocks ahead of the line being
    # read, so its UnicodeDecodeError could not say which line holds the bad bytes.
    try:
        with open_bytes(path) as fh, np.errstate(over="ignore"):  # "1e39" -> inf: reported below
            for number, raw in enumerate(fh, 1):
                line = _decode(raw, number, path, key)
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header: "count dim"
                if not line.strip():
                    continue
                if len(parts) < dim + 1:
                    raise _short_line(parts, number, path, key, dim, loaded)
                token = " ".join(parts[:-dim])
                idx = vocab.get(token)
                if idx is None:
                    continue
                vec = _vector(parts[-dim:], token, number, path, key)
                if out is not None:
                    out[idx] = vec
                else:
                    table.data[idx] = torch.from_numpy(vec).to(table.device)
                loaded += 1
    except READ_ERRORS as exc:
        raise UserError(f"{key} {path.name}: cannot read file after line {number}: "
                        f"{read_problem(exc)}") from None
    return PretrainedStats(loaded, len(vocab), number)


def _decode(raw: bytes, number: int, path: Path, key: str) -> str:
    """Line ``number`` of a vectors file as text (a byte order mark opening the file dropped)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{key} {path.name}, line {number}: not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start + 1} of the line: {raw[exc.start:exc.start + 1]!r})") from None
    return line.removeprefix("\ufeff") if number == 1 else line


def _short_line(parts: list[str], number: int, path: Path, key: str, dim: int,
                loaded: int) -> UserError:
    """The error for a line with fewer than a token and ``dim`` fields."""
    if loaded == 0 and number <= 2:  # the first vector: most likely a different dimension
        return UserError(f"{key} {path.name}, line {number}: vectors have {len(parts) - 1} "
                         f"values but the token embedding dim is {dim}")
    return UserError(f"{key} {path.name}, line {number}: expected a token and {dim} "
                     f"numbers, got {len(parts)} fields")


def _vector(values: list[str], token: str, number: int, path: Path, key: str) -> np.ndarray:
    """The float32 vector of ``token`` on line ``number``: numbers, all finite."""
    try:
        vec = np.asarray(values, dtype=np.float32)
    except ValueError:
        raise UserError(f"{key} {path.name}, line {number}: the {len(values)} values after token "
                        f"{token!r} are not all numbers") from None
    if not np.isfinite(vec).all():
        bad = values[int(np.flatnonzero(~np.isfinite(vec))[0])]
        raise UserError(f"{key} {path.name}, line {number}: the vector of token {token!r} holds "
                        f"{bad[:40]!r}; values must be finite float32 numbers (no nan or inf, "
                        f"magnitude at most 3.4e+38)")
    return vec


def apply_pretrained(tables: list, configs: list[EncoderConfig], aux_dir: Path | None,
                     tokenizers: list[TextEncoder | None] | None = None) -> None:
    """Load each table's pretrained vectors (and freeze it) as its encoder config asks.

    Args:
        tables: the model's ``TokenEmbedding`` tables.
        configs: the encoder config that owns each table (enc0's for a tied table).
        aux_dir: the auxiliary channel directory, or None if the job has none.
        tokenizers: per table, its text side's tokenizer, whose vocabulary maps tokens to ids (None:
            a side of ids, whose map is ``encN_vocab_file``).
    """
    tokenizers = tokenizers or [None] * len(tables)
    for index, (table, cfg, tokenizer) in enumerate(zip(tables, configs, tokenizers)):
        if not cfg.pretrained_embedding_file:
            if cfg.vocab_file:
                log.warning("enc%d_vocab_file is set but no pretrained embedding file: ignored", index)
            continue
        side = f"enc{index}"
        if aux_dir is None or not aux_dir.is_dir():
            raise UserError(f"{side}_pretrained_embedding_file={cfg.pretrained_embedding_file!r} needs "
                            f"the 'auxiliary' channel, which this job does not have")
        if tokenizer is not None:
            vocab = tokenizer.vocab()
        elif not cfg.vocab_file:
            raise UserError(f"{side}_pretrained_embedding_file needs {side}_vocab_file to map its "
                            f"tokens to ids")
        else:
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
