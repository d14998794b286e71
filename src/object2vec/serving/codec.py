"""The wire format of ``/invocations``: content types, Accept negotiation, request decoding and
response encoding. No model here: :mod:`object2vec.serving.predictor` takes the decoded instances.

Requests (``Content-Type``; a missing one is read as ``application/json``):

* ``application/json`` -- ``{"instances": [instance, ...]}`` or a bare ``[instance, ...]``;
* ``application/jsonlines`` (aliases :data:`JSONLINES_ALIASES`) -- one instance per line; blank
  lines are skipped and errors name the line;
* ``application/octet-stream`` -- read as JSON (never sniffed for JSON Lines), answered as JSON: the
  type SageMaker Python SDK v2's default ``Predictor`` and many boto3 callers send.

JSON values nested more than :data:`MAX_NESTING` levels, and integers longer than Python reads
(4300 digits), are 400s like any other invalid JSON.

The parameter ``infer_max_seqlens=<enc0>,<enc1>`` (two integers in 1..5000) truncates the inputs of
each encoder. Responses are ``{"predictions": [prediction, ...]}`` or one prediction per line (no
trailing newline: batch transform's ``AssembleWith=Line`` adds it), chosen by ``Accept``; without
one (or with ``*/*``) the response takes the request's type.

Floats are written with 9 significant digits, enough to read back every float32 exactly.

Every problem raises a :class:`RequestError` carrying its HTTP status (400, 406, 408, 413 or 415).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from object2vec.errors import UserError

JSON = "application/json"
JSONLINES = "application/jsonlines"
JSON_ALIASES = (JSON, "text/json")
JSONLINES_ALIASES = (JSONLINES, "application/jsonl", "application/x-jsonlines",
                     "application/x-jsonl", "application/json-lines", "application/x-ndjson",
                     "application/ndjson")
# Every media type of a response (lower case) -> the format it names.
MEDIA_TYPES: dict[str, str] = {**{m: JSON for m in JSON_ALIASES},
                               **{m: JSONLINES for m in JSONLINES_ALIASES}}
OCTET_STREAM = "application/octet-stream"
# Request types that say nothing about the body, read as JSON and answered as JSON (not echoed:
# an "application/octet-stream" answer would hide that it is JSON). JSON Lines must say so.
READ_AS_JSON = (OCTET_STREAM,)
# Deepest nesting of arrays and objects read: a request is 4 levels deep ({"instances": [{"in0":
# [...]}]}); far deeper values are either attacks or bugs, and Python's json (a recursive parser)
# fails near 1000 levels, and json.dumps of an error message could fail on less.
MAX_NESTING = 100
WILDCARDS = ("*/*", "application/*")
MAX_SEQLENS_PARAM = "infer_max_seqlens"
MAX_SEQLEN_RANGE = (1, 5000)
SUPPORTED = f"{JSON} or {JSONLINES} (or one of {', '.join(JSONLINES_ALIASES[1:])})"


class RequestError(UserError):
    """A request the server cannot answer; ``status`` is the HTTP status to reply with."""

    status = 400


class BadRequest(RequestError):
    """Malformed body or invalid values (400)."""

    status = 400


class NotAcceptable(RequestError):
    """No supported type in ``Accept`` (406)."""

    status = 406


class RequestTimeout(RequestError):
    """The client stopped sending its request (408)."""

    status = 408


class PayloadTooLarge(RequestError):
    """Body larger than ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (413)."""

    status = 413


class UnsupportedMediaType(RequestError):
    """``Content-Type`` not JSON or JSON Lines (415)."""

    status = 415


@dataclass(frozen=True)
class RequestFormat:
    """What ``Content-Type`` says: the body's format and the optional truncation lengths."""

    mime: str  # JSON or JSONLINES
    media_type: str  # answered without Accept: as sent (lower case, no parameters), or JSON
    max_seqlens: tuple[int, int] | None = None  # (enc0, enc1)


@dataclass(frozen=True)
class ResponseFormat:
    """The negotiated response: the format and the ``Content-Type`` header to send."""

    mime: str  # JSON or JSONLINES
    content_type: str


@dataclass(frozen=True)
class Decoded:
    """Instances in request order; for JSON Lines, each instance's 1-based line number."""

    instances: list[Any]
    lines: list[int] | None = None

    def where(self, index: int) -> str:
        """``"instance 3"`` or ``"instance 3 at line 5"``, for error messages."""
        line = f" at line {self.lines[index]}" if self.lines is not None else ""
        return f"instance {index}{line}"


