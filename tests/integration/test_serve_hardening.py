"""The real ``container/serve`` against hostile or odd clients (issue 12): octet-stream bodies, a
typo in a hint variable, numbers and nesting Python's json cannot read, broken chunked encoding,
requests gunicorn itself refuses, and uploads that stall. Every answer is JSON, none is a 5xx, no
worker dies, and the next request is served."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from test_serve import MIXED, Server, build_model, check_mixed, error, invoke, ok_json, request

pytestmark = pytest.mark.slow

READ_TIMEOUT_S = 2  # MODEL_SERVER_READ_TIMEOUT of the module's server: short, so stalls end fast
SLACK_S = 4  # scheduling noise on a busy 2-core machine
WORKERS, THREADS = 2, 4


class Served:
    """The module's server, the model it serves, and its worker PIDs at start."""

    def __init__(self, server: Server, model) -> None:
        self.server, self.model = server, model
        self.workers = worker_pids(server, expect=WORKERS)

    def check_healthy(self) -> None:
        """A good request is answered correctly, and no worker was replaced."""
        check_mixed(self.model, ok_json(invoke(self.server, MIXED)))
        assert worker_pids(self.server) == self.workers, self.server.output()[-3000:]


def worker_pids(server: Server, expect: int = 0) -> list[int]:
    """The server's worker PIDs; with ``expect``, once that many exist (/ping answers as soon as
    one worker is up, the others may still be starting)."""
    deadline = time.monotonic() + 30
    while True:
        pids = sorted(p.pid for p in psutil.Process(server.proc.pid).children())
        if len(pids) >= expect or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module: 2 workers x 4 threads, a short read timeout, and a typo in the
    INFERENCE_PREFERRED_MODE hint (which must not stop it from starting)."""
    from object2vec.artifact import load_artifact

    base = tmp_path_factory.mktemp("opt_ml")
    build_model(base)
    server = Server(base, tmp_path_factory.mktemp("cwd"), MODEL_SERVER_WORKERS=str(WORKERS),
                    MODEL_SERVER_THREADS=str(THREADS),
                    MODEL_SERVER_READ_TIMEOUT=str(READ_TIMEOUT_S),
                    INFERENCE_PREFERRED_MODE="gpu-only")
    try:
        server.wait_ready()
        yield Served(server, load_artifact(base / "model").model)
    finally:
        server.stop()


# -- raw HTTP --------------------------------------------------------------------------------------


def connect(port: int, timeout: float = 15) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out)."""
    parts = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers (lower-case names), body)`` of one raw HTTP/1.1 response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {raw[:300]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    if "content-length" in headers:
        assert len(body) == int(headers["content-length"]), raw[:300]
    return int(status_line.split()[1]), headers, body


def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes, parse it."""
    with connect(port) as sock:
        sock.sendall(data)
        return parse(read_until_closed(sock))


def json_error(result: tuple[int, dict[str, str], bytes], status: int) -> str:
    """The ``error`` of a JSON error answer with ``status``."""
    got, headers, body = result
    assert got == status, body
    assert headers["content-type"] == "application/json", (headers, body)
    return json.loads(body)["error"]


POST = "POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"


# -- 5: a typo in a hint variable ------------------------------------------------------------------


def test_unknown_preferred_mode_is_a_warning_not_a_failure(served):
    """The fixture's server started with INFERENCE_PREFERRED_MODE=gpu-only."""
    log = served.server.output()
    assert ("WARNING" in log and "INFERENCE_PREFERRED_MODE='gpu-only' is not one of "
            "classification, embedding: ignored" in log), log[-3000:]
    served.check_healthy()


# -- 4: application/octet-stream -------------------------------------------------------------------


def test_octet_stream_is_read_as_json(served):
    server = served.server
    check_mixed(served.model, ok_json(invoke(server, {"instances": MIXED},
                                             "application/octet-stream")))
    check_mixed(served.model, ok_json(invoke(server, MIXED, "application/octet-stream",
                                             accept="*/*")))
    lines = "\n".join(json.dumps(i) for i in MIXED)  # JSON Lines must say so: not sniffed
    message = error(invoke(server, lines, "application/octet-stream"), 400)
    assert "send Content-Type: application/jsonlines" in message


# -- 12 and 13: what Python's json refuses ---------------------------------------------------------


def test_integer_of_more_than_4300_digits_is_400(served):
    huge = "7" * 5000
    message = error(invoke(served.server, f'[{{"in0": [{huge}]}}]'), 400)
    assert message.startswith("request body is not valid JSON: an integer has more than 4300")
    body = f'{{"in0": [1]}}\n{{"in1": [{huge}]}}\n'
    message = error(invoke(served.server, body, "application/jsonlines"), 400)
    assert message.startswith("line 2 is not valid JSON: an integer has more than 4300 digits")
    served.check_healthy()


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_nesting_is_400(served, depth):
    nested = "[" * depth + "]" * depth
    message = error(invoke(served.server, nested), 400)
    assert message.startswith("request body is nested too deeply")
    body = '{"in0": [1]}\n{"in0": [2]}\n{"in0": [1], "label": ' + nested + "}\n"
    message = error(invoke(served.server, body, "application/jsonlines"), 400)
    assert message.startswith("line 3 is nested too deeply")
    served.check_healthy()


def test_payload_over_the_limit_is_413_and_closes_the_connection(served):
    """gunicorn ignores an app's ``Connection: close``; the worker makes it hold (the client may
    still be sending a body that will never be read)."""
    status, headers, body = invoke(served.server, b"[" + b" " * (6 * 1024 * 1024) + b"]")
    assert status == 413 and headers["connection"] == "close", (headers, body)
    served.check_healthy()


# -- 14: a broken chunked body ---------------------------------------------------------------------


@pytest.mark.parametrize("chunks, message", [
    (b"ZZ\r\n{}\r\n0\r\n\r\n", "Invalid chunk size"),
    (b"2\r\n[]XX0\r\n\r\n", "chunk"),
    (b"\r\n\r\n", "Invalid chunk size"),
])
def test_malformed_chunked_body_is_400_json(served, chunks, message):
    head = (POST + "Transfer-Encoding: chunked\r\n\r\n").encode()
    result = exchange(served.server.port, head + chunks)
    assert message in json_error(result, 400)
    assert result[1]["connection"] == "close"  # the stream is out of step: never reused
    served.check_healthy()


# -- 15: what gunicorn refuses before the app ------------------------------------------------------


@pytest.mark.parametrize("raw, status, message", [
    (POST + "Content-Length: abc\r\n\r\n", 400, "CONTENT-LENGTH"),
    (POST + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n[1]", 400, "CONTENT-LENGTH"),
    ("GET /ping HTTP/1.1\r\nHost: test\r\nX-Big: " + "a" * 10_000 + "\r\n\r\n", 431,
     "limit request headers fields size"),
    ("GET /ping HTTP/1.1\r\n" + "".join(f"X-{i}: 1\r\n" for i in range(120)) + "\r\n", 431,
     "limit request headers fields"),
    ("GET /" + "a" * 5000 + " HTTP/1.1\r\nHost: test\r\n\r\n", 400, "Request Line is too large"),
    ("\x16\x03\x01garbage\r\n\r\n", 400, "Invalid HTTP request line"),
    ("GET /ping HTTP/9.9\r\nHost: test\r\n\r\n", 400, "Invalid HTTP Version"),
    # gunicorn answers 501 (RFC 9112's advice); here no client input may look like a server fault
    (POST + "Transfer-Encoding: br\r\n\r\n", 400, "Unsupported transfer coding: 'br'"),
])
def test_gunicorn_rejections_answer_json(served, raw, status, message):
    result = exchange(served.server.port, raw.encode("latin-1"))
    assert message in json_error(result, status)
    assert result[1]["connection"] == "close"
    served.check_healthy()


# -- 16: uploads that stall ------------------------------------------------------------------------


def start_stalled_upload(port: int) -> socket.socket:
    """Headers announcing 1000 bytes, 14 bytes of body, then silence."""
    sock = connect(port, timeout=READ_TIMEOUT_S + SLACK_S + 10)
    sock.sendall((POST + "Content-Length: 1000\r\n\r\n").encode() + b'{"instances": ')
    return sock


def test_stalled_upload_is_answered_408_within_the_read_timeout(served):
    start = time.monotonic()
    with start_stalled_upload(served.server.port) as sock:
        result = parse(read_until_closed(sock))
    elapsed = time.monotonic() - start
    assert "MODEL_SERVER_READ_TIMEOUT" in json_error(result, 408)
    assert result[1]["connection"] == "close"
    assert READ_TIMEOUT_S - 0.5 < elapsed < READ_TIMEOUT_S + SLACK_S
    served.check_healthy()


def test_stalled_headers_are_closed_within_the_read_timeout(served):
    start = time.monotonic()
    with connect(served.server.port, timeout=READ_TIMEOUT_S + SLACK_S + 10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Le")
        assert read_until_closed(sock) == b""  # no complete request: nothing to answer
    assert time.monotonic() - start < READ_TIMEOUT_S + SLACK_S
    served.check_healthy()


def test_good_requests_are_served_while_stalled_uploads_are_open(served):
    """More stalled uploads than the server has threads: good requests still get answers, once the
    read timeout frees the threads (before the fix they waited forever)."""
    stalled = [start_stalled_upload(served.server.port) for _ in range(WORKERS * THREADS + 2)]
    try:
        time.sleep(0.5)  # let every stalled connection take a thread
        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: invoke(served.server, MIXED), range(4)))
        for result in results:
            check_mixed(served.model, ok_json(result))
        assert time.monotonic() - start < 2 * READ_TIMEOUT_S + SLACK_S
    finally:
        for sock in stalled:
            sock.close()
    served.check_healthy()


def test_trickled_body_is_cut_at_the_overall_limit():
    """One byte now and then resets no idle limit forever: the overall limit ends the read."""
    from object2vec.serving.worker import RequestReadTimeout, TimedReader

    server_end, client_end = socket.socketpair()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.1):
            client_end.sendall(b" ")

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    reader = TimedReader(server_end, idle_s=0.5, total_s=1.0)
    try:
        reader.restart()
        start = time.monotonic()
        with pytest.raises(RequestReadTimeout, match="in 1 s"):
            while reader.recv(8192):
                pass
        assert 0.9 < time.monotonic() - start < 3  # upper bound: slack for a busy machine
        assert server_end.gettimeout() is None  # left blocking, as gunicorn expects
        reader.restart()  # the next request on the connection gets a fresh deadline
        assert reader.recv(1) == b" "
    finally:
        stop.set()
        sender.join()
        server_end.close()
        client_end.close()


def test_idle_limit_applies_between_reads():
    from object2vec.serving.worker import RequestReadTimeout, TimedReader

    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        reader = TimedReader(server_end, idle_s=0.3, total_s=60)
        reader.restart()
        client_end.sendall(b"abc")
        assert reader.recv(10) == b"abc"
        start = time.monotonic()
        with pytest.raises(RequestReadTimeout, match="no data for 0.3 s"):
            reader.recv(10)
        assert 0.25 < time.monotonic() - start < 2


def test_workers_all_survived(served):
    served.check_healthy()
    assert len(served.workers) == WORKERS
    status, _, body = request(served.server.port, "GET", "/ping")
    assert (status, body) == (200, b"")
