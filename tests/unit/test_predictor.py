"""Predictor: modes per instance, order, equality with the model, truncation, errors by index."""

import numpy as np
import pytest
import torch
from helpers import tolerance

from object2vec.artifact import load_artifact, save_artifact
from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.tokens import Tokens
from object2vec.serving.predictor import InvalidInstance, Predictor, by_instance

HP = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "50", "enc0_max_seq_len": "10",
      "enc1_network": "pooled_embedding", "enc1_vocab_size": "30", "enc1_max_seq_len": "6",
      "enc_dim": "8", "enc0_token_embedding_dim": "8", "enc1_token_embedding_dim": "8",
      "output_layer": "softmax", "num_classes": "3"}


def _predictor(tmp_path, device="cpu", **overrides) -> Predictor:
    hp = parse_hyperparameters({**HP, **overrides})
    save_artifact(tmp_path / "model", Object2Vec(ModelConfig.from_hyperparameters(hp)), hp)
    return Predictor.from_model_dir(tmp_path / "model", device)


@pytest.fixture
def predictor(tmp_path):
    return _predictor(tmp_path)


def _predict(predictor, *args, **kwargs):
    """One ``{key: row}`` per instance, in request order."""
    return by_instance(predictor.predict(*args, **kwargs))


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _scores(model, pairs):
    with torch.inference_mode():
        return model.scores(Tokens.from_lists([p[0] for p in pairs], _device(model)),
                            Tokens.from_lists([p[1] for p in pairs], _device(model))).cpu().numpy()


def _encode(model, side, seqs):
    with torch.inference_mode():
        return model.encode(side, Tokens.from_lists(seqs, _device(model))).cpu().numpy()


def test_mixed_modes_keep_request_order(tmp_path, device):
    predictor = _predictor(tmp_path, device)
    instances = [{"in0": [1, 2], "in1": [3]}, {"in0": [4, 5, 6]}, {"in1": [7]},
                 {"in0": [8], "in1": [9, 10], "label": 2}, {"in0": [11]},
                 {"in1": [12, 13], "x": "y"}]
    out = _predict(predictor, instances)
    assert [list(p) for p in out] == [["scores"], ["embeddings"], ["embeddings"], ["scores"],
                                      ["embeddings"], ["embeddings"]]
    model = predictor.model
    np.testing.assert_array_equal(np.stack([out[0]["scores"], out[3]["scores"]]),
                                  _scores(model, [([1, 2], [3]), ([8], [9, 10])]))
    np.testing.assert_array_equal(np.stack([out[1]["embeddings"], out[4]["embeddings"]]),
                                  _encode(model, 0, [[4, 5, 6], [11]]))
    np.testing.assert_array_equal(np.stack([out[2]["embeddings"], out[5]["embeddings"]]),
                                  _encode(model, 1, [[7], [12, 13]]))


def test_scores_are_probabilities_and_embeddings_have_enc_dim(predictor):
    out = _predict(predictor, [{"in0": [1], "in1": [2]}, {"in0": [3, 4]}, {"in1": [5]}])
    assert out[0]["scores"].dtype == np.float32 and out[0]["scores"].shape == (3,)
    assert out[0]["scores"].sum() == pytest.approx(1.0, abs=1e-6)
    assert out[1]["embeddings"].shape == (8,) and out[2]["embeddings"].shape == (8,)


def test_a_single_side_runs_its_own_encoder(predictor):
    (e0,), (e1,) = _predict(predictor, [{"in0": [3]}]), _predict(predictor, [{"in1": [3]}])
    assert not np.array_equal(e0["embeddings"], e1["embeddings"])  # two different tables


def test_batches_give_the_same_results(tmp_path, device):
    predictor = _predictor(tmp_path, device)
    rng = np.random.default_rng(0)
    instances = [{"in0": rng.integers(0, 50, rng.integers(1, 12)).tolist(),
                  "in1": rng.integers(0, 30, rng.integers(1, 8)).tolist()} for _ in range(37)]
    instances += [{"in0": i["in0"]} for i in instances[:9]]
    whole = _predict(predictor, instances)
    predictor.batch_size = 4
    chunked = _predict(predictor, instances)
    for a, b in zip(whole, chunked):
        (key, va), = a.items()
        np.testing.assert_allclose(va, b[key], rtol=1e-5, atol=1e-7)


