"""JSON Lines channels -> :class:`PairData`: compact numpy token arrays, validated line by line.

Each record is ``{"in0": [ids], "in1": [ids], "label": x}`` (key order free, extra keys ignored).
Token ids are kept flat (``ids`` + ``offsets``, int32), never as per-record Python lists, so a channel of
1,000,000 pairs of 50-token sequences needs about 400 MB. Lines are parsed in chunks: the happy path
converts a whole chunk with :class:`~object2vec.sequences.FlatIds` and checks ranges with numpy;
only a chunk that fails is re-walked record by record to name the exact file, line and problem.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from object2vec.config.hyperparameters import Hyperparameters
from object2vec.errors import UserError
from object2vec.sequences import FlatIds, Wording, sequence_problem

log = logging.getLogger(__name__)

CHUNK_LINES = 16384
FLOAT32_MAX = float(np.finfo(np.float32).max)  # labels are kept as float32
GZIP_MAGIC = b"\x1f\x8b"
# What reading a file can raise besides UnicodeDecodeError: open/IO errors, a bad gzip header or CRC
# (gzip.BadGzipFile is an OSError), a truncated gzip (EOFError), damaged deflate data (zlib.error).
READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass
class Side:
    """One side's sequences, flat: sequence ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray  # (N,) int32
    offsets: np.ndarray  # (n + 1,) int64

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)  # (n,)


@dataclass
class PairData:
    """A channel's records: both sides and the labels (int64 classes or float32 values)."""

    in0: Side
    in1: Side
    labels: np.ndarray  # (n,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def side(self, i: int) -> Side:
        return (self.in0, self.in1)[i]


@dataclass(frozen=True)
class RecordRules:
    """What a valid record looks like for these hyperparameters."""

    vocab_sizes: tuple[int, int]
    max_seq_lens: tuple[int, int]
    regression: bool
    num_classes: int

    @classmethod
    def from_hyperparameters(cls, hp: Hyperparameters) -> RecordRules:
        return cls((hp.enc0.vocab_size, hp.enc1.vocab_size), (hp.enc0.max_seq_len, hp.enc1.max_seq_len),
                   hp.is_regression, hp.num_classes)


def resolve_in_channel(channel_dir: Path, path: Path, name: str = "") -> Path:
    """The real location of ``path`` (a path below ``channel_dir``), which must lie inside the
    channel: one rule for every channel, so that a link cannot bring in data from elsewhere.

    Args:
        name: how the message names the path (default: its path inside the channel, quoted).

    Raises:
        UserError: ``path`` is a link leading outside the channel directory, or a link loop.
    """
    shown = name or repr(str(path.relative_to(channel_dir)))
    where = f"{shown} in channel {channel_dir.name!r}"
    try:
        root, real = channel_dir.resolve(), path.resolve()
    except (OSError, RuntimeError):  # a link loop: RuntimeError up to Python 3.12, OSError after
        raise UserError(f"{where} is a link that cannot be resolved (a loop?)") from None
    if real != root and root not in real.parents:
        raise UserError(f"{where} is a link to {real}, outside the channel directory "
                        f"{channel_dir}; links must stay inside their channel (copy the data in "
                        f"instead)")
    return real


