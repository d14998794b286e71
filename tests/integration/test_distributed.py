"""Real multi-process training on the CPU with gloo, through `container/train`:

* 2 processes on one host, and 2 "hosts" on loopback (two `container/train` processes with their own
  trees and resourceconfig), train the same model as 1 process with the same global batch;
* a rank that fails brings the whole job down with the real reason in `output/failure`;
* a run stopped by SIGTERM, or killed by SIGKILL, resumes from its checkpoint and finishes with the same
  model as an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, free_port, make_tree, subprocess_env

TRAIN = str(REPO / "container" / "train")
DEADLINE_S = 120


def records(n: int, seed: int, vocab: int = 30) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = [rng.randrange(vocab) for _ in range(rng.randint(1, 6))]
        b = [rng.randrange(vocab) for _ in range(rng.randint(1, 6))]
        out.append({"in0": a, "in1": b, "label": int((a[0] + b[0]) % 2)})
    return out


def hyperparameters(storage: str = "dense", epochs: int = 3, **over) -> dict:
    hp = dict(enc0_max_seq_len=8, enc0_vocab_size=30, enc0_network="pooled_embedding", enc_dim=8,
              mlp_dim=8, mini_batch_size=32, epochs=epochs, learning_rate=0.01,
              token_embedding_storage_type=storage, tied_token_embedding_weight="true",
              negative_sampling_rate=1, early_stopping_patience=5)
    hp.update(over)
    return hp


def tree(base: Path, hp: dict, n: int = 256, host: str | None = None, hosts=None,
         train: list[dict] | None = None) -> Path:
    resource = None if host is None else {"current_host": host, "hosts": hosts,
                                          "network_interface_name": "lo"}
    return make_tree(base, hp, {"train": train or records(n, 0), "validation": records(64, 1)},
                     resource)


def start(base: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([TRAIN], cwd=base.parent, env=subprocess_env(base, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, out


def train(base: Path, **env) -> str:
    code, out = finish(start(base, **env))
    assert code == 0, out
    return out


def weights(base: Path) -> dict[str, torch.Tensor]:
    blob = torch.load(base / "model" / "object2vec.pt", weights_only=True)
    return blob["state_dict"]


def assert_same_model(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=atol, msg=k)


@pytest.mark.parametrize("storage", ["dense", "row_sparse"])
def test_two_processes_match_one(tmp_path, storage):
    single = tree(tmp_path / "single", hyperparameters(storage))
    double = tree(tmp_path / "double", hyperparameters(storage))
    train(single)
    out = train(double, OBJECT2VEC_NPROC_PER_HOST="2", OBJECT2VEC_MASTER_PORT=str(free_port()))
    assert "1 host(s) [algo-1]" in out and "2 process(es) per host, world size 2, backend gloo" in out
    assert out.count("#quality_metric: host=algo-1, epoch=0, train cross_entropy") == 1  # rank 0 only
    assert_same_model(single, double)
    assert not (double / "output" / "failure").exists()


def test_two_hosts_on_loopback_match_one(tmp_path):
    hosts = ["127.0.0.1", "localhost"]  # sorted: 127.0.0.1 is the master; both are this machine
    single = tree(tmp_path / "single", hyperparameters("row_sparse"))
    a = tree(tmp_path / "a", hyperparameters("row_sparse"), host=hosts[0], hosts=hosts)
    b = tree(tmp_path / "b", hyperparameters("row_sparse"), host=hosts[1], hosts=hosts)
    train(single)
    port = str(free_port())
    procs = [start(a, OBJECT2VEC_MASTER_PORT=port), start(b, OBJECT2VEC_MASTER_PORT=port)]
    (code_a, out_a), (code_b, out_b) = finish(procs[0]), finish(procs[1])
    assert code_a == 0 and code_b == 0, out_a + out_b
    assert "2 host(s) [127.0.0.1, localhost], this is localhost (node 1)" in out_b
    assert "#quality_metric" in out_a and "#quality_metric" not in out_b  # global rank 0 logs
    assert (a / "model" / "object2vec.pt").exists() and not (b / "model").exists()
    assert_same_model(single, a)


def test_a_failing_rank_brings_the_job_down_with_its_reason(tmp_path):
    """Host b's data has a bad line: both hosts exit non-zero and report that line, promptly."""
    hosts = ["127.0.0.1", "localhost"]
    bad = records(256, 0)
    bad[100] = {"in0": [1], "in1": [99], "label": 1}
    a = tree(tmp_path / "a", hyperparameters(), host=hosts[0], hosts=hosts)
    b = tree(tmp_path / "b", hyperparameters(), host=hosts[1], hosts=hosts, train=bad)
    port = str(free_port())
    begin = time.monotonic()
    procs = [start(a, OBJECT2VEC_MASTER_PORT=port), start(b, OBJECT2VEC_MASTER_PORT=port)]
    results = [finish(p) for p in procs]
    assert time.monotonic() - begin < 60
    for base, (code, out) in zip((a, b), results):
        assert code == 2, out
        reason = (base / "output" / "failure").read_text()
        assert 'Inconsistent vocab for in1 found. Vocab id "99" is not less than vocab_size=30' in reason
        assert "line 101" in reason
        assert not (base / "model").exists()


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.parametrize("sig,nproc", [(signal.SIGTERM, "1"), (signal.SIGKILL, "1"),
                                       (signal.SIGTERM, "2")])
def test_interrupted_run_resumes_to_the_same_model(tmp_path, sig, nproc):
    hp = hyperparameters("row_sparse", epochs=8, mini_batch_size=16)
    data = records(800 if nproc == "1" else 300, 0)  # gloo steps on 2 shared cores are slower
    reference = tree(tmp_path / "reference", hp, train=data)
    train(reference, OBJECT2VEC_NPROC_PER_HOST=nproc, OBJECT2VEC_MASTER_PORT=str(free_port()))

    run = tree(tmp_path / "run", hp, train=data)
    (run / "checkpoints").mkdir()
    env = dict(OBJECT2VEC_NPROC_PER_HOST=nproc)
    proc = start(run, OBJECT2VEC_MASTER_PORT=str(free_port()), **env)
    wait_for(run / "checkpoints" / "object2vec-checkpoint.pt", proc)  # epoch 0 is done
    proc.send_signal(sig)
    code, out = finish(proc)
    assert code == (143 if sig == signal.SIGTERM else -signal.SIGKILL), out
    assert not (run / "model").exists()
    if sig == signal.SIGTERM:
        assert "stopped by SIGTERM" in out and "checkpoint saved" in out
        assert not (run / "output" / "failure").exists()

    out = train(run, OBJECT2VEC_MASTER_PORT=str(free_port()), **env)
    assert "resumed from checkpoint" in out
    assert_same_model(reference, run, atol=1e-6)
    ref_metrics = json.loads((reference / "output" / "data" / "metrics.json").read_text())
    run_metrics = json.loads((run / "output" / "data" / "metrics.json").read_text())
    assert run_metrics["best_epoch"] == ref_metrics["best_epoch"]
    for r, m in zip(ref_metrics["epochs"], run_metrics["epochs"]):
        assert r["validation:cross_entropy"] == pytest.approx(m["validation:cross_entropy"], abs=1e-6)
