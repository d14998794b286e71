"""The real ``container/serve`` over HTTP: gunicorn workers, /ping, /invocations, errors, batch
transform, worker replacement, start-up failures and SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from helpers import REPO, free_port, subprocess_env

from object2vec.artifact import load_artifact, save_artifact
from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.tokens import Tokens

pytestmark = pytest.mark.slow

SERVE = str(REPO / "container" / "serve")
HP = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "50", "enc0_max_seq_len": "10",
      "enc1_network": "pooled_embedding", "enc1_vocab_size": "30", "enc1_max_seq_len": "6",
      "enc_dim": "8", "enc0_token_embedding_dim": "8", "enc1_token_embedding_dim": "8",
      "output_layer": "softmax", "num_classes": "3"}
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


class Server:
    """A ``container/serve`` process in its own session (so teardown can stop all of it)."""

    def __init__(self, base: Path, cwd: Path, **env: str) -> None:
        self.port = free_port()
        self.log = cwd / f"serve-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [SERVE], cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=subprocess_env(base, SAGEMAKER_BIND_TO_PORT=str(self.port), **env))

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"container/serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if request(self.port, "GET", "/ping", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"/ping did not answer 200 within {START_TIMEOUT_S} s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
    """One request on a fresh connection: ``(status, headers (lower-case names), body)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def build_model(base: Path, **overrides: str) -> None:
    hp = parse_hyperparameters({**HP, **overrides})
    torch.manual_seed(0)
    save_artifact(base / "model", Object2Vec(ModelConfig.from_hyperparameters(hp)), hp)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server (2 workers) for the module, and the same model loaded here for expected values."""
    base = tmp_path_factory.mktemp("opt_ml")
    build_model(base)
    server = Server(base, tmp_path_factory.mktemp("cwd"), MODEL_SERVER_WORKERS="2")
    try:
        server.wait_ready()
        yield server, load_artifact(base / "model").model
    finally:
        server.stop()


def invoke(server: Server, body, content_type: str | None = "application/json",
           accept: str | None = None) -> tuple[int, dict, bytes]:
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    data = body if isinstance(body, bytes) else body.encode()
    return request(server.port, "POST", "/invocations", data, headers)


def ok_json(result) -> list[dict]:
    status, headers, body = result
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    return json.loads(body)["predictions"]


def ok_jsonlines(result, content_type="application/jsonlines") -> list[dict]:
    status, headers, body = result
    assert status == 200, body
    assert headers["content-type"] == content_type
    return [json.loads(line) for line in body.decode().split("\n")]


def scores(model, pairs) -> np.ndarray:
    with torch.inference_mode():
        return model.scores(Tokens.from_lists([a for a, _ in pairs]),
                            Tokens.from_lists([b for _, b in pairs])).numpy()


def encode(model, side: int, seqs) -> np.ndarray:
    with torch.inference_mode():
        return model.encode(side, Tokens.from_lists(seqs)).numpy()


def close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float32), expected, rtol=1e-5, atol=1e-7)


MIXED = [{"in0": [1, 2], "in1": [3]}, {"in0": [4, 5, 6]}, {"in1": [7, 8]},
         {"in0": [9], "in1": [10, 11], "label": 1}, {"in1": [12]}]


def check_mixed(model, preds: list[dict]) -> None:
    assert [list(p) for p in preds] == [["scores"], ["embeddings"], ["embeddings"], ["scores"],
                                        ["embeddings"]]
    close([preds[0]["scores"], preds[3]["scores"]], scores(model, [([1, 2], [3]), ([9], [10, 11])]))
    close([preds[1]["embeddings"]], encode(model, 0, [[4, 5, 6]]))
    close([preds[2]["embeddings"], preds[4]["embeddings"]], encode(model, 1, [[7, 8], [12]]))
    assert sum(preds[0]["scores"]) == pytest.approx(1.0, abs=1e-6)
    assert len(preds[1]["embeddings"]) == 8


# -- health and parameters -------------------------------------------------------------------------


def test_ping(served):
    server, _ = served
    status, _, body = request(server.port, "GET", "/ping")
    assert (status, body) == (200, b"")


def test_execution_parameters(served):
    server, _ = served
    status, headers, body = request(server.port, "GET", "/execution-parameters")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD",
                                "MaxPayloadInMB": 6}


# -- predictions -----------------------------------------------------------------------------------


def test_json_mixed_modes_in_order(served):
    server, model = served
    check_mixed(model, ok_json(invoke(server, {"instances": MIXED})))
    check_mixed(model, ok_json(invoke(server, MIXED)))  # a bare list
    check_mixed(model, ok_json(invoke(server, MIXED, content_type=None)))  # JSON by default


def test_jsonlines_in_and_out(served):
    server, model = served
    body = "\n".join(json.dumps(i) for i in MIXED) + "\n"
    check_mixed(model, ok_jsonlines(invoke(server, body, "application/jsonlines")))
    check_mixed(model, ok_jsonlines(invoke(server, body, "application/jsonl"), "application/jsonl"))
    check_mixed(model, ok_jsonlines(invoke(server, body, "application/x-jsonlines", accept="*/*"),
                                    "application/x-jsonlines"))


@pytest.mark.parametrize("content_type, accept, expect", [
    ("application/json", "application/jsonlines", "jsonlines"),
    ("application/jsonlines", "application/json", "json"),
    ("application/json", "text/html, application/jsonlines;q=0.9, application/json;q=0.5",
     "jsonlines"),
    ("application/jsonlines", "*/*", "jsonlines"),
])
def test_accept_chooses_the_response_type(served, content_type, accept, expect):
    server, model = served
    body = (json.dumps({"instances": MIXED}) if content_type == "application/json"
            else "\n".join(json.dumps(i) for i in MIXED))
    result = invoke(server, body, content_type, accept)
    check_mixed(model, ok_json(result) if expect == "json" else ok_jsonlines(result))


def test_scores_equal_the_library_with_full_precision(served):
    server, model = served
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 50, rng.integers(1, 10)).tolist(),
              rng.integers(0, 30, rng.integers(1, 6)).tolist()) for _ in range(50)]
    preds = ok_json(invoke(server, {"instances": [{"in0": a, "in1": b} for a, b in pairs]}))
    expected = scores(model, pairs)
    # Same batch on the same CPU kernels: the float32 values come back bit for bit.
    got = np.array([p["scores"] for p in preds], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)


def test_infer_max_seqlens_truncates(served):
    server, model = served
    long0, long1 = list(range(1, 10)), [5, 4, 3, 2, 1]
    body = {"instances": [{"in0": long0, "in1": long1}, {"in0": long0}, {"in1": long1}]}
    preds = ok_json(invoke(server, body, "application/json; infer_max_seqlens=2,3"))
    close([preds[0]["scores"]], scores(model, [(long0[:2], long1[:3])]))
    close([preds[1]["embeddings"]], encode(model, 0, [long0[:2]]))
    close([preds[2]["embeddings"]], encode(model, 1, [long1[:3]]))
    full = ok_json(invoke(server, body))
    close([full[1]["embeddings"]], encode(model, 0, [long0]))


def test_batch_transform_10000_lines(served):
    server, model = served
    rng = np.random.default_rng(2)
    pairs = [(rng.integers(0, 50, rng.integers(1, 10)).tolist(),
              rng.integers(0, 30, rng.integers(1, 6)).tolist()) for _ in range(10_000)]
    body = "\n".join(json.dumps({"in0": a, "in1": b, "label": i % 3})
                     for i, (a, b) in enumerate(pairs))
    status, headers, out = invoke(server, body + "\n", "application/jsonlines")
    assert status == 200, out[:300]
    lines = out.decode().split("\n")
    assert len(lines) == 10_000
    close([json.loads(line)["scores"] for line in lines], scores(model, pairs))


# -- errors ----------------------------------------------------------------------------------------


def error(result, status: int) -> str:
    got, headers, body = result
    assert got == status, body
    assert headers["content-type"] == "application/json"
    return json.loads(body)["error"]


@pytest.mark.parametrize("body, content_type, message", [
    ('{"instances": [', "application/json", "request body is not valid JSON: Expecting value"),
    ('{"in0": [1]}\n{"in0": [2}', "application/jsonlines", "line 2 is not valid JSON"),
    ('{"instances": []}', "application/json", "the request holds no instances"),
    ('[{"in0": [1]}, {"label": 1}]', "application/json", 'instance 1: has neither "in0" nor "in1"'),
    ('[{"in0": []}]', "application/json", 'instance 0: "in0" must be a non-empty list'),
    ('[{"in0": [1]}, {"in0": [1, "a"]}]', "application/json",
     'instance 1: "in0" holds "a"; token ids must be integers'),
    ('[{"in0": [1.5]}]', "application/json", 'instance 0: "in0" holds 1.5'),
    ('[{"in1": [false]}]', "application/json", "not booleans"),
    ('[{"in0": [1], "in1": [-2]}]', "application/json",
     'instance 0: "in1" holds negative token id -2'),
    ('{"in0": [1]}\n\n{"in0": [1], "in1": [30]}', "application/jsonlines",
     'Inconsistent vocab for in1 found. Vocab id "30" is not less than vocab_size=30 '
     "(instance 1 at line 3)"),
    ('[{"in0": [1]}]', "application/json; infer_max_seqlens=0,4",
     "infer_max_seqlens='0,4' is invalid"),
])
def test_bad_requests_are_400_with_the_reason(served, body, content_type, message):
    server, _ = served
    assert message in error(invoke(server, body, content_type), 400)


def test_vocab_error_message_style(served):
    server, _ = served
    body = {"instances": [{"in0": [1], "in1": [2]}, {"in0": [3], "in1": [2, 30]}]}
    assert error(invoke(server, body), 400) == (
        'Inconsistent vocab for in1 found. Vocab id "30" is not less than vocab_size=30 '
        "(instance 1)")


def test_payload_over_the_limit_is_413(served):
    server, _ = served
    body = b"[" + b" " * (6 * 1024 * 1024) + b"]"
    message = error(invoke(server, body), 413)
    assert "larger than the limit of 6291456 bytes (6 MB, SAGEMAKER_MAX_PAYLOAD_IN_MB)" in message


def test_unsupported_content_type_is_415(served):
    server, _ = served
    assert "unsupported Content-Type 'text/csv'" in error(invoke(server, "1,2", "text/csv"), 415)


def test_unsupported_accept_is_406(served):
    server, _ = served
    assert "unsupported Accept 'text/csv'" in error(invoke(server, MIXED, accept="text/csv"), 406)


def test_unknown_routes_answer_json_errors(served):
    server, _ = served
    assert "Not Found" in error(request(server.port, "GET", "/predict"), 404)
    assert "Method Not Allowed" in error(request(server.port, "GET", "/invocations"), 405)


def test_bad_requests_do_not_take_workers_down(served):
    server, model = served
    workers = sorted(p.pid for p in psutil.Process(server.proc.pid).children())
    for _ in range(10):
        error(invoke(server, '[{"in0": [999]}]'), 400)
        error(invoke(server, b"\xff\xfe", "application/jsonlines"), 400)
    check_mixed(model, ok_json(invoke(server, MIXED)))
    assert sorted(p.pid for p in psutil.Process(server.proc.pid).children()) == workers


# -- process management ----------------------------------------------------------------------------


def test_killed_worker_is_replaced(served):
    server, model = served
    master = psutil.Process(server.proc.pid)
    before = {p.pid for p in master.children()}
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        now = {p.pid for p in master.children() if p.status() != psutil.STATUS_ZOMBIE}
        if victim not in now and len(now) == 2:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"worker {victim} was not replaced: children {now}\n{server.output()}")
    for _ in range(10):  # both workers answer (gunicorn spreads connections between them)
        check_mixed(model, ok_json(invoke(server, MIXED)))


@pytest.mark.parametrize("content, message", [
    (None, "cannot serve: no Object2Vec model found: {base}/model/object2vec.pt does not exist"),
    (b"not a model", "cannot serve: cannot read model {base}/model/object2vec.pt"),
])
def test_missing_or_unreadable_model_fails_fast_with_a_clear_message(tmp_path, content, message):
    if content is not None:
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "object2vec.pt").write_bytes(content)
    server = Server(tmp_path, tmp_path)
    try:
        assert server.proc.wait(timeout=START_TIMEOUT_S) == 2
    finally:
        server.stop()
    assert message.format(base=tmp_path) in server.output()
    assert "Booting worker" not in server.output()


def test_invalid_environment_fails_fast(tmp_path):
    build_model(tmp_path)
    server = Server(tmp_path, tmp_path, MODEL_SERVER_WORKERS="two")
    try:
        assert server.proc.wait(timeout=START_TIMEOUT_S) == 2
    finally:
        server.stop()
    assert ("cannot serve: MODEL_SERVER_WORKERS='two' is not an integer (expected 1..1024)"
            in server.output())


def test_sigterm_stops_gracefully(tmp_path):
    build_model(tmp_path)
    server = Server(tmp_path, tmp_path, MODEL_SERVER_WORKERS="1",
                    INFERENCE_PREFERRED_MODE="embedding")
    try:
        server.wait_ready()
        assert ok_json(invoke(server, {"instances": [{"in0": [1]}]}))[0]["embeddings"]
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=STOP_TIMEOUT_S) == 0
        assert time.monotonic() - start < 5
    finally:
        server.stop()
    assert "INFERENCE_PREFERRED_MODE=embedding: accepted" in server.output()


# -- in process: the app boundary (environment: tests/unit/test_serving_environment.py) ------------


class _Failing:
    def predict(self, instances, max_seqlens=None, where=None):
        raise RuntimeError("boom")


def test_internal_fault_is_500_with_traceback_logged(caplog):
    from object2vec.serving.app import create_app

    client = create_app(_Failing()).test_client()
    with caplog.at_level("ERROR", logger="object2vec.serving.app"):
        resp = client.post("/invocations", data=b'[{"in0": [1]}]', content_type="application/json")
    assert resp.status_code == 500
    assert resp.get_json() == {
        "error": "internal server error (RuntimeError); see the endpoint's log"}
    assert "RuntimeError: boom" in caplog.text and "Traceback" in caplog.text
    assert client.get("/ping").status_code == 200  # the app lives on


def test_app_takes_a_factory_called_once_and_checks_size_first():
    from object2vec.serving.app import create_app
    from object2vec.serving.predictor import Predictions

    calls = []

    class Echo:
        def predict(self, instances, max_seqlens=None, where=None):
            count = len(instances)
            return [Predictions("embeddings", np.arange(count),
                                np.full((count, 2), count, dtype=np.float32))]

    def factory():
        calls.append(1)
        return Echo()

    client = create_app(factory, workers=3, max_payload_mb=1).test_client()
    assert calls == [1]
    assert client.get("/execution-parameters").get_json() == {
        "MaxConcurrentTransforms": 3, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}
    big = b"[" + b" " * (1 << 20) + b"]"
    resp = client.post("/invocations", data=big, content_type="text/csv")
    assert resp.status_code == 415  # the type is refused before the size is looked at
    resp = client.post("/invocations", data=big, content_type="application/json")
    assert resp.status_code == 413 and resp.headers["Connection"] == "close"
    resp = client.post("/invocations", data=b'[{"in0": [1]}, {"in1": [2]}]',
                       content_type="application/json", headers={"Accept": "application/jsonlines"})
    assert resp.status_code == 200 and resp.content_type == "application/jsonlines"
    assert resp.data == b'{"embeddings":[2.0,2.0]}\n{"embeddings":[2.0,2.0]}'
    assert calls == [1]
