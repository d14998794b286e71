"""The training recipe: data -> model -> epochs with validation and early stopping -> best weights.

    trainer = Trainer(hp, channels, metrics)   # channels: {"train": PairData, "validation": ..., ...}
    result = trainer.train()                   # best epoch's weights loaded into trainer.model

``on_epoch_end(result)`` is called after every epoch with the result so far (history, best epoch): the
caller decides what to write where; the trainer itself writes nothing but checkpoints.

One code path for 1..N processes. With ``dist.world_size = W`` every global batch of ``mini_batch_size``
samples is split into ``W`` shares (every ``W``-th sample), dense gradients are averaged by
DistributedDataParallel and row_sparse gradients by exchanging the touched rows, so W processes train the
same model as one process with the same global batch. Channels that SageMaker shards by S3 key already
differ per host; their global batch is then cut from the host's records and shared by the host's ranks.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from object2vec.config.hyperparameters import SPECS, Hyperparameters
from object2vec.data.auxiliary import apply_pretrained
from object2vec.data.batching import Batch, EpochSampler, records_plan, sequential_plan
from object2vec.data.documents import DocumentData
from object2vec.data.pretrained_model import ModelFolder, load_transformer_weights, read_weights, specs
from object2vec.data.records import Encoders, PairData, Side
from object2vec.errors import UserError
from object2vec.model.embedding import EmbeddingRows
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.transformer import TransformerEncoder
from object2vec.training.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_VERSION,
    CheckpointUnusable,
    load_checkpoint,
    save_checkpoint,
)
from object2vec.training.distributed import DistEnv
from object2vec.training.early_stopping import EarlyStopping
from object2vec.training.hard_negatives import mine_neighbours
from object2vec.training.metrics import MetricLogger
from object2vec.training.optimizers import build_optimizer
from object2vec.training.sparse import LazyRowOptimizer, gather_rows, row_gradient

log = logging.getLogger(__name__)

SEED = 0
EVAL_BATCH_SIZE = 4096
RETRIEVAL_POOL = 10_000  # early_stopping_metric=retrieval_mrr: the first this many positives are ranked
STOP_CHECK_EVERY = 8  # steps between checks for SIGTERM when several processes must agree


class TrainingInterrupted(Exception):
    """SIGTERM arrived: the state was checkpointed (when checkpointing is on) and training stopped."""


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


def document_frequency(side: Side, vocab_size: int) -> np.ndarray:
    """``(vocab_size,)`` int64: how many of ``side``'s sequences contain each token id."""
    seq = np.repeat(np.arange(len(side.offsets) - 1, dtype=np.int64), side.lengths)  # (N,)
    distinct = np.unique(seq * vocab_size + side.ids.astype(np.int64))  # one per (sequence, token)
    return np.bincount(distinct % vocab_size, minlength=vocab_size)


