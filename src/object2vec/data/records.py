"""JSON Lines channels -> :class:`PairData`: compact numpy token arrays, validated line by line.

Each record is ``{"in0": [ids], "in1": [ids], "label": x}`` (key order free, extra keys ignored); a
side may hold text instead (``"in0": "a sentence"``), the same kind for the whole job
(:func:`sniff_text_sides`), turned into ids by the side's tokenizer (:mod:`object2vec.text`).
Token ids are kept flat (``ids`` + ``offsets``, int32), never as per-record Python lists, so a channel of
1,000,000 pairs of 50-token sequences needs about 400 MB. Lines are parsed in chunks: the happy path
converts a whole chunk with :class:`~object2vec.sequences.FlatIds` and checks ranges with numpy;
only a chunk that fails is re-walked record by record to name the exact file, line and problem.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import os
import zlib
from array import array
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from object2vec.config.hyperparameters import Hyperparameters
from object2vec.errors import UserError
from object2vec.sequences import FlatIds, Wording, sequence_problem
from object2vec.text import TextEncoder, UnencodableText

log = logging.getLogger(__name__)

CHUNK_LINES = 16384
PARALLEL_MIN_BYTES = 32 << 20  # smaller text channels load in-process (starting workers costs ~1 s)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # labels are kept as float32
GZIP_MAGIC = b"\x1f\x8b"
TOKENIZE_BATCH = 16384  # texts per tokenizer call in the line-by-line readers (catalog, documents)
DOCUMENT_KEY = "document"  # a record of a document channel (object2vec.data.documents)
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

    @classmethod
    def from_lengths(cls, ids: np.ndarray, lengths: np.ndarray) -> Side:
        """Sequences given flat ``ids`` (int32) and each sequence's length."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(ids, offsets)


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


Encoders = tuple["TextEncoder | None", "TextEncoder | None"]  # per side: its tokenizer, None for ids


@dataclass(frozen=True)
class RecordRules:
    """What a valid record looks like for these hyperparameters (and, for text sides, how it
    becomes ids: ``text[side]`` is that side's tokenizer; ``text_origin`` names the record that
    made the side text or ids, for the message about a record of the other kind)."""

    vocab_sizes: tuple[int, int]
    max_seq_lens: tuple[int, int]
    regression: bool
    num_classes: int
    text: Encoders = (None, None)
    text_origin: str = ""

    @classmethod
    def from_hyperparameters(cls, hp: Hyperparameters, text: Encoders = (None, None),
                             text_origin: str = "") -> RecordRules:
        return cls((hp.enc0.vocab_size, hp.enc1.vocab_size), (hp.enc0.max_seq_len, hp.enc1.max_seq_len),
                   hp.is_regression, hp.num_classes, text, text_origin)


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


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
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


_UNPARSED = object()  # add_chunk's default: parse the chunk here


class _IdsOf:
    """One side's id lists in a chunk, cut to the side's length, kept flat."""

    def __init__(self, max_len: int) -> None:
        self.max_len, self.flat = max_len, FlatIds("i")

    def add(self, value: Any, line: str) -> None:
        ids = value[: self.max_len]
        if not ids:
            raise ValueError("empty sequence")
        if ("true" in line or "false" in line) and any(type(t) is bool for t in ids):
            raise TypeError("bool id")  # FlatIds would silently take true/false as 1/0
        self.flat.append(ids)  # TypeError for floats, strings, null

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.flat.arrays()


