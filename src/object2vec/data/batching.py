"""Epoch plans and batches, built from the flat numpy arrays with vectorised operations only.

An epoch is a list of *samples* ``(i0, i1, label)``: the given records (``i0 == i1``, their own label)
plus, with ``negative_sampling_rate = k``, ``k`` generated negatives per record that pair record ``i``'s
``in0`` with the ``in1`` of a record ``j`` drawn uniformly from all records the process sees (label 0).
Samples are shuffled together every epoch (seeded by ``(seed, epoch)``) and cut into batches of
``mini_batch_size``; with ``bucket_width > 0`` batches hold samples of similar length. A channel of
documents (:mod:`object2vec.data.documents`) gives each epoch its own freshly drawn records first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from object2vec.data.documents import DocumentData
from object2vec.data.records import PairData, Side
from object2vec.model.tokens import Tokens

DRAW_STREAM = 1  # the epoch's draw of document pairs: a random stream apart from its shuffle


@dataclass
class Batch:
    """Model-ready tensors for one step."""

    in0: Tokens
    in1: Tokens
    labels: torch.Tensor  # (B,) int64 classes or float32 values

    def __len__(self) -> int:
        return len(self.in0)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.in0.to(device), self.in1.to(device), self.labels.to(device, non_blocking=True))

    def split(self, parts: int) -> list[Batch]:
        """``parts`` consecutive micro-batches of nearly equal size (fewer if the batch is smaller)."""
        bounds = np.linspace(0, len(self), min(parts, len(self)) + 1).round().astype(int)
        return [Batch(self.in0.slice(a, b), self.in1.slice(a, b), self.labels[a:b])
                for a, b in zip(bounds[:-1], bounds[1:])]


def gather_tokens(side: Side, idx: np.ndarray) -> Tokens:
    """Sequences ``idx`` of ``side`` as a flat :class:`Tokens` batch, without a Python loop."""
    starts = side.offsets[idx]  # (B,)
    lengths = side.offsets[idx + 1] - starts  # (B,)
    batch_offsets = np.cumsum(lengths) - lengths  # (B,) start of each sequence in the batch
    # position k of the batch reads side.ids[starts[b] + (k - batch_offsets[b])] for its sequence b
    positions = np.arange(lengths.sum()) + np.repeat(starts - batch_offsets, lengths)
    return Tokens(torch.from_numpy(side.ids[positions].astype(np.int64)),
                  torch.from_numpy(batch_offsets), torch.from_numpy(lengths))


def make_batch(data: PairData, idx0: np.ndarray, idx1: np.ndarray, labels: np.ndarray) -> Batch:
    """The batch pairing ``in0`` of records ``idx0`` with ``in1`` of records ``idx1``."""
    return Batch(gather_tokens(data.in0, idx0), gather_tokens(data.in1, idx1), torch.from_numpy(labels))


@dataclass
class EpochPlan:
    """One epoch's samples in batch order; batch ``b`` is ``slice(bounds[b], bounds[b + 1])``."""

    idx0: np.ndarray  # (S,) int64 record whose in0 is used
    idx1: np.ndarray  # (S,) int64 record whose in1 is used
    labels: np.ndarray  # (S,)
    bounds: np.ndarray  # (num_batches + 1,)

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def batch(self, data: PairData, b: int, part: int = 0, parts: int = 1) -> Batch:
        """Batch ``b``, or its share ``part`` of ``parts`` (every ``parts``-th sample) for one rank."""
        s = slice(self.bounds[b] + part, self.bounds[b + 1], parts)
        return make_batch(data, self.idx0[s], self.idx1[s], self.labels[s])

    def batch_size(self, b: int) -> int:
        return int(self.bounds[b + 1] - self.bounds[b])

    @property
    def num_samples(self) -> int:
        return int(self.bounds[-1])


