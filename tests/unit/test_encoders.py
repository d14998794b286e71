"""The encoders (object2vec.model.encoders): padding-invariant, id 0 a real token, pooled_embedding
the mean of the token embeddings, 1-4 layers for hcnn and bilstm; pooled_embedding's opt-in
``encN_pooling`` (mean | sum) and ``encN_activation`` (linear | sigmoid | tanh | relu), with the
defaults keeping the original's mean, and IDF-weighted pooling; training (per-batch row view) and eval
(whole table) agreeing."""

from __future__ import annotations

import pytest
import torch
from helpers import ENCODER_NETWORKS, build_model, pooling_hp, retrieval_hp, tolerance

from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.tokens import Tokens

SEQS = [[5], [5, 0], [0, 0, 0, 0, 0, 0], [3, 1, 4, 1, 5, 9], [0], [0, 7], [11, 2, 2]]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("network", ENCODER_NETWORKS)
def test_encoder_output_does_not_depend_on_the_rest_of_the_batch(network, device):
    """Padding invariance: a sequence encodes to the same vector alone or batched with longer and
    shorter sequences, on both sides."""
    model = build_model(network, enc0_cnn_filter_width=3).to(device).eval()
    close = tolerance(device, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        for side in (0, 1):
            together = model.encode(side, Tokens.from_lists(SEQS, device))
            assert together.shape == (len(SEQS), 8)
            for i, seq in enumerate(SEQS):
                alone = model.encode(side, Tokens.from_lists([seq], device))
                torch.testing.assert_close(together[i:i + 1], alone, **close)
            reversed_batch = model.encode(side, Tokens.from_lists(SEQS[::-1], device))
            torch.testing.assert_close(reversed_batch.flip(0), together, **close)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("network", ENCODER_NETWORKS)
def test_id_zero_is_a_real_token(network):
    """Appending token 0 changes the encoding: 0 is a word, not padding."""
    model = build_model(network).eval()
    with torch.no_grad():
        enc = model.encode(0, Tokens.from_lists([[5], [5, 0], [7], [0, 7]]))
    assert not torch.allclose(enc[0], enc[1])
    assert not torch.allclose(enc[2], enc[3])


@pytest.mark.usefixtures("one_thread")
def test_pooled_embedding_is_the_mean_of_the_token_embeddings():
    """pooled_embedding = average of the token vectors, with token dim = enc_dim."""
    model = build_model("pooled_embedding").eval()
    table = model.embedding(0).weight
    with torch.no_grad():
        enc = model.encode(0, Tokens.from_lists([[1, 2, 2], [0]]))
    torch.testing.assert_close(enc[0], (table[1] + 2 * table[2]) / 3)
    torch.testing.assert_close(enc[1], table[0])


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("network,layers", [("hcnn", 1), ("hcnn", 4), ("bilstm", 1), ("bilstm", 3)])
def test_deeper_encoders_build_and_run(network, layers):
    """hcnn and bilstm accept 1-4 layers; the encoding is (B, enc_dim)."""
    model = build_model(network, enc0_layers=layers).eval()
    assert model.config.enc0.layers == layers
    with torch.no_grad():
        assert model.encode(0, Tokens.from_lists(SEQS)).shape == (len(SEQS), 8)


# -- pooled_embedding's pooling and activation -------------------------------------------------------

POOLED_SEQS = [[0, 3, 3], [9], [4, 1, 7, 2]]


def model_for(**over) -> Object2Vec:
    torch.manual_seed(0)
    return Object2Vec(ModelConfig.from_hyperparameters(pooling_hp(**over)))


@pytest.mark.parametrize("activation, fn", [("linear", lambda x: x), ("sigmoid", torch.sigmoid),
                                            ("tanh", torch.tanh), ("relu", torch.relu)])
@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_encoding_is_the_activation_of_the_pooled_rows(pooling, activation, fn):
    model = model_for(enc1_pooling=pooling, enc1_activation=activation)
    table = model.embedding(1).weight
    got = model.encode(1, Tokens.from_lists(POOLED_SEQS))
    for row, seq in zip(got, POOLED_SEQS):
        rows = table[seq]
        pooled = rows.sum(0) if pooling == "sum" else rows.mean(0)
        assert torch.allclose(row, fn(pooled), atol=1e-6)
    # the other side keeps its own (default) settings: the plain mean
    user = model.encode(0, Tokens.from_lists([[3], [5]]))
    assert torch.equal(user, model.embedding(0).weight[[3, 5]])


def test_sum_repeats_count_as_a_weight():
    """A token repeated r times adds r times its row: the item-bag framing's rating weights."""
    model = model_for(enc1_pooling="sum")
    table = model.embedding(1).weight
    got = model.encode(1, Tokens.from_lists([[2, 2, 2, 5]]))
    assert torch.allclose(got[0], 3 * table[2] + table[5], atol=1e-6)


def test_defaults_are_the_original_mean_bit_for_bit():
    hp = pooling_hp()
    assert (hp.enc0.pooling, hp.enc0.activation, hp.enc1.pooling) == ("mean", "linear", "mean")
    model = model_for()
    got = model.encode(1, Tokens.from_lists(POOLED_SEQS))
    expected = torch.nn.functional.embedding_bag(
        torch.tensor([t for s in POOLED_SEQS for t in s]), model.embedding(1).weight,
        torch.tensor([0, 3, 4]), mode="mean")
    assert torch.equal(got, expected)


@pytest.mark.parametrize("storage", ["dense", "row_sparse"])
def test_training_mode_and_eval_mode_agree(storage, device):
    """Training reads a per-batch row view (remapped ids), eval the whole table: same numbers."""
    model = model_for(enc1_pooling="sum", enc1_activation="sigmoid",
                      token_embedding_storage_type=storage).to(device)
    in0, in1 = Tokens.from_lists([[1], [2], [3]], device), Tokens.from_lists(POOLED_SEQS, device)
    model.eval()
    eval_out = model(in0, in1)
    model.train()
    assert torch.allclose(model(in0, in1), eval_out, atol=1e-6)


def test_idf_weights_weight_the_sum():
    hp = pooling_hp(enc1_pooling="sum", token_weighting="idf")
    model = Object2Vec(ModelConfig.from_hyperparameters(hp))
    table = model.embedding(1)
    table.pool_weight.copy_(torch.arange(1, 11, dtype=torch.float32))
    got = model.encode(1, Tokens.from_lists([[0, 3, 3]]))
    assert torch.allclose(got[0], table.weight[0] + 2 * 4 * table.weight[3], atol=1e-6)


@pytest.mark.usefixtures("one_thread")
def test_weighted_mean_and_training_mode_agree_with_the_formula():
    """The pooled encoding is sum w_t e_t / sum w_t, the same through the per-batch row view
    (training) and the whole table (eval)."""
    torch.manual_seed(0)
    hp = retrieval_hp(token_weighting="idf", dropout="0", enc0_vocab_size="10")
    from object2vec.model.object2vec import ModelConfig, Object2Vec

    model = Object2Vec(ModelConfig.from_hyperparameters(hp))
    table = model.embedding(0)
    table.pool_weight.copy_(torch.arange(1, 11, dtype=torch.float32))
    seqs = [[0, 3, 3], [9], [4, 1]]
    tokens = Tokens.from_lists(seqs)
    got = model.encode(0, tokens)
    for row, seq in zip(got, seqs):
        w = table.pool_weight[seq]
        assert torch.allclose(row, (w[:, None] * table.weight[seq]).sum(0) / w.sum(), atol=1e-6)
    other = Tokens.from_lists([[2], [5, 6], [7, 8, 8]])
    model.eval()
    eval_out = model(tokens, other)
    model.train()
    assert torch.allclose(model(tokens, other), eval_out, atol=1e-6)