# --------------------------------------------------------------------------------------------------
# Headers


def _split_params(header: str) -> tuple[str, dict[str, str]]:
    """``'Application/JSON; a=1; b="2,3"'`` -> ``("application/json", {"a": "1", "b": "2,3"})``."""
    media, *parts = header.split(";")
    params = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if name.strip():
            params[name.strip().lower()] = value.strip().strip('"') if sep else ""
    return media.strip().lower(), params


def parse_max_seqlens(value: str) -> tuple[int, int]:
    """``"10,20"`` -> ``(10, 20)``: the enc0 and enc1 truncation lengths.

    Raises:
        BadRequest: not two comma-separated integers in 1..5000.
    """
    low, high = MAX_SEQLEN_RANGE
    parts = [p.strip() for p in value.split(",")]
    try:
        lengths = tuple(int(p) for p in parts)
    except ValueError:
        lengths = ()
    if len(lengths) != 2 or not all(low <= n <= high for n in lengths):
        raise BadRequest(f"{MAX_SEQLENS_PARAM}={value!r} is invalid: expected two integers in "
                         f"{low}..{high}, the enc0 and enc1 lengths, e.g. "
                         f"{MAX_SEQLENS_PARAM}=50,50")
    return lengths[0], lengths[1]


def parse_content_type(header: str | None) -> RequestFormat:
    """Read the request's ``Content-Type`` (missing or empty means ``application/json``).

    Raises:
        UnsupportedMediaType: a type other than JSON or JSON Lines, or a charset other than UTF-8.
        BadRequest: an invalid ``infer_max_seqlens`` parameter.
    """
    media, params = _split_params(header or JSON)
    media = media or JSON
    if media in READ_AS_JSON:
        media = JSON
    if media not in MEDIA_TYPES:
        raise UnsupportedMediaType(f"unsupported Content-Type {media!r}: send {SUPPORTED}")
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise UnsupportedMediaType(f"unsupported charset {charset!r} in Content-Type: send UTF-8")
    seqlens = params.get(MAX_SEQLENS_PARAM)
    return RequestFormat(MEDIA_TYPES[media], media,
                         None if seqlens is None else parse_max_seqlens(seqlens))


def _accept_entries(header: str) -> list[str]:
    """Media types of an ``Accept`` header, best first (by ``q``; ties keep their order)."""
    entries = []
    for position, item in enumerate(header.split(",")):
        media, params = _split_params(item)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if media and quality > 0:
            entries.append((-quality, position, media))
    return [media for _, _, media in sorted(entries)]


def negotiate_accept(header: str | None, request: RequestFormat) -> ResponseFormat:
    """Choose the response format: the first supported entry of ``Accept``; the request's own type
    when ``Accept`` is missing, empty, ``*/*`` or ``application/*``.

    Raises:
        NotAcceptable: no entry of ``Accept`` is supported.
    """
    if not header or not header.strip():
        return ResponseFormat(request.mime, request.media_type)
    for media in _accept_entries(header):
        if media in WILDCARDS:
            return ResponseFormat(request.mime, request.media_type)
        if media in MEDIA_TYPES:
            return ResponseFormat(MEDIA_TYPES[media], media)
    raise NotAcceptable(f"unsupported Accept {header.strip()!r}: accept {SUPPORTED}")


# --------------------------------------------------------------------------------------------------
# Decoding


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not UTF-8 text (byte {exc.start})") from None
    return text[1:] if text.startswith("\ufeff") else text  # a byte-order mark is allowed


def _kind(value: Any) -> str:
    """JSON's name for the type of a decoded value, for messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


_CONTAINERS = frozenset((list, dict))


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep.

    Breadth-first, without recursion (the point is to refuse values too deep to recurse on), and
    each container's scalars are skipped at C speed: the long id lists cost little.
    """
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(limit):
        if not level:
            return False
        children: list[Any] = []
        for node in level:
            items = node.values() if type(node) is dict else node
            if not _CONTAINERS.isdisjoint(map(type, items)):
                children.extend(item for item in items if type(item) in _CONTAINERS)
        level = children
    return bool(level)


def _too_deep(what: str) -> BadRequest:
    return BadRequest(f"{what} is nested too deeply: more than {MAX_NESTING} levels of arrays and "
                      "objects")