def in_batch_softmax_loss(u: torch.Tensor, v: torch.Tensor, temperature: float,
                          negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric in-batch softmax (InfoNCE) over cosine similarities of ``P`` positive pairs.

    Row ``i`` of ``u (P, D)`` belongs with row ``i`` of ``v (P, D)``: each ``u_i`` must pick ``v_i``
    among all ``P`` rows of ``v`` (the other pairs' ``in1`` are its negatives) and the ``N`` rows of
    ``negatives (N, D)`` if given (``hard_negatives``), and each ``v_i`` must pick ``u_i``; the loss
    is the mean of the two cross-entropies over ``cos / temperature``.
    """
    candidates = v if negatives is None else torch.cat([v, negatives])  # (P + N, D)
    logits = F.normalize(u, dim=1) @ F.normalize(candidates, dim=1).T / temperature  # (P, P + N)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :len(v)].T, target))


class Trainer:
    """Trains one Object2Vec model on already-loaded channels."""

    def __init__(self, hp: Hyperparameters, channels: dict[str, PairData | DocumentData],
                 metrics: MetricLogger,
                 device: torch.device | str = "cpu", seed: int = SEED,
                 auxiliary_dir: Path | None = None, dist: DistEnv | None = None,
                 sharded: frozenset[str] = frozenset(), checkpoint_dir: Path | None = None,
                 data_digest: dict[str, list[str]] | None = None,
                 stop_requested: Callable[[], bool] = lambda: False,
                 on_epoch_end: Callable[[TrainResult], None] = lambda result: None,
                 text: Encoders = (None, None),
                 pretrained: tuple[ModelFolder | None, ModelFolder | None] = (None, None)) -> None:
        """``channels``: records; the train channel may be documents (pairs drawn every epoch).
        ``data_digest``: the job's data (``object2vec.training.checkpoint.combine_digests``),
        kept in every checkpoint's fingerprint beside the hyperparameters. ``text``: the tokenizer
        of each text side (its vocabulary places pretrained vectors by token). ``pretrained``: each
        transformer side's model folder (``object2vec.data.pretrained_model.resolve_transformers``)."""
        if "train" not in channels:
            raise UserError("the 'train' channel is required")
        self.hp, self.channels, self.metrics = hp, channels, metrics
        self.dist = dist or DistEnv()
        self.device = torch.device(device)
        self.sharded = sharded
        self.checkpoint_dir = checkpoint_dir
        self.fingerprint = {"hyperparameters": _plain(hp.to_dict()), "data": data_digest or {}}
        self.stop_requested = stop_requested
        self.on_epoch_end = on_epoch_end
        if hp.early_stopping_metric == "retrieval_mrr":
            valid = channels.get("validation")
            positives = 0 if valid is None else int(np.count_nonzero(valid.labels == 1))
            if positives < 2:
                found = "no validation channel" if valid is None else f"{positives} in the validation channel"
                raise UserError("early_stopping_metric=retrieval_mrr ranks each validation pair labelled "
                                f"1 against the others and needs at least 2 such pairs; found {found}")
        documents = isinstance(channels["train"], DocumentData)
        if documents and not (hp.negative_sampling_rate or hp.in_batch_softmax_weight):
            raise UserError("the train channel holds documents, whose pairs are all labelled 1: set "
                            "negative_sampling_rate >= 1 or in_batch_softmax_weight > 0 so that the "
                            "model also sees pairs that do not belong together")
        if hp.hard_negatives and not (documents and len(channels["train"]) >= 2):
            raise UserError(f"hard_negatives={hp.hard_negatives} draws each pair's negatives from the "
                            f"documents nearest to its own and needs a train channel of at least 2 "
                            f"documents ({{\"document\": [sentences]}} records)")
        if hp.pairs_per_document != 1 and not documents:
            log.warning("pairs_per_document=%d has no effect: the train channel holds pairs, not "
                        "documents", hp.pairs_per_document)
        if hp.mini_batch_size < self.dist.world_size:
            raise UserError(f"mini_batch_size={hp.mini_batch_size} is the global batch and must be at "
                            f"least the number of processes ({self.dist.world_size})")
        torch.manual_seed(seed)
        self.model = Object2Vec(ModelConfig.from_hyperparameters(hp, specs(pretrained)))
        tables = 1 if hp.tied_token_embedding_weight else 2  # a tied table is enc0's
        apply_pretrained(list(self.model.embeddings), [hp.enc0, hp.enc1][:tables], auxiliary_dir,
                         list(text[:tables]))
        self._load_transformers(pretrained)
        part, parts = self._share("train")
        group_batch = hp.mini_batch_size * parts // self.dist.world_size  # this data group's batch
        self.sampler = EpochSampler(channels["train"], group_batch, hp.negative_sampling_rate,
                                    hp.bucket_width, seed, hp.pairs_per_document, hp.hard_negatives, parts)
        if hp.token_weighting == "idf":  # documents: from the first epoch's pairs
            self._set_idf_weights(self.sampler.records(0), "train" in sharded)
        self.model.to(self.device)
        self.optimizer = build_optimizer(self.model, hp.optimizer, hp.learning_rate, hp.weight_decay,
                                         self._pretrained_parameters(), hp.transformer_learning_rate)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # a transformer's attention grows with the square of the length: bound an evaluation
        # batch's padded tokens, as serving does (Object2Vec.token_budget); + 2: [CLS] and [SEP]
        longest = max(hp.enc0.max_seq_len, hp.enc1.max_seq_len) + 2
        self.eval_batch = (max(1, min(EVAL_BATCH_SIZE, self.model.token_budget // longest))
                           if self.model.has_transformer else EVAL_BATCH_SIZE)
        # row_sparse: the tables take no autograd gradient; the lazy optimizer updates their rows
        self.lazy_optimizer = (LazyRowOptimizer([t.weight for t in self.model.embeddings],
                                                hp.optimizer, hp.learning_rate, hp.weight_decay)
                               if self.model.config.sparse else None)
        self.forward = self.model
        if self.dist.distributed and self.optimizer is not None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=ids)
        self.stopper = EarlyStopping(hp.early_stopping_patience, hp.early_stopping_tolerance)
        self.monitor = "validation" if "validation" in channels else "train"
        self.result = TrainResult()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.start_epoch, self.start_batch = 0, 0
        self.partial_totals: dict[str, float] = {}

    def _load_transformers(self, folders: tuple[ModelFolder | None, ModelFolder | None]) -> None:
        """Load each transformer side's pretrained weights and freeze its lowest layers as asked
        (``encN_frozen_layers``; 1 or more also fixes its embeddings, token table included)."""
        for side, folder in enumerate(folders):
            if folder is None:
                continue
            if not self.model.owns_encoder(side):
                log.info("enc1: enc0's transformer (tied_token_embedding_weight=True)")
                continue
            where = f"enc{side}_pretrained_model {folder.path.name}"
            load_transformer_weights(self.model, side, read_weights(folder.weight_files, where), where)
            cfg, encoder = self.hp.encoder(side), self.model.encoders[side]
            if cfg.frozen_layers:
                layers = encoder.layers()
                if cfg.frozen_layers > len(layers):
                    raise UserError(f"enc{side}_frozen_layers={cfg.frozen_layers}: the model in "
                                    f"{folder.path.name} has {len(layers)} layers")
                self.model.embedding(side).freeze()
                for module in [encoder.transformer.embeddings, *layers[:cfg.frozen_layers]]:
                    module.requires_grad_(False)
            trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
            log.info("enc%d: pretrained weights loaded from %s; %d of %d layers frozen, %d trainable "
                     "parameters in the encoder", side, folder.path.name, cfg.frozen_layers,
                     len(encoder.layers()), trainable)

    def _pretrained_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters that train at ``transformer_learning_rate``: each transformer's layers and
        its token table (not the projection to ``enc_dim``, which starts from scratch)."""
        params = []
        for side, encoder in enumerate(self.model.encoders):
            if isinstance(encoder, TransformerEncoder):
                params += [*encoder.transformer.parameters(), self.model.embedding(side).weight]
        return list({id(p): p for p in params}.values())  # tied sides: once

    def _amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of training steps (``mixed_precision``), None for full precision."""
        mode, cuda = self.hp.mixed_precision, self.device.type == "cuda"
        if mode == "off" or (mode == "auto" and not self.model.has_transformer):
            return None
        if not cuda:
            if mode != "auto":
                log.warning("mixed_precision=%s applies on CUDA devices only; training on %s in full "
                            "precision", mode, self.device)
            return None
        if mode == "fp16":
            return torch.float16
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if mode == "bf16":
            raise UserError(f"mixed_precision=bf16: {torch.cuda.get_device_name(self.device)} does not "
                            f"support bfloat16; use fp16 or off")
        return None

    def _set_idf_weights(self, data: PairData, sharded: bool) -> None:
        """``token_weighting=idf``: each table's pooling weights become the smoothed inverse document
        frequency of its tokens, ``log((1 + N) / (1 + df)) + 1``, where ``N`` counts the training
        channel's sequences read through that table and ``df`` those that contain the token (summed
        over every host's shard when the channel is sharded)."""
        for t, table in enumerate(self.model.embeddings):
            sides = [s for s in (0, 1) if self.model.table_index(s) == t]
            df = torch.zeros(table.vocab_size, dtype=torch.float64)
            count = torch.zeros(1, dtype=torch.float64)
            for s in sides:
                df += torch.from_numpy(document_frequency(data.side(s), table.vocab_size))
                count += len(data)
            if sharded and self.dist.distributed:  # every process of a host holds its shard
                both = self.dist.all_reduce_sum(torch.cat([df, count]).to(self.dist.device)).cpu()
                both /= self.dist.local_world_size
                df, count = both[:-1], both[-1:]
            idf = torch.log((1 + count) / (1 + df)) + 1
            table.pool_weight.copy_(idf.to(table.pool_weight.dtype))
            log.info("token_weighting=idf: table %d weights from %d sequences (%.3g..%.3g)", t,
                     int(count), float(idf.min()), float(idf.max()))

    def _share(self, channel: str) -> tuple[int, int]:
        """(part, parts): which share of ``channel``'s batches this rank takes. A sharded channel is
        split among this host's ranks only; a replicated one among all ranks."""
        if channel in self.sharded:
            return self.dist.local_rank, self.dist.local_world_size
        return self.dist.rank, self.dist.world_size

    # -- one step / one pass ----------------------------------------------------------------------------

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimization step on ``batch`` (this process's share of a global batch): gather the
        batch's rows of every table, forward and backward on them, then the dense update and the
        lazy update of ``row_sparse`` tables. Returns the batch's summed statistics (on the device,
        not synchronized)."""
        batch = batch.to(self.device)
        for optimizer in (self.optimizer, self.lazy_optimizer):
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
        hp = self.hp
        totals: dict[str, torch.Tensor] = {}
        # gradient_accumulation_steps: one backward per micro-batch, gradients summed, one update;
        # DDP averages them across ranks at the last micro-batch only
        micro = batch.split(hp.gradient_accumulation_steps) if hp.gradient_accumulation_steps > 1 else [batch]
        for i, part in enumerate(micro):
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if last or self.forward is self.model else self.forward.no_sync()
            with sync:
                with self._autocast():
                    rows = gather_rows(self.model, part.in0, part.in1)
                    out, u, v = self.forward(rows.in0, rows.in1, return_encodings=True, tables=rows.tables)
                loss, stats = _loss_and_stats(hp, out.float(), part.labels)
                if hp.in_batch_softmax_weight > 0:
                    positive = part.labels == 1  # this process's share of the batch's positives
                    if int(positive.sum()) >= 2:
                        # hard_negatives: the batch's negative pairs' in1 are candidates too
                        extra = v[~positive].float() if hp.hard_negatives else None
                        loss = loss + hp.in_batch_softmax_weight * in_batch_softmax_loss(
                            u[positive].float(), v[positive].float(), hp.in_batch_softmax_temperature, extra)
                self.scaler.scale(loss * (len(part) / len(batch)) if len(micro) > 1 else loss).backward()
            for k, value in stats.items():
                totals[k] = totals.get(k, 0) + value
        if self.optimizer is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.lazy_optimizer is not None:
            self._lazy_step(rows.tables)
        return totals

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _lazy_step(self, views: list[EmbeddingRows | None]) -> None:
        """Give each row_sparse table this step's row gradient (averaged over ranks like DDP
        averages the rest) as its sparse ``weight.grad``, and apply the lazy update."""
        gathered = {}  # weight -> the current values of its gradient's rows, already at hand
        for table, view in zip(self.model.embeddings, views):
            if view is None or view.matrix.grad is None:
                continue  # frozen: the same on every rank
            if self.dist.distributed:
                ids, grad = self.dist.average_rows(view.ids, view.matrix.grad)
            else:
                ids, grad = view.ids, view.matrix.grad
                gathered[table.weight] = view.matrix.detach()
            table.weight.grad = row_gradient(table, ids, grad)
        self.lazy_optimizer.step(rows=gathered)

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        """Train one epoch (from ``self.start_batch``); return its mean metrics and samples/s."""
        if self.hp.hard_negatives and not (self.start_batch and self.sampler.neighbours is not None):
            # mined with the model as the epoch starts (a resumed epoch's come from its checkpoint)
            self.sampler.neighbours = mine_neighbours(self.model, self.sampler.source, self.device)
        self.forward.train()
        plan = self.sampler.plan(epoch)
        part, parts = self._share("train")
        # equal step counts everywhere; a last batch too small to give every rank a sample is skipped
        steps = len(plan) - (len(plan) > 0 and plan.batch_size(len(plan) - 1) < parts)
        steps = self.dist.all_reduce_min(steps)
        data = self.sampler.records(epoch)
        # running sums of the metrics and of the sample count ("_count"), carried over a resume
        totals = {k: torch.tensor(v, device=self.device) for k, v in self.partial_totals.items()}
        start = last_report = time.perf_counter()
        samples = 0
        for b in range(self.start_batch, steps):
            batch = plan.batch(data, b, part, parts)
            samples += len(batch)
            totals["_count"] = totals.get("_count", 0) + len(batch)
            for k, v in self.train_step(batch).items():
                totals[k] = totals.get(k, 0) + v  # stays on the device: no sync per step
            # agreeing on a stop is a collective: every step alone, every few steps with peers
            if (not self.dist.distributed or b % STOP_CHECK_EVERY == 0) and \
                    self.dist.any(self.stop_requested()):
                self._save_checkpoint(epoch, b + 1, totals)
                raise TrainingInterrupted(f"stopped by SIGTERM in epoch {epoch} after batch {b + 1}")
            if time.perf_counter() - last_report > 30:  # a readable heartbeat on long epochs
                last_report = time.perf_counter()
                log.info("epoch %d: batch %d/%d", epoch, b + 1, steps)
        self.start_batch, self.partial_totals = 0, {}
        rate = torch.tensor([samples / max(time.perf_counter() - start, 1e-9)], device=self.dist.device)
        count = int(totals.pop("_count", 0))
        return self._reduce(totals, count), float(self.dist.all_reduce_sum(rate)[0])

    @torch.inference_mode()
    def evaluate(self, data: PairData, channel: str = "validation") -> dict[str, float]:
        """Mean loss (and accuracy) of the current model on ``data`` over all ranks, in eval mode."""
        self.model.eval()
        part, parts = self._share(channel)
        plan = sequential_plan(data, self.eval_batch, part, parts)
        totals: dict[str, torch.Tensor] = {}
        for b in range(len(plan)):
            batch = plan.batch(data, b).to(self.device)
            _, stats = _loss_and_stats(self.hp, self.model(batch.in0, batch.in1), batch.labels)
            for k, v in stats.items():
                totals[k] = totals.get(k, 0) + v
        return self._reduce(totals, plan.num_samples)

    @torch.inference_mode()
    def retrieval(self, data: PairData) -> dict[str, float]:
        """``retrieval_mrr`` and ``retrieval_accuracy`` (hits@1) of the current model, in eval mode:
        each of the first ``RETRIEVAL_POOL`` pairs of ``data`` labelled 1 ranks its own in1 among
        the in1 of all of them by the cosine of the encodings (ties count against it), the figure
        a retrieval user cares about, where the classifier's loss can rise while the embeddings
        improve. Each rank ranks the pool of the data it holds; the means are over all ranks."""
        self.model.eval()
        plan = records_plan(data, np.flatnonzero(data.labels == 1)[:RETRIEVAL_POOL].astype(np.int64),
                            self.eval_batch)
        encoded: list[list[torch.Tensor]] = [[], []]
        for b in range(len(plan)):
            batch = plan.batch(data, b).to(self.device)
            for side, tokens in enumerate((batch.in0, batch.in1)):
                encoded[side].append(F.normalize(self.model.encode(side, tokens).float(), dim=1))
        u, v = (torch.cat(e) for e in encoded)  # (n, enc_dim) each, unit length
        parts = []
        for start in range(0, len(u), 1024):  # (1024, n) similarities at a time
            sims = u[start:start + 1024] @ v.T
            rows = torch.arange(len(sims), device=sims.device)
            own = sims[rows, rows + start]
            parts.append((sims >= own[:, None]).sum(dim=1))
        ranks = torch.cat(parts).double()  # (n,), 1: its own in1 came first
        totals = torch.stack([(1 / ranks).sum(), (ranks == 1).double().sum(),
                              torch.tensor(float(len(ranks)), dtype=torch.float64, device=ranks.device)])
        totals = self.dist.all_reduce_sum(totals.to(self.dist.device)).cpu()
        count = max(float(totals[2]), 1.0)
        return {"retrieval_mrr": float(totals[0]) / count, "retrieval_accuracy": float(totals[1]) / count}

    def _reduce(self, totals: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        """Means over every rank's samples: sums and counts are added up across ranks first."""
        order = [k for k in ("accuracy", "cross_entropy", "mean_squared_error")
                 if k in totals or k in self._metric_names()]
        vec = torch.tensor([float(totals.get(k, 0.0)) for k in order] + [float(count)],
                           dtype=torch.float64, device=self.dist.device)
        vec = self.dist.all_reduce_sum(vec).cpu()
        return {k: float(vec[i]) / max(float(vec[-1]), 1.0) for i, k in enumerate(order)}

    def _metric_names(self) -> tuple[str, ...]:
        return ("mean_squared_error",) if self.hp.is_regression else ("accuracy", "cross_entropy")

    # -- checkpoints ------------------------------------------------------------------------------------

    def _save_checkpoint(self, epoch: int, next_batch: int, totals: dict | None = None) -> None:
        """Rank 0 writes the resumable state; every rank waits until it is on disk."""
        if self.checkpoint_dir is None or not self.checkpoint_dir.is_dir():
            return
        if self.dist.is_main:
            state = {
                "version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint,
                "epoch": epoch, "next_batch": next_batch,
                "partial_totals": {k: float(v) for k, v in (totals or {}).items()},
                "model": self.model.state_dict(),
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                "lazy_optimizer": None if self.lazy_optimizer is None else
                self.lazy_optimizer.state_dict(),
                "stopper": self.stopper.state_dict(), "best_state": self.best_state,
                "scaler": self.scaler.state_dict(),
                "history": self.result.history, "rng": torch.get_rng_state(),
                "hard_negatives": None if self.sampler.neighbours is None else
                torch.from_numpy(self.sampler.neighbours),
            }
            path = save_checkpoint(self.checkpoint_dir, state)
            log.info("checkpoint saved: %s (epoch %d, next batch %d)", path, epoch, next_batch)
        self.dist.any(False)  # barrier: nobody exits while rank 0 is still writing

    def resume(self) -> bool:
        """Load the checkpoint if this job wrote it (rank 0 decides and sends it to every rank).

        Another job's checkpoint (other hyperparameters or data: a second job with the same
        ``checkpoint_s3_uri``) or an unusable file is not resumed: one WARNING says why, training
        starts from scratch and overwrites the checkpoint as it goes. True if resumed.
        """
        if self.checkpoint_dir is None:
            return False
        state = self._own_checkpoint() if self.dist.is_main else None
        state = self.dist.broadcast_object(state)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.lazy_optimizer is not None:
            self.lazy_optimizer.load_state_dict(state["lazy_optimizer"])
        self.stopper.load_state_dict(state["stopper"])
        if state.get("scaler"):  # fp16 loss scale
            self.scaler.load_state_dict(state["scaler"])
        self.best_state = state["best_state"]
        self.result.history = state["history"]
        self.start_epoch, self.start_batch = state["epoch"], state["next_batch"]
        self.partial_totals = state["partial_totals"]
        if state.get("hard_negatives") is not None:  # the interrupted epoch's mined neighbours
            self.sampler.neighbours = state["hard_negatives"].numpy()
        torch.set_rng_state(state["rng"])
        log.info("resumed from checkpoint: epoch %d, batch %d", self.start_epoch, self.start_batch)
        return True

    def _own_checkpoint(self) -> dict | None:
        """The checkpoint's state if it can be resumed by this job, else None (warned)."""
        path = self.checkpoint_dir / CHECKPOINT_FILE
        try:
            state = load_checkpoint(self.checkpoint_dir)
            if state is None:
                return None
            why = _fingerprint_difference(state["fingerprint"], self.fingerprint)
            if why is None:
                _check_weights(state["model"], self.model.state_dict())
                return state
        except CheckpointUnusable as exc:
            why = f"it is not a usable checkpoint: {exc}"
        log.warning("not resuming from checkpoint %s: %s; training from scratch (the checkpoint "
                    "is overwritten as training goes)", path, why)
        return None

    # -- the run ------------------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run every epoch (or until early stopping); leave the best epoch's weights in ``self.model``."""
        hp, result = self.hp, self.result
        loss_name = "mean_squared_error" if hp.is_regression else "cross_entropy"
        retrieval = hp.early_stopping_metric == "retrieval_mrr"
        watched = "retrieval_mrr" if retrieval else loss_name
        for epoch in range(self.start_epoch, hp.epochs):
            if self.stopper.should_stop:
                result.stopped_early = True  # resumed after the stopping epoch's checkpoint
                break
            train_metrics, rate = self._train_epoch(epoch)
            self.metrics.quality("train", train_metrics, epoch)
            record = {f"train:{k}": v for k, v in train_metrics.items()}
            loss = train_metrics[loss_name]
            if "validation" in self.channels:
                val_metrics = self.evaluate(self.channels["validation"])
                if retrieval:
                    val_metrics.update(self.retrieval(self.channels["validation"]))
                self.metrics.quality("validation", val_metrics, epoch)
                record.update({f"validation:{k}": v for k, v in val_metrics.items()})
                loss = val_metrics[loss_name]
            # the stopper minimises; for retrieval_mrr it watches 1 - MRR (tolerance in MRR points)
            monitored = 1.0 - val_metrics["retrieval_mrr"] if retrieval else loss
            self.metrics.progress(100.0 * (epoch + 1) / hp.epochs)
            self.metrics.throughput(rate)
            result.history.append({"epoch": epoch, **record, "throughput": rate})
            diverged = not math.isfinite(loss)
            if not diverged and self.stopper.update(epoch, monitored):
                self.best_state = copy.deepcopy(self.model.state_dict())
            result.best_epoch = self.stopper.best_epoch
            self.on_epoch_end(result)  # also for a diverged epoch: its report shows how it went
            if diverged:
                raise UserError(f"training diverged: {self.monitor} {loss_name} is {loss} at "
                                f"epoch {epoch}; lower learning_rate (now {hp.learning_rate})")
            log.info("epoch %d/%d: %s (best epoch %d)", epoch + 1, hp.epochs,
                     ", ".join(f"{k}={v:.4f}" for k, v in record.items()), self.stopper.best_epoch)
            self._save_checkpoint(epoch + 1, 0)
            if self.stopper.should_stop and epoch + 1 < hp.epochs:
                log.info("early stopping: %s %s has not improved by %g for %d epochs", self.monitor,
                         watched, hp.early_stopping_tolerance, hp.early_stopping_patience)
                result.stopped_early = True
                break
        result.best_epoch = self.stopper.best_epoch
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        best = self.stopper.best_loss
        log.info("keeping the weights of epoch %d (%s %s %s %.6g)", result.best_epoch,
                 "highest" if retrieval else "lowest", self.monitor, watched, 1 - best if retrieval else best)
        if "test" in self.channels:
            result.test = self.evaluate(self.channels["test"], "test")
            if retrieval and np.count_nonzero(self.channels["test"].labels == 1) >= 2:
                result.test.update(self.retrieval(self.channels["test"]))
            self.metrics.quality("test", result.test)
        return result


def _default(key: str):
    spec = SPECS.get(key)
    return None if spec is None else spec.default


def _fingerprint_difference(saved: dict, now: dict) -> str | None:
    """Why a checkpoint's fingerprint is another job's (None if it is this one's)."""
    if not isinstance(saved, dict):
        raise CheckpointUnusable("its fingerprint is not a mapping")
    reasons = []
    old, new = saved.get("hyperparameters") or {}, now["hyperparameters"]
    # a key the checkpoint lacks (added to the container after it was written) had its default
    changed = sorted(k for k in set(old) | set(new)
                     if old.get(k, _default(k)) != new.get(k, _default(k)))
    if changed:
        shown = ", ".join(f"{k} {old.get(k, _default(k))!r} -> {new.get(k, _default(k))!r}"
                          for k in changed[:6])
        reasons.append(f"it was written with other hyperparameters ({shown}"
                       f"{', ...' if len(changed) > 6 else ''})")
    old, new = saved.get("data") or {}, now["data"]
    channels = sorted(c for c in set(old) | set(new) if old.get(c) != new.get(c))
    if channels:
        reasons.append(f"the data of channel{'s' * (len(channels) > 1)} "
                       f"{', '.join(map(repr, channels))} differs from the data it was trained on")
    return "; ".join(reasons) or None


def _check_weights(saved: dict, model: dict[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointUnusable` unless the saved weights load into ``model``'s state (a
    damaged file whose fingerprint still matches would otherwise fail half-way through loading)."""
    if not isinstance(saved, dict) or saved.keys() != model.keys():
        raise CheckpointUnusable("its weights are not this model's (other parameter names)")
    for key, value in model.items():
        if not isinstance(saved[key], torch.Tensor) or saved[key].shape != value.shape:
            raise CheckpointUnusable(f"its weight {key} has another shape than this model's "
                                     f"{tuple(value.shape)}")


def _plain(params: dict) -> dict:
    """Hyperparameters as plain JSON-like values (for comparing a checkpoint with this run)."""
    return {k: v for k, v in params.items() if v is not None}