class TextTokens:
    """One side's texts, read line by line, tokenized ``batch`` at a time (the tokenizer is fastest
    on batches) and kept as flat arrays: what the catalog and document readers share. Each text
    comes with its place (``file, line N: <what>``), which names it in an error."""

    def __init__(self, encoder: TextEncoder, max_len: int, empty: str, batch: int = TOKENIZE_BATCH
                 ) -> None:
        """``empty``: what the message says after the place of a text without a token."""
        self.encoder, self.max_len, self.empty, self.batch = encoder, max_len, empty, batch
        self.pending: list[tuple[str, str]] = []  # (place, text) not tokenized yet
        self.done: list[tuple[np.ndarray, np.ndarray]] = []  # (ids int32, lengths int64) per batch

    def add(self, place: str, text: str) -> None:
        self.pending.append((place, text))
        if len(self.pending) >= self.batch:
            self._tokenize()

    def _tokenize(self) -> None:
        try:
            ids, lengths = self.encoder.encode([t for _, t in self.pending], self.max_len)
        except UnencodableText as exc:
            raise UserError(f"{self.pending[exc.index][0]} {exc}") from None
        empty = np.flatnonzero(lengths == 0)
        if empty.size:
            raise UserError(f"{self.pending[int(empty[0])][0]} {self.empty}")
        self.done.append((ids.astype(np.int32), lengths.astype(np.int64)))
        self.pending.clear()

    def side(self) -> Side:
        """Every text added, as token sequences (raises for a bad text still pending)."""
        if self.pending:
            self._tokenize()
        ids, lengths = (np.concatenate([np.zeros(0, dtype)] + [d[k] for d in self.done])
                        for k, dtype in ((0, np.int32), (1, np.int64)))
        return Side.from_lengths(ids, lengths)


class _TextsOf:
    """One side's texts in a chunk, tokenized together at the end, cut to the side's length."""

    def __init__(self, encoder: TextEncoder, max_len: int) -> None:
        self.encoder, self.max_len, self.texts = encoder, max_len, []

    def add(self, value: Any, line: str) -> None:
        if type(value) is not str:
            raise TypeError("not text")
        self.texts.append(value)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ids, lengths = self.encoder.encode(self.texts, self.max_len)  # UnencodableText: a ValueError
        if lengths.size and lengths.min() == 0:
            raise ValueError("text without tokens")
        return ids.astype(np.int32), lengths


class _Builder:
    """Accumulates validated records, chunk by chunk, into compact arrays."""

    def __init__(self, rules: RecordRules) -> None:
        self.rules = rules
        self.chunks: list[tuple[np.ndarray, ...]] = []  # (ids0, ids1, lengths0, lengths1, labels)

    def add_chunk(self, path: Path, chunk: list[tuple[int, str]], parts: Any = _UNPARSED) -> None:
        """Parse (unless a worker did: ``parts``) and append one chunk of lines; on any problem,
        raise naming the first bad line."""
        if parts is _UNPARSED:
            parts = self.try_parse(chunk)
        if parts is None or not self._in_range(parts):
            for number, line in chunk:  # slow path: find and describe the first bad record
                _check_record(path, number, line, self.rules)
            raise AssertionError(f"{path}: chunk failed the fast path but every record passed")
        self.chunks.append(parts)

    def try_parse(self, chunk: list[tuple[int, str]]) -> tuple[np.ndarray, ...] | None:
        """The chunk's arrays, or None if a record is bad (:meth:`add_chunk` then says which)."""
        try:
            return self._parse(chunk)
        except (ValueError, TypeError, KeyError, OverflowError, AttributeError, RecursionError):
            return None  # RecursionError: json.loads of a line nested too deeply

    def _parse(self, chunk: list[tuple[int, str]]) -> tuple[np.ndarray, ...]:
        rules = self.rules
        side0, side1 = (_IdsOf(max_len) if encoder is None else _TextsOf(encoder, max_len)
                        for encoder, max_len in zip(rules.text, rules.max_seq_lens))
        labels = array("d")
        classify = not rules.regression
        for _, line in chunk:
            rec = json.loads(line)
            side0.add(rec["in0"], line)
            side1.add(rec["in1"], line)
            label = rec["label"]
            if isinstance(label, bool) or (classify and not isinstance(label, int)):
                raise TypeError("label")
            labels.append(label)  # TypeError for non-numbers
        (ids0, lengths0), (ids1, lengths1) = side0.arrays(), side1.arrays()
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
            sides.append(Side.from_lengths(self._joined(side, np.int32), self._joined(2 + side, np.int64)))
        raw = self._joined(4, np.float64)
        labels = raw.astype(np.float32) if self.rules.regression else raw.astype(np.int64)
        return PairData(sides[0], sides[1], labels)


