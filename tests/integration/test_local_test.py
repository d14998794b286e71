"""The ``local_test/`` harness end to end, without Docker: ``make_test_dir.py --quick`` writes a
MovieLens tree, ``train_local.sh --no-docker`` trains on it, ``serve_local.sh --no-docker`` serves
it on a free port, and ``predict.sh`` sends every sample payload (with curl, then with its Python
fallback). ``invoke_endpoint.py`` sends the same payloads to a deployed endpoint with boto3, checked
offline with botocore's Stubber.

One module-scoped server serves all the requests; the whole module takes well under a minute.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO, free_port, subprocess_env

pytestmark = pytest.mark.slow

LOCAL_TEST = REPO / "local_test"
PAYLOADS = LOCAL_TEST / "payloads"
QUICK_ENC_DIM = 32  # make_test_dir.py QUICK_OVERRIDES
PING_DEADLINE_S = 60
STEP_TIMEOUT_S = 120


def harness_env(**extra: str) -> dict[str, str]:
    """The environment for the harness scripts. One OpenMP thread: on a CI machine whose cores are
    shared with other jobs, spinning OpenMP threads slow this small model down tenfold or more."""
    return subprocess_env(OMP_NUM_THREADS="1", **extra)


def run(args: list[str], env: dict[str, str] | None = None, check: bool = True,
        timeout: float = STEP_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a harness command from the repository root; on failure show its output."""
    result = subprocess.run([str(a) for a in args], cwd=REPO, env=env or harness_env(),
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, (f"{' '.join(map(str, args))} exited {result.returncode}\n"
                                        f"--- stdout\n{result.stdout[-3000:]}\n"
                                        f"--- stderr\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def trained_tree(tmp_path_factory) -> Path:
    """make_test_dir.py --quick, then train_local.sh --no-docker."""
    tree = tmp_path_factory.mktemp("local_test") / "test_dir"
    run([sys.executable, LOCAL_TEST / "make_test_dir.py", "--quick", "--dir", tree])
    config = tree / "input" / "config"
    hp = json.loads((config / "hyperparameters.json").read_text())
    assert all(isinstance(v, str) for v in hp.values()), "SageMaker sends every value as a string"
    resource = json.loads((config / "resourceconfig.json").read_text())
    assert (resource["current_host"], resource["hosts"]) == ("algo-1", ["algo-1"])
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == {"train", "validation"}

    result = run([LOCAL_TEST / "train_local.sh", "--no-docker", "--dir", tree])
    log = result.stdout + result.stderr
    assert "#quality_metric: host=algo-1, epoch=" in log
    assert "validation mean_squared_error <loss>=" in log
    assert sorted(p.name for p in (tree / "model").iterdir()), "train_local.sh wrote no model"
    assert not (tree / "output" / "failure").exists()
    return tree


@pytest.fixture(scope="module")
def server(trained_tree):
    """serve_local.sh --no-docker on a free port, ready (``/ping`` 200); stopped with SIGTERM."""
    port = free_port()
    log_path = trained_tree / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(LOCAL_TEST / "serve_local.sh"), "--no-docker", "--dir",
                                 str(trained_tree), "--port", str(port)], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT,
                                env=harness_env(MODEL_SERVER_WORKERS="1"))
    try:
        wait_for_ping(proc, port, log_path)
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # serve_local.sh execs container/serve
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"the server ignored SIGTERM for 30 s:\n{log_path.read_text()[-3000:]}")
    assert proc.returncode == 0, f"server exit status {proc.returncode}:\n" \
                                 f"{log_path.read_text()[-3000:]}"


def wait_for_ping(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + PING_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve_local.sh exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"/ping not 200 within {PING_DEADLINE_S} s:\n{log_path.read_text()[-3000:]}")


