"""The SageMaker config readers (platform/sagemaker_config.py): plain ``json`` with the project's
own messages, nothing from the SageMaker training toolkit, and no environment side effects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import subprocess_env

from object2vec.errors import UserError
from object2vec.platform.paths import SageMakerPaths
from object2vec.platform.sagemaker_config import (
    ResourceConfig,
    read_hyperparameters,
    read_input_data_config,
    read_json_file,
    read_resource_config,
)


@pytest.fixture
def paths(tmp_path) -> SageMakerPaths:
    paths = SageMakerPaths(tmp_path)
    paths.input_config_dir.mkdir(parents=True)
    return paths


def test_absent_files_mean_a_plain_local_run(paths):
    assert read_hyperparameters(paths) == {}
    assert read_input_data_config(paths) == {}
    assert read_resource_config(paths) == ResourceConfig("algo-1", ("algo-1",), None)


def test_files_are_read_as_sagemaker_writes_them(paths):
    paths.hyperparameters_file.write_text(json.dumps({"epochs": "3", "enc_dim": "8"}))
    paths.input_data_config_file.write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    paths.resource_config_file.write_text(json.dumps({"current_host": "algo-2",
                                                      "hosts": ["algo-2", "algo-1"],
                                                      "network_interface_name": "eth0"}))
    assert read_hyperparameters(paths) == {"epochs": "3", "enc_dim": "8"}
    assert read_input_data_config(paths) == {"train": {"TrainingInputMode": "File"}}
    resource = read_resource_config(paths)
    assert resource == ResourceConfig("algo-2", ("algo-1", "algo-2"), "eth0")
    assert resource.node_rank == 1


@pytest.mark.parametrize("content,message", [
    (b'{"epochs": "3",}', "is not valid JSON (line 1, column 16): Expecting property name"),
    (b'{"epochs": "\xff"}', "is not UTF-8 text (byte 12)"),
    (b'["epochs"]', "must hold a JSON object, got list"),
])
def test_bad_hyperparameter_files_are_user_errors(paths, content, message):
    paths.hyperparameters_file.write_bytes(content)
    with pytest.raises(UserError, match="hyperparameters file") as info:
        read_hyperparameters(paths)
    assert message in str(info.value)


def test_an_integer_past_the_int_string_limit_keeps_its_digits(tmp_path):
    path = tmp_path / "h.json"
    digits = "9" * (sys.get_int_max_str_digits() + 1)
    path.write_text(f'{{"epochs": {digits}, "enc_dim": 8}}')
    assert read_json_file(path, "hyperparameters file") == {"epochs": digits, "enc_dim": 8}
    with pytest.raises(UserError, match="not found"):
        read_json_file(tmp_path / "missing.json", "hyperparameters file")


def test_bad_resource_and_channel_configs(paths):
    paths.resource_config_file.write_text(json.dumps({"hosts": ["algo-1"]}))
    with pytest.raises(UserError, match="needs 'current_host' and 'hosts'"):
        read_resource_config(paths)
    paths.resource_config_file.write_text(json.dumps({"current_host": "algo-3",
                                                      "hosts": ["algo-1"]}))
    with pytest.raises(UserError, match="current_host 'algo-3' is not among hosts"):
        read_resource_config(paths)
    paths.input_data_config_file.write_text(json.dumps({"train": "File"}))
    with pytest.raises(UserError, match="channel 'train' must map to an object"):
        read_input_data_config(paths)


def test_reading_needs_no_training_toolkit_and_leaves_the_environment_alone(paths):
    """With ``sagemaker_training`` made unimportable and SAGEMAKER_BASE_DIR unset, the readers work
    and the environment is unchanged (the toolkit rewrote it on import when /opt/ml was absent)."""
    paths.hyperparameters_file.write_text('{"epochs": "2"}')
    code = ("import os, sys; sys.modules['sagemaker_training'] = None; before = dict(os.environ)\n"
            "from pathlib import Path\n"
            "from object2vec.platform.paths import SageMakerPaths\n"
            "from object2vec.platform.sagemaker_config import read_hyperparameters\n"
            f"print(read_hyperparameters(SageMakerPaths(Path({str(paths.base)!r}))))\n"
            "assert dict(os.environ) == before")
    env = subprocess_env()
    env.pop("SAGEMAKER_BASE_DIR", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'epochs': '2'}"