def test_truncation_by_max_seqlens_and_by_training_length(predictor):
    long0, long1 = list(range(1, 16)), [1, 2, 3, 4, 5, 6, 7, 8, 9]
    model = predictor.model
    (out,) = _predict(predictor, [{"in0": long0, "in1": long1}])
    np.testing.assert_array_equal(out["scores"], _scores(model, [(long0[:10], long1[:6])])[0])
    out = _predict(predictor, [{"in0": long0, "in1": long1}, {"in0": long0}, {"in1": long1}],
                   max_seqlens=(2, 3))
    np.testing.assert_array_equal(out[0]["scores"], _scores(model, [(long0[:2], long1[:3])])[0])
    np.testing.assert_array_equal(out[1]["embeddings"], _encode(model, 0, [long0[:2]])[0])
    np.testing.assert_array_equal(out[2]["embeddings"], _encode(model, 1, [long1[:3]])[0])
    assert not np.array_equal(out[1]["embeddings"], _encode(model, 0, [long0])[0])


def test_ids_past_the_cut_are_not_checked(predictor):
    (out,) = _predict(predictor, [{"in0": [1, 2, 999, "x"]}], max_seqlens=(2, 2))
    np.testing.assert_array_equal(out["embeddings"], _encode(predictor.model, 0, [[1, 2]])[0])


def test_longer_max_seqlens_than_training_are_allowed(predictor):
    seq = list(range(20))
    (out,) = _predict(predictor, [{"in0": seq}], max_seqlens=(20, 20))
    np.testing.assert_array_equal(out["embeddings"], _encode(predictor.model, 0, [seq])[0])


@pytest.mark.parametrize("instance, message", [
    (["in0", [1]], 'instance 2: expected a JSON object with "in0" and/or "in1", got an array'),
    (7, "instance 2: expected a JSON object .* got a number"),
    ({"label": 1}, 'instance 2: has neither "in0" nor "in1"'),
    ({"in0": []}, 'instance 2: "in0" must be a non-empty list of integer token ids, got \\[\\]'),
    ({"in0": [1], "in1": None}, 'instance 2: "in1" must be a non-empty list .* got null'),
    ({"in1": "1 2"}, 'instance 2: "in1" must be a non-empty list .* got "1 2"'),
    ({"in0": {"a": 1}}, 'instance 2: "in0" must be a non-empty list .* got {"a": 1}'),
    ({"in0": [1, "2"]}, 'instance 2: "in0" holds "2"; token ids must be integers'),
    ({"in0": [1, 2.0]}, 'instance 2: "in0" holds 2.0; token ids must be integers'),
    ({"in0": [1], "in1": [None]}, 'instance 2: "in1" holds null; token ids must be integers'),
    ({"in0": [True]}, 'instance 2: "in0" holds true; token ids must be integers, not booleans'),
    ({"in1": [-1]}, 'instance 2: "in1" holds negative token id -1'),
    ({"in0": [1], "in1": [30]},
     'Inconsistent vocab for in1 found. Vocab id "30" is not less than vocab_size=30 '
     '\\(instance 2\\)'),
    ({"in0": [50]},
     'Inconsistent vocab for in0 found. Vocab id "50" is not less than vocab_size=50 '
     '\\(instance 2\\)'),
    ({"in0": [2**70]}, 'Vocab id "1180591620717411303424" is not less than vocab_size=50'),
])
def test_invalid_instances_name_their_index(predictor, instance, message):
    good = [{"in0": [1], "in1": [2]}, {"in0": [49], "in1": [29]}]
    with pytest.raises(InvalidInstance, match=message) as err:
        predictor.predict(good + [instance] + good)
    assert err.value.index == 2
    assert err.value.status == 400


