"""Negative sampling, row_sparse updates, tied tables and pretrained embeddings (the sparse-features
issue)."""

from __future__ import annotations

import gzip
import io
import json
import logging

import numpy as np
import pytest
import torch

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.batching import EpochSampler
from object2vec.data.records import PairData, Side
from object2vec.errors import UserError
from object2vec.training.metrics import MetricLogger
from object2vec.training.trainer import Trainer

QUIET = MetricLogger("algo-1", logging.getLogger("test"), enabled=False)


def side(seqs: list[list[int]]) -> Side:
    lengths = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Side(np.array([t for s in seqs for t in s], dtype=np.int32), offsets)


def pairs(n: int, vocab: int, seed: int = 0, max_len: int = 6, learnable: bool = True) -> PairData:
    """Pairs whose label says whether the two sides share their first token (learnable)."""
    rng = np.random.default_rng(seed)
    a = [list(rng.integers(0, vocab, rng.integers(1, max_len + 1))) for _ in range(n)]
    labels = rng.integers(0, 2, n)
    b = [([s[0]] if y else [int((s[0] + 1) % vocab)]) + list(rng.integers(0, vocab, 2))
         for s, y in zip(a, labels)] if learnable else a
    return PairData(side(a), side(b), labels.astype(np.int64))


def hp_for(**over):
    base = dict(enc0_max_seq_len="8", enc0_vocab_size="40", enc0_network="pooled_embedding",
                enc_dim="8", mlp_dim="8", mini_batch_size="16", epochs="2", learning_rate="0.01")
    base.update({k: str(v) for k, v in over.items()})
    return parse_hyperparameters(base)


# -- negative sampling -----------------------------------------------------------------------------------


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


def test_negatives_never_reach_validation_or_test():
    """Evaluation sees exactly the channel's records: counts match with negative_sampling_rate=5."""
    data, val = pairs(64, 40), pairs(30, 40, seed=1)
    trainer = Trainer(hp_for(negative_sampling_rate=5, epochs=1), {"train": data, "validation": val,
                                                                   "test": val}, QUIET)
    seen = []
    original = trainer.evaluate

    def counting(d, *args):
        seen.append(len(d))
        return original(d, *args)

    trainer.evaluate = counting
    trainer.train()
    assert seen == [30, 30]
    assert trainer.sampler.plan(0).num_samples == 64 * 6


# -- row_sparse -------------------------------------------------------------------------------------------


