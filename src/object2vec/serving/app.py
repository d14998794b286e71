"""The Flask app: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``. Nothing else.

``/invocations`` is decode (:mod:`~object2vec.serving.codec`) -> predict
(:mod:`~object2vec.serving.predictor`) -> encode. A :class:`~object2vec.errors.UserError` becomes
its HTTP ``status`` with the body ``{"error": "<message>"}``; anything else is an internal fault:
500, traceback logged. Every error body, 404 and 405 included, is that JSON object. A body that
cannot be read -- broken chunked framing (400) or a client that stopped sending (408,
:class:`~object2vec.serving.worker.TimedReader`) -- is answered and the connection closed: the rest
of the stream cannot be trusted to start a request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask, Response, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException

from object2vec.errors import UserError
from object2vec.serving import codec

if TYPE_CHECKING:
    from object2vec.serving.predictor import Predictions

log = logging.getLogger(__name__)

DRAIN_LIMIT_BYTES = 128 * 1024 * 1024  # read away at most this much of a refused body
_CHUNK = 1 << 20
# Answers after which the connection is closed: the client may still be sending the body.
_CLOSE_STATUSES = (codec.RequestTimeout.status, codec.PayloadTooLarge.status)


class PredictorLike(Protocol):
    """What the app needs from a predictor (see :class:`object2vec.serving.predictor.Predictor`)."""

    def predict(self, instances: Sequence[Any], max_seqlens: tuple[int, int] | None = None,
                where: Callable[[int], str] | None = None) -> Sequence[Predictions]: ...


def _json_response(payload: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(payload), status=status, mimetype=codec.JSON)


def _error(message: str, status: int) -> Response:
    return _json_response({"error": message}, status)


class UnreadableBody(codec.BadRequest):
    """The body's framing is broken (chunked encoding): 400, and the connection is closed."""


def _read_chunk(size: int) -> bytes:
    """Up to ``size`` bytes of the request body; ``b""`` at its end.

    Raises:
        RequestTimeout: the client stopped sending (the server's read limits).
        UnreadableBody: gunicorn cannot parse the body (an invalid chunk size or terminator, bad
            trailers, or a connection closed inside a chunk).
    """
    try:
        return request.stream.read(size)
    except TimeoutError as exc:  # worker.RequestReadTimeout, or a plain socket timeout
        raise codec.RequestTimeout(f"timed out reading the request: {exc} "
                                   "(MODEL_SERVER_READ_TIMEOUT)") from None
    except (OSError, ParseException) as exc:  # InvalidChunkSize, ChunkMissingTerminator, ...
        raise UnreadableBody(f"cannot read the request body: {exc}") from None


def _read_at_most(limit: int) -> bytes:
    """Up to ``limit`` bytes of the request body (reads until the body ends or the limit)."""
    parts, total = [], 0
    while total < limit:
        data = _read_chunk(min(_CHUNK, limit - total))
        if not data:
            break
        parts.append(data)
        total += len(data)
    return b"".join(parts)


def _drain(limit: int) -> None:
    """Read and drop what is left of the request body (up to ``limit`` bytes): closing a socket with
    unread data makes the kernel reset the connection, and the client may lose our 413. Gives up
    quietly on a body that cannot be read: the connection is closed after the 413 anyway."""
    left = limit
    try:
        while left > 0:
            data = _read_chunk(min(_CHUNK, left))
            if not data:
                break
            left -= len(data)
    except codec.RequestError:
        pass


def _too_large(size: str, max_bytes: int) -> codec.PayloadTooLarge:
    return codec.PayloadTooLarge(f"request body of {size} is larger than the limit of {max_bytes} "
                                 f"bytes ({max_bytes // (1024 * 1024)} MB, "
                                 "SAGEMAKER_MAX_PAYLOAD_IN_MB)")


def _read_body(max_bytes: int) -> bytes:
    """The request body; refused with 413 from ``Content-Length`` alone, before reading it."""
    length = request.content_length
    if length is not None and length > max_bytes:
        _drain(min(length, DRAIN_LIMIT_BYTES))
        raise _too_large(f"{length} bytes", max_bytes)
    body = _read_at_most(max_bytes + 1)  # chunked bodies have no Content-Length
    if len(body) > max_bytes:
        _drain(DRAIN_LIMIT_BYTES)
        raise _too_large(f"more than {max_bytes} bytes", max_bytes)
    return body


def create_app(predictor: PredictorLike | Callable[[], PredictorLike], *, workers: int = 1,
               max_payload_mb: int = 6) -> Flask:
    """Build the app around a predictor (or a zero-argument factory, called now, once).

    Args:
        predictor: a loaded predictor, or a factory returning one. Called here, so a worker that
            builds the app holds the model before it answers ``/ping``.
        workers: worker processes serving the model: ``MaxConcurrentTransforms``.
        max_payload_mb: request body limit in MiB: 413 above it; ``MaxPayloadInMB``.
    """
    if not hasattr(predictor, "predict"):
        predictor = predictor()  # type: ignore[operator]
    model: PredictorLike = predictor  # type: ignore[assignment]
    max_bytes = max_payload_mb * 1024 * 1024
    execution_parameters = json.dumps({"MaxConcurrentTransforms": workers,
                                       "BatchStrategy": "MULTI_RECORD",
                                       "MaxPayloadInMB": max_payload_mb})
    app = Flask(__name__)

    @app.get("/ping")
    def ping() -> Response:
        # The model was loaded before this app existed: answering at all means ready.
        return Response(b"", status=200)

    @app.get("/execution-parameters")
    def execution_params() -> Response:
        return Response(execution_parameters, status=200, mimetype=codec.JSON)

    @app.post("/invocations")
    def invocations() -> Response:
        fmt = codec.parse_content_type(request.headers.get("Content-Type"))
        response = codec.negotiate_accept(request.headers.get("Accept"), fmt)
        decoded = codec.decode(_read_body(max_bytes), fmt)
        predictions = model.predict(decoded.instances, fmt.max_seqlens, where=decoded.where)
        body = codec.encode(predictions, response)
        if len(body) > max_bytes and any(p.objects is not None for p in predictions):
            # neighbours multiply a response by top_k: keep it within what SageMaker passes on
            raise codec.PayloadTooLarge(
                f"the response would be {len(body) / 2**20:.1f} MB, over the {max_payload_mb} MB "
                f"payload limit (SAGEMAKER_MAX_PAYLOAD_IN_MB): ask for fewer neighbours (top_k) or "
                f"send fewer instances per request")
        return Response(body, status=200, content_type=response.content_type)

    @app.errorhandler(UserError)
    def user_error(exc: UserError) -> Response:
        status = exc.status
        log.info("%s %s -> %d: %s", request.method, request.path, status, exc)
        resp = _error(str(exc), status)
        if status in _CLOSE_STATUSES or isinstance(exc, UnreadableBody):
            resp.headers["Connection"] = "close"
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _error(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("internal error while serving %s %s", request.method, request.path)
        return _error(f"internal server error ({type(exc).__name__}); see the endpoint's log", 500)

    return app