def _parse(decode: Callable[[str], Any], text: str, what: str) -> Any:
    """``decode(text)``, with what Python's json refuses beyond the JSON grammar as a 400 naming
    ``what`` (``"request body"``, ``"line 3"``). A JSONDecodeError is left to the caller."""
    try:
        return decode(text)
    except RecursionError:  # the C parser recurses once per level: fails near 1000
        raise _too_deep(what) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # JSONDecodeError's base: int() of a literal over Python's limit
        problem = str(exc)
        if "integer string conversion" in problem:
            problem = f"an integer has more than {sys.get_int_max_str_digits()} digits"
        raise BadRequest(f"{what} is not valid JSON: {problem}") from None


def decode_json(body: bytes) -> Decoded:
    """``{"instances": [...]}`` or ``[...]`` -> the instances."""
    text = _text(body)
    if not text.strip():
        raise BadRequest('request body is empty: send {"instances": [{"in0": [...], '
                         '"in1": [...]}]}')
    try:
        data = _parse(json.loads, text, "request body")
    except json.JSONDecodeError as exc:
        hint = (f"; for one instance per line send Content-Type: {JSONLINES}"
                if exc.msg == "Extra data" else "")
        raise BadRequest(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}{hint}") from None
    if _nesting_exceeds(data, MAX_NESTING):
        raise _too_deep("request body")
    if isinstance(data, dict):
        if "instances" not in data:
            keys = ", ".join(json.dumps(k) for k in list(data)[:5])
            raise BadRequest('JSON body must be {"instances": [...]} or a list of instances; got '
                             f"an object with keys {keys or '(none)'}")
        data = data["instances"]
        if not isinstance(data, list):
            raise BadRequest(f"\"instances\" must be an array of instances, got {_kind(data)}")
    elif not isinstance(data, list):
        raise BadRequest('JSON body must be {"instances": [...]} or a list of instances, got '
                         f"{_kind(data)}")
    if not data:
        raise BadRequest("the request holds no instances")
    return Decoded(data)