def test_row_sparse_updates_only_touched_rows():
    """Rows absent from every batch stay bit-identical; used rows change."""
    data = pairs(64, 40)
    used = set(data.in0.ids.tolist()) | set(data.in1.ids.tolist())
    trainer = Trainer(hp_for(token_embedding_storage_type="row_sparse", tied_token_embedding_weight=True,
                             enc0_vocab_size=100, epochs=1), {"train": data}, QUIET)
    before = trainer.model.embeddings[0].weight.detach().clone()
    trainer.train()
    after = trainer.model.embeddings[0].weight.detach()
    untouched = sorted(set(range(100)) - used)
    assert len(untouched) > 40
    assert torch.equal(before[untouched], after[untouched])
    assert not torch.equal(before[sorted(used)], after[sorted(used)])
    assert not trainer.model.embeddings[0].weight.requires_grad  # updated lazily, never by autograd


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_row_sparse_matches_dense_when_every_row_is_used(optimizer):
    """With every row in every batch, a lazy update is exactly the dense update: same weights."""
    vocab = 6
    seqs = [list(range(vocab))] * 32
    data = PairData(side(seqs), side(seqs), np.tile([0, 1], 16).astype(np.int64))
    results = []
    for storage in ("dense", "row_sparse"):
        torch.manual_seed(0)
        hp = hp_for(token_embedding_storage_type=storage, enc0_vocab_size=vocab, optimizer=optimizer,
                    epochs=3, weight_decay=0.01)
        trainer = Trainer(hp, {"train": data}, QUIET)
        trainer.train()
        results.append(trainer.model.embeddings[0].weight.detach())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_row_sparse_loss_curve_follows_dense_adam():
    """On a small problem the row_sparse loss curve stays close to dense Adam's."""
    data, val = pairs(512, 40), pairs(128, 40, seed=3)
    curves = {}
    for storage in ("dense", "row_sparse"):
        hp = hp_for(token_embedding_storage_type=storage, epochs=6, mini_batch_size=32,
                    early_stopping_patience=5)
        result = Trainer(hp, {"train": data, "validation": val}, QUIET).train()
        curves[storage] = np.array([h["train:cross_entropy"] for h in result.history])
    assert curves["dense"][-1] < curves["dense"][0] - 0.05  # it learns
    np.testing.assert_allclose(curves["row_sparse"], curves["dense"], atol=0.05)


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_lazy_optimizer_is_a_torch_optimizer_whose_state_resumes_exactly(optimizer):
    """The lazy optimizer is a ``torch.optim.Optimizer``: its state_dict (torch's format, read back
    with ``weights_only=True`` as checkpoints are), taken after a few steps and loaded into a fresh
    trainer, continues to the same weights bit for bit."""
    data = pairs(160, 40)
    hp = hp_for(token_embedding_storage_type="row_sparse", optimizer=optimizer, weight_decay=0.01,
                enc0_vocab_size=100)

    def trainer() -> Trainer:
        torch.manual_seed(0)
        return Trainer(hp, {"train": data}, QUIET)

    a, b = trainer(), trainer()
    assert isinstance(a.lazy_optimizer, torch.optim.Optimizer)
    plan = a.sampler.plan(0)
    batches = [plan.batch(data, k) for k in range(len(plan))]
    for batch in batches[:3]:
        a.train_step(batch)
    buffer = io.BytesIO()
    torch.save({"model": a.model.state_dict(), "optimizer": a.optimizer.state_dict(),
                "lazy_optimizer": a.lazy_optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    lazy = saved["lazy_optimizer"]
    assert lazy.keys() == {"state", "param_groups"} and lazy["state"][0]["step"] == 3
    assert lazy["param_groups"][0]["update"] == optimizer
    b.model.load_state_dict(saved["model"])
    b.optimizer.load_state_dict(saved["optimizer"])
    b.lazy_optimizer.load_state_dict(lazy)
    for batch in batches[3:]:
        a.train_step(batch)
        b.train_step(batch)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key


def test_row_sparse_rejects_other_optimizers():
    with pytest.raises(UserError, match="optimizer='rmsprop'.*row_sparse"):
        hp_for(token_embedding_storage_type="row_sparse", optimizer="rmsprop")


# -- tied tables ------------------------------------------------------------------------------------------


def test_tied_tables_are_one_tensor():
    trainer = Trainer(hp_for(tied_token_embedding_weight=True), {"train": pairs(32, 40)}, QUIET)
    model = trainer.model
    assert len(model.embeddings) == 1
    assert model.embedding(0).weight is model.embedding(1).weight
    assert sum(k.endswith("weight") and "embeddings" in k for k in model.state_dict()) == 1


def test_tied_tables_need_equal_vocab_and_dim():
    with pytest.raises(UserError, match="tied_token_embedding_weight.*enc0 40x8 vs enc1 50x8"):
        hp_for(tied_token_embedding_weight=True, enc1_network="pooled_embedding",
               enc1_vocab_size=50, enc1_max_seq_len=8)


# -- pretrained embeddings --------------------------------------------------------------------------------


def write_aux(tmp_path, vectors: dict[str, list[float]], vocab: dict[str, int], gz=False, header=""):
    aux = tmp_path / "auxiliary"
    aux.mkdir(exist_ok=True)
    (aux / "vocab.json").write_text(json.dumps(vocab))
    text = header + "".join(f"{w} {' '.join(repr(x) for x in v)}\n" for w, v in vectors.items())
    if gz:
        with gzip.open(aux / "vectors.txt", "wt") as fh:
            fh.write(text)
    else:
        (aux / "vectors.txt").write_text(text)
    return aux


def pretrained_hp(freeze=True, **over):
    return hp_for(enc0_vocab_file="vocab.json", enc0_pretrained_embedding_file="vectors.txt",
                  enc0_freeze_pretrained_embedding=freeze, enc0_vocab_size=5, enc_dim=4,
                  tied_token_embedding_weight=True, **over)


@pytest.mark.parametrize("gz,header", [(False, ""), (True, "3 4\n")])
def test_pretrained_rows_arrive_exactly_and_stay_frozen(tmp_path, gz, header):
    vectors = {"the": [0.5, -1.0, 2.25, 3.0], "new york": [1.0, 2.0, 3.0, 4.0],
               "unused": [9.0, 9.0, 9.0, 9.0]}
    aux = write_aux(tmp_path, vectors, {"the": 0, "new york": 3, "cat": 1}, gz=gz, header=header)
    seqs = [[0, 1, 2, 3, 4]] * 16
    data = PairData(side(seqs), side(seqs), np.tile([0, 1], 8).astype(np.int64))
    for storage in ("dense", "row_sparse"):
        trainer = Trainer(pretrained_hp(token_embedding_storage_type=storage), {"train": data}, QUIET,
                          auxiliary_dir=aux)
        weight = trainer.model.embeddings[0].weight
        assert weight[0].tolist() == vectors["the"]
        assert weight[3].tolist() == vectors["new york"]
        before = weight.detach().clone()
        trainer.train()
        assert torch.equal(weight.detach(), before), storage


def test_pretrained_not_frozen_is_trained(tmp_path):
    aux = write_aux(tmp_path, {"the": [0.5, -1.0, 2.25, 3.0]}, {"the": 0})
    data = PairData(side([[0, 1]] * 16), side([[0, 2]] * 16), np.tile([0, 1], 8).astype(np.int64))
    trainer = Trainer(pretrained_hp(freeze=False), {"train": data}, QUIET, auxiliary_dir=aux)
    trainer.train()
    assert trainer.model.embeddings[0].weight[0].tolist() != [0.5, -1.0, 2.25, 3.0]


@pytest.mark.parametrize("content,message", [
    ("the 1.0 2.0\n", r"line 1: vectors have 2 values but the token embedding dim is 4"),
    ("the 1 2 3 4\ncat 1 2\n", r"line 2: expected a token and 4 numbers, got 3 fields"),
    ("the 1 2 x 4\n", r"line 1: the 4 values after token 'the' are not all numbers"),
])
def test_pretrained_file_errors(tmp_path, content, message):
    aux = write_aux(tmp_path, {}, {"the": 0, "cat": 1})
    (aux / "vectors.txt").write_text(content)
    with pytest.raises(UserError, match=message):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=aux)


def test_pretrained_missing_file_and_channel(tmp_path):
    aux = write_aux(tmp_path, {}, {"the": 0})
    (aux / "vectors.txt").unlink()
    with pytest.raises(UserError, match="enc0_pretrained_embedding_file='vectors.txt': file not found"):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=aux)
    with pytest.raises(UserError, match="needs the 'auxiliary' channel"):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=None)


def test_pretrained_file_names_are_restricted():
    with pytest.raises(UserError, match="enc0_pretrained_embedding_file='../x'"):
        hp_for(enc0_pretrained_embedding_file="../x")


def test_vocab_ids_out_of_range(tmp_path):
    # ids >= vocab_size are dropped with a warning (issue 12, case 3); negative ids stay errors
    aux = write_aux(tmp_path, {"the": [1.0] * 4}, {"the": -1})
    with pytest.raises(UserError, match="token 'the' has id -1"):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=aux)
