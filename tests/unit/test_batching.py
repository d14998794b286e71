"""Batch building: exact token gathering, negative sampling, deterministic epoch plans and bucketing
(object2vec.md sections 4.5, 7.6 and 7.8)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from helpers import pairs

from object2vec.data.batching import EpochSampler, gather_tokens, make_batch, sequential_plan
from object2vec.data.records import PairData, Side


def make_side(seqs: list[list[int]]) -> Side:
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Side(np.array([t for s in seqs for t in s], dtype=np.int32), offsets)


def random_data(n: int, max_len: int = 12, seed: int = 0, regression: bool = False,
                min_len: int = 1) -> tuple[PairData, list[list[int]], list[list[int]]]:
    rng = np.random.default_rng(seed)
    s0 = [rng.integers(0, 50, rng.integers(min_len, max_len + 1)).tolist() for _ in range(n)]
    s1 = [rng.integers(0, 50, rng.integers(min_len, max_len + 1)).tolist() for _ in range(n)]
    labels = (rng.random(n).astype(np.float32) * 5 if regression
              else rng.integers(0, 3, n).astype(np.int64))
    return PairData(make_side(s0), make_side(s1), labels), s0, s1


def token_lists(tokens) -> list[list[int]]:
    ids, offsets, lengths = tokens.ids.tolist(), tokens.offsets.tolist(), tokens.lengths.tolist()
    return [ids[o:o + n] for o, n in zip(offsets, lengths)]


def samples(plan) -> list[tuple[int, int, float]]:
    return list(zip(plan.idx0.tolist(), plan.idx1.tolist(), plan.labels.tolist()))


# -- gathering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("idx", [[0], [3, 1, 4, 1, 5, 9, 2, 6], list(range(40)), [39, 0, 39]])
def test_gather_tokens_gives_exactly_the_sequences(idx):
    """gather_tokens returns the chosen sequences in the chosen order (repeats allowed), with int64
    ids, offsets that start each sequence, and the true lengths."""
    data, s0, _ = random_data(40)
    tokens = gather_tokens(data.in0, np.array(idx, dtype=np.int64))
    assert token_lists(tokens) == [s0[i] for i in idx]
    assert tokens.lengths.tolist() == [len(s0[i]) for i in idx]
    assert tokens.offsets.tolist() == (tokens.lengths.cumsum(0) - tokens.lengths).tolist()
    assert tokens.ids.dtype == tokens.offsets.dtype == tokens.lengths.dtype == torch.int64


def test_make_batch_pairs_in0_of_one_record_with_in1_of_another():
    """A batch pairs in0 of idx0[k] with in1 of idx1[k] and carries the given labels."""
    data, s0, s1 = random_data(10)
    idx0, idx1 = np.array([2, 7, 7]), np.array([5, 7, 0])
    labels = np.array([1, 0, 2], dtype=np.int64)
    batch = make_batch(data, idx0, idx1, labels)
    assert token_lists(batch.in0) == [s0[2], s0[7], s0[7]]
    assert token_lists(batch.in1) == [s1[5], s1[7], s1[0]]
    assert batch.labels.tolist() == [1, 0, 2] and len(batch) == 3


def test_padded_view_puts_every_token_in_place_and_masks_the_rest():
    """Tokens.padded() lays the flat batch out as (B, T) with a mask of the real tokens; id 0 inside
    a sequence stays a real (masked-in) token."""
    data = PairData(make_side([[0, 0, 3], [5], [0, 2]]), make_side([[1], [1], [1]]),
                    np.zeros(3, dtype=np.int64))
    ids, mask = gather_tokens(data.in0, np.arange(3)).padded()
    assert ids.tolist() == [[0, 0, 3], [5, 0, 0], [0, 2, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]


# -- negative sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 3, 5])
def test_negative_sampling_makes_k_negatives_per_record(rate):
    """With negative_sampling_rate=k every record appears once as given (its own in0/in1 and label)
    and k times as a negative: its in0 with the in1 of a random record, label 0."""
    n = 60
    data, _, _ = random_data(n)
    data.labels[:] = 1  # positives only, as in AWS's document-embedding notebook
    plan = EpochSampler(data, batch_size=16, negative_sampling_rate=rate, seed=3).plan(0)
    assert plan.num_samples == n * (rate + 1)
    given = [s for s in samples(plan) if s[2] == 1]
    negatives = [s for s in samples(plan) if s[2] == 0]
    assert sorted(given) == [(i, i, 1) for i in range(n)]
    assert Counter(i0 for i0, _, _ in negatives) == {i: rate for i in range(n)}
    partners = [i1 for _, i1, _ in negatives]
    assert all(0 <= j < n for j in partners)
    assert len(set(partners)) > n // 2  # drawn from across the data, not a fixed partner
    assert sum(i0 != i1 for i0, i1, _ in negatives) > 0.9 * len(negatives)


def test_negatives_are_mixed_into_batches_and_carry_label_zero():
    """Negatives are shuffled in with the given records (not appended as all-negative batches), and
    the label dtype of the channel is kept (float32 for regression)."""
    data, s0, s1 = random_data(64, regression=True)
    plan = EpochSampler(data, batch_size=32, negative_sampling_rate=1, seed=0).plan(0)
    assert plan.labels.dtype == np.float32
    for b in range(len(plan)):
        batch = plan.batch(data, b)
        negs = (plan.idx0[plan.bounds[b]:plan.bounds[b + 1]]
                != plan.idx1[plan.bounds[b]:plan.bounds[b + 1]])
        assert 0 < negs.sum() < len(batch)
    negs = np.flatnonzero(plan.idx0 != plan.idx1)
    assert (plan.labels[negs] == 0).all()


def test_no_negative_sampling_gives_every_record_once():
    """Rate 0: the epoch is a permutation of the records with their own labels."""
    data, _, _ = random_data(50)
    plan = EpochSampler(data, batch_size=8).plan(0)
    assert sorted(samples(plan)) == [(i, i, int(data.labels[i])) for i in range(50)]
    assert plan.idx0.tolist() != list(range(50))  # shuffled


# -- determinism and batching ----------------------------------------------------------------------


def test_plans_are_deterministic_per_seed_and_epoch_and_differ_between_epochs():
    """The same (seed, epoch) gives the same plan, even from a new sampler; another epoch or another
    seed gives a different order and different negatives."""
    data, _, _ = random_data(80)

    def plan(seed, epoch):
        return EpochSampler(data, batch_size=10, negative_sampling_rate=2, seed=seed).plan(epoch)

    a, b = plan(7, 3), plan(7, 3)
    for name in ("idx0", "idx1", "labels", "bounds"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    for other in (plan(7, 4), plan(8, 3)):
        assert not np.array_equal(a.idx0, other.idx0)
        assert sorted(samples(a)) != sorted(samples(other))  # other negatives too


@pytest.mark.parametrize("n,batch_size", [(100, 32), (96, 32), (5, 32), (33, 1)])
def test_batches_have_mini_batch_size_and_cover_every_sample(n, batch_size):
    """Batches are mini_batch_size long except a smaller last one; together they hold every
    sample."""
    data, _, _ = random_data(n)
    plan = EpochSampler(data, batch_size=batch_size).plan(1)
    sizes = np.diff(plan.bounds).tolist()
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1) and 0 < sizes[-1] <= batch_size
    assert sum(len(plan.batch(data, b)) for b in range(len(plan))) == n


def test_sequential_plan_keeps_file_order():
    """Evaluation visits every record once, in file order."""
    data, s0, s1 = random_data(23)
    plan = sequential_plan(data, 10)
    assert np.diff(plan.bounds).tolist() == [10, 10, 3]
    got0 = [seq for b in range(len(plan)) for seq in token_lists(plan.batch(data, b).in0)]
    assert got0 == s0 and samples(plan) == [(i, i, int(data.labels[i])) for i in range(23)]


# -- bucketing -------------------------------------------------------------------------------------


def batch_lengths(plan, data):
    """Per batch: the padded length max(len(in0), len(in1)) of each sample."""
    out = []
    for b in range(len(plan)):
        s = slice(plan.bounds[b], plan.bounds[b + 1])
        out.append(np.maximum(data.in0.lengths[plan.idx0[s]], data.in1.lengths[plan.idx1[s]]))
    return out


def test_bucketing_keeps_every_sample_exactly_once():
    """Bucketing reorders samples but neither drops nor repeats any (negatives included)."""
    data, _, _ = random_data(300, max_len=40)
    flat = EpochSampler(data, batch_size=16, negative_sampling_rate=2, seed=1).plan(2)
    bucketed = EpochSampler(data, batch_size=16, negative_sampling_rate=2, bucket_width=5,
                            seed=1).plan(2)
    assert bucketed.num_samples == flat.num_samples == 900
    assert sorted(samples(bucketed)) == sorted(samples(flat))


def test_bucketing_groups_similar_lengths_when_buckets_fill_whole_batches():
    """When every bucket holds whole batches, each batch stays inside one bucket: lengths within a
    batch differ by less than bucket_width."""
    width, batch = 5, 8
    seqs = [[1] * length for length in range(1, 41) for _ in range(batch)]  # 8 of each length 1..40
    data = PairData(make_side(seqs), make_side([[1]] * len(seqs)), np.zeros(len(seqs), np.int64))
    plan = EpochSampler(data, batch_size=batch, bucket_width=width, seed=0).plan(0)
    for lengths in batch_lengths(plan, data):
        assert len(set(lengths // width)) == 1, lengths
        assert lengths.max() - lengths.min() < width


def test_bucketing_cuts_padding_and_shuffles_batch_order():
    """On random lengths, bucketing leaves far less padding than plain shuffling, and batches are
    not visited shortest-first."""
    data, _, _ = random_data(2000, max_len=50)
    flat = EpochSampler(data, batch_size=32, seed=0).plan(0)
    bucketed = EpochSampler(data, batch_size=32, bucket_width=4, seed=0).plan(0)

    def padding(plan):
        return sum(int((lens.max() - lens).sum()) for lens in batch_lengths(plan, data))

    assert padding(bucketed) < 0.2 * padding(flat)
    firsts = [int(lens.min()) for lens in batch_lengths(bucketed, data)]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    # batch-level shuffling differs between epochs too
    other = [int(lens.min()) for lens in batch_lengths(
        EpochSampler(data, batch_size=32, bucket_width=4, seed=0).plan(1), data)]
    assert other != firsts


# -- negative sampling over the whole data set ---------------------------------------------------


@pytest.mark.parametrize("rate", [0, 1, 3, 5])
def test_negative_sampling_rate(rate):
    """Each record appears once with its own label, plus `rate` negatives pairing its in0 with the in1 of
    a record drawn from the whole set, labelled 0."""
    data = pairs(200, 40)
    plan = EpochSampler(data, 32, negative_sampling_rate=rate, seed=1).plan(0)
    assert plan.num_samples == 200 * (1 + rate)
    given = plan.idx0 == plan.idx1
    generated = ~given
    # the given records: every record exactly once, with its label
    assert sorted(plan.idx0[given].tolist()) == list(range(200)) or rate > 0
    np.testing.assert_array_equal(np.bincount(plan.idx0, minlength=200), np.full(200, 1 + rate))
    assert (plan.labels[generated] == 0).all()
    if rate:
        # partners come from the whole set, not only the batch: they span the index range
        assert plan.idx1[generated].min() < 20 and plan.idx1[generated].max() > 180


def test_negative_sampling_is_seeded_and_reshuffled_per_epoch():
    data = pairs(100, 40)
    a = EpochSampler(data, 16, 3, seed=5).plan(0)
    b = EpochSampler(data, 16, 3, seed=5).plan(0)
    c = EpochSampler(data, 16, 3, seed=5).plan(1)
    np.testing.assert_array_equal(a.idx1, b.idx1)
    assert not np.array_equal(a.idx1, c.idx1)