def decode_jsonlines(body: bytes) -> Decoded:
    """One instance per line -> the instances and their line numbers (blank lines skipped)."""
    instances, lines = [], []
    decode = json.JSONDecoder().decode
    for number, line in enumerate(_text(body).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            instances.append(_parse(decode, line, f"line {number}"))
        except json.JSONDecodeError as exc:
            raise BadRequest(f"line {number} is not valid JSON: {exc.msg} at column "
                             f"{exc.colno}") from None
        lines.append(number)
    if not instances:
        raise BadRequest("the request holds no instances (every line is blank)")
    if _nesting_exceeds(instances, MAX_NESTING + 1):  # all lines at once: one pass, usually
        first = next(i for i, value in enumerate(instances)
                     if _nesting_exceeds(value, MAX_NESTING))
        raise _too_deep(f"line {lines[first]}")
    return Decoded(instances, lines)


DECODERS: dict[str, Callable[[bytes], Decoded]] = {JSON: decode_json, JSONLINES: decode_jsonlines}


def decode(body: bytes, request: RequestFormat) -> Decoded:
    """Decode a request body of the given format.

    Raises:
        BadRequest: the body is not UTF-8, not valid JSON (Lines), or holds no instances.
    """
    return DECODERS[request.mime](body)


# --------------------------------------------------------------------------------------------------
# Float formatting: the text of Python's "%.9g" (".0" added to integral values), built with numpy
# array operations instead of one Python call per float -- a 1000 x 300 embedding response is
# 300,000 floats.

_WIDTH = 15  # widest number: "-0.000123456789" or "-1.23456789e-05"
# Rows of the per-number byte table ``src`` (rows, n) from which every number is gathered.
# _D0.._D0+8 hold the 9 digits; _X1, _X2 the exponent's two digits.
_PAD, _MINUS, _D0, _ZERO, _DOT, _EXP, _ESIGN, _X1, _X2, _COMMA, _SPACE = (
    0, 1, 2, 11, 12, 13, 14, 15, 16, 17, 18)
_SRC_ROWS = 19
_CONSTANT_ROWS = {_ZERO: "0", _DOT: ".", _EXP: "e", _COMMA: ",", _SPACE: " "}
_POSITIONAL_EXPONENTS = range(-4, 9)  # like %.9g: positional for 1e-4 <= |x| < 1e9
_POW10_BIAS = 64
_POW10 = 10.0 ** np.arange(-_POW10_BIAS, _POW10_BIAS + 1, dtype=np.float64)
# ASCII digits of 0..999 written with 3 digits, (3, 1000); and the trailing zeros of each (3 for 0).
_DIGITS3 = np.ascontiguousarray(
    np.array([[ord(c) for c in f"{i:03d}"] for i in range(1000)], dtype=np.uint8).T)
_TRAILING_ZEROS3 = np.array([3] + [len(str(i)) - len(str(i).rstrip("0")) for i in range(1, 1000)],
                            dtype=np.int64)
VECTORIZE_MIN_FLOATS = 128  # below this many floats, plain Python is faster
FORMAT_CHUNK_FLOATS = 8192  # floats formatted per numpy pass: keeps the temporaries in cache


def _patterns() -> np.ndarray:
    """(n_patterns, _WIDTH + 2) rows of ``src`` making each layout of a number, then ", ".

    Pattern ``(e + 4) * 9 + k - 1``: positional, decimal exponent ``e``, ``k`` significant digits;
    then 9 scientific patterns by ``k``; the last is zero. Unused slots read ``_PAD`` (byte 0),
    dropped at the end.
    """
    rows = []
    for e in _POSITIONAL_EXPONENTS:
        for k in range(1, 10):
            if e >= 0:  # "123.45": digits beyond k are zeros, so read d[j] directly
                row = [_MINUS] + [_D0 + j for j in range(e + 1)] + [_DOT]
                row += [_D0 + j for j in range(e + 1, k)] or [_ZERO]
            else:  # "0.00012345"
                row = [_MINUS, _ZERO, _DOT] + [_ZERO] * (-e - 1) + [_D0 + j for j in range(k)]
            rows.append(row)
    for k in range(1, 10):  # "1.2345e-05"
        fraction = [_DOT] + [_D0 + j for j in range(1, k)] if k > 1 else []
        rows.append([_MINUS, _D0] + fraction + [_EXP, _ESIGN, _X1, _X2])
    rows.append([_MINUS, _ZERO, _DOT, _ZERO])
    table = np.full((len(rows), _WIDTH + 2), _PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    table[:, _WIDTH:] = [_COMMA, _SPACE]
    return table


_PATTERNS = _patterns()
_SCIENTIFIC_BASE = len(_POSITIONAL_EXPONENTS) * 9
_ZERO_PATTERN = _SCIENTIFIC_BASE + 9


def format_float(value: float) -> str:
    """One float as this module writes it (non-finite values as Python's ``json`` does)."""
    if not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    text = "%.9g" % value
    return text if "." in text or "e" in text else text + ".0"


def format_floats(values: np.ndarray) -> np.ndarray:
    """Finite float32 values ``(n,)`` -> ``(n, 17)`` uint8: each number left-aligned, then ``", "``,
    padded with byte 0. Same text as :func:`format_float`."""
    x = np.ascontiguousarray(values, dtype=np.float32).ravel()
    n = x.shape[0]
    a = np.abs(x).astype(np.float64)
    zero = a == 0
    a[zero] = 1.0
    # 9 significant digits m in [1e8, 1e9) and the decimal exponent e: |x| ~= m * 10**(e - 8).
    e = np.floor(np.log10(a)).astype(np.int64)
    m = np.rint(a * _POW10[_POW10_BIAS + 8 - e]).astype(np.int32)  # < 2**31
    over, under = m >= 1_000_000_000, m < 100_000_000  # log10 off by one, or rounding carried
    if over.any() or under.any():
        e += over.astype(np.int64) - under
        m = np.rint(a * _POW10[_POW10_BIAS + 8 - e]).astype(np.int32)
    # Three digits each; int32 multiply-subtract is several times faster than int64 // and %.
    high = m // 1_000_000
    rest = m - high * 1_000_000
    mid = rest // 1000
    groups = (high, mid, rest - mid * 1000)
    src = np.empty((_SRC_ROWS, n), dtype=np.uint8)  # (rows, n): one byte row per role
    src[_PAD] = 0
    np.multiply(np.signbit(x), ord("-"), out=src[_MINUS], casting="unsafe")
    for g, group in enumerate(groups):
        for j in range(3):
            np.take(_DIGITS3[j], group, out=src[_D0 + 3 * g + j])
    for row, char in _CONSTANT_ROWS.items():
        src[row] = ord(char)
    src[_ESIGN] = np.where(e < 0, ord("-"), ord("+"))
    np.add(np.abs(e) // 10, ord("0"), out=src[_X1], casting="unsafe")
    np.add(np.abs(e) % 10, ord("0"), out=src[_X2], casting="unsafe")
    tz = np.where(groups[2] != 0, _TRAILING_ZEROS3[groups[2]],
                  np.where(groups[1] != 0, 3 + _TRAILING_ZEROS3[groups[1]],
                           6 + _TRAILING_ZEROS3[groups[0]]))
    significant = 9 - tz  # (n,) in 1..9
    positional = (e >= _POSITIONAL_EXPONENTS.start) & (e < _POSITIONAL_EXPONENTS.stop)
    first = np.where(positional, (e - _POSITIONAL_EXPONENTS.start) * 9, _SCIENTIFIC_BASE)
    pattern = first + significant - 1
    pattern[zero] = _ZERO_PATTERN
    index = np.take(_PATTERNS * n, pattern, axis=0)  # (n, 17): flat positions in src
    index += np.arange(n)[:, None]
    return np.take(src.ravel(), index)


def _format_block_numpy(key: str, rows: np.ndarray, sep: bytes) -> bytes:
    """``rows (R, D)`` finite float32 -> ``{"key": [...]}`` R times, each followed by ``sep``.

    Works through a few thousand floats at a time: the temporaries then stay in the CPU cache
    instead of costing fresh pages (a whole 1000 x 300 block would need ~40 MB of gather indices).
    """
    count, dim = rows.shape
    prefix = f"{{{json.dumps(key)}: [".encode()
    suffix = b"]}" + sep
    field = _WIDTH + 2
    body_end = len(prefix) + dim * field - 2  # the last number's ", " becomes the suffix
    step = max(1, FORMAT_CHUNK_FLOATS // dim)
    buf = np.empty((min(step, count), body_end + len(suffix)), dtype=np.uint8)  # reused per chunk
    buf[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    parts = []
    for start in range(0, count, step):
        chunk = rows[start: start + step]
        out = buf[: len(chunk)]
        numbers = format_floats(chunk).reshape(len(chunk), dim * field)
        out[:, len(prefix): len(prefix) + dim * field] = numbers
        out[:, body_end:] = np.frombuffer(suffix, dtype=np.uint8)
        flat = out.ravel()
        parts.append(flat[flat != 0].tobytes())  # drop the padding bytes
    return b"".join(parts)


def _format_block_python(key: str, rows: np.ndarray, sep: bytes) -> bytes:
    head = f"{{{json.dumps(key)}: ["
    tail = "]}" + sep.decode()
    text = "".join(head + ", ".join(map(format_float, row)) + tail for row in rows.tolist())
    return text.encode()


def _format_block(key: str, rows: np.ndarray, sep: bytes) -> bytes:
    if rows.size >= VECTORIZE_MIN_FLOATS and rows.shape[1] > 0 and np.isfinite(rows).all():
        return _format_block_numpy(key, rows, sep)
    return _format_block_python(key, rows, sep)


def _single_entry(prediction: Mapping[str, Any]) -> tuple[str, np.ndarray]:
    if len(prediction) != 1:
        raise TypeError(f"a prediction must hold one key, got {sorted(prediction)}")
    (key, value), = prediction.items()
    return key, np.asarray(value, dtype=np.float32).reshape(-1)


def encode_predictions(predictions: Sequence[Mapping[str, Any]], sep: bytes) -> bytes:
    """Each prediction ``{key: float32 array (D,)}`` as a JSON object, joined by ``sep``.

    Consecutive predictions with the same key and length are formatted as one matrix.
    """
    entries = [_single_entry(p) for p in predictions]
    blocks, start = [], 0
    for stop in range(1, len(entries) + 1):
        if (stop == len(entries) or entries[stop][0] != entries[start][0]
                or entries[stop][1].shape != entries[start][1].shape):
            key = entries[start][0]
            rows = np.stack([value for _, value in entries[start:stop]])  # (R, D)
            blocks.append(_format_block(key, rows, sep))
            start = stop
    return b"".join(blocks)[: -len(sep) or None]


def encode_json(predictions: Sequence[Mapping[str, Any]]) -> bytes:
    """``{"predictions": [...]}``."""
    return b'{"predictions": [' + encode_predictions(predictions, b", ") + b"]}"


def encode_jsonlines(predictions: Sequence[Mapping[str, Any]]) -> bytes:
    """One prediction per line, lines joined by ``\\n`` (no trailing newline)."""
    return encode_predictions(predictions, b"\n")


ENCODERS: dict[str, Callable[[Sequence[Mapping[str, Any]]], bytes]] = {
    JSON: encode_json, JSONLINES: encode_jsonlines}


def encode(predictions: Sequence[Mapping[str, Any]], response: ResponseFormat) -> bytes:
    """Encode predictions (each ``{"scores" or "embeddings": float32 array}``) as ``response``."""
    return ENCODERS[response.mime](predictions)
