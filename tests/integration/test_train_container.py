"""``container/train`` as SageMaker runs it: a real subprocess over a temporary ``/opt/ml`` tree.

Success: exit 0, the model files, and the metric lines that SageMaker's metric definitions
(object2vec.md section 6.1) scrape, with ``host=`` from ``resourceconfig.json`` (``algo-1``
without it). User errors: non-zero exit, a one-line reason in ``output/failure`` naming the key /
file / line, no traceback, and nothing in ``model/``.

Every run that trains leaves its report in ``output/data``: metrics.json with one entry per epoch
and training_curves.png, also one that fails once training has begun (``diverge``: inf loss).

Every scenario's process is started at once by one module fixture, so the suite pays for a few
Python and torch start-ups in parallel rather than one after another.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers import decode_png, make_tree, train_all, write_jsonl

from object2vec.artifact import load_artifact
from object2vec.model.tokens import Tokens
from object2vec.reporting.plot import SPLIT_COLORS

pytestmark = pytest.mark.slow

EPOCHS = 3

# object2vec.md section 6.1 (the MetricDefinitions SageMaker uses), verbatim.
METRIC_REGEX = {
    "train:accuracy": r"#quality_metric: host=\S+, epoch=\S+, train accuracy <score>=(\S+)",
    "train:cross_entropy":
        r"#quality_metric: host=\S+, epoch=\S+, train cross_entropy <loss>=(\S+)",
    "train:mean_squared_error":
        r"#quality_metric: host=\S+, epoch=\S+, train mean_squared_error <loss>=(\S+)",
    "train:progress": r"#progress_metric: host=\S+, completed (\S+) %",
    "train:throughput": r"#throughput_metric: host=\S+, train throughput=(\S+) records/second",
    "validation:accuracy":
        r"#quality_metric: host=\S+, epoch=\S+, validation accuracy <score>=(\S+)",
    "validation:cross_entropy":
        r"#quality_metric: host=\S+, epoch=\S+, validation cross_entropy <loss>=(\S+)",
    "validation:mean_squared_error":
        r"#quality_metric: host=\S+, epoch=\S+, validation mean_squared_error <loss>=(\S+)",
    "test:accuracy": r"#quality_metric: host=\S+, test accuracy <score>=(\S+)",
    "test:cross_entropy": r"#quality_metric: host=\S+, test cross_entropy <loss>=(\S+)",
    "test:mean_squared_error": r"#quality_metric: host=\S+, test mean_squared_error <loss>=(\S+)",
}
CLASSIFICATION_METRICS = {k for k in METRIC_REGEX if "mean_squared_error" not in k}
REGRESSION_METRICS = {k for k in METRIC_REGEX if "accuracy" not in k and "cross_entropy" not in k}


def pairs(n: int, seed: int, vocab0: int, vocab1: int, regression: bool = False) -> list[dict]:
    """Records whose label depends on in0's first token, so a model can learn something."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        in0 = [rng.randrange(vocab0) for _ in range(rng.randint(1, 6))]
        in1 = [rng.randrange(vocab1) for _ in range(rng.randint(1, 4))]
        label = 1.0 + 4.0 * in0[0] / vocab0 if regression else int(in0[0] * 2 >= vocab0)
        out.append({"in0": in0, "in1": in1, "label": label})
    return out


BASE_HP = {"enc0_max_seq_len": 6, "enc0_vocab_size": 20, "enc_dim": 8, "mlp_dim": 8,
           "mini_batch_size": 32, "epochs": EPOCHS, "learning_rate": 0.01,
           "_kvstore": "device", "_num_gpus": "auto", "sagemaker_job_name": "test-job"}