class EpochSampler:
    """Plans every epoch of training over ``source``: negatives, shuffling, bucketing, batching.
    ``source`` is the channel's records, or its documents (``pairs_per_document`` drawn from each,
    every epoch)."""

    def __init__(self, source: PairData | DocumentData, batch_size: int, negative_sampling_rate: int = 0,
                 bucket_width: int = 0, seed: int = 0, pairs_per_document: int = 1,
                 hard_negatives: int = 0, parts: int = 1) -> None:
        self.source = source
        self.batch_size = batch_size
        self.rate = negative_sampling_rate
        self.bucket_width = bucket_width
        self.seed = seed
        self.pairs_per_document = pairs_per_document
        self._drawn: tuple[int, PairData] | None = None
        # hard_negatives (documents only): the per-pair negatives drawn from each document's
        # neighbours (D, k), which the trainer mines with the current model before each epoch's plan;
        # parts: the ranks that share each batch, every parts-th sample each (EpochPlan.batch)
        self.hard_negatives = hard_negatives
        self.parts = parts
        self.neighbours: np.ndarray | None = None

    def records(self, epoch: int) -> PairData:
        """The records of ``epoch``: the channel's, or the pairs drawn from its documents for it."""
        if isinstance(self.source, PairData):
            return self.source
        if self._drawn is None or self._drawn[0] != epoch:  # the trainer asks twice per epoch
            rng = np.random.default_rng([self.seed, epoch, DRAW_STREAM])
            self._drawn = epoch, self.source.pairs(rng, self.pairs_per_document)
        return self._drawn[1]

    def plan(self, epoch: int) -> EpochPlan:
        """The samples of ``epoch`` over :meth:`records` (deterministic in ``(seed, epoch)``)."""
        data = self.records(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        if self.hard_negatives:
            return self._grouped_plan(data, rng)
        n = len(data)
        records = np.arange(n, dtype=np.int64)
        idx0 = np.concatenate([records] + [records] * self.rate)
        idx1 = np.concatenate([records] + [rng.integers(0, n, n) for _ in range(self.rate)])
        labels = np.concatenate([data.labels] + [np.zeros(n, dtype=data.labels.dtype)] * self.rate)
        order = rng.permutation(len(idx0))
        if self.bucket_width > 0:
            lengths = np.maximum(data.in0.lengths[idx0], data.in1.lengths[idx1])
            # stable sort by bucket keeps the random order inside each bucket
            order = order[np.argsort(lengths[order] // self.bucket_width, kind="stable")]
        bounds = np.append(np.arange(0, len(order), self.batch_size), len(order))
        if self.bucket_width > 0:  # visit the length-sorted batches in random order
            perm = rng.permutation(len(bounds) - 1)
            order = np.concatenate([order[bounds[b]:bounds[b + 1]] for b in perm])
            sizes = np.diff(bounds)[perm]
            bounds = np.concatenate([[0], np.cumsum(sizes)])
        return EpochPlan(idx0[order], idx1[order], labels[order], bounds)

    def _grouped_plan(self, data: PairData, rng: np.random.Generator) -> EpochPlan:
        """``hard_negatives``: batches of ``m`` shuffled positives followed by their negatives in
        blocks of ``m`` (``negative_sampling_rate`` random ones, then ``hard_negatives`` drawn from
        the ``in1`` of the pairs of the document's neighbours), so that the in-batch softmax can
        score each positive against its own hard negatives. ``m`` is a multiple of ``parts``, so each
        rank's share (every ``parts``-th sample) holds the negatives of its own positives; the
        fewer than ``parts`` positives left over at the end of an epoch are not used."""
        assert isinstance(self.source, DocumentData) and self.neighbours is not None
        n, group, parts = len(data), 1 + self.rate + self.hard_negatives, self.parts
        counts = self.source.pair_counts(self.pairs_per_document)  # (D,) pairs of each document
        first = np.cumsum(counts) - counts  # (D,) its first pair
        doc = np.repeat(np.arange(len(counts), dtype=np.int64), counts)  # (n,) each pair's document
        order = rng.permutation(n)[: n - n % parts]
        random = rng.integers(0, n, (self.rate, n))  # (rate, n) random partners of each pair
        pick = rng.integers(0, self.neighbours.shape[1], (n, self.hard_negatives))
        near = self.neighbours[doc[:, None], pick]  # (n, h) a neighbour of each pair's document
        hard = (first[near] + rng.random(near.shape) * counts[near]).astype(np.int64).T  # (h, n) its pairs
        partners = np.concatenate([np.arange(n, dtype=np.int64)[None], random, hard])  # (group, n)
        m = max(parts, self.batch_size // group // parts * parts)  # positives per batch
        empty = np.zeros(0, dtype=np.int64)  # (an epoch of fewer pairs than ranks has no batch)
        idx0, idx1, labels, bounds = [empty], [empty], [data.labels[:0]], [0]
        for begin in range(0, len(order), m):
            pos = order[begin:begin + m]
            idx0.append(np.tile(pos, group))
            idx1.append(partners[:, pos].reshape(-1))
            labels.append(np.concatenate([data.labels[pos],
                                          np.zeros(len(pos) * (group - 1), data.labels.dtype)]))
            bounds.append(bounds[-1] + len(pos) * group)
        return EpochPlan(np.concatenate(idx0), np.concatenate(idx1), np.concatenate(labels),
                         np.array(bounds, dtype=np.int64))


def sequential_plan(data: PairData, batch_size: int, part: int = 0, parts: int = 1) -> EpochPlan:
    """Every ``parts``-th record starting at ``part``, in file order (evaluation on one rank)."""
    return records_plan(data, np.arange(part, len(data), parts, dtype=np.int64), batch_size)


def records_plan(data: PairData, idx: np.ndarray, batch_size: int) -> EpochPlan:
    """The records ``idx`` (int64) of ``data`` as they are, in that order, ``batch_size`` at a time."""
    bounds = np.append(np.arange(0, len(idx), batch_size), len(idx))
    return EpochPlan(idx, idx, data.labels[idx], bounds)
