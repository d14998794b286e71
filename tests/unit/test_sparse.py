"""row_sparse token tables (object2vec.training.sparse): only the batch's rows are updated, lazily,
by a torch optimizer whose state resumes exactly; the weights and loss curve follow dense training."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers import QUIET, pairs, side, sparse_hp

from object2vec.data.records import PairData
from object2vec.training.trainer import Trainer

# -- row_sparse -------------------------------------------------------------------------------------------


def test_row_sparse_updates_only_touched_rows(device):
    """Rows absent from every batch stay bit-identical; used rows change."""
    data = pairs(64, 40)
    used = set(data.in0.ids.tolist()) | set(data.in1.ids.tolist())
    trainer = Trainer(sparse_hp(token_embedding_storage_type="row_sparse", tied_token_embedding_weight=True,
                                enc0_vocab_size=100, epochs=1), {"train": data}, QUIET, device=device)
    before = trainer.model.embeddings[0].weight.detach().clone()
    trainer.train()
    after = trainer.model.embeddings[0].weight.detach()
    untouched = sorted(set(range(100)) - used)
    assert len(untouched) > 40
    assert torch.equal(before[untouched], after[untouched])
    assert not torch.equal(before[sorted(used)], after[sorted(used)])
    assert not trainer.model.embeddings[0].weight.requires_grad  # updated lazily, never by autograd


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_row_sparse_matches_dense_when_every_row_is_used(optimizer, device):
    """With every row in every batch, a lazy update is exactly the dense update: same weights."""
    vocab = 6
    seqs = [list(range(vocab))] * 32
    data = PairData(side(seqs), side(seqs), np.tile([0, 1], 16).astype(np.int64))
    results = []
    for storage in ("dense", "row_sparse"):
        torch.manual_seed(0)
        hp = sparse_hp(token_embedding_storage_type=storage, enc0_vocab_size=vocab, optimizer=optimizer,
                       epochs=3, weight_decay=0.01)
        trainer = Trainer(hp, {"train": data}, QUIET, device=device)
        trainer.train()
        results.append(trainer.model.embeddings[0].weight.detach())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_row_sparse_loss_curve_follows_dense_adam():
    """On a small problem the row_sparse loss curve stays close to dense Adam's."""
    data, val = pairs(512, 40), pairs(128, 40, seed=3)
    curves = {}
    for storage in ("dense", "row_sparse"):
        hp = sparse_hp(token_embedding_storage_type=storage, epochs=6, mini_batch_size=32,
                       early_stopping_patience=5)
        result = Trainer(hp, {"train": data, "validation": val}, QUIET).train()
        curves[storage] = np.array([h["train:cross_entropy"] for h in result.history])
    assert curves["dense"][-1] < curves["dense"][0] - 0.05  # it learns
    np.testing.assert_allclose(curves["row_sparse"], curves["dense"], atol=0.05)


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_lazy_optimizer_is_a_torch_optimizer_whose_state_resumes_exactly(optimizer, device):
    """The lazy optimizer is a ``torch.optim.Optimizer``: its state_dict (torch's format, read back
    with ``weights_only=True`` as checkpoints are), taken after a few steps and loaded into a fresh
    trainer, continues to the same weights bit for bit."""
    data = pairs(160, 40)
    hp = sparse_hp(token_embedding_storage_type="row_sparse", optimizer=optimizer, weight_decay=0.01,
                   enc0_vocab_size=100)

    def trainer() -> Trainer:
        torch.manual_seed(0)
        return Trainer(hp, {"train": data}, QUIET, device=device)

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
