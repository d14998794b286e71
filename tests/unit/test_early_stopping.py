"""Early stopping (object2vec.md section 6.2) in isolation and inside a Trainer run with a scripted
validation loss."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from helpers import tiny_data

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.records import PairData
from object2vec.errors import UserError
from object2vec.training.early_stopping import EarlyStopping
from object2vec.training.metrics import MetricLogger
from object2vec.training.trainer import Trainer

# -- EarlyStopping ---------------------------------------------------------------------------------

# (losses, patience, tolerance, epoch after which training stops (None: never), best epoch)
STOPPING = [
    # improves by more than the tolerance every epoch: never stops, best is the last
    ([1.0, 0.8, 0.6, 0.4], 1, 0.01, None, 3),
    # gains smaller than the tolerance are "no improvement", but the lowest loss is still the best
    ([1.0, 0.9, 0.85, 0.849, 0.848, 0.847], 3, 0.01, 5, 5),
    # getting worse: stop after `patience` bad epochs, keep the first
    ([1.0, 2.0, 3.0, 4.0, 5.0], 3, 0.01, 3, 0),
    ([1.0, 1.0], 1, 0.01, 1, 0),
    # the margin is measured from the last improving loss, not from the previous epoch
    ([1.0, 0.995, 0.991, 0.989, 0.985], 3, 0.01, None, 4),
    # an improvement resets the count of bad epochs
    ([0.5, 0.6, 0.4, 0.45, 0.41], 2, 0.01, 4, 2),
    ([0.5, 0.6, 0.4, 0.45, 0.35, 0.36, 0.37], 2, 0.01, 6, 4),
    # the tolerance is absolute: 0.5 on a loss of 100 counts, though it is only 0.5 %
    ([100.0, 99.5, 99.0, 98.5], 1, 0.01, None, 3),
]


@pytest.mark.parametrize("losses,patience,tolerance,stop_at,best", STOPPING)
def test_early_stopping_semantics(losses, patience, tolerance, stop_at, best):
    """Stop after `patience` epochs whose loss is not below (last improving loss - tolerance); the
    best epoch is the one with the lowest loss, and update() says True exactly when it changes."""
    stopper = EarlyStopping(patience, tolerance)
    stopped, lowest = None, float("inf")
    for epoch, loss in enumerate(losses):
        assert stopper.update(epoch, loss) is (loss < lowest)
        lowest = min(lowest, loss)
        if stopper.should_stop:
            stopped = epoch
            break
    assert stopped == stop_at
    assert stopper.best_epoch == best and stopper.best_loss == losses[best]


def test_early_stopping_state_round_trips():
    """state_dict/load_state_dict resume with the same decisions."""
    a = EarlyStopping(2, 0.01)
    for epoch, loss in enumerate([1.0, 0.5, 0.6]):
        a.update(epoch, loss)
    b = EarlyStopping(5, 0.5)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert b.update(3, 0.55) == a.update(3, 0.55) and b.should_stop == a.should_stop is True
    assert b.best_epoch == a.best_epoch == 1


# -- a Trainer run with a scripted validation loss -------------------------------------------------


def tiny_hp(**extra):
    raw = {"enc0_network": "pooled_embedding", "enc0_max_seq_len": "3", "enc0_vocab_size": "20",
           "enc_dim": "8", "mlp_dim": "8", "mlp_layers": "1", "learning_rate": "0.05",
           "mini_batch_size": "16", "epochs": "10", "early_stopping_patience": "2",
           "early_stopping_tolerance": "0.01", **extra}
    return parse_hyperparameters(raw)


class ScriptedTrainer(Trainer):
    """A Trainer whose validation loss is a fixed script; it snapshots the weights at each epoch's
    evaluation (which runs right after that epoch's training)."""

    def __init__(self, *args, script: list[float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.script = script
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def evaluate(self, data, *args, **kwargs):
        epoch = len(self.snapshots)
        self.snapshots.append(copy.deepcopy(self.model.state_dict()))
        return {"accuracy": 0.5, "cross_entropy": self.script[epoch]}


def scripted_run(script, caplog=None, **hp):
    data = tiny_data()
    metrics = MetricLogger("algo-1", logging.getLogger("test.metrics"))
    trainer = ScriptedTrainer(tiny_hp(**hp), {"train": data, "validation": data}, metrics,
                              script=script)
    return trainer, trainer.train()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_trainer_keeps_the_best_epochs_weights_and_stops_after_patience(caplog):
    """Validation loss 1.0, 0.6, 0.65, 0.7 (patience 2): training stops after epoch 3, and the model
    holds exactly the weights it had at epoch 1, not the last ones."""
    with caplog.at_level(logging.INFO, logger="test.metrics"):
        trainer, result = scripted_run([1.0, 0.6, 0.65, 0.7, 0.1, 0.1])
    assert len(trainer.snapshots) == 4 and len(result.history) == 4
    assert result.best_epoch == 1 and result.stopped_early
    final = trainer.model.state_dict()
    assert same_weights(final, trainer.snapshots[1])
    assert not same_weights(final, trainer.snapshots[3])  # training did move the weights
    assert not same_weights(trainer.snapshots[0], trainer.snapshots[1])
    lines = [r.getMessage() for r in caplog.records if "validation cross_entropy" in r.getMessage()]
    assert [float(ln.rsplit("=", 1)[1]) for ln in lines] == [1.0, 0.6, 0.65, 0.7]
    assert [h["validation:cross_entropy"] for h in result.history] == [1.0, 0.6, 0.65, 0.7]


def test_trainer_keeps_the_lowest_loss_even_within_the_tolerance():
    """A loss lower than the best by less than the tolerance counts as a bad epoch for stopping, but
    its weights are still the ones kept."""
    trainer, result = scripted_run([1.0, 0.995, 0.993, 0.5])
    assert len(trainer.snapshots) == 3 and result.stopped_early
    assert result.best_epoch == 2
    assert same_weights(trainer.model.state_dict(), trainer.snapshots[2])


def test_trainer_runs_every_epoch_while_improving():
    """No early stop while every epoch improves by more than the tolerance; the last epoch is
    kept."""
    trainer, result = scripted_run([0.9, 0.8, 0.7], epochs="3")
    assert len(trainer.snapshots) == 3 and not result.stopped_early and result.best_epoch == 2
    assert same_weights(trainer.model.state_dict(), trainer.snapshots[2])


def test_trainer_reports_every_epoch_also_the_one_that_diverges():
    """on_epoch_end sees the history and best epoch so far after every epoch, and still the
    diverged epoch before training fails (so the job's report shows it)."""
    seen = []
    data = tiny_data()
    trainer = ScriptedTrainer(tiny_hp(), {"train": data, "validation": data},
                              MetricLogger("algo-1", logging.getLogger("test.metrics")),
                              script=[1.0, 0.6, 0.65, float("nan")],
                              on_epoch_end=lambda r: seen.append((len(r.history), r.best_epoch)))
    with pytest.raises(UserError, match="diverged"):
        trainer.train()
    assert seen == [(1, 0), (2, 1), (3, 1), (4, 1)]
    assert np.isnan(trainer.result.history[-1]["validation:cross_entropy"])


# -- early_stopping_metric=retrieval_mrr -------------------------------------------------------------


class ScriptedRetrieval(ScriptedTrainer):
    """The scripted loss, and a scripted validation MRR beside it."""

    def __init__(self, *args, mrr: list[float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mrr = mrr

    def retrieval(self, data):
        epoch = len(self.snapshots) - 1  # evaluate() of this epoch ran first
        return {"retrieval_mrr": self.mrr[epoch], "retrieval_accuracy": self.mrr[epoch] / 2}


def test_retrieval_mrr_chooses_the_epoch_and_the_stop_where_the_loss_would_not(caplog):
    """The classifier's validation loss rises every epoch (by itself: keep epoch 0, stop after epoch
    2); the MRR rises to epoch 2, then falls: epoch 2 is kept, the stop comes after epoch 4, and the
    MRR lines are printed for SageMaker to scrape."""
    data = tiny_data()
    metrics = MetricLogger("algo-1", logging.getLogger("test.metrics"))
    trainer = ScriptedRetrieval(tiny_hp(early_stopping_metric="retrieval_mrr"),
                                {"train": data, "validation": data}, metrics,
                                script=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], mrr=[0.2, 0.5, 0.55, 0.52, 0.5, 0.9])
    with caplog.at_level(logging.INFO):
        result = trainer.train()
    assert result.best_epoch == 2 and len(result.history) == 5 and result.stopped_early
    assert same_weights(trainer.model.state_dict(), trainer.snapshots[2])
    assert [h["validation:retrieval_mrr"] for h in result.history] == [0.2, 0.5, 0.55, 0.52, 0.5]
    lines = [r.getMessage() for r in caplog.records if "validation retrieval_mrr <score>=" in r.getMessage()]
    assert [float(ln.rsplit("=", 1)[1]) for ln in lines] == [0.2, 0.5, 0.55, 0.52, 0.5]
    assert any("highest validation retrieval_mrr 0.55" in r.getMessage() for r in caplog.records)
    _, by_loss = scripted_run([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert by_loss.best_epoch == 0 and len(by_loss.history) == 3  # the default watches the loss


def test_retrieval_mrr_needs_a_validation_channel_with_two_positives():
    data = tiny_data()
    metrics = MetricLogger("algo-1", logging.getLogger("test.metrics"), enabled=False)
    hp = tiny_hp(early_stopping_metric="retrieval_mrr")
    with pytest.raises(UserError, match="at least 2 such pairs; found no validation channel"):
        Trainer(hp, {"train": data}, metrics)
    one = PairData(data.in0, data.in1, np.where(np.arange(len(data)) == 3, 1, 0))
    with pytest.raises(UserError, match="found 1 in the validation channel"):
        Trainer(hp, {"train": data, "validation": one}, metrics)
    with pytest.raises(UserError, match="early_stopping_metric=retrieval_mrr: needs output_layer=softmax"):
        tiny_hp(early_stopping_metric="retrieval_mrr", output_layer="mean_squared_error")
