"""The gunicorn worker of ``container/serve``: gunicorn's ``gthread`` worker with two changes.

* Reading a request is bounded in time (:class:`TimedReader`). gthread hands a connection to a
  thread as soon as its first bytes arrive, and that thread then blocks until the request line,
  headers and body are in: a client that stops sending would hold the thread for ever, and a few
  such clients would stop the worker. Each wait for data now lasts at most
  ``MODEL_SERVER_READ_TIMEOUT`` seconds, and the whole request must arrive within an overall limit
  (see :mod:`~object2vec.serving.environment`). A stall in the body is answered 408 by the app; a
  stall before the headers are complete closes the connection (there is no request to answer).
* Requests gunicorn refuses before the app sees them (a garbage request line, a bad
  ``Content-Length``, headers too large) are answered with the JSON error body every other error
  has, ``{"error": "<message>"}``, instead of gunicorn's HTML page; and, like every answer to
  something a client sent, with a 4xx status (gunicorn answers 501 to an unknown transfer coding).

And one fix: gunicorn drops the app's ``Connection`` header and decides keep-alive itself, so an app
answer with ``Connection: close`` (a 408, a 413, a body that cannot be read) would still leave the
connection open, its unread rest to be parsed as the next request. Such an answer now closes it.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from typing import Any

from gunicorn import http, util
from gunicorn.http.errors import ForbiddenProxyRequest, LimitRequestHeaders, NoMoreData, ParseException
from gunicorn.workers.gthread import ThreadWorker

log = logging.getLogger(__name__)


class RequestReadTimeout(NoMoreData, TimeoutError):
    """The client sent nothing for the idle limit, or not its whole request within the overall one.

    A :class:`~gunicorn.http.errors.NoMoreData`, so that gthread closes the connection quietly when
    it happens before the app runs; a :class:`TimeoutError`, so that the app, reading the body,
    answers 408.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TimedReader:
    """What gunicorn's request parser reads a connection through: ``recv`` with time limits.

    Args:
        sock: the client connection (left blocking, without a timeout, between reads: gunicorn
            writes the response through it and switches it to non-blocking while it waits idle).
        idle_s: the longest wait for more data.
        total_s: the longest time from :meth:`restart` (a new request) to the last byte read.
        client: the peer address, for the log.
    """

    def __init__(self, sock: socket.socket, idle_s: float, total_s: float,
                 client: Any = None) -> None:
        self.sock, self.idle_s, self.total_s, self.client = sock, idle_s, total_s, client
        self.deadline = math.inf

    def restart(self) -> None:
        """A new request begins: its overall limit counts from now."""
        self.deadline = time.monotonic() + self.total_s

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes (``b""`` when the client closed).

        Raises:
            RequestReadTimeout: no data within the idle limit, or the overall limit passed.
        """
        wait = min(self.idle_s, self.deadline - time.monotonic())
        if wait <= 0:
            raise self._timeout(f"request not read in {self.total_s:g} s")
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(size)
        except TimeoutError:  # socket.timeout
            if wait < self.idle_s:
                raise self._timeout(f"request not read in {self.total_s:g} s") from None
            raise self._timeout(f"no data for {self.idle_s:g} s") from None
        finally:
            self.sock.settimeout(None)

    def _timeout(self, message: str) -> RequestReadTimeout:
        # Logged here because gthread closes a connection stalled before its headers silently.
        log.info("client %s stalled: %s", _host(self.client), message)
        return RequestReadTimeout(message)


def rejection_status(exc: BaseException) -> tuple[int, str]:
    """The status and reason for an error gunicorn raised before the app ran: gunicorn's own choice
    (``Worker.handle_error``), except that nothing a client sends is answered with a 5xx."""
    if isinstance(exc, LimitRequestHeaders):
        return 431, "Request Header Fields Too Large"
    if isinstance(exc, ForbiddenProxyRequest):
        return 403, "Forbidden"
    if isinstance(exc, ParseException):  # request line, method, version, headers, framing
        return 400, "Bad Request"
    return 500, "Internal Server Error"


def json_error_response(status: int, reason: str, message: str) -> bytes:
    """A complete ``Connection: close`` response with the body ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()  # ASCII: json escapes the rest
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


class JsonThreadWorker(ThreadWorker):
    """gthread with time-limited request reads and JSON rejections (see the module docstring).

    Use :meth:`configured` to set the limits: gunicorn builds workers from a class.
    """

    read_idle_s: float = 30.0
    read_total_s: float = 414.0

    @classmethod
    def configured(cls, idle_s: float, total_s: float) -> type[JsonThreadWorker]:
        """A subclass with these read limits, for gunicorn's ``worker_class`` setting."""
        return type(cls.__name__, (cls,), {"read_idle_s": idle_s, "read_total_s": total_s})

    def load_wsgi(self) -> None:
        """Load the app, wrapped so that its ``Connection: close`` closes the connection."""
        super().load_wsgi()
        app, self._current = self.wsgi, threading.local()

        def wsgi(environ: dict, start_response: Any) -> Any:
            def start(status: str, headers: list, exc_info: Any = None) -> Any:
                if any(name.lower() == "connection" and value.lower() == "close"
                       for name, value in headers):
                    self._current.req.force_close()  # read by gunicorn's keep-alive decision
                return start_response(status, headers, exc_info)

            return app(environ, start)

        self.wsgi = wsgi

    def handle_request(self, req: Any, conn: Any) -> bool:
        """gthread's, with the request remembered for the app wrapper (one per thread)."""
        self._current.req = req
        return super().handle_request(req, conn)

    def enqueue_req(self, conn: Any) -> None:
        """Give a new connection a parser that reads through a :class:`TimedReader` (gthread
        creates the parser in ``conn.init()`` only when there is none)."""
        if conn.parser is None and not self.cfg.is_ssl:  # TLS is SageMaker's, never ours
            conn.reader = TimedReader(conn.sock, self.read_idle_s, self.read_total_s, conn.client)
            conn.parser = http.RequestParser(self.cfg, conn.reader, conn.client)
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> tuple[bool, Any]:
        """Serve one request of ``conn``, its read limits counting from now (not from when it
        was queued for a thread)."""
        reader = getattr(conn, "reader", None)
        if reader is not None:
            reader.restart()
        return super().handle(conn)

    def handle_error(self, req: Any, client: socket.socket, addr: Any,
                     exc: BaseException) -> None:
        """Answer a request gunicorn refused (or failed on) with a JSON error, then it closes."""
        status, reason = rejection_status(exc)
        if status >= 500:
            log.exception("error handling request %s", getattr(req, "uri", "(no URI read)"))
            message = "internal server error; see the endpoint's log"
        else:
            log.warning("invalid request from %s: %s", _host(addr), exc)
            message = f"{reason}: {exc}"
        try:
            # Non-blocking, as gunicorn does: a client that reads nothing cannot hold the thread.
            util.write_nonblock(client, json_error_response(status, reason, message))
        except Exception:  # the client is gone: nothing to tell it
            log.debug("could not send the error response", exc_info=True)


def _host(addr: Any) -> str:
    """The IP of a peer address (``("10.0.0.1", 5000)``), or ``"?"``."""
    return str(addr[0]) if isinstance(addr, (tuple, list)) and addr else "?"