def channel_files(channel_dir: Path) -> list[Path]:
    """Every regular, non-hidden file below ``channel_dir``, recursively, in sorted order.

    A file link inside the channel is read like a file; a directory link is never descended into
    (its target's files are read where they are, and a link to a parent would loop). Dangling links
    are skipped.

    Raises:
        UserError: a file or directory link leads outside the channel (:func:`resolve_in_channel`).
    """
    files = []
    # os.walk (followlinks=False), not Path.rglob: whether rglob descends into directory links
    # differs between Python versions, and this rule must not.
    for dirpath, dirnames, filenames in os.walk(channel_dir):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # hidden folders: not walked
        for name in dirnames:
            if (here / name).is_symlink():
                resolve_in_channel(channel_dir, here / name)  # checked, not descended
        for name in filenames:
            path = here / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                resolve_in_channel(channel_dir, path)
            if path.is_file():
                files.append(path)
    return sorted(files)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_text(path: Path):
    """Open a plain or gzip (detected by its magic bytes) UTF-8 text file for reading; a byte order
    mark opening the file is skipped (utf-8-sig decodes as fast as utf-8)."""
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def open_bytes(path: Path):
    """Open a plain or gzip (detected by its magic bytes) file for reading its bytes."""
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def read_problem(exc: BaseException) -> str:
    """Why reading a file failed, in words, for one of :data:`READ_ERRORS`."""
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"damaged or truncated gzip file ({exc})"
    return str(exc)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a plain or gzip file."""
    try:
        with open_text(path) as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: cannot read file: {exc}") from None
    except READ_ERRORS as exc:
        raise UserError(f"{path}: cannot read file: {read_problem(exc)}") from None


class _Builder:
    """Accumulates validated records, chunk by chunk, into compact arrays."""

    def __init__(self, rules: RecordRules) -> None:
        self.rules = rules
        self.chunks: list[tuple[np.ndarray, ...]] = []  # (ids0, ids1, lengths0, lengths1, labels)

    def add_chunk(self, path: Path, chunk: list[tuple[int, str]]) -> None:
        """Parse and append one chunk of lines; on any problem, raise naming the first bad line."""
        try:
            parts = self._parse(chunk)
        except (ValueError, TypeError, KeyError, OverflowError, AttributeError, RecursionError):
            parts = None  # RecursionError: json.loads of a line nested too deeply
        if parts is None or not self._in_range(parts):
            for number, line in chunk:  # slow path: find and describe the first bad record
                _check_record(path, number, line, self.rules)
            raise AssertionError(f"{path}: chunk failed the fast path but every record passed")
        self.chunks.append(parts)

    def _parse(self, chunk: list[tuple[int, str]]) -> tuple[np.ndarray, ...]:
        flat0, flat1, labels = FlatIds("i"), FlatIds("i"), array("d")
        max0, max1 = self.rules.max_seq_lens
        classify = not self.rules.regression
        for _, line in chunk:
            rec = json.loads(line)
            a, b = rec["in0"][:max0], rec["in1"][:max1]
            if not a or not b:
                raise ValueError("empty sequence")
            if ("true" in line or "false" in line) and any(type(t) is bool for t in a + b):
                raise TypeError("bool id")  # FlatIds would silently take true/false as 1/0
            flat0.append(a)  # TypeError for floats, strings, null
            flat1.append(b)
            label = rec["label"]
            if isinstance(label, bool) or (classify and not isinstance(label, int)):
                raise TypeError("label")
            labels.append(label)  # TypeError for non-numbers
        (ids0, lengths0), (ids1, lengths1) = flat0.arrays(), flat1.arrays()
        return ids0, ids1, lengths0, lengths1, np.frombuffer(labels, dtype=np.float64)

    def _in_range(self, parts: tuple[np.ndarray, ...]) -> bool:
        for side in (0, 1):
            ids = parts[side]
            if ids.size and (ids.min() < 0 or ids.max() >= self.rules.vocab_sizes[side]):
                return False
        labels = parts[4]
        if self.rules.regression:  # also False for nan: comparisons with nan are False
            return bool((np.abs(labels) <= FLOAT32_MAX).all())
        return bool(((labels >= 0) & (labels < self.rules.num_classes)).all())

    def _joined(self, part: int, dtype: type) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=dtype)] + [c[part] for c in self.chunks])

    def finish(self) -> PairData:
        sides = []
        for side in (0, 1):
            lengths = self._joined(2 + side, np.int64)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            sides.append(Side(self._joined(side, np.int32), offsets))
        raw = self._joined(4, np.float64)
        labels = raw.astype(np.float32) if self.rules.regression else raw.astype(np.int64)
        return PairData(sides[0], sides[1], labels)


def _show(value: object, limit: int = 40) -> str:
    """``value`` as JSON for a message, cut after ``limit`` characters: a record may hold a
    1000-digit number, and SageMaker keeps only 1024 characters of a FailureReason."""
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):  # nested too deeply to print
        return f"(a {type(value).__name__} nested too deeply to show)"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _json_problem(exc: ValueError) -> str:
    """What is wrong with a line that json.loads refused."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    # e.g. an integer beyond sys.get_int_max_str_digits(); the rest of the message is advice
    # for Python programmers.
    return str(exc).split(";")[0]


# How a record's token problem is worded (the rule itself: object2vec.sequences).
_WORDING = Wording(quote="'", show_value=_show, show_id=_show,
                   show_list=lambda value: _show(value, 80))


def _is_regression_label(label: object) -> bool:
    """A number that float32 holds as a finite value (bool is not a number here)."""
    if isinstance(label, bool) or not isinstance(label, (int, float)):
        return False
    try:
        return abs(float(label)) <= FLOAT32_MAX  # False for nan and inf
    except OverflowError:  # an int beyond float64
        return False


def _check_record(path: Path, number: int, line: str, rules: RecordRules) -> None:
    """Raise :class:`UserError` naming file, line and problem if this record is invalid."""
    where = f"{path}, line {number}"
    try:
        rec = json.loads(line)
    except RecursionError:
        raise UserError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise UserError(f"{where}: not valid JSON ({_json_problem(exc)})") from None
    if not isinstance(rec, dict):
        raise UserError(f"{where}: each line must be a JSON object with in0, in1 and label, "
                        f"got {type(rec).__name__}")
    for side in (0, 1):
        key = f"in{side}"
        if key not in rec:
            raise UserError(f"{where}: missing '{key}' (each record needs in0, in1 and label)")
        problem = sequence_problem(key, rec[key], rules.max_seq_lens[side], rules.vocab_sizes[side])
        if problem is not None:
            text = problem.message(_WORDING)
            raise UserError(f"{text} ({where})" if problem.place_last else f"{where}: {text}")
    if "label" not in rec:
        raise UserError(f"{where}: missing 'label'")
    label = rec["label"]
    if rules.regression:
        if not _is_regression_label(label):
            raise UserError(f"{where}: label {_show(label)} must be a finite number for "
                            f"output_layer=mean_squared_error (at most {FLOAT32_MAX:.4g} in "
                            f"magnitude: labels are float32)")
    elif isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < rules.num_classes:
        raise UserError(f"{where}: label {_show(label)} must be an integer class id in "
                        f"[0, {rules.num_classes - 1}] for output_layer=softmax with "
                        f"num_classes={rules.num_classes}")


def load_channel(channel_dir: Path, rules: RecordRules) -> PairData:
    """Read every file of a channel directory (plain or ``.gz``) into one :class:`PairData`.

    Sequences longer than the side's ``max_seq_len`` are truncated.

    Raises:
        UserError: the channel is empty, or a record is invalid (the message names file and line).
    """
    files = channel_files(channel_dir)
    if not files:
        raise UserError(f"channel {channel_dir.name!r} has no files in {channel_dir}")
    builder = _Builder(rules)
    for path in files:
        chunk: list[tuple[int, str]] = []
        for item in _lines(path):
            chunk.append(item)
            if len(chunk) == CHUNK_LINES:
                builder.add_chunk(path, chunk)
                chunk = []
        if chunk:
            builder.add_chunk(path, chunk)
    data = builder.finish()
    if len(data) == 0:
        raise UserError(f"channel {channel_dir.name!r} has no records in {channel_dir}")
    return data
