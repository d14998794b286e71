"""The memory check before the model is built (object2vec.training.memory): the estimate
(hand-computed numbers, and the parameter counts against a real model), and the decision and its
message."""

from __future__ import annotations

import pytest

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.platform.memory import Available
from object2vec.training.memory import check_fits, estimate_training_memory

GiB = 1024 ** 3


def hp(**raw):
    return parse_hyperparameters({"enc0_max_seq_len": "6", "enc0_vocab_size": "100",
                                  "enc_dim": "8", "mlp_dim": "8", **raw})


POOLED = {"enc0_network": "pooled_embedding"}

# -- the estimate, by hand ------------------------------------------------------------------------
# pooled_embedding, vocab 100, enc_dim 8: two tables of 100 x 8 = 800 values each.
# comparator hadamard+concat+abs_diff: 4 x 8 = 32 wide; MLP 32->8->8->2:
# (32*8+8) + (8*8+8) + (8*2+2) = 264 + 72 + 18 = 354 values. All values float32 (4 bytes).
POOLED_VALUES = 2 * 800 + 354  # 1954


def test_pooled_adam_by_hand():
    """weights + gradients + 2 adam states + the best epoch's copy, 4 bytes a value."""
    est = estimate_training_memory(hp(**POOLED))
    assert est.weights == 4 * POOLED_VALUES
    assert est.gradients == 4 * POOLED_VALUES
    assert est.optimizer_state == 2 * 4 * POOLED_VALUES
    assert est.best_copy == 4 * POOLED_VALUES
    assert est.ddp_buckets == 0
    assert est.total == 5 * 4 * POOLED_VALUES  # 39080


@pytest.mark.parametrize("optimizer,states", [("adam", 2), ("adadelta", 2), ("adagrad", 1),
                                              ("rmsprop", 1), ("sgd", 0)])
def test_optimizer_states_per_optimizer(optimizer, states):
    est = estimate_training_memory(hp(**POOLED, optimizer=optimizer))
    assert est.optimizer_state == states * 4 * POOLED_VALUES


@pytest.mark.parametrize("optimizer,states", [("adam", 2), ("adagrad", 1), ("sgd", 0)])
def test_row_sparse_tables_take_no_gradient_but_keep_lazy_state(optimizer, states):
    """row_sparse: the tables' 1600 values get no full gradient; the lazy optimizer keeps its
    per-row state for every row; the MLP's 354 values are dense as usual."""
    est = estimate_training_memory(hp(**POOLED, optimizer=optimizer,
                                      token_embedding_storage_type="row_sparse"))
    assert est.gradients == 4 * 354
    assert est.optimizer_state == states * 4 * (1600 + 354)
    assert est.total == 4 * (1954 + 354 + states * 1954 + 1954)


def test_tied_tables_are_counted_once():
    est = estimate_training_memory(hp(**POOLED, tied_token_embedding_weight="true"))
    assert est.weights == 4 * (800 + 354)
    assert [p.describe() for p in est.biggest(1)] == ["enc0 token embedding 100 x 8 (tied)"]


def test_distributed_training_adds_ddp_gradient_buckets():
    est = estimate_training_memory(hp(**POOLED), distributed=True)
    assert est.ddp_buckets == est.gradients == 4 * POOLED_VALUES


def test_idf_weights_are_one_value_per_row():
    est = estimate_training_memory(hp(**POOLED, token_weighting="idf"))
    assert est.weights == 4 * (POOLED_VALUES + 2 * 100)  # buffers, copied with the best epoch
    assert est.gradients == 4 * POOLED_VALUES


def test_a_frozen_pretrained_table_takes_no_gradient_or_state():
    est = estimate_training_memory(hp(**POOLED, enc0_vocab_file="v.json",
                                      enc0_pretrained_embedding_file="e.txt"))
    # enc1 clones enc0, so both tables load the vectors and are frozen: only the MLP trains
    assert est.gradients == 4 * 354 and est.optimizer_state == 2 * 4 * 354


