"""The training recipe: data -> model -> epochs with validation and early stopping -> artifact.

    trainer = Trainer(hp, channels, metrics)   # channels: {"train": PairData, "validation": ..., ...}
    result = trainer.train()                   # best epoch's weights loaded into trainer.model
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from object2vec.config.hyperparameters import Hyperparameters
from object2vec.data.auxiliary import apply_pretrained
from object2vec.data.batching import Batch, EpochSampler, sequential_plan
from object2vec.data.records import PairData
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.training.early_stopping import EarlyStopping
from object2vec.training.metrics import MetricLogger
from object2vec.training.optimizers import build_optimizer
from object2vec.training.sparse import LazyRowOptimizer

log = logging.getLogger(__name__)

SEED = 0
EVAL_BATCH_SIZE = 4096


@dataclass
class TrainResult:
    """What a finished run reports: per-epoch metrics, the best epoch, and test metrics."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    test: dict[str, float] = field(default_factory=dict)


def _loss_and_stats(hp: Hyperparameters, out: torch.Tensor, labels: torch.Tensor
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean loss for backward, and summed statistics for the metric lines."""
    if hp.is_regression:
        se = (out.squeeze(1) - labels.float()) ** 2  # (B,)
        return se.mean(), {"mean_squared_error": se.detach().sum()}
    ce = F.cross_entropy(out, labels, reduction="none")  # (B,)
    correct = (out.detach().argmax(1) == labels).sum()
    return ce.mean(), {"cross_entropy": ce.detach().sum(), "accuracy": correct.float()}


class Trainer:
    """Trains one Object2Vec model on already-loaded channels."""

    def __init__(self, hp: Hyperparameters, channels: dict[str, PairData], metrics: MetricLogger,
                 device: torch.device | str = "cpu", seed: int = SEED,
                 auxiliary_dir: Path | None = None) -> None:
        if "train" not in channels:
            raise UserError("the 'train' channel is required")
        self.hp = hp
        self.channels = channels
        self.metrics = metrics
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.model = Object2Vec(ModelConfig.from_hyperparameters(hp))
        apply_pretrained(list(self.model.embeddings),
                         [hp.enc0] if hp.tied_token_embedding_weight else [hp.enc0, hp.enc1],
                         auxiliary_dir)
        self.model.to(self.device)
        self.optimizer = build_optimizer(self.model, hp.optimizer, hp.learning_rate, hp.weight_decay)
        self.lazy_optimizer = (LazyRowOptimizer(hp.optimizer, list(self.model.embeddings),
                                                hp.learning_rate, hp.weight_decay)
                               if self.model.config.sparse else None)
        self.sampler = EpochSampler(channels["train"], hp.mini_batch_size, hp.negative_sampling_rate,
                                    hp.bucket_width, seed)
        self.stopper = EarlyStopping(hp.early_stopping_patience, hp.early_stopping_tolerance)
        self.monitor = "validation" if "validation" in channels else "train"

    # -- one step / one pass ----------------------------------------------------------------------------

    def _train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        batch = batch.to(self.device)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        loss, stats = _loss_and_stats(self.hp, self.model(batch.in0, batch.in1), batch.labels)
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        if self.lazy_optimizer is not None:
            self.lazy_optimizer.step(self.model.batch_rows)
        return stats

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        """Train one epoch; return its mean metrics and its throughput (samples/s)."""
        self.model.train()
        plan = self.sampler.plan(epoch)
        totals: dict[str, torch.Tensor] = {}
        start = time.perf_counter()
        last_report = start
        for b in range(len(plan)):
            for k, v in self._train_step(plan.batch(self.channels["train"], b)).items():
                totals[k] = totals.get(k, 0) + v
            if time.perf_counter() - last_report > 30:  # a readable heartbeat on long epochs
                last_report = time.perf_counter()
                log.info("epoch %d: batch %d/%d", epoch, b + 1, len(plan))
        elapsed = time.perf_counter() - start
        return self._means(totals, plan.num_samples), plan.num_samples / max(elapsed, 1e-9)

    @torch.inference_mode()
    def evaluate(self, data: PairData) -> dict[str, float]:
        """Mean loss (and accuracy) of the current model on ``data``, in eval mode."""
        self.model.eval()
        plan = sequential_plan(data, EVAL_BATCH_SIZE)
        totals: dict[str, torch.Tensor] = {}
        for b in range(len(plan)):
            batch = plan.batch(data, b).to(self.device)
            _, stats = _loss_and_stats(self.hp, self.model(batch.in0, batch.in1), batch.labels)
            for k, v in stats.items():
                totals[k] = totals.get(k, 0) + v
        return self._means(totals, len(data))

    @staticmethod
    def _means(totals: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        order = ("accuracy", "cross_entropy", "mean_squared_error")
        return {k: float(totals[k]) / max(count, 1) for k in order if k in totals}

    # -- the run ------------------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run every epoch (or until early stopping); leave the best epoch's weights in ``self.model``."""
        hp, result = self.hp, TrainResult()
        best_state = None
        loss_name = "mean_squared_error" if hp.is_regression else "cross_entropy"
        for epoch in range(hp.epochs):
            train_metrics, rate = self._train_epoch(epoch)
            self.metrics.quality("train", train_metrics, epoch)
            record = {f"train:{k}": v for k, v in train_metrics.items()}
            monitored = train_metrics[loss_name]
            if "validation" in self.channels:
                val_metrics = self.evaluate(self.channels["validation"])
                self.metrics.quality("validation", val_metrics, epoch)
                record.update({f"validation:{k}": v for k, v in val_metrics.items()})
                monitored = val_metrics[loss_name]
            self.metrics.progress(100.0 * (epoch + 1) / hp.epochs)
            self.metrics.throughput(rate)
            result.history.append({"epoch": epoch, **record, "throughput": rate})
            if not math.isfinite(monitored):
                raise UserError(f"training diverged: {self.monitor} {loss_name} is {monitored} at "
                                f"epoch {epoch}; lower learning_rate (now {hp.learning_rate})")
            if self.stopper.update(epoch, monitored):
                best_state = copy.deepcopy(self.model.state_dict())
            log.info("epoch %d/%d: %s (best epoch %d)", epoch + 1, hp.epochs,
                     ", ".join(f"{k}={v:.4f}" for k, v in record.items()), self.stopper.best_epoch)
            if self.stopper.should_stop and epoch + 1 < hp.epochs:
                log.info("early stopping: %s %s has not improved by %g for %d epochs", self.monitor,
                         loss_name, hp.early_stopping_tolerance, hp.early_stopping_patience)
                result.stopped_early = True
                break
        result.best_epoch = self.stopper.best_epoch
        if best_state is not None:
            self.model.load_state_dict(best_state)
        log.info("keeping the weights of epoch %d (lowest %s %s %.6g)", result.best_epoch,
                 self.monitor, loss_name, self.stopper.best_loss)
        if "test" in self.channels:
            result.test = self.evaluate(self.channels["test"])
            self.metrics.quality("test", result.test)
        return result