def scenario_trees(root: Path) -> dict[str, Path]:
    """One SageMaker tree per scenario."""
    trees = {}
    trees["classify"] = make_tree(
        root / "classify",
        {**BASE_HP, "enc0_network": "hcnn", "enc0_layers": 1, "enc0_token_embedding_dim": 8,
         "enc1_network": "bilstm", "enc1_vocab_size": 10, "enc1_max_seq_len": 4,
         "enc1_token_embedding_dim": 8, "comparator_list": "hadamard, abs_diff"},
        {"train": pairs(256, 0, 20, 10), "validation": pairs(64, 1, 20, 10),
         "test": pairs(48, 2, 20, 10)},
        resource={"current_host": "algo-7", "hosts": ["algo-7"], "network_interface_name": "eth0"})
    trees["regress"] = make_tree(
        root / "regress",
        {**BASE_HP, "enc0_network": "pooled_embedding", "output_layer": "mean_squared_error",
         "num_classes": 2},
        {"train": pairs(256, 3, 20, 20, True), "validation": pairs(64, 4, 20, 20, True),
         "test": pairs(32, 5, 20, 20, True)})
    trees["bad_hyperparameters"] = make_tree(
        root / "bad_hyperparameters",
        {"enc0_max_seq_len": 6, "enc_dim": 3, "enc_dimm": 8, "optimizer": "lbfgs"},
        {"train": pairs(32, 6, 20, 20)})
    huge = [{**r, "label": 1e30} for r in pairs(64, 12, 20, 20, True)]  # squared error: inf
    trees["diverge"] = make_tree(root / "diverge",
                                 {**BASE_HP, "enc0_network": "pooled_embedding",
                                  "output_layer": "mean_squared_error"},
                                 {"train": huge, "validation": huge})
    bad_validation = pairs(10, 7, 20, 20)
    bad_validation[2]["in1"] = [3, 20]  # line 3: id 20 with enc0_vocab_size=20 (enc1 cloned)
    trees["bad_data"] = make_tree(root / "bad_data",
                                  {**BASE_HP, "enc0_network": "pooled_embedding"},
                                  {"train": pairs(32, 8, 20, 20), "validation": bad_validation})
    trees["missing_train"] = make_tree(root / "missing_train",
                                       {**BASE_HP, "enc0_network": "pooled_embedding"},
                                       {"validation": pairs(16, 9, 20, 20)})
    trees["bad_train_line"] = make_tree(root / "bad_train_line",
                                        {**BASE_HP, "enc0_network": "pooled_embedding"},
                                        {"train": pairs(8, 10, 20, 20)})
    extra = trees["bad_train_line"] / "input" / "data" / "train" / "more" / "part-2.jsonl"
    write_jsonl(extra, pairs(4, 11, 20, 20))
    with extra.open("a") as fh:
        fh.write('{"in0": [1], "in1": [2], "label": 1\n')  # line 5: not JSON
    return trees


@dataclass
class Run:
    base: Path
    returncode: int
    output: str

    @property
    def failure(self) -> Path:
        return self.base / "output" / "failure"

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_data(self) -> Path:
        return self.base / "output" / "data"

    def values(self, metric: str) -> list[str]:
        return re.findall(METRIC_REGEX[metric], self.output)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    """Start container/train for every scenario at once (cwd: a scratch dir), wait for all."""
    root = tmp_path_factory.mktemp("container_train")
    trees = scenario_trees(root)
    return {name: Run(trees[name], *result) for name, result in train_all(trees, root).items()}


# -- success ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,metrics,host", [("classify", CLASSIFICATION_METRICS, "algo-7"),
                                               ("regress", REGRESSION_METRICS, "algo-1")])
