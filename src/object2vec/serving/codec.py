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
one (or with ``*/*``) the response takes the request's type. Headers are read with werkzeug's
parsers.

Responses are written by ``orjson``, compact (no spaces); each float32 as the shortest text that
reads back as the same float32; NaN and infinities as Python's ``json`` writes them.

Every problem raises a :class:`RequestError` carrying its HTTP status (400, 406, 408, 413 or 415).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from werkzeug.http import parse_accept_header, parse_options_header

from object2vec.errors import UserError

if TYPE_CHECKING:
    from object2vec.serving.predictor import Predictions

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
    """A request the server cannot answer; ``status`` (:class:`UserError`'s, 400 unless a subclass
    says otherwise) is the HTTP status to reply with."""


class BadRequest(RequestError):
    """Malformed body or invalid values (400)."""


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


# infer_max_seqlens=50,50, as SageMaker documents it, is no valid RFC 9110 parameter (a comma ends
# a token): werkzeug reads it as "50". This one parameter is read from the header as written.
_MAX_SEQLENS_VALUE = re.compile(rf";\s*{MAX_SEQLENS_PARAM}\s*(?:=([^;]*))?(?=;|$)", re.IGNORECASE)


def _max_seqlens_value(header: str) -> str | None:
    """The raw ``infer_max_seqlens`` value of a ``Content-Type`` (the last one), unquoted; ``""``
    for the name alone."""
    values = _MAX_SEQLENS_VALUE.findall(header)
    return values[-1].strip().strip('"') if values else None


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
    media, params = parse_options_header(header or JSON)
    media = media.lower() or JSON
    if media in READ_AS_JSON:
        media = JSON
    if media not in MEDIA_TYPES:
        raise UnsupportedMediaType(f"unsupported Content-Type {media!r}: send {SUPPORTED}")
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise UnsupportedMediaType(f"unsupported charset {charset!r} in Content-Type: send UTF-8")
    seqlens = _max_seqlens_value(header or "")
    return RequestFormat(MEDIA_TYPES[media], media,
                         None if seqlens is None else parse_max_seqlens(seqlens))


def _accept_entries(header: str) -> list[str]:
    """Media types of an ``Accept`` header (lower case, without parameters), best first: by ``q``,
    ties in their order (werkzeug's ``Accept``); ``q=0`` means "not this one"."""
    return [parse_options_header(value)[0].lower()
            for value, quality in parse_accept_header(header) if quality > 0]


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
# Encoding

_ORJSON = orjson.OPT_SERIALIZE_NUMPY  # float32 arrays: the shortest text that reads back exactly
# orjson writes NaN and infinities as null; Python's json (and so this server, always) writes them
# as below. A row holding one is written with these strings in place (the response holds no other
# strings), then the quoted strings are replaced by the bare words.
_NAN, _INFINITY, _MINUS_INFINITY = "\u0001NaN", "\u0001Infinity", "\u0001-Infinity"
_NON_FINITE = {_NAN: b"NaN", _INFINITY: b"Infinity", _MINUS_INFINITY: b"-Infinity"}


def _non_finite_row(row: np.ndarray) -> list[Any]:
    """A float32 row holding NaN or an infinity -> its values, non-finite ones as placeholders."""
    return [value if np.isfinite(value) else _NAN if np.isnan(value) else
            _INFINITY if value > 0 else _MINUS_INFINITY for value in row]


def _in_order(groups: Sequence[Predictions]) -> tuple[list[dict[str, Any]], bool]:
    """``[{key: row}, ...]`` in request order, and whether any row holds a non-finite value."""
    items: list[Any] = [None] * sum(len(g.positions) for g in groups)
    non_finite = False
    for group in groups:
        if group.objects is not None:  # neighbours: [{"id": ..., "score": ...}, ...] per instance
            for position, obj in zip(group.positions.tolist(), group.objects):
                items[position] = {group.key: obj}
            continue
        matrix = np.ascontiguousarray(group.matrix, dtype=np.float32)
        rows: Any = matrix
        if not np.isfinite(matrix).all():
            non_finite = True
            finite = np.isfinite(matrix).all(axis=1)
            rows = [row if ok else _non_finite_row(row) for row, ok in zip(matrix, finite)]
        for position, row in zip(group.positions.tolist(), rows):
            items[position] = {group.key: row}
    return items, non_finite


def _dumps(value: Any, non_finite: bool) -> bytes:
    text = orjson.dumps(value, option=_ORJSON)
    if non_finite:
        for placeholder, word in _NON_FINITE.items():
            text = text.replace(orjson.dumps(placeholder), word)
    return text


def encode_json(groups: Sequence[Predictions]) -> bytes:
    """``{"predictions": [...]}``, in request order."""
    items, non_finite = _in_order(groups)
    return _dumps({"predictions": items}, non_finite)


def encode_jsonlines(groups: Sequence[Predictions]) -> bytes:
    """One prediction per line, in request order, lines joined by ``\\n`` (no trailing newline)."""
    items, non_finite = _in_order(groups)
    if not items:
        return b""
    if any(group.objects is not None for group in groups):  # objects inside items: one call each
        return b"\n".join(_dumps(item, non_finite) for item in items)
    # Written as one array, then split: every item is {"key":[numbers]}, so "},{" occurs only
    # between two items (one orjson call is twice as fast as one per item).
    return _dumps(items, non_finite)[1:-1].replace(b"},{", b"}\n{")


ENCODERS: dict[str, Callable[[Sequence[Predictions]], bytes]] = {
    JSON: encode_json, JSONLINES: encode_jsonlines}


def encode(groups: Sequence[Predictions], response: ResponseFormat) -> bytes:
    """Encode the predictor's answer (one :class:`~object2vec.serving.predictor.Predictions` per
    mode: a float32 matrix and the request positions of its rows) as ``response``."""
    return ENCODERS[response.mime](groups)