def test_first_bad_instance_is_reported(predictor):
    with pytest.raises(InvalidInstance, match="instance 1: .* negative") as err:
        predictor.predict([{"in0": [1]}, {"in0": [-5]}, {"in0": [99]}])
    assert err.value.index == 1


def test_where_names_the_instance(predictor):
    with pytest.raises(InvalidInstance, match='instance 0 at line 3: "in0" holds negative'):
        predictor.predict([{"in0": [-1]}], where=lambda i: f"instance {i} at line 3")


def test_regression_model_returns_one_value(tmp_path, device):
    predictor = _predictor(tmp_path, device, output_layer="mean_squared_error")
    (out, emb) = _predict(predictor, [{"in0": [1, 2], "in1": [3]}, {"in0": [1]}])
    assert out["scores"].shape == (1,)
    np.testing.assert_array_equal(out["scores"], _scores(predictor.model, [([1, 2], [3])])[0])
    assert emb["embeddings"].shape == (8,)


@pytest.mark.parametrize("network", ["hcnn", "bilstm"])
def test_padded_encoders(tmp_path, network, device):
    predictor = _predictor(tmp_path, device, enc0_network=network, enc1_network=network,
                           enc0_token_embedding_dim="4", enc1_token_embedding_dim="4")
    seqs = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    out = _predict(predictor, [{"in0": s} for s in seqs] + [{"in0": seqs[0], "in1": [1, 2]}])
    np.testing.assert_allclose(np.stack([o["embeddings"] for o in out[:3]]),
                               _encode(predictor.model, 0, seqs), **tolerance(device, 1e-5, 1e-6))
    assert out[3]["scores"].sum() == pytest.approx(1.0, abs=1e-6)


def test_loads_through_the_artifact(tmp_path):
    predictor = _predictor(tmp_path)
    assert predictor.vocab_sizes == (50, 30) and predictor.max_seq_lens == (10, 6)
    assert not predictor.model.training
    assert load_artifact(tmp_path / "model").hyperparameters == predictor.loaded.hyperparameters


@pytest.mark.parametrize("instances, index, message", [
    # an id error before a shape error, and the other way round
    ([{"in0": [1]}, {"in1": [99]}, {"x": 1}], 1, 'Vocab id "99"'),
    ([{"in0": [1]}, {"x": 1}, {"in1": [99]}], 1, "has neither"),
    # errors in different groups and sides: the earliest instance wins
    ([{"in0": [1], "in1": [2]}, {"in0": [5], "in1": [-1]}, {"in0": [-3]}], 1,
     "negative token id -1"),
    ([{"in0": [1], "in1": [2]}, {"in1": [2.5]}, {"in0": [60], "in1": [1]}], 1, "holds 2.5"),
    ([{"in0": [1], "in1": [2]}, {"in0": [60], "in1": [1]}, {"in1": [2.5]}], 1, 'Vocab id "60"'),
])
def test_the_first_invalid_instance_in_request_order_is_reported(predictor, instances, index,
                                                                 message):
    with pytest.raises(InvalidInstance, match=message) as err:
        predictor.predict(instances)
    assert err.value.index == index


def test_one_matrix_per_mode_with_the_request_positions(predictor):
    instances = [{"in0": [1], "in1": [2]}, {"in0": [3, 4]}, {"in0": [5], "in1": [6]}, {"in0": [7]},
                 {"in1": [8]}]
    groups = predictor.predict(instances)
    assert [(g.key, g.positions.tolist(), g.matrix.shape) for g in groups] == [
        ("scores", [0, 2], (2, 3)), ("embeddings", [1, 3], (2, 8)), ("embeddings", [4], (1, 8))]
    assert all(g.matrix.dtype == np.float32 and g.matrix.flags.c_contiguous for g in groups)
    predictor.batch_size = 1  # several batches: one matrix still
    assert [g.matrix.shape for g in predictor.predict(instances)] == [(2, 3), (2, 8), (1, 8)]
