"""The Trainer (object2vec.training.trainer): evaluation sees only the channel's records (no
negatives); the opt-in in-batch softmax (``in_batch_softmax_weight``, ``in_batch_softmax_temperature``):
the loss on literal tensors, the default that changes nothing, and that it trains single-side
embeddings to find their partner among the batch's other documents; IDF token weighting: document
frequencies and the weights on literal data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import QUIET, pairs, retrieval_hp, side, sparse_hp, topic_pairs, trained

from object2vec.data.records import PairData, Side
from object2vec.model.tokens import Tokens
from object2vec.training.trainer import Trainer, document_frequency, in_batch_softmax_loss


def retrieval_hits_at_1(trainer: Trainer, data: PairData, topics: int = 24) -> float:
    """Fraction of the first ``topics`` queries whose own document (of the first ``topics``) has the
    highest cosine similarity; both embedded through enc0, as the document benchmark does."""
    model = trainer.model.eval()

    def embed(s: Side) -> torch.Tensor:
        seqs = [s.ids[s.offsets[i]:s.offsets[i + 1]].tolist() for i in range(topics)]
        with torch.no_grad():
            tokens = Tokens.from_lists(seqs, trainer.device)
            return torch.nn.functional.normalize(model.encode(0, tokens), dim=1).cpu()

    sims = embed(data.in0) @ embed(data.in1).T  # (topics, topics)
    return float((sims.argmax(1) == torch.arange(topics)).float().mean())


# -- evaluation ------------------------------------------------------------------------------------


def test_negatives_never_reach_validation_or_test(device):
    """Evaluation sees exactly the channel's records: counts match with negative_sampling_rate=5."""
    data, val = pairs(64, 40), pairs(30, 40, seed=1)
    trainer = Trainer(sparse_hp(negative_sampling_rate=5, epochs=1), {"train": data, "validation": val,
                                                                      "test": val}, QUIET, device=device)
    seen = []
    original = trainer.evaluate

    def counting(d, *args):
        seen.append(len(d))
        return original(d, *args)

    trainer.evaluate = counting
    trainer.train()
    assert seen == [30, 30]
    assert trainer.sampler.plan(0).num_samples == 64 * 6


# -- the loss itself -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread")
def test_loss_on_literal_tensors():
    """Two orthogonal pairs at temperature 1: each row's logits are (1, 0), so both directions give
    -log(e / (e + 1))."""
    eye = torch.eye(2)
    expected = -math.log(math.e / (math.e + 1))
    assert in_batch_softmax_loss(eye, eye, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # scale does not matter (cosine), temperature does
    assert in_batch_softmax_loss(3 * eye, 0.5 * eye, 1.0).item() == pytest.approx(expected, rel=1e-6)
    sharp = -math.log(math.exp(10) / (math.exp(10) + 1))
    assert in_batch_softmax_loss(eye, eye, 0.1).item() == pytest.approx(sharp, rel=1e-3)  # float32


@pytest.mark.usefixtures("one_thread")
def test_loss_is_symmetric_and_prefers_the_right_partner():
    """Swapping the sides gives the same loss; matched pairs score lower than shuffled ones."""
    u = torch.randn(6, 5)
    v = u + 0.1 * torch.randn(6, 5)
    matched = in_batch_softmax_loss(u, v, 0.1)
    assert in_batch_softmax_loss(v, u, 0.1).item() == pytest.approx(matched.item(), rel=1e-6)
    assert matched < in_batch_softmax_loss(u, v[torch.tensor([1, 2, 3, 4, 5, 0])], 0.1)


# -- training --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread")
def test_weight_zero_trains_exactly_as_without_the_key():
    """The default keeps today's behaviour bit for bit; a positive weight changes the training."""
    data = topic_pairs()
    without = trained(retrieval_hp(), data).model.state_dict()
    zero = trained(retrieval_hp(in_batch_softmax_weight="0"), data).model.state_dict()
    on = trained(retrieval_hp(in_batch_softmax_weight="1"), data).model.state_dict()
    assert all(torch.equal(without[k], zero[k]) for k in without)
    assert not all(torch.equal(without[k], on[k]) for k in without)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("storage", ["row_sparse", "dense"])
def test_in_batch_softmax_teaches_embeddings_to_find_their_document(storage, device):
    """After a few epochs with the in-batch loss, a query's embedding is nearest to its own
    document's among the others (the task the classifier loss alone learns only indirectly)."""
    data = topic_pairs()
    hp = retrieval_hp(in_batch_softmax_weight="1", in_batch_softmax_temperature="0.1", epochs="8",
                      token_embedding_storage_type=storage)
    assert retrieval_hits_at_1(trained(hp, data, device=device), data) >= 0.9


# -- IDF token weighting --------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread")
def test_document_frequency_counts_sequences_not_occurrences():
    s = side([[0, 0, 1], [1, 2], [0]])
    assert document_frequency(s, 4).tolist() == [2, 2, 1, 0]


@pytest.mark.usefixtures("one_thread")
def test_idf_weights_come_from_both_sides_of_a_tied_table(device):
    """Tied: N = 2 x 3 sequences; token 0 is in 3 of them, token 1 in 2, token 5 in none."""
    data = PairData(side([[0, 1], [0], [2]]), side([[0], [1, 1], [3]]),
                    np.ones(3, dtype=np.int64))
    trainer = Trainer(retrieval_hp(token_weighting="idf", enc0_vocab_size="6"), {"train": data}, QUIET,
                      device=device)
    weights = trainer.model.embedding(0).pool_weight
    expected = [math.log(7 / (1 + df)) + 1 for df in (3, 2, 1, 1, 0, 0)]
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)
    assert len(trainer.model.embeddings) == 1


@pytest.mark.usefixtures("one_thread")
def test_retrieval_metric_ranks_each_positive_partner_among_all_positives(device):
    """Trainer.retrieval against numpy: for the pairs labelled 1 only (the negatives are left out),
    the reciprocal rank of each in0's own in1 among all their in1 by cosine, and the share ranked
    first."""
    data = topic_pairs(n=40, seed=3)
    labels = data.labels.copy()
    labels[::5] = 0  # these pairs are not in the pool
    valid = PairData(data.in0, data.in1, labels)
    trainer = trained(retrieval_hp(epochs="2"), data, device=device)  # retrieval() needs no setting
    got = trainer.retrieval(valid)
    keep = np.flatnonzero(labels == 1)
    with torch.no_grad():
        u, v = (trainer.model.encode(s, Tokens.from_lists([list(map(int, data.side(s).ids[
            data.side(s).offsets[k]:data.side(s).offsets[k + 1]])) for k in keep], device)).cpu().numpy()
            for s in (0, 1))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims = u @ v.T
    ranks = (sims >= np.diag(sims)[:, None] - 1e-6).sum(axis=1)  # 1e-6: float32 ties count against
    assert got["retrieval_mrr"] == pytest.approx(np.mean(1 / ranks), rel=1e-6)
    assert got["retrieval_accuracy"] == pytest.approx(np.mean(ranks == 1), rel=1e-6)
    assert 0.2 < got["retrieval_mrr"] <= 1  # two epochs on these topics: above chance (0.13 for 32)