def show_value(value: object, limit: int = 40) -> str:
    """``value`` as JSON for a message, cut after ``limit`` characters: a record may hold a
    1000-digit number, and SageMaker keeps only 1024 characters of a FailureReason."""
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):  # nested too deeply to print
        return f"(a {type(value).__name__} nested too deeply to show)"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def json_problem(exc: ValueError) -> str:
    """What is wrong with a line that json.loads refused."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    # e.g. an integer beyond sys.get_int_max_str_digits(); the rest of the message is advice
    # for Python programmers.
    return str(exc).split(";")[0]


def parse_line(where: str, line: str) -> Any:
    """One JSON Lines line, decoded; :class:`UserError` naming ``where`` and the problem if it is not
    valid JSON (the channel and catalog readers share this wording)."""
    try:
        return json.loads(line)
    except RecursionError:
        raise UserError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise UserError(f"{where}: not valid JSON ({json_problem(exc)})") from None


# How a record's token problem is worded (the rule itself: object2vec.sequences).
RECORD_WORDING = Wording(quote="'", show_value=show_value, show_id=show_value,
                         show_list=lambda value: show_value(value, 80))


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
    rec = parse_line(where, line)
    if not isinstance(rec, dict):
        raise UserError(f"{where}: each line must be a JSON object with in0, in1 and label, "
                        f"got {type(rec).__name__}")
    for side in (0, 1):
        key = f"in{side}"
        if key not in rec:
            raise UserError(f"{where}: missing '{key}' (each record needs in0, in1 and label)")
        encoder = rules.text[side]
        if encoder is not None:
            _check_text(where, key, rec[key], encoder, rules.text_origin)
            continue
        problem = sequence_problem(key, rec[key], rules.max_seq_lens[side], rules.vocab_sizes[side])
        if problem is not None:
            text = problem.message(RECORD_WORDING)
            if isinstance(rec[key], str):
                text += (f"; this job's {key} is token ids (as in {rules.text_origin or 'its first record'}),"
                         f" and a side is text or ids for the whole job")
            raise UserError(f"{text} ({where})" if problem.place_last else f"{where}: {text}")
    if "label" not in rec:
        raise UserError(f"{where}: missing 'label'")
    label = rec["label"]
    if rules.regression:
        if not _is_regression_label(label):
            raise UserError(f"{where}: label {show_value(label)} must be a finite number for "
                            f"output_layer=mean_squared_error (at most {FLOAT32_MAX:.4g} in "
                            f"magnitude: labels are float32)")
    elif isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < rules.num_classes:
        raise UserError(f"{where}: label {show_value(label)} must be an integer class id in "
                        f"[0, {rules.num_classes - 1}] for output_layer=softmax with "
                        f"num_classes={rules.num_classes}")


def _check_text(where: str, key: str, value: object, encoder: TextEncoder, origin: str) -> None:
    """Raise :class:`UserError` if a text side's value is not text, or text without a token."""
    if not isinstance(value, str):
        raise UserError(f"{where}: '{key}' holds {show_value(value)}, but this job's {key} is text (as in "
                        f"{origin}); a side is text or ids for the whole job")
    try:
        _, lengths = encoder.encode([value])
    except UnencodableText as exc:
        raise UserError(f"{where}: '{key}' {exc}") from None
    if lengths[0] == 0:
        what = "empty text" if not value.strip() else f"text without a single token ({show_value(value)})"
        raise UserError(f"{where}: '{key}' is {what}; each side needs at least one token")


def sniff_text_sides(channel_dir: Path) -> tuple[tuple[bool, bool], str]:
    """Whether ``in0`` and ``in1`` are text (a JSON string) in the channel's first record, and that
    record's place (``file, line N``). Every other record must hold the same kinds. A first record
    that cannot be read counts as ids: loading it reports the problem. In a record of documents
    (``{"document": [...]}``) both sides are text when its first sentence is."""
    for path in channel_files(channel_dir):
        for number, line in numbered_lines(path):
            place = f"{path}, line {number}"
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                return (False, False), place
            if not isinstance(rec, dict):
                return (False, False), place
            if isinstance(rec.get(DOCUMENT_KEY), list):
                text = bool(rec[DOCUMENT_KEY]) and isinstance(rec[DOCUMENT_KEY][0], str)
                return (text, text), place
            return (isinstance(rec.get("in0"), str), isinstance(rec.get("in1"), str)), place
    return (False, False), ""


