"""Whole training jobs through ``container/train`` (real processes over temporary SageMaker trees):
what a job does with a checkpoint folder it shares with another job, with channels and config files
that are not what they claim, and with hyperparameters whose model cannot fit in memory.

* A checkpoint resumes only the job that wrote it: a re-run over flipped labels, or with another
  hyperparameter, warns once, trains from scratch and overwrites it; a corrupt checkpoint file is
  warned about and ignored; the unchanged job resumes (and trains nothing more).
* A channel listed in ``inputdataconfig.json`` without its folder, a channel whose settings are
  not an object, a 5000-digit number in ``hyperparameters.json`` and a model of 3,000,000 x 10,000
  tables fail as user errors (exit 2, ``ClientError: ...`` in ``output/failure``, no traceback).

The jobs of each phase start at once (the second phase re-runs copies of the first phase's
checkpointed job), so the module pays for a few Python and torch start-ups in parallel.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers import REPO, free_port, make_tree, subprocess_env, train_all, write_jsonl

pytestmark = pytest.mark.slow

TRAIN = REPO / "container" / "train"
EPOCHS = 2
CHECKPOINT = "object2vec-checkpoint.pt"
EPOCH_LINE = re.compile(r"#quality_metric: host=\S+, epoch=(\d+), train cross_entropy")
HP = {"enc0_network": "pooled_embedding", "enc0_max_seq_len": 6, "enc0_vocab_size": 20,
      "enc_dim": 8, "mlp_dim": 8, "mini_batch_size": 32, "epochs": EPOCHS, "learning_rate": 0.05}


def pairs(n: int, seed: int) -> list[dict]:
    """Records whose label is decided by in0's first token (a model learns it in an epoch)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        in0 = [rng.randrange(20) for _ in range(rng.randint(1, 6))]
        in1 = [rng.randrange(20) for _ in range(rng.randint(1, 4))]
        out.append({"in0": in0, "in1": in1, "label": int(in0[0] >= 10)})
    return out


@dataclass
class Job:
    base: Path
    returncode: int
    output: str

    @property
    def failure(self) -> Path:
        return self.base / "output" / "failure"

    @property
    def checkpoint(self) -> Path:
        return self.base / "checkpoints" / CHECKPOINT

    def trained_epochs(self) -> list[int]:
        return [int(e) for e in EPOCH_LINE.findall(self.output)]

    def warnings(self, about: str = "") -> list[str]:
        """The WARNING lines of the log (those mentioning ``about``)."""
        return [ln for ln in self.output.splitlines() if " WARNING " in ln and about in ln]

    def weights(self) -> dict[str, torch.Tensor]:
        return torch.load(self.base / "model" / "object2vec.pt", weights_only=True)["state_dict"]


def run_all(trees: dict[str, Path], root: Path) -> dict[str, Job]:
    """Start container/train for every tree at once, wait for all."""
    return {name: Job(trees[name], *result) for name, result in train_all(trees, root).items()}


def first_phase_trees(root: Path) -> dict[str, Path]:
    trees = {"checkpointed": make_tree(root / "checkpointed", HP,
                                       {"train": pairs(128, 0), "validation": pairs(32, 1)})}
    (trees["checkpointed"] / "checkpoints").mkdir()

    trees["missing_channel"] = make_tree(root / "missing_channel", HP,
                                         {"train": pairs(32, 2), "validation": pairs(8, 3)})
    shutil.rmtree(trees["missing_channel"] / "input" / "data" / "validation")

    trees["channel_not_object"] = make_tree(root / "channel_not_object", HP,
                                            {"train": pairs(32, 4)})
    (trees["channel_not_object"] / "input" / "config" / "inputdataconfig.json").write_text(
        json.dumps({"train": ["File"]}))

    trees["huge_number"] = make_tree(root / "huge_number", HP, {"train": pairs(32, 5)})
    # a JSON number (not a string) past Python's 4300-digit int-string limit
    raw = {k: str(v) for k, v in HP.items() if k != "enc_dim"}
    (trees["huge_number"] / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(raw)[:-1] + ', "enc_dim": 1' + "0" * 5000 + "}")

    trees["huge_model"] = make_tree(root / "huge_model",
                                    {**HP, "enc0_vocab_size": 3_000_000, "enc_dim": 10_000},
                                    {"train": pairs(32, 6)})
    return trees


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> dict[str, Job]:
    root = tmp_path_factory.mktemp("train_jobs_1")
    return run_all(first_phase_trees(root), root)


