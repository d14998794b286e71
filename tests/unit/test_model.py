"""The network: every encoder with both output layers and every comparator combination trains;
encoders are padding-invariant and treat id 0 as a real token; comparator ops on literal tensors;
mlp_layers=0; tied tables (object2vec.md sections 7.1-7.5)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.model.comparator import Comparator
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.tokens import Tokens
from object2vec.training.sparse import gather_rows

VOCAB = 12
ENCODERS = ("pooled_embedding", "hcnn", "bilstm")
OUTPUTS = ("softmax", "mean_squared_error")
NAMES = ("hadamard", "concat", "abs_diff")
SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations(NAMES, r)]  # the 7 non-empty ones
COMPARATOR_LISTS = SUBSETS + [("abs_diff", "concat", "hadamard"), ("concat", "hadamard")]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and timing does not depend on other jobs' load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(network="pooled_embedding", output="softmax", comparators=NAMES, **extra) -> Object2Vec:
    raw = {"enc0_network": network, "enc0_max_seq_len": "6", "enc0_vocab_size": str(VOCAB),
           "enc_dim": "8", "enc0_token_embedding_dim": "8", "enc0_layers": "2", "mlp_dim": "16",
           "mlp_layers": "1", "mlp_activation": "relu", "output_layer": output,
           "comparator_list": ",".join(comparators), **{k: str(v) for k, v in extra.items()}}
    return Object2Vec(ModelConfig.from_hyperparameters(parse_hyperparameters(raw)))


def toy_problem(n: int = 48, seed: int = 0) -> tuple[Tokens, Tokens, torch.Tensor]:
    """in0 draws all its tokens from one half of the vocabulary; the label says which half.
    in1 is noise. Learnable by every encoder through every comparator."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.arange(n) % 2
    in0, in1 = [], []
    for c in classes.tolist():
        length = int(torch.randint(1, 7, (1,), generator=g))
        in0.append((torch.randint(0, VOCAB // 2, (length,), generator=g) + c * VOCAB // 2).tolist())
        in1.append(torch.randint(0, VOCAB, (int(torch.randint(1, 7, (1,), generator=g)),),
                                 generator=g).tolist())
    return Tokens.from_lists(in0), Tokens.from_lists(in1), classes


def loss_of(model: Object2Vec, in0: Tokens, in1: Tokens, classes: torch.Tensor) -> torch.Tensor:
    out = model(in0, in1)
    if model.config.num_outputs == 1:
        return F.mse_loss(out.squeeze(1), classes.float() * 2 - 1)
    return F.cross_entropy(out, classes)


def train(model: Object2Vec, steps: int = 25, lr: float = 0.02) -> tuple[float, float]:
    """(loss before, loss after) a few full-batch Adam steps, both measured in eval mode."""
    in0, in1, classes = toy_problem()
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
@pytest.mark.parametrize("network", ENCODERS)
def test_every_encoder_output_and_comparator_list_trains(network, output, comparators):
    """Each encoder, with each output layer and each comparator list (every subset and some orders),
    gives outputs of the right shape, gets a gradient in every parameter, and lowers the loss of a
    small learnable problem within a few steps."""
    model = build(network, output, comparators)
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
@pytest.mark.parametrize("network", ENCODERS)
def test_default_configs_learn_the_toy_problem(network, output):
    """With the default comparator list, every encoder fits the toy problem well (a real decrease,
    not noise): near-perfect accuracy for softmax, small error for regression."""
    model = build(network, output)
    train(model, steps=60)
    in0, in1, classes = toy_problem()
    with torch.no_grad():
        out = model.eval()(in0, in1)
    if output == "softmax":
        assert (out.argmax(1) == classes).float().mean() >= 0.95
    else:
        assert F.mse_loss(out.squeeze(1), classes.float() * 2 - 1) < 0.1


def test_training_mode_and_eval_mode_give_the_same_numbers():
    """The training forward (batch rows of the tables) and the inference forward (whole tables)
    agree when dropout is 0, for every encoder and with tied tables."""
    in0, in1, _ = toy_problem()
    for network in ENCODERS:
        for tied in (False, True):
            model = build(network, tied_token_embedding_weight=tied)
            with torch.no_grad():
                torch.testing.assert_close(model.train()(in0, in1), model.eval()(in0, in1))
                rows = gather_rows(model, in0, in1)  # what the trainer passes in
                torch.testing.assert_close(model.train()(rows.in0, rows.in1, tables=rows.tables),
                                           model.eval()(in0, in1))


def attributes(model: nn.Module) -> dict:
    """Every attribute of every submodule by identity; the dicts among them (parameters, buffers,
    submodules, hooks) one level deep."""
    return {(name, key): ({k: id(v) for k, v in value.items()} if isinstance(value, dict)
                          else id(value))
            for name, module in model.named_modules() for key, value in vars(module).items()}


@pytest.mark.parametrize("storage", ["dense", "row_sparse"])
@pytest.mark.parametrize("network", ENCODERS)
def test_a_training_forward_writes_no_attribute(network, storage):
    """The model is a pure function of its inputs: a forward and backward in training mode, on
    the whole tables or on one batch's rows, leave every attribute of every submodule as it was."""
    in0, in1, classes = toy_problem()
    for tied in (False, True):
        model = build(network, tied_token_embedding_weight=tied,
                      token_embedding_storage_type=storage).train()
        before = attributes(model)
        loss_of(model, in0, in1, classes).backward()
        rows = gather_rows(model, in0, in1)
        F.cross_entropy(model(rows.in0, rows.in1, tables=rows.tables), classes).backward()
        assert attributes(model) == before
        assert not hasattr(model, "batch_rows")


# -- encoders --------------------------------------------------------------------------------------


SEQS = [[5], [5, 0], [0, 0, 0, 0, 0, 0], [3, 1, 4, 1, 5, 9], [0], [0, 7], [11, 2, 2]]


@pytest.mark.parametrize("network", ENCODERS)
def test_encoder_output_does_not_depend_on_the_rest_of_the_batch(network):
    """Padding invariance: a sequence encodes to the same vector alone or batched with longer and
    shorter sequences, on both sides."""
    model = build(network, enc0_cnn_filter_width=3).eval()
    with torch.no_grad():
        for side in (0, 1):
            together = model.encode(side, Tokens.from_lists(SEQS))
            assert together.shape == (len(SEQS), 8)
            for i, seq in enumerate(SEQS):
                alone = model.encode(side, Tokens.from_lists([seq]))
                torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-6)
            reversed_batch = model.encode(side, Tokens.from_lists(SEQS[::-1]))
            torch.testing.assert_close(reversed_batch.flip(0), together, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("network", ENCODERS)
def test_id_zero_is_a_real_token(network):
    """Appending token 0 changes the encoding: 0 is a word, not padding."""
    model = build(network).eval()
    with torch.no_grad():
        enc = model.encode(0, Tokens.from_lists([[5], [5, 0], [7], [0, 7]]))
    assert not torch.allclose(enc[0], enc[1])
    assert not torch.allclose(enc[2], enc[3])


def test_pooled_embedding_is_the_mean_of_the_token_embeddings():
    """pooled_embedding = average of the token vectors, with token dim = enc_dim."""
    model = build("pooled_embedding").eval()
    table = model.embedding(0).weight
    with torch.no_grad():
        enc = model.encode(0, Tokens.from_lists([[1, 2, 2], [0]]))
    torch.testing.assert_close(enc[0], (table[1] + 2 * table[2]) / 3)
    torch.testing.assert_close(enc[1], table[0])


@pytest.mark.parametrize("network,layers", [("hcnn", 1), ("hcnn", 4), ("bilstm", 1), ("bilstm", 3)])
def test_deeper_encoders_build_and_run(network, layers):
    """hcnn and bilstm accept 1-4 layers; the encoding is (B, enc_dim)."""
    model = build(network, enc0_layers=layers).eval()
    assert model.config.enc0.layers == layers
    with torch.no_grad():
        assert model.encode(0, Tokens.from_lists(SEQS)).shape == (len(SEQS), 8)


def test_mismatched_batch_sizes_are_rejected():
    """in0 and in1 must hold the same number of sequences; the error gives both numbers."""
    model = build()
    with pytest.raises(ValueError, match="in0 has 2 sequences but in1 has 1"):
        model(Tokens.from_lists([[1], [2]]), Tokens.from_lists([[3]]))


# -- comparator and head ---------------------------------------------------------------------------


U = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
V = torch.tensor([[2.0, 0.0], [-1.0, 1.0]])
EXPECTED = {"hadamard": [[2.0, 0.0], [-3.0, -4.0]],
            "concat": [[1.0, 2.0, 2.0, 0.0], [3.0, -4.0, -1.0, 1.0]],
            "abs_diff": [[1.0, 2.0], [4.0, 5.0]]}


@pytest.mark.parametrize("names", COMPARATOR_LISTS, ids=[",".join(c) for c in COMPARATOR_LISTS])
def test_comparator_concatenates_the_ops_in_list_order(names):
    """hadamard = u*v, concat = [u; v], abs_diff = |u - v|, concatenated in comparator_list
    order."""
    comparator = Comparator(names, dim=2)
    expected = torch.cat([torch.tensor(EXPECTED[n]) for n in names], dim=1)
    assert torch.equal(comparator(U, V), expected)
    assert comparator.out_dim == expected.shape[1]


def test_mlp_layers_zero_feeds_the_comparator_into_the_output_layer():
    """mlp_layers=0: one Linear from the comparator vector to the outputs, and it still trains."""
    model = build(mlp_layers=0)
    linears = [m for m in model.mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (model.comparator.out_dim, 2)
    before, after = train(model)
    assert after < 0.5 * before


@pytest.mark.parametrize("layers,activation", [(1, "tanh"), (3, "linear"), (2, "relu")])
def test_mlp_has_mlp_layers_hidden_layers_of_mlp_dim(layers, activation):
    """mlp_layers hidden Linear layers of width mlp_dim with the named activation, then the
    output."""
    model = build(mlp_layers=layers, mlp_activation=activation, mlp_dim=5)
    linears = [m for m in model.mlp.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [5] * layers + [2]
    kind = {"tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity}[activation]
    assert sum(isinstance(m, kind) for m in model.mlp.modules()) == layers


def test_scores_are_probabilities_for_softmax_and_the_value_for_regression():
    """scores(): softmax gives num_classes probabilities summing to 1; regression one raw value."""
    in0, in1, _ = toy_problem(n=5)
    model = build(num_classes=3).eval()
    with torch.no_grad():
        probs = model.scores(in0, in1)
    assert probs.shape == (5, 3) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    model = build(output="mean_squared_error").eval()
    with torch.no_grad():
        assert torch.equal(model.scores(in0, in1), model(in0, in1))
        assert model.scores(in0, in1).shape == (5, 1)


# -- tied tables -----------------------------------------------------------------------------------


def test_tied_embedding_is_one_tensor_read_by_both_encoders():
    """tied_token_embedding_weight: one table, one parameter, updated by both sides' gradients;
    untied models have two distinct tables."""
    tied = build("hcnn", tied_token_embedding_weight=True)
    untied = build("hcnn")
    assert len(tied.embeddings) == 1 and tied.embedding(0) is tied.embedding(1)
    assert len(untied.embeddings) == 2 and untied.embedding(0) is not untied.embedding(1)
    tables = [k for k in tied.state_dict() if k.startswith("embeddings.")]
    assert tables == ["embeddings.0.weight"]
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n_tied == VOCAB * 8

    table = tied.embedding(0).weight
    start = table.detach().clone()
    opt = torch.optim.SGD(tied.parameters(), lr=0.5)
    tied.train()
    out = tied(Tokens.from_lists([[1, 1]]), Tokens.from_lists([[2]]))  # rows 1 (side 0), 2 (side 1)
    out.sum().backward()
    opt.step()
    changed = (table.detach() != start).any(1)
    assert changed[1] and changed[2] and not changed[[0] + list(range(3, VOCAB))].any()
