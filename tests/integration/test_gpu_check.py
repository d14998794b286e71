"""tools/gpu_check.py without a GPU: the dry run says no GPU was found and exits non-zero, and
``--allow-cpu`` runs every step on the CPU at tiny sizes (the CUDA paths themselves need the GPU
machine: README.md, "GPU check")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO, subprocess_env

SCRIPT = REPO / "tools" / "gpu_check.py"


def run_check(tmp_path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The script with no CUDA device visible (also on a GPU machine) and one torch thread."""
    env = subprocess_env(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "gpu_check.json"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def test_without_a_gpu_it_says_so_and_exits_non_zero(tmp_path):
    out = run_check(tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "GPU check: no GPU found" in out.stderr and "--allow-cpu" in out.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] is False and report["steps"] == {}
    assert report["error"].startswith("no GPU found") and report["versions"]["torch"]


@pytest.mark.slow
def test_allow_cpu_runs_every_step_at_tiny_sizes(tmp_path):
    """Every step passes on the CPU (two container/train jobs, a container/serve), and the file holds
    each step's verdict, time and figures."""
    out = run_check(tmp_path, "--allow-cpu", timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert report["ok"] and report["device"] == "cpu" and list(steps) == [
        "unit_tests", "train", "throughput", "predictor", "serve"]
    assert all(s["ok"] and s["seconds"] >= 0 and s["summary"] in out.stdout for s in steps.values())
    assert set(steps["train"]["jobs"]) == {"dense", "row_sparse"}
    assert all(all(job["checks"].values()) for job in steps["train"]["jobs"].values())
    rows = steps["throughput"]["rows"]
    assert len(rows) == 9 and all(r["samples_per_s"] > 0 and r["device"] == "cpu" for r in rows)
    assert steps["predictor"]["serving_device"] == "cpu"
    assert "all steps passed" in out.stdout