def rerun_trees(done: Path, root: Path) -> dict[str, Path]:
    """Copies of the finished checkpointed job (its checkpoint folder included), each changed in
    one way, and one unchanged."""
    trees = {}
    for name in ("same", "flipped", "changed_hp", "truncated"):
        trees[name] = root / name
        shutil.copytree(done, trees[name], ignore=shutil.ignore_patterns("model", "output"))
    train = trees["flipped"] / "input" / "data" / "train" / "data.jsonl"
    records = [json.loads(line) for line in train.read_text().splitlines()]
    write_jsonl(train, [{**r, "label": 1 - r["label"]} for r in records])
    hp_file = trees["changed_hp"] / "input" / "config" / "hyperparameters.json"
    hp_file.write_text(json.dumps({**json.loads(hp_file.read_text()), "learning_rate": "0.02"}))
    checkpoint = trees["truncated"] / "checkpoints" / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    return trees


@pytest.fixture(scope="module")
def rerun(first, tmp_path_factory) -> dict[str, Job]:
    done = first["checkpointed"]
    assert done.returncode == 0, done.output[-3000:]
    root = tmp_path_factory.mktemp("train_jobs_2")
    return run_all(rerun_trees(done.base, root), root)


def assert_user_error(job: Job, *words: str) -> str:
    """Exit 2, a ClientError reason naming ``words``, no traceback anywhere, no model."""
    assert job.returncode == 2, job.output[-3000:]
    reason = job.failure.read_text()
    assert reason.startswith("ClientError: "), reason
    for word in words:
        assert word in reason, (word, reason)
    assert "Traceback" not in reason and "Traceback" not in job.output
    assert len(reason) <= 1024
    assert not (job.base / "model").exists()
    return reason


# -- checkpoints: only the job that wrote one resumes it -------------------------------------------


def test_the_checkpointed_job_trains_and_leaves_a_checkpoint(first):
    job = first["checkpointed"]
    assert job.returncode == 0, job.output[-3000:]
    assert job.trained_epochs() == list(range(EPOCHS))
    assert job.checkpoint.is_file() and "resumed from checkpoint" not in job.output


def test_a_default_pooled_embedding_job_logs_no_token_dim_warning(first):
    """enc0_token_embedding_dim was never set: pooled_embedding uses enc_dim without a word."""
    job = first["checkpointed"]
    assert job.returncode == 0, job.output[-3000:]
    assert "Inconsistent enc_dim and token_embedding_dim" not in job.output
    assert job.warnings("token_embedding_dim") == []


def test_the_same_job_resumes_its_finished_checkpoint(first, rerun):
    """The control: unchanged data and hyperparameters resume (nothing is left to train) and give
    the first run's model."""
    job = rerun["same"]
    assert job.returncode == 0, job.output[-3000:]
    assert f"resumed from checkpoint: epoch {EPOCHS}, batch 0" in job.output
    assert job.trained_epochs() == [] and job.warnings("checkpoint") == []
    for key, value in first["checkpointed"].weights().items():
        assert torch.equal(value, job.weights()[key]), key


def test_a_rerun_over_flipped_labels_warns_and_trains_from_scratch(first, rerun):
    """Same checkpoint folder, same hyperparameters, every train label flipped: one WARNING that
    names the train channel, every epoch trained again, a different model, a new checkpoint."""
    job = rerun["flipped"]
    assert job.returncode == 0, job.output[-3000:]
    warnings = job.warnings("checkpoint")
    assert len(warnings) == 1, warnings
    assert "checkpoint" in warnings[0] and "'train'" in warnings[0], warnings[0]
    assert "'validation'" not in warnings[0] and "hyperparameters" not in warnings[0]
    assert "resumed from checkpoint" not in job.output
    assert job.trained_epochs() == list(range(EPOCHS))
    old, new = first["checkpointed"].weights(), job.weights()
    assert any(not torch.equal(old[k], new[k]) for k in old)
    # the fresh run's checkpoint replaced the old one: it holds the new model
    state = torch.load(job.checkpoint, weights_only=True)
    assert state["epoch"] == EPOCHS and not torch.equal(
        state["model"]["mlp.0.weight"], torch.load(first["checkpointed"].checkpoint,
                                                   weights_only=True)["model"]["mlp.0.weight"])


def test_a_rerun_with_another_hyperparameter_warns_and_trains_from_scratch(rerun):
    job = rerun["changed_hp"]
    assert job.returncode == 0, job.output[-3000:]
    warnings = job.warnings("checkpoint")
    assert len(warnings) == 1 and "hyperparameters" in warnings[0], warnings
    assert "learning_rate" in warnings[0] and "'train'" not in warnings[0], warnings[0]
    assert job.trained_epochs() == list(range(EPOCHS))