def channel_texts(channel_dir: Path, sides: tuple[int, ...]) -> Iterator[str]:
    """The text of ``sides`` (0, 1 or both) of every record of a channel, streamed (for training a
    tokenizer): every sentence of a document record, which feeds both sides. Records that cannot
    be read are skipped: loading the channel reports them."""
    keys = [f"in{side}" for side in sides]
    for path in channel_files(channel_dir):
        for _, line in numbered_lines(path):
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(rec, dict) and isinstance(rec.get(DOCUMENT_KEY), list):
                yield from (s for s in rec[DOCUMENT_KEY] if isinstance(s, str))
            elif isinstance(rec, dict):
                yield from (rec[k] for k in keys if isinstance(rec.get(k), str))


def _chunks(files: list[Path]) -> Iterator[tuple[Path, list[tuple[int, str]]]]:
    """(file, up to CHUNK_LINES (line number, text) pairs), file after file."""
    for path in files:
        chunk: list[tuple[int, str]] = []
        for item in numbered_lines(path):
            chunk.append(item)
            if len(chunk) == CHUNK_LINES:
                yield path, chunk
                chunk = []
        if chunk:
            yield path, chunk


_worker_builder: _Builder | None = None  # in a worker process: its own tokenizers and word caches


def _start_worker(rules: RecordRules) -> None:
    global _worker_builder
    # the worker is the unit of parallelism: no tokenizer thread pool inside a forked process
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_builder = _Builder(rules)


def _parse_in_worker(chunk: list[tuple[int, str]]) -> tuple[np.ndarray, ...] | None:
    assert _worker_builder is not None
    return _worker_builder.try_parse(chunk)


def _parse_in_workers(builder: _Builder, chunks: Iterator[tuple[Path, list[tuple[int, str]]]],
                      workers: int) -> None:
    """Parse and tokenize chunks in ``workers`` processes, appending them in file order.

    Why processes: tokenizing is pure-Python work per word (the word cache of
    :meth:`object2vec.text.TextEncoder.encode`), so one process loads 1,000,000 text pairs in
    several times the time of the same pairs as ids; this spreads it over the process's share of
    the host's cores. Each worker holds its own copy of the tokenizers and word caches; at most
    ``2 * workers`` chunks are in flight, so memory stays a few chunks above the loaded arrays. A
    chunk with a bad record comes back as None and the slow path here names the line.
    """
    pending: deque = deque()
    # fork, not spawn: a spawned worker would import the main program (container/train imports
    # torch: seconds and hundreds of MB per worker). The workers touch no torch, CUDA or collective
    # state the parent's threads hold; they parse, tokenize and return numpy arrays.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(builder.rules,)) as pool:
        for path, chunk in chunks:
            pending.append((path, chunk, pool.submit(_parse_in_worker, chunk)))
            if len(pending) >= 2 * workers:
                path, chunk, parsed = pending.popleft()
                builder.add_chunk(path, chunk, parsed.result())
        while pending:
            path, chunk, parsed = pending.popleft()
            builder.add_chunk(path, chunk, parsed.result())


def load_channel(channel_dir: Path, rules: RecordRules, workers: int = 1) -> PairData:
    """Read every file of a channel directory (plain or ``.gz``) into one :class:`PairData`.

    Sequences longer than the side's ``max_seq_len`` are truncated. ``workers`` > 1 tokenizes text
    sides in that many processes (for channels of at least :data:`PARALLEL_MIN_BYTES`).

    Raises:
        UserError: the channel is empty, or a record is invalid (the message names file and line).
    """
    files = channel_files(channel_dir)
    if not files:
        raise UserError(f"channel {channel_dir.name!r} has no files in {channel_dir}")
    builder = _Builder(rules)
    chunks = _chunks(files)
    size = sum(path.stat().st_size for path in files)
    if workers > 1 and any(e is not None for e in rules.text) and size >= PARALLEL_MIN_BYTES:
        _parse_in_workers(builder, chunks, workers)
    else:
        for path, chunk in chunks:
            builder.add_chunk(path, chunk)
    data = builder.finish()
    if len(data) == 0:
        raise UserError(f"channel {channel_dir.name!r} has no records in {channel_dir}")
    return data
