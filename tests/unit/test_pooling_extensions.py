"""pooled_embedding's opt-in pooling extensions: ``encN_pooling`` (mean | sum) and ``encN_activation``
(linear | sigmoid | tanh | relu).

The encodings on literal tables, the defaults that keep the original's mean, training (per-batch row
view) and eval (whole table) agreeing, the settings travelling in the artifact, and the errors for
settings that would be ignored.
"""

from __future__ import annotations

import pytest
import torch

from object2vec.artifact import load_artifact, save_artifact
from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.tokens import Tokens

SEQS = [[0, 3, 3], [9], [4, 1, 7, 2]]
OTHER = [[2], [5, 6], [7, 8, 8]]


def hp_for(**over):
    """A regression model: enc0 = one user id, enc1 = a bag (pooled_embedding, not cloned)."""
    raw = dict(enc0_network="pooled_embedding", enc0_max_seq_len="1", enc0_vocab_size="10",
               enc1_network="pooled_embedding", enc1_max_seq_len="8", enc1_vocab_size="10",
               enc_dim="6", mlp_layers="0", comparator_list="hadamard, concat",
               output_layer="mean_squared_error", dropout="0")
    return parse_hyperparameters({**raw, **over})


def model_for(**over) -> Object2Vec:
    torch.manual_seed(0)
    return Object2Vec(ModelConfig.from_hyperparameters(hp_for(**over)))


@pytest.mark.parametrize("activation, fn", [("linear", lambda x: x), ("sigmoid", torch.sigmoid),
                                            ("tanh", torch.tanh), ("relu", torch.relu)])
@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_encoding_is_the_activation_of_the_pooled_rows(pooling, activation, fn):
    model = model_for(enc1_pooling=pooling, enc1_activation=activation)
    table = model.embedding(1).weight
    got = model.encode(1, Tokens.from_lists(SEQS))
    for row, seq in zip(got, SEQS):
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
    hp = hp_for()
    assert (hp.enc0.pooling, hp.enc0.activation, hp.enc1.pooling) == ("mean", "linear", "mean")
    model = model_for()
    got = model.encode(1, Tokens.from_lists(SEQS))
    expected = torch.nn.functional.embedding_bag(
        torch.tensor([t for s in SEQS for t in s]), model.embedding(1).weight,
        torch.tensor([0, 3, 4]), mode="mean")
    assert torch.equal(got, expected)


@pytest.mark.parametrize("storage", ["dense", "row_sparse"])
def test_training_mode_and_eval_mode_agree(storage):
    """Training reads a per-batch row view (remapped ids), eval the whole table: same numbers."""
    model = model_for(enc1_pooling="sum", enc1_activation="sigmoid",
                      token_embedding_storage_type=storage)
    in0, in1 = Tokens.from_lists([[1], [2], [3]]), Tokens.from_lists(SEQS)
    model.eval()
    eval_out = model(in0, in1)
    model.train()
    assert torch.allclose(model(in0, in1), eval_out, atol=1e-6)


def test_idf_weights_weight_the_sum():
    hp = hp_for(enc1_pooling="sum", token_weighting="idf")
    model = Object2Vec(ModelConfig.from_hyperparameters(hp))
    table = model.embedding(1)
    table.pool_weight.copy_(torch.arange(1, 11, dtype=torch.float32))
    got = model.encode(1, Tokens.from_lists([[0, 3, 3]]))
    assert torch.allclose(got[0], table.weight[0] + 2 * 4 * table.weight[3], atol=1e-6)


def test_settings_travel_in_the_artifact(tmp_path):
    hp = hp_for(enc1_pooling="sum", enc1_activation="sigmoid")
    torch.manual_seed(0)
    model = Object2Vec(ModelConfig.from_hyperparameters(hp)).eval()
    save_artifact(tmp_path, model, hp)
    loaded = load_artifact(tmp_path)
    assert (loaded.hyperparameters.enc1.pooling, loaded.hyperparameters.enc1.activation) == (
        "sum", "sigmoid")
    in0, in1 = Tokens.from_lists([[1], [2], [3]]), Tokens.from_lists(OTHER)
    with torch.no_grad():
        assert torch.equal(loaded.model.scores(in0, in1), model.scores(in0, in1))


def test_settings_that_would_be_ignored_are_errors_naming_every_key():
    with pytest.raises(UserError) as info:
        hp_for(enc0_network="hcnn", enc0_pooling="sum", enc1_network="enc0",
               enc1_activation="sigmoid")
    message = str(info.value)
    assert "2 problems" in message
    assert "enc0_pooling=sum: only a pooled_embedding encoder pools token embeddings, " \
           "enc0_network is hcnn" in message
    assert "enc1_activation=sigmoid: enc1_network=enc0 clones enc0's settings; set " \
           "enc0_activation instead" in message


def test_cloned_enc1_takes_enc0s_settings():
    hp = hp_for(enc1_network="enc0", enc0_max_seq_len="8", enc0_pooling="sum",
                enc0_activation="tanh")
    assert (hp.enc1.pooling, hp.enc1.activation) == ("sum", "tanh")


def test_unknown_values_list_the_choices():
    with pytest.raises(UserError, match=r"enc1_pooling='max': must be one of mean, sum"):
        hp_for(enc1_pooling="max")
    with pytest.raises(UserError,
                       match=r"enc0_activation='softmax': must be one of linear, sigmoid, tanh, relu"):
        hp_for(enc0_activation="softmax")
