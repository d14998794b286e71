"""``hard_negatives`` (issue 16): neighbours mined with the current model agree with a brute-force
search; each batch holds every positive's negatives in the same rank's share, drawn from its
document's neighbours; the in-batch softmax scores them; bad settings are refused; an interrupted
epoch resumes with its own mined neighbours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import QUIET, retrieval_hp

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.batching import EpochSampler
from object2vec.data.documents import DocumentData, load_documents
from object2vec.data.records import RecordRules
from object2vec.errors import UserError
from object2vec.model.tokens import Tokens
from object2vec.training.hard_negatives import mine_neighbours
from object2vec.training.trainer import Trainer, TrainingInterrupted, in_batch_softmax_loss

RULES = RecordRules(vocab_sizes=(104, 104), max_seq_lens=(8, 8), regression=False, num_classes=2)


def topic_documents(tmp_path: Path, n: int = 60, seed: int = 0) -> DocumentData:
    """``n`` documents of 2-5 sentences; document ``k``'s tokens are its topic's (ids ``4 t .. 4 t +
    3``, ``t = k % 24``) and shared noise (ids 96-103)."""
    rng = np.random.default_rng(seed)
    docs = [[[int(t) for t in rng.choice(4 * (k % 24) + np.arange(4), 2)] + [int(rng.integers(96, 104))]
             for _ in range(int(rng.integers(2, 6)))] for k in range(n)]
    (tmp_path / "train").mkdir(exist_ok=True)
    (tmp_path / "train" / "d.jsonl").write_text("".join(json.dumps({"document": d}) + "\n" for d in docs))
    return load_documents(tmp_path / "train", RULES)


def hard_hp(**over):
    return retrieval_hp(**{"hard_negatives": 1, "in_batch_softmax_weight": 1, "negative_sampling_rate": 0,
                           "pairs_per_document": 2, "epochs": 2, **over})


def test_mined_neighbours_are_the_nearest_other_documents_by_cosine(tmp_path):
    docs = topic_documents(tmp_path)
    model = Trainer(hard_hp(), {"train": docs}, QUIET).model
    found = mine_neighbours(model, docs, "cpu", pool=5)
    whole = docs.whole(1)  # the reference: every document embedded alone, all cosines, sorted
    with torch.inference_mode():
        x = torch.cat([model.encode(1, Tokens.from_flat(whole.ids[a:b].astype(np.int64), np.array([b - a])))
            for a, b in zip(whole.offsets[:-1], whole.offsets[1:])])
    cos = (F.normalize(x, dim=1) @ F.normalize(x, dim=1).T).numpy()
    np.fill_diagonal(cos, -np.inf)
    assert found.shape == (len(docs), 5)
    for d in range(len(docs)):
        assert cos[d, found[d]].tolist() == pytest.approx(sorted(cos[d], reverse=True)[:5], abs=1e-5)
    assert mine_neighbours(model, docs, "cpu", pool=100).shape == (len(docs), len(docs) - 1)


@pytest.mark.parametrize("parts, rate, hard", [(1, 0, 1), (2, 0, 2), (3, 1, 1), (2, 2, 3)])
def test_each_positive_s_negatives_are_in_its_rank_s_share_and_from_neighbour_documents(
        tmp_path, parts, rate, hard):
    docs = topic_documents(tmp_path)
    sampler = EpochSampler(docs, batch_size=24, negative_sampling_rate=rate, seed=3, pairs_per_document=2,
                           hard_negatives=hard, parts=parts)
    rng = np.random.default_rng(0)
    sampler.neighbours = np.stack([rng.choice(np.delete(np.arange(len(docs)), d), 4, replace=False)
                                   for d in range(len(docs))])
    counts = docs.pair_counts(2)
    doc_of = np.repeat(np.arange(len(docs)), counts)  # each drawn pair's document
    data, plan = sampler.records(0), sampler.plan(0)
    used = []
    for b in range(len(plan)):
        assert plan.batch_size(b) <= 24 and plan.batch_size(b) % ((1 + rate + hard) * parts) == 0
        for part in range(parts):
            s = slice(plan.bounds[b] + part, plan.bounds[b + 1], parts)
            idx0, idx1, labels = plan.idx0[s], plan.idx1[s], plan.labels[s]
            m = int(labels.sum())
            pos = idx0[:m]
            assert (idx1[:m] == pos).all() and not labels[m:].any()  # positives first, then negatives
            blocks = idx1[m:].reshape(rate + hard, m)  # block j holds one negative of each positive
            assert (idx0[m:].reshape(rate + hard, m) == pos).all()
            for near in blocks[rate:]:
                assert all(doc_of[j] in sampler.neighbours[doc_of[i]] for i, j in zip(pos, near))
            used += pos.tolist()
    assert sorted(used) == sorted(set(used)) and len(used) == len(data) - len(data) % parts
    assert len(plan.batch(data, 0, parts - 1, parts)) == plan.batch_size(0) // parts  # the trainer's path


def test_the_in_batch_softmax_scores_each_positive_against_the_negatives_too():
    g = torch.Generator().manual_seed(0)
    u, v, extra = (torch.randn(n, 6, generator=g) for n in (4, 4, 5))
    cos = lambda a, b: F.normalize(a, dim=1) @ F.normalize(b, dim=1).T  # noqa: E731
    t = 0.1
    forward = -torch.log_softmax(cos(u, torch.cat([v, extra])) / t, dim=1).diagonal().mean()
    backward = -torch.log_softmax(cos(v, u) / t, dim=1).diagonal().mean()
    assert float(in_batch_softmax_loss(u, v, t, extra)) == pytest.approx(float(0.5 * (forward + backward)))
    without = float(in_batch_softmax_loss(u, v, t))
    assert without == pytest.approx(float(in_batch_softmax_loss(u, v, t, extra[:0])))
    assert in_batch_softmax_loss(u, v, t, extra) > in_batch_softmax_loss(u, v, t)


@pytest.mark.parametrize("over, words", [
    ({"in_batch_softmax_weight": "0"}, ["hard_negatives=1", "in_batch_softmax_weight=0"]),
    ({"gradient_accumulation_steps": "2", "token_embedding_storage_type": "dense"},
     ["gradient_accumulation_steps=2"]),
    ({"hard_negatives": "17"}, ["hard_negatives"]),
])
def test_settings_hard_negatives_cannot_work_with_are_refused(over, words):
    raw = {"enc0_max_seq_len": "8", "enc0_vocab_size": "104", "enc0_network": "pooled_embedding",
           "hard_negatives": "1", "in_batch_softmax_weight": "1", **over}
    with pytest.raises(UserError) as info:
        parse_hyperparameters(raw)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_hard_negatives_need_a_channel_of_documents():
    from helpers import topic_pairs

    with pytest.raises(UserError, match="hard_negatives=1 .* train channel of at least 2 documents"):
        Trainer(hard_hp(), {"train": topic_pairs()}, QUIET)


def test_training_with_hard_negatives_learns_the_topics(tmp_path):
    docs = topic_documents(tmp_path)
    trainer = Trainer(hard_hp(epochs=6), {"train": docs}, QUIET)
    trainer.train()
    neighbours = mine_neighbours(trainer.model, docs, "cpu", pool=1)[:, 0]
    assert np.mean(neighbours % 24 == np.arange(len(docs)) % 24) >= 0.9  # the same topic's document


def test_an_interrupted_epoch_resumes_with_its_own_mined_neighbours(tmp_path):
    """Stopped mid-epoch, the job resumes with the neighbours that epoch mined (not neighbours
    mined again with the half-trained model) and ends with the uninterrupted run's weights."""
    docs = topic_documents(tmp_path)

    def run(directory, stop=lambda: False):
        torch.manual_seed(0)
        return Trainer(hard_hp(mini_batch_size=8), {"train": docs}, QUIET, checkpoint_dir=directory,
                       data_digest={"train": ["x"]}, stop_requested=stop)

    whole = run(None)
    whole.train()
    (tmp_path / "ckpt").mkdir()
    steps = iter(range(1000))
    with pytest.raises(TrainingInterrupted, match="epoch 1 after batch 3"):
        run(tmp_path / "ckpt", lambda: next(steps) == len(whole.sampler.plan(0)) + 2).train()
    resumed = run(tmp_path / "ckpt")
    assert resumed.resume() and (resumed.start_epoch, resumed.start_batch) == (1, 3)
    resumed.train()
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, msg=key)
