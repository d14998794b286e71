"""tools/o2vtools/process.py: the environment of the container's programs, free ports, why a
training job failed."""

import os
import socket
import sys
from pathlib import Path

from o2vtools import process


def test_container_env_puts_this_interpreter_first_and_names_the_tree(tmp_path):
    env = process.container_env(tmp_path, OMP_NUM_THREADS="1")
    assert env["SAGEMAKER_BASE_DIR"] == str(tmp_path) and env["OMP_NUM_THREADS"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert (process.CONTAINER / "train").exists() and (process.CONTAINER / "serve").exists()


def test_free_port_can_be_bound():
    with socket.socket() as s:
        s.bind(("127.0.0.1", process.free_port()))


def test_failure_reason_prefers_the_failure_file(tmp_path):
    assert process.failure_reason(tmp_path, "x" * 5000) == "x" * 3000
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "failure").write_text("bad hyperparameter")
    assert process.failure_reason(tmp_path, "log") == "bad hyperparameter"
