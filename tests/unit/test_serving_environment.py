"""Serving settings read from the environment: defaults, overrides, errors naming the variable, and
the hints that only warn."""

import logging

import pytest

from object2vec.errors import UserError
from object2vec.serving.environment import ServingEnv, cpu_count


def test_environment_defaults_and_overrides(tmp_path):
    env = ServingEnv.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert env.model_dir == tmp_path / "model"
    assert (env.port, env.workers, env.timeout_s, env.max_payload_mb, env.preferred_mode) == (
        8080, cpu_count(), 60, 6, None)
    assert env.max_payload_bytes == 6291456
    env = ServingEnv.from_env({"SAGEMAKER_BIND_TO_PORT": "9090", "MODEL_SERVER_WORKERS": "3",
                               "MODEL_SERVER_TIMEOUT": "5", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
                               "INFERENCE_PREFERRED_MODE": "Classification",
                               "SAGEMAKER_BATCH": "true"})
    assert (env.port, env.workers, env.timeout_s, env.max_payload_mb, env.preferred_mode,
            env.batch) == (9090, 3, 5, 20, "classification", True)
    assert env.torch_threads == max(1, cpu_count() // 3)
    assert ServingEnv.from_env({"SAGEMAKER_BATCH": "true"}).timeout_s == 600
    assert ServingEnv.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "5"}).workers == 5


@pytest.mark.parametrize("name, value, message", [
    ("MODEL_SERVER_WORKERS", "two", "MODEL_SERVER_WORKERS='two' is not an integer"),
    ("MODEL_SERVER_WORKERS", "0", "MODEL_SERVER_WORKERS=0 is outside 1..1024"),
    ("MODEL_SERVER_TIMEOUT", "-1", "MODEL_SERVER_TIMEOUT=-1 is outside"),
    ("MODEL_SERVER_READ_TIMEOUT", "0", "MODEL_SERVER_READ_TIMEOUT=0 is outside 1..86400"),
    ("SAGEMAKER_BIND_TO_PORT", "70000", "SAGEMAKER_BIND_TO_PORT=70000 is outside 1..65535"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0", "chunked transfer"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101", "SAGEMAKER_MAX_PAYLOAD_IN_MB=101 is outside 1..100"),
    ("SAGEMAKER_CONTAINER_LOG_LEVEL", "loud", "SAGEMAKER_CONTAINER_LOG_LEVEL='loud'"),
])
def test_environment_errors_name_the_variable(name, value, message):
    with pytest.raises(UserError, match=message):
        ServingEnv.from_env({name: value})


@pytest.mark.parametrize("value", ["fast", "gpu-only", "embeddings"])
def test_unknown_preferred_mode_warns_and_serves_with_the_default(value, caplog):
    """INFERENCE_PREFERRED_MODE is a placement hint: a typo must not keep the endpoint down."""
    with caplog.at_level(logging.WARNING, logger="object2vec.serving"):
        env = ServingEnv.from_env({"INFERENCE_PREFERRED_MODE": value})
    assert env.preferred_mode is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"INFERENCE_PREFERRED_MODE={value!r} is not one of classification, embedding: ignored "
        "(a placement hint only)")


def test_read_timeout_default_and_overall_limit():
    """The idle limit between reads, and an overall limit no 6 MB body at 128 kbit/s reaches."""
    env = ServingEnv.from_env({})
    assert env.read_timeout_s == 30
    six_mb_at_128_kbits = 6 * 1024 * 1024 * 8 / 128_000  # 393 s
    assert six_mb_at_128_kbits < env.read_deadline_s < 600
    env = ServingEnv.from_env({"MODEL_SERVER_READ_TIMEOUT": "2",
                               "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})
    assert env.read_timeout_s == 2
    assert env.read_deadline_s == 2 + 1024 * 1024 / (16 * 1024)
