"""The model artifact: identical outputs after a round trip, weights-only loading, user errors for
missing or wrong artifacts, and the opt-in settings (pooling, IDF weights) travelling in it."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from helpers import pooling_hp, retrieval_hp, topic_pairs, trained

from object2vec.artifact import CONFIG_FILE, WEIGHTS_FILE, load_artifact, save_artifact
from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.tokens import Tokens

ARTIFACT_CONFIGS = {
    "pooled-softmax": {"enc0_network": "pooled_embedding", "num_classes": "3"},
    "hcnn-regression": {"enc0_network": "hcnn", "enc0_token_embedding_dim": "6",
                        "output_layer": "mean_squared_error", "enc0_layers": "2"},
    "bilstm-hcnn-own-enc1": {"enc0_network": "bilstm", "enc1_network": "hcnn",
                             "enc1_vocab_size": "9", "enc1_max_seq_len": "4",
                             "enc1_token_embedding_dim": "5", "comparator_list": "abs_diff,concat",
                             "mlp_layers": "0"},
    "tied-row-sparse": {"enc0_network": "pooled_embedding", "tied_token_embedding_weight": "true",
                        "token_embedding_storage_type": "row_sparse", "dropout": "0.3"},
}


def artifact_hp(raw):
    return parse_hyperparameters({"enc0_max_seq_len": "6", "enc0_vocab_size": "9", "enc_dim": "8",
                                  "mlp_dim": "8", **raw})


def perturbed_model(hp) -> Object2Vec:
    """A model whose weights are not the constructor's, so a loader that re-initialised would
    show."""
    model = Object2Vec(ModelConfig.from_hyperparameters(hp))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model.eval()


SEQS0 = [[0], [1, 2, 3], [8, 0, 8, 0, 8, 0], [4, 4]]
SEQS1 = [[3], [0, 1], [2, 2, 2], [1, 3, 0]]


@pytest.mark.parametrize("name", sorted(ARTIFACT_CONFIGS))
def test_artifact_round_trip_gives_identical_scores_and_embeddings(tmp_path, name, device):
    """save_artifact then load_artifact rebuilds the same network: bit-identical scores and
    embeddings of both sides, equal hyperparameters, the metadata, and eval mode. A model on a
    GPU is saved from there and loaded onto it."""
    hp = artifact_hp(ARTIFACT_CONFIGS[name])
    model = perturbed_model(hp).to(device)
    save_artifact(tmp_path / "model", model, hp, metadata={"best_epoch": 4, "test": {"x": 1.5}})
    loaded = load_artifact(tmp_path / "model", device)
    assert loaded.hyperparameters == hp and loaded.metadata == {"best_epoch": 4, "test": {"x": 1.5}}
    assert not loaded.model.training
    assert {p.device for p in loaded.model.parameters()} == {model.embeddings[0].weight.device}
    in0, in1 = Tokens.from_lists(SEQS0, device), Tokens.from_lists(SEQS1, device)
    with torch.no_grad():
        assert torch.equal(loaded.model.scores(in0, in1), model.scores(in0, in1))
        assert torch.equal(loaded.model.encode(0, in0), model.encode(0, in0))
        assert torch.equal(loaded.model.encode(1, in1), model.encode(1, in1))


def test_artifact_loads_with_weights_only_and_describes_itself(tmp_path):
    """The weights file is plain data (torch.load(weights_only=True) reads it), and the JSON file
    beside it holds the same description without the weights."""
    hp = artifact_hp(ARTIFACT_CONFIGS["hcnn-regression"])
    model = perturbed_model(hp)
    path = save_artifact(tmp_path, model, hp, metadata={"best_epoch": 2})
    assert path == tmp_path / WEIGHTS_FILE
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "object2vec" and blob["format_version"] >= 1
    assert blob["state_dict"].keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in blob["state_dict"].items())
    described = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert described["hyperparameters"] == blob["hyperparameters"]
    assert described["metadata"] == {"best_epoch": 2} and "state_dict" not in described
    assert parse_hyperparameters(described["hyperparameters"]) == hp
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, no leftovers


class NotAnArtifact:
    """An arbitrary pickled object: weights_only loading must refuse it."""


def _write(path, kind):
    path.mkdir(parents=True, exist_ok=True)
    target = path / WEIGHTS_FILE
    if kind == "garbage":
        target.write_bytes(b"\x00\x01 definitely not a torch file")
    elif kind == "empty file":
        target.write_bytes(b"")
    elif kind == "pickled object":
        torch.save(NotAnArtifact(), target)
    elif kind == "other format":
        torch.save({"format": "xgboost", "state_dict": {}}, target)
    elif kind == "a list":
        torch.save([1, 2, 3], target)
    elif kind == "newer version":
        hp = artifact_hp({})
        save_artifact(path, perturbed_model(hp), hp)
        blob = torch.load(target, weights_only=True)
        torch.save({**blob, "format_version": 99}, target)
    elif kind == "bad hyperparameters":
        hp = artifact_hp({})
        save_artifact(path, perturbed_model(hp), hp)
        blob = torch.load(target, weights_only=True)
        torch.save({**blob, "hyperparameters": {**blob["hyperparameters"], "enc_dim": 2}}, target)


@pytest.mark.parametrize("kind,words", [
    ("missing", ["no Object2Vec model found", WEIGHTS_FILE]),
    ("garbage", ["cannot read model"]),
    ("empty file", ["cannot read model"]),
    ("pickled object", ["cannot read model"]),
    ("other format", ["not an Object2Vec model artifact"]),
    ("a list", ["not an Object2Vec model artifact"]),
    ("newer version", ["format version 99"]),
    ("bad hyperparameters", ["enc_dim=2"]),
])
def test_wrong_or_missing_artifact_is_a_user_error(tmp_path, kind, words):
    """Every way an artifact can be missing or foreign fails with a UserError that says why."""
    if kind != "missing":
        _write(tmp_path / "model", kind)
    with pytest.raises(UserError) as info:
        load_artifact(tmp_path / "model")
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("damage,words", [
    ("missing weight", ["does not match its own hyperparameters", "mlp.0.weight"]),
    ("wrong shape", ["does not match its own hyperparameters", "mlp.0.weight"]),
    ("no hyperparameters", ["is incomplete", "hyperparameters"]),
])
def test_artifact_whose_weights_do_not_match_is_a_user_error(tmp_path, damage, words):
    """An artifact whose state_dict does not fit its hyperparameters (or has none) is a wrong
    artifact, so it should be a UserError like the others."""
    hp = artifact_hp({})
    path = save_artifact(tmp_path, perturbed_model(hp), hp)
    blob = torch.load(path, weights_only=True)
    if damage == "missing weight":
        del blob["state_dict"]["mlp.0.weight"]
    elif damage == "wrong shape":
        blob["state_dict"]["mlp.0.weight"] = torch.zeros(3, 3)
    else:
        del blob["hyperparameters"]
    torch.save(blob, path)
    with pytest.raises(UserError) as info:
        load_artifact(tmp_path)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("explicit", [False, True], ids=["default-token-dim", "explicit-token-dim"])
def test_loading_an_artifact_does_not_repeat_the_token_dim_warning(tmp_path, caplog, explicit):
    """The artifact stores every resolved hyperparameter (also a token dim of 300 that
    pooled_embedding replaced by enc_dim); loading it, once per server worker, logs nothing."""
    raw = {"enc0_network": "pooled_embedding"}
    if explicit:
        raw["enc0_token_embedding_dim"] = "300"  # the user's own conflicting value
    hp = artifact_hp(raw)
    save_artifact(tmp_path, perturbed_model(hp), hp)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        loaded = load_artifact(tmp_path)
    assert loaded.hyperparameters == hp
    assert "Inconsistent" not in caplog.text


# -- settings of the opt-in extensions ---------------------------------------------------------------

OTHER = [[2], [5, 6], [7, 8, 8]]


def test_settings_travel_in_the_artifact(tmp_path):
    hp = pooling_hp(enc1_pooling="sum", enc1_activation="sigmoid")
    torch.manual_seed(0)
    model = Object2Vec(ModelConfig.from_hyperparameters(hp)).eval()
    save_artifact(tmp_path, model, hp)
    loaded = load_artifact(tmp_path)
    assert (loaded.hyperparameters.enc1.pooling, loaded.hyperparameters.enc1.activation) == (
        "sum", "sigmoid")
    in0, in1 = Tokens.from_lists([[1], [2], [3]]), Tokens.from_lists(OTHER)
    with torch.no_grad():
        assert torch.equal(loaded.model.scores(in0, in1), model.scores(in0, in1))


@pytest.mark.usefixtures("one_thread")
def test_default_models_have_no_weights_and_idf_weights_travel_in_the_artifact(tmp_path):
    """Without token_weighting the state dict is what it always was (older artifacts load); with
    it, the trained weights are saved and the served encodings are the trained model's."""
    data = topic_pairs()
    plain = trained(retrieval_hp(), data).model
    assert not any("pool_weight" in k for k in plain.state_dict())
    hp = retrieval_hp(token_weighting="idf")
    model = trained(hp, data).model.eval()
    save_artifact(tmp_path, model, hp)
    loaded = load_artifact(tmp_path).model
    assert torch.equal(loaded.embedding(0).pool_weight, model.embedding(0).pool_weight)
    assert float(model.embedding(0).pool_weight.max()) > float(model.embedding(0).pool_weight.min())
    tokens = Tokens.from_lists([[0, 1, 96], [50, 97, 98, 99]])
    with torch.no_grad():
        assert torch.equal(loaded.encode(0, tokens), model.encode(0, tokens))