def predict(port: int, *args: str, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    return run([LOCAL_TEST / "predict.sh", *args], env=env or harness_env(PORT=str(port)),
               check=check, timeout=60)


def lines_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_scores(predictions: list[dict], count: int) -> None:
    assert len(predictions) == count
    for p in predictions:
        assert list(p) == ["scores"] and len(p["scores"]) == 1, p  # regression: one score
        assert math.isfinite(p["scores"][0]) and -5.0 < p["scores"][0] < 10.0, p


def assert_embeddings(predictions: list[dict], count: int) -> None:
    assert len(predictions) == count
    for p in predictions:
        assert list(p) == ["embeddings"] and len(p["embeddings"]) == QUICK_ENC_DIM, p
        assert all(math.isfinite(v) for v in p["embeddings"])


def payload_count(name: str) -> int:
    text = (PAYLOADS / name).read_text()
    if name.endswith(".jsonl"):
        return len([line for line in text.splitlines() if line.strip()])
    return len(json.loads(text)["instances"])


def test_scores_json_is_the_default_payload(server):
    answer = json.loads(predict(server).stdout)
    assert_scores(answer["predictions"], payload_count("scores.json"))


def test_embeddings_json(server):
    answer = json.loads(predict(server, str(PAYLOADS / "embeddings.json")).stdout)
    assert_embeddings(answer["predictions"], payload_count("embeddings.json"))


def test_jsonlines_payloads_take_their_content_type_from_the_extension(server):
    assert_scores(lines_of(predict(server, str(PAYLOADS / "scores.jsonl")).stdout),
                  payload_count("scores.jsonl"))
    assert_embeddings(lines_of(predict(server, str(PAYLOADS / "embeddings.jsonl")).stdout),
                      payload_count("embeddings.jsonl"))


def test_accept_header_from_the_environment(server):
    result = predict(server, str(PAYLOADS / "scores.json"),
                     env=harness_env(PORT=str(server), ACCEPT="application/jsonlines"))
    assert_scores(lines_of(result.stdout), payload_count("scores.json"))


def test_http_errors_exit_non_zero(server, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"instances": [{"in0": [999999], "in1": [1]}]}')  # id beyond the vocabulary
    result = predict(server, str(bad), check=False)
    assert result.returncode != 0
    assert "400" in result.stderr, result.stderr
    assert "Inconsistent vocab for in0" in json.loads(result.stdout)["error"]


def test_python_fallback_without_curl(server, tmp_path):
    """With no curl on PATH, predict.sh makes the same request with Python's urllib."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "basename", "cat"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed on PATH"
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    env = harness_env(PORT=str(server))
    env["PATH"] = str(bin_dir)
    answer = json.loads(run(["bash", LOCAL_TEST / "predict.sh", str(PAYLOADS / "scores.json")],
                            env=env).stdout)
    assert_scores(answer["predictions"], payload_count("scores.json"))

    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    result = run(["bash", LOCAL_TEST / "predict.sh", str(bad)], env=env, check=False)
    assert result.returncode != 0 and "HTTP 4" in result.stderr, result.stderr


def test_predict_without_a_server_fails_clearly():
    result = run([LOCAL_TEST / "predict.sh"], env=harness_env(PORT=str(free_port())), check=False,
                 timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip(), "a failed request must say why"


def test_serve_refuses_an_untrained_tree(tmp_path):
    tree = tmp_path / "empty"
    (tree / "input" / "config").mkdir(parents=True)
    (tree / "input" / "config" / "hyperparameters.json").write_text("{}")
    result = run([LOCAL_TEST / "serve_local.sh", "--no-docker", "--dir", tree], check=False,
                 timeout=30)
    assert result.returncode == 2 and "train first" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------------
# local_test/invoke_endpoint.py: the same payloads sent to a deployed endpoint through boto3's
# sagemaker-runtime client, checked offline with botocore's Stubber (no network, no credentials)


def load_local_test_module(name: str):
    spec = importlib.util.spec_from_file_location(f"local_test_{name}", LOCAL_TEST / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stubbed_runtime(monkeypatch):
    """A real ``sagemaker-runtime`` client whose calls botocore's Stubber answers."""
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client("sagemaker-runtime", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def stub_body(data: bytes):
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


@pytest.mark.parametrize("name,content_type", [
    ("scores.json", "application/json"), ("scores.jsonl", "application/jsonlines"),
    ("embeddings.json", "application/json"), ("embeddings.jsonl", "application/jsonlines")])
def test_invoke_endpoint_sends_the_payload_files_as_predict_sh_does(stubbed_runtime, capsys, name,
                                                                   content_type):
    client, stubber = stubbed_runtime
    invoke = load_local_test_module("invoke_endpoint")
    answer = b'{"predictions": [{"scores": [3.5]}]}'
    stubber.add_response("invoke_endpoint",
                         {"Body": stub_body(answer), "ContentType": content_type},
                         expected_params={"EndpointName": "o2v", "ContentType": content_type,
                                          "Body": (PAYLOADS / name).read_bytes()})
    assert invoke.main(["o2v", str(PAYLOADS / name)], client=client) == 0
    assert capsys.readouterr().out == answer.decode() + "\n"


def test_invoke_endpoint_default_payload_accept_and_explicit_content_type(stubbed_runtime, capsys,
                                                                         monkeypatch):
    client, stubber = stubbed_runtime
    invoke = load_local_test_module("invoke_endpoint")
    monkeypatch.setenv("ACCEPT", "application/jsonlines")
    body = (PAYLOADS / "scores.json").read_bytes()
    for request in ({"ContentType": "application/json", "Accept": "application/jsonlines"},
                    {"ContentType": "text/plain", "Accept": "application/json"}):
        stubber.add_response("invoke_endpoint", {"Body": stub_body(b"{}")},
                             expected_params={"EndpointName": "o2v", "Body": body, **request})
    assert invoke.main(["o2v"], client=client) == 0  # payloads/scores.json, Accept from $ACCEPT
    assert invoke.main(["o2v", str(PAYLOADS / "scores.json"), "text/plain", "--accept",
                        "application/json"], client=client) == 0
    assert capsys.readouterr().out == "{}\n{}\n"


def test_invoke_endpoint_reports_model_and_service_errors(stubbed_runtime, capsys):
    client, stubber = stubbed_runtime
    invoke = load_local_test_module("invoke_endpoint")
    stubber.add_client_error("invoke_endpoint", service_error_code="ModelError",
                             service_message="Received client error (400) from primary",
                             http_status_code=424,
                             modeled_fields={"OriginalStatusCode": 400,
                                             "OriginalMessage": '{"error": "Inconsistent vocab"}'})
    stubber.add_client_error("invoke_endpoint", service_error_code="ValidationError",
                             service_message="Endpoint o2v of account 1 not found.",
                             http_status_code=400)
    assert invoke.main(["o2v"], client=client) == 1
    out, err = capsys.readouterr()
    assert "ModelError (HTTP 400)" in err and "Received client error" in err, err
    assert json.loads(out) == {"error": "Inconsistent vocab"}  # the container's own body
    assert invoke.main(["o2v"], client=client) == 1
    assert "ValidationError (HTTP 400)" in capsys.readouterr().err


def test_invoke_endpoint_rejects_a_missing_payload(tmp_path, capsys):
    invoke = load_local_test_module("invoke_endpoint")
    with pytest.raises(SystemExit) as exc:
        invoke.main(["o2v", str(tmp_path / "nope.json")], client=object())
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err
