"""The benchmark scripts still run: each one's ``--quick`` mode, end to end, in a few seconds."""

import subprocess
import sys

import pytest

from helpers import REPO, subprocess_env

pytestmark = pytest.mark.slow


def test_serve_load_quick(tmp_path):
    """benchmarks/serve_load.py --quick: small model, real container/serve, figures printed."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--quick"],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in ("pair-1", "pair-16", "embed-1000")}
    assert set(rows) == {"pair-1", "pair-16", "embed-1000"}, result.stdout
    assert all(float(value) > 0 for values in rows.values() for value in values), result.stdout


def test_train_throughput_quick(tmp_path):
    """benchmarks/train_throughput.py --quick: a samples/s row per encoder and the load section's
    row with a peak RSS under the limit."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"),
                             "--quick"], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in result.stdout.splitlines()
        if line.startswith("| "))}
    for network in ("pooled_embedding", "hcnn", "bilstm"):
        assert float(rows[network][1].replace(",", "")) > 0, result.stdout
    load = next(cells for cells in rows.values() if cells[-1].startswith("OK"))
    assert float(load[3].replace(",", "")) > 0, result.stdout


def test_movielens_quick(tmp_path):
    """benchmarks/movielens.py --quick: trains through container/train on a MovieLens sample and
    prints a finite validation RMSE next to the bias baseline."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "movielens.py"), "--quick"],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| quick |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    rmse_log, rmse_model, _, baseline = (float(c) for c in cells[3:7])
    assert 0 < rmse_log < 3 and abs(rmse_log - rmse_model) < 1e-3 and 0.8 < baseline < 1.1
