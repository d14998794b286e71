"""The network (object2vec.model.object2vec): every encoder with both output layers and every
comparator combination trains; training and eval forwards agree and write nothing; mlp_layers=0; the
head; tied tables (object2vec.md sections 7.1-7.5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import (
    COMPARATOR_LISTS,
    ENCODER_NETWORKS,
    MODEL_VOCAB,
    QUIET,
    build_model,
    pairs,
    sparse_hp,
    tolerance,
)
from torch import nn

from object2vec.model.object2vec import Object2Vec
from object2vec.model.tokens import Tokens
from object2vec.training.sparse import gather_rows
from object2vec.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

OUTPUTS = ("softmax", "mean_squared_error")


def toy_problem(n: int = 48, seed: int = 0, device: torch.device | str = "cpu"
                ) -> tuple[Tokens, Tokens, torch.Tensor]:
    """in0 draws all its tokens from one half of the vocabulary; the label says which half.
    in1 is noise. Learnable by every encoder through every comparator. On ``device``."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.arange(n) % 2
    in0, in1 = [], []
    for c in classes.tolist():
        length = int(torch.randint(1, 7, (1,), generator=g))
        in0.append((torch.randint(0, MODEL_VOCAB // 2, (length,), generator=g)
                    + c * MODEL_VOCAB // 2).tolist())
        in1.append(torch.randint(0, MODEL_VOCAB, (int(torch.randint(1, 7, (1,), generator=g)),),
                                 generator=g).tolist())
    return Tokens.from_lists(in0, device), Tokens.from_lists(in1, device), classes.to(device)


def loss_of(model: Object2Vec, in0: Tokens, in1: Tokens, classes: torch.Tensor) -> torch.Tensor:
    out = model(in0, in1)
    if model.config.num_outputs == 1:
        return F.mse_loss(out.squeeze(1), classes.float() * 2 - 1)
    return F.cross_entropy(out, classes)


def train(model: Object2Vec, steps: int = 25, lr: float = 0.02, device: torch.device | str = "cpu"
          ) -> tuple[float, float]:
    """(loss before, loss after) a few full-batch Adam steps on ``device`` (where ``model`` is),
    both measured in eval mode."""
    in0, in1, classes = toy_problem(device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        before = float(loss_of(model.eval(), in0, in1, classes))
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of(model, in0, in1, classes)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(loss_of(model.eval(), in0, in1, classes))
    return before, after


# -- training every combination --------------------------------------------------------------------


@pytest.mark.parametrize("comparators", COMPARATOR_LISTS,
                         ids=[",".join(c) for c in COMPARATOR_LISTS])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("network", ENCODER_NETWORKS)
def test_every_encoder_output_and_comparator_list_trains(network, output, comparators):
    """Each encoder, with each output layer and each comparator list (every subset and some orders),
    gives outputs of the right shape, gets a gradient in every parameter, and lowers the loss of a
    small learnable problem within a few steps."""
    model = build_model(network, output, comparators)
    num_outputs = 1 if output == "mean_squared_error" else 2
    assert model.comparator.out_dim == 8 * sum(2 if c == "concat" else 1 for c in comparators)
    in0, in1, classes = toy_problem()
    model.train()
    loss_of(model, in0, in1, classes).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model(in0, in1).shape == (len(classes), num_outputs)
    before, after = train(model)
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("network", ENCODER_NETWORKS)
def test_default_configs_learn_the_toy_problem(network, output, device):
    """With the default comparator list, every encoder fits the toy problem well (a real decrease,
    not noise): near-perfect accuracy for softmax, small error for regression."""
    model = build_model(network, output).to(device)
    train(model, steps=60, device=device)
    in0, in1, classes = toy_problem(device=device)
    with torch.no_grad():
        out = model.eval()(in0, in1)
    if output == "softmax":
        assert (out.argmax(1) == classes).float().mean() >= 0.95
    else:
        assert F.mse_loss(out.squeeze(1), classes.float() * 2 - 1) < 0.1


def test_training_mode_and_eval_mode_give_the_same_numbers(device):
    """The training forward (batch rows of the tables) and the inference forward (whole tables)
    agree when dropout is 0, for every encoder and with tied tables."""
    in0, in1, _ = toy_problem(device=device)
    close = tolerance(device)
    for network in ENCODER_NETWORKS:
        for tied in (False, True):
            model = build_model(network, tied_token_embedding_weight=tied).to(device)
            with torch.no_grad():
                torch.testing.assert_close(model.train()(in0, in1), model.eval()(in0, in1), **close)
                rows = gather_rows(model, in0, in1)  # what the trainer passes in
                torch.testing.assert_close(model.train()(rows.in0, rows.in1, tables=rows.tables),
                                           model.eval()(in0, in1), **close)


def attributes(model: nn.Module) -> dict:
    """Every attribute of every submodule by identity; the dicts among them (parameters, buffers,
    submodules, hooks) one level deep."""
    return {(name, key): ({k: id(v) for k, v in value.items()} if isinstance(value, dict)
                          else id(value))
            for name, module in model.named_modules() for key, value in vars(module).items()}


@pytest.mark.parametrize("storage", ["dense", "row_sparse"])
@pytest.mark.parametrize("network", ENCODER_NETWORKS)
def test_a_training_forward_writes_no_attribute(network, storage):
    """The model is a pure function of its inputs: a forward and backward in training mode, on
    the whole tables or on one batch's rows, leave every attribute of every submodule as it was."""
    in0, in1, classes = toy_problem()
    for tied in (False, True):
        model = build_model(network, tied_token_embedding_weight=tied,
                            token_embedding_storage_type=storage).train()
        before = attributes(model)
        loss_of(model, in0, in1, classes).backward()
        rows = gather_rows(model, in0, in1)
        F.cross_entropy(model(rows.in0, rows.in1, tables=rows.tables), classes).backward()
        assert attributes(model) == before
        assert not hasattr(model, "batch_rows")


def test_mismatched_batch_sizes_are_rejected():
    """in0 and in1 must hold the same number of sequences; the error gives both numbers."""
    model = build_model()
    with pytest.raises(ValueError, match="in0 has 2 sequences but in1 has 1"):
        model(Tokens.from_lists([[1], [2]]), Tokens.from_lists([[3]]))


# -- the head ---------------------------------------------------------------------------------------


def test_mlp_layers_zero_feeds_the_comparator_into_the_output_layer():
    """mlp_layers=0: one Linear from the comparator vector to the outputs, and it still trains."""
    model = build_model(mlp_layers=0)
    linears = [m for m in model.mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (model.comparator.out_dim, 2)
    before, after = train(model)
    assert after < 0.5 * before


@pytest.mark.parametrize("layers,activation", [(1, "tanh"), (3, "linear"), (2, "relu")])
def test_mlp_has_mlp_layers_hidden_layers_of_mlp_dim(layers, activation):
    """mlp_layers hidden Linear layers of width mlp_dim with the named activation, then the
    output."""
    model = build_model(mlp_layers=layers, mlp_activation=activation, mlp_dim=5)
    linears = [m for m in model.mlp.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [5] * layers + [2]
    kind = {"tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity}[activation]
    assert sum(isinstance(m, kind) for m in model.mlp.modules()) == layers


def test_scores_are_probabilities_for_softmax_and_the_value_for_regression():
    """scores(): softmax gives num_classes probabilities summing to 1; regression one raw value."""
    in0, in1, _ = toy_problem(n=5)
    model = build_model(num_classes=3).eval()
    with torch.no_grad():
        probs = model.scores(in0, in1)
    assert probs.shape == (5, 3) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    model = build_model(output="mean_squared_error").eval()
    with torch.no_grad():
        assert torch.equal(model.scores(in0, in1), model(in0, in1))
        assert model.scores(in0, in1).shape == (5, 1)


# -- tied tables -----------------------------------------------------------------------------------


def test_tied_embedding_is_one_tensor_read_by_both_encoders():
    """tied_token_embedding_weight: one table, one parameter, updated by both sides' gradients;
    untied models have two distinct tables."""
    tied = build_model("hcnn", tied_token_embedding_weight=True)
    untied = build_model("hcnn")
    assert len(tied.embeddings) == 1 and tied.embedding(0) is tied.embedding(1)
    assert len(untied.embeddings) == 2 and untied.embedding(0) is not untied.embedding(1)
    tables = [k for k in tied.state_dict() if k.startswith("embeddings.")]
    assert tables == ["embeddings.0.weight"]
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n_tied == MODEL_VOCAB * 8

    table = tied.embedding(0).weight
    start = table.detach().clone()
    opt = torch.optim.SGD(tied.parameters(), lr=0.5)
    tied.train()
    out = tied(Tokens.from_lists([[1, 1]]), Tokens.from_lists([[2]]))  # rows 1 (side 0), 2 (side 1)
    out.sum().backward()
    opt.step()
    changed = (table.detach() != start).any(1)
    assert changed[1] and changed[2] and not changed[[0] + list(range(3, MODEL_VOCAB))].any()


def test_tied_tables_are_one_tensor():
    trainer = Trainer(sparse_hp(tied_token_embedding_weight=True), {"train": pairs(32, 40)}, QUIET)
    model = trainer.model
    assert len(model.embeddings) == 1
    assert model.embedding(0).weight is model.embedding(1).weight
    assert sum(k.endswith("weight") and "embeddings" in k for k in model.state_dict()) == 1