def test_training_succeeds_and_writes_the_model(runs, name, metrics, host):
    """Exit 0, the artifact and the report in output/data are written (metrics.json with one entry
    per epoch, a valid training_curves.png with the train and validation colours), no failure file,
    and the saved model loads and scores pairs."""
    run = runs[name]
    assert run.returncode == 0, run.output[-3000:]
    assert "Reporting training SUCCESS" in run.output
    assert (run.model_dir / "object2vec.pt").is_file()
    assert (run.model_dir / "object2vec.json").is_file()
    assert not run.failure.exists()
    summary = json.loads((run.output_data / "metrics.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == list(range(EPOCHS))
    assert 0 <= summary["best_epoch"] < EPOCHS and summary["finished"] and summary["test"]
    assert {p.name for p in run.output_data.iterdir()} == {"metrics.json", "training_curves.png"}
    img = decode_png((run.output_data / "training_curves.png").read_bytes())
    for color in (SPLIT_COLORS["train"], SPLIT_COLORS["validation"]):
        assert (img == color).all(axis=2).sum() > 100, color
    loaded = load_artifact(run.model_dir)
    with torch.no_grad():
        scores = loaded.model.scores(Tokens.from_lists([[1, 2], [19]]),
                                     Tokens.from_lists([[0], [3]]))
    assert scores.shape == (2, 1 if name == "regress" else 2)


@pytest.mark.parametrize("name,metrics,host", [("classify", CLASSIFICATION_METRICS, "algo-7"),
                                               ("regress", REGRESSION_METRICS, "algo-1")])
def test_metric_lines_match_the_sagemaker_regexes(runs, name, metrics, host):
    """Every metric of the output family matches its documented regex: per-epoch train and
    validation lines, one test line, progress reaching 100 % and a positive throughput; the other
    family's metrics are absent; host= is resourceconfig.json's current_host, else algo-1."""
    run = runs[name]
    assert run.returncode == 0, run.output[-3000:]
    for metric in METRIC_REGEX:
        found = run.values(metric)
        if metric not in metrics:
            assert not found, metric
            continue
        expected = 1 if metric.startswith("test:") else EPOCHS
        assert len(found) == expected, (metric, found)
        values = [float(v) for v in found]
        if metric.endswith("accuracy"):
            assert all(0.0 <= v <= 1.0 for v in values)
        elif metric == "train:progress":
            assert values[-1] == 100.0 and values == sorted(values)
        else:
            assert all(v > 0 for v in values), (metric, values)
    lines = [ln for ln in run.output.splitlines() if "_metric: host=" in ln]
    assert lines and {re.search(r"host=(\S+?),", ln).group(1) for ln in lines} == {host}
    epochs = [re.search(r"epoch=(\d+),", ln).group(1) for ln in lines if "epoch=" in ln]
    assert sorted(set(epochs)) == [str(e) for e in range(EPOCHS)]


def test_saved_model_is_the_best_epoch(runs):
    """The regression model in model/ reproduces the lowest validation mean_squared_error of the log
    (the best epoch's weights are kept, not the last), and training lowered that error."""
    run = runs["regress"]
    assert run.returncode == 0, run.output[-3000:]
    logged = [float(v) for v in run.values("validation:mean_squared_error")]
    assert min(logged) < logged[0]
    records = [json.loads(line) for line in
               (run.base / "input" / "data" / "validation" / "data.jsonl").read_text().splitlines()]
    model = load_artifact(run.model_dir).model
    with torch.no_grad():
        pred = model.scores(Tokens.from_lists([r["in0"] for r in records]),
                            Tokens.from_lists([r["in1"] for r in records]))[:, 0]
    labels = torch.tensor([r["label"] for r in records])
    assert float(((pred - labels) ** 2).mean()) == pytest.approx(min(logged), rel=1e-4)


def test_a_diverged_job_fails_but_leaves_its_report(runs):
    """Training that diverges fails with a ClientError, and output/data still holds the epochs it
    ran: metrics.json (non-finite values as null, not finished) and the curves."""
    run = runs["diverge"]
    assert run.returncode == 2, run.output[-3000:]
    assert "training diverged" in run.failure.read_text()
    summary = json.loads((run.output_data / "metrics.json").read_text())
    assert len(summary["epochs"]) == 1 and not summary["finished"]
    assert summary["epochs"][0]["validation:mean_squared_error"] is None
    assert decode_png((run.output_data / "training_curves.png").read_bytes()).shape[1] > 0


# -- user errors -----------------------------------------------------------------------------------


USER_ERRORS = [
    ("bad_hyperparameters", ["enc_dim=", "enc_dimm", "did you mean 'enc_dim'", "optimizer=",
                             "enc0_vocab_size: required"]),
    ("bad_data", ["validation", "data.jsonl, line 3",
                  'Inconsistent vocab for in1 found. Vocab id "20" is not less than '
                  'vocab_size=20']),
    ("missing_train", ["'train' channel is required"]),
    ("bad_train_line", ["part-2.jsonl, line 5", "not valid JSON"]),
]


@pytest.mark.parametrize("name,words", USER_ERRORS, ids=[u[0] for u in USER_ERRORS])
def test_user_error_fails_with_a_readable_reason(runs, name, words):
    """A user error exits non-zero, writes a ClientError reason naming the key / file / line to
    output/failure (no traceback, under SageMaker's 1024-character FailureReason for these cases),
    logs the same reason, and leaves model/ empty."""
    run = runs[name]
    assert run.returncode not in (0, None), run.output[-3000:]
    reason = run.failure.read_text()
    assert reason.startswith("ClientError: ")
    for word in words:
        assert word in reason, (word, reason)
    assert "Traceback" not in reason and "Traceback" not in run.output
    assert len(reason) <= 1024
    assert reason.splitlines()[0].split(": ", 1)[1][:60] in run.output
    assert not run.model_dir.exists() or not any(run.model_dir.iterdir())