def test_hcnn_and_bilstm_encoders_by_hand():
    """enc0 hcnn, token dim 6, 2 layers of width 3, enc_dim 8:
    conv 8*6*3+8 = 152, conv 8*8*3+8 = 200, projection 16*8+8 = 136 -> 488.
    enc1 bilstm, token dim 5, 2 layers, hidden 4 each way:
    layer 1 per direction 16*5 + 16*4 + 2*16 = 176, layer 2 per direction 16*8 + 16*4 + 32 = 224,
    both directions 2*(176+224) = 800, projection 8*8+8 = 72 -> 872.
    Tables 100*6 = 600 and 50*5 = 250; comparator hadamard only (8 wide), mlp_layers 0: 8*2+2 = 18.
    """
    est = estimate_training_memory(hp(
        enc0_network="hcnn", enc0_token_embedding_dim="6", enc0_layers="2",
        enc1_network="bilstm", enc1_vocab_size="50", enc1_max_seq_len="4",
        enc1_token_embedding_dim="5", enc1_layers="2", comparator_list="hadamard",
        mlp_layers="0", optimizer="sgd"))
    assert est.weights == 4 * (600 + 250 + 488 + 872 + 18)
    parts = {p.name: p.values for p in est.parts}
    assert parts == {"enc0 token embedding": 600, "enc1 token embedding": 250,
                     "enc0 hcnn encoder": 488, "enc1 bilstm encoder": 872, "mlp": 18}


CONFIGS = {
    "pooled": POOLED,
    "pooled-idf-tied": {**POOLED, "token_weighting": "idf", "tied_token_embedding_weight": "true"},
    "hcnn": {"enc0_token_embedding_dim": "6", "comparator_list": "concat", "mlp_layers": "3"},
    "bilstm-own-enc1": {"enc0_network": "bilstm", "enc0_layers": "3", "enc1_network": "hcnn",
                        "enc1_vocab_size": "9", "enc1_max_seq_len": "4",
                        "enc1_token_embedding_dim": "5", "enc1_cnn_filter_width": "5"},
    "odd-enc-dim": {"enc0_network": "bilstm", "enc_dim": "9", "num_classes": "5"},
    "regression": {**POOLED, "output_layer": "mean_squared_error", "mlp_layers": "0"},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_counted_values_are_the_real_models(name):
    """The estimate never builds a model; its counts must still be the model's own."""
    params = hp(**CONFIGS[name])
    model = Object2Vec(ModelConfig.from_hyperparameters(params))
    real = sum(t.numel() for t in model.state_dict().values())
    assert estimate_training_memory(params).weights == 4 * real


def test_the_estimate_of_the_largest_allowed_tables():
    """vocab 3,000,000 x enc_dim 10,000: 3e10 values = 1.2e11 bytes per table, two tables."""
    est = estimate_training_memory(hp(**POOLED, enc0_vocab_size="3000000", enc_dim="10000"))
    table = 3_000_000 * 10_000 * 4
    assert [p.describe() for p in est.biggest(2)] == [
        "enc0 token embedding 3000000 x 10000", "enc1 token embedding 3000000 x 10000"]
    assert 2 * table < est.weights < 2 * table + 4 * 10 ** 9  # + the MLP (40000 -> 512 ...)
    assert est.total > 5 * 2 * table


# -- the decision ---------------------------------------------------------------------------------


def test_a_fitting_model_passes():
    est = estimate_training_memory(hp(**POOLED))
    check_fits(est, Available(est.total, "test"))


def test_a_model_over_the_available_memory_names_tables_estimate_and_availability():
    est = estimate_training_memory(hp(**POOLED, enc0_vocab_size="3000000", enc_dim="10000"))
    with pytest.raises(UserError) as info:
        check_fits(est, Available(20 * GiB, "MemAvailable in /proc/meminfo"))
    msg = str(info.value)
    for word in ("enc0 token embedding 3000000 x 10000", "enc1 token embedding 3000000 x 10000",
                 f"estimated {est.total / GiB:.1f} GiB", "20.0 GiB available",
                 "MemAvailable in /proc/meminfo", "enc0_vocab_size", "enc_dim"):
        assert word in msg, (word, msg)


def test_every_process_of_a_host_holds_its_own_copy():
    est = estimate_training_memory(hp(**POOLED))
    check_fits(est, Available(2 * est.total, "test"), processes=2)
    with pytest.raises(UserError, match="2 processes"):
        check_fits(est, Available(2 * est.total - 1, "test"), processes=2)


def test_sizes_for_people():
    from object2vec.training.memory import format_bytes
    assert [format_bytes(n) for n in (5, 2048, 39080, 3 * GiB, 1.2e12)] == [
        "5 B", "2.0 KiB", "38.2 KiB", "3.0 GiB", "1117.6 GiB"]