def test_a_corrupt_checkpoint_is_warned_about_and_ignored(rerun):
    """A truncated checkpoint file: a WARNING naming the file, then a fresh job that succeeds."""
    job = rerun["truncated"]
    assert job.returncode == 0, job.output[-3000:]
    warnings = job.warnings("checkpoint")
    assert len(warnings) == 1 and str(job.checkpoint) in warnings[0], warnings
    assert "Traceback" not in job.output
    assert job.trained_epochs() == list(range(EPOCHS))
    assert torch.load(job.checkpoint, weights_only=True)["epoch"] == EPOCHS


# -- config files and channels that are not what they claim ----------------------------------------


def test_a_listed_channel_without_its_folder_is_a_user_error(first):
    job = first["missing_channel"]
    assert_user_error(job, "'validation'", "inputdataconfig.json",
                      str(job.base / "input" / "data" / "validation"))


def test_a_channel_whose_settings_are_not_an_object_is_a_user_error(first):
    job = first["channel_not_object"]
    assert_user_error(job, "'train'", str(job.base / "input" / "config" / "inputdataconfig.json"))


def test_a_number_past_the_int_string_limit_is_a_user_error_naming_the_key(first):
    assert_user_error(first["huge_number"], "enc_dim=", "must be an integer in [4, 10000]")


# -- memory ----------------------------------------------------------------------------------------


def test_a_model_too_big_for_memory_is_a_user_error_before_allocating(first):
    """vocab 3,000,000 x enc_dim 10,000: each table alone is 120 GB. The job fails before building
    the model, naming the biggest tables, the estimate and what is available."""
    reason = assert_user_error(first["huge_model"], "enc0 token embedding 3000000 x 10000",
                               "enc1 token embedding 3000000 x 10000", "available")
    estimate = re.search(r"estimated ([\d.]+) GiB", reason)
    assert estimate and float(estimate.group(1)) > 2 * 111, reason  # two tables of 111.8 GiB


# -- several hosts: rank 0 decides for every host's data -------------------------------------------


def sharded_tree(base: Path, host: str, hosts: list[str], seed: int) -> Path:
    """A host's tree of a two-host job whose train channel is ShardedByS3Key (its own records)."""
    make_tree(base, HP, {"train": pairs(64, seed), "validation": pairs(16, 9)},
              resource={"current_host": host, "hosts": hosts, "network_interface_name": "lo"})
    config = base / "input" / "config" / "inputdataconfig.json"
    channels = json.loads(config.read_text())
    channels["train"]["S3DistributionType"] = "ShardedByS3Key"
    config.write_text(json.dumps(channels))
    (base / "checkpoints").mkdir()
    return base


def run_hosts(trees: list[Path]) -> list[Job]:
    """Both hosts of a loopback job, started together and waited for."""
    port = str(free_port())
    procs = [subprocess.Popen([str(TRAIN)], cwd=base.parent,
                              env=subprocess_env(base, OMP_NUM_THREADS="1",
                                                 OBJECT2VEC_MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for base in trees]
    outputs = [proc.communicate(timeout=240)[0] for proc in procs]
    return [Job(base, proc.returncode, out) for base, proc, out in zip(trees, procs, outputs)]


def test_another_host_s_changed_shard_is_seen_by_rank_0(tmp_path):
    """Two hosts on loopback, train sharded by S3 key: the second run changes only host b's shard
    (rank 1, which never reads the checkpoint). Rank 0 on host a still sees it: one warning naming
    the train channel, and both hosts train every epoch again."""
    hosts = ["127.0.0.1", "localhost"]  # sorted: 127.0.0.1 holds global rank 0
    a = sharded_tree(tmp_path / "a", hosts[0], hosts, seed=10)
    b = sharded_tree(tmp_path / "b", hosts[1], hosts, seed=11)
    first = run_hosts([a, b])
    assert [job.returncode for job in first] == [0, 0], first[0].output[-3000:]
    assert (a / "checkpoints" / CHECKPOINT).is_file()

    shard = b / "input" / "data" / "train" / "data.jsonl"
    records = [json.loads(line) for line in shard.read_text().splitlines()]
    write_jsonl(shard, [{**r, "label": 1 - r["label"]} for r in records])
    host_a, host_b = run_hosts([a, b])
    assert (host_a.returncode, host_b.returncode) == (0, 0), host_a.output[-3000:]
    warnings = host_a.warnings("checkpoint")
    assert len(warnings) == 1 and "'train'" in warnings[0], warnings
    assert "resumed from checkpoint" not in host_a.output
    assert host_a.trained_epochs() == list(range(EPOCHS))
