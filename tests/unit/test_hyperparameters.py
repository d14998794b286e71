"""Hyperparameter parsing: every documented key's default, spellings and range errors, the
resolution rules of object2vec.md section 3.2, ignored keys, and the combined error message.

The expected values come from the documentation (object2vec.md section 3.1), written out here, not
read from ``SPECS``: a test that derived its expectations from the code under test could not fail.
"""

from __future__ import annotations

import json
import logging
import math
import re

import pytest

from object2vec.config.hyperparameters import SPECS, Hyperparameters, parse_hyperparameters
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec

REQUIRED = {"enc0_max_seq_len": "10", "enc0_vocab_size": "100"}
ENC1_OWN = {"enc1_max_seq_len": "7", "enc1_vocab_size": "50"}  # needed when enc1 is not cloned

NETWORKS = ("hcnn", "bilstm", "pooled_embedding", "transformer")
COMPARATORS = ("hadamard", "concat", "abs_diff")
OPTIMIZERS = ("adadelta", "adagrad", "adam", "sgd", "rmsprop")
FILENAME = ("filename",)

# key -> (kind, documented default, low, high) or (kind, default, choices); object2vec.md 3.1.
DOCUMENTED: dict[str, tuple] = {
    "enc0_max_seq_len": ("int", None, 1, 5000),
    "enc0_vocab_size": ("int", None, 2, 3_000_000),
    "bucket_width": ("int", 0, 0, 100),
    "comparator_list": ("comparators", ("hadamard", "concat", "abs_diff"), COMPARATORS),
    "dropout": ("float", 0.0, 0.0, 1.0),
    "early_stopping_patience": ("int", 3, 1, 5),
    "early_stopping_tolerance": ("float", 0.01, 1e-6, 0.1),
    "enc_dim": ("int", 4096, 4, 10000),
    "enc0_network": ("choice", "hcnn", NETWORKS),
    "enc0_cnn_filter_width": ("int", 3, 1, 9),
    "enc0_freeze_pretrained_embedding": ("bool", True, ("True", "False")),
    "enc0_layers": ("layers", None, 1, 4),  # None = auto
    "enc0_pretrained_embedding_file": ("filename", "", FILENAME),
    "enc0_token_embedding_dim": ("int", 300, 2, 1000),
    "enc0_vocab_file": ("filename", "", FILENAME),
    "enc1_network": ("choice", "enc0", ("enc0",) + NETWORKS),
    "enc1_cnn_filter_width": ("int", 3, 1, 9),
    "enc1_freeze_pretrained_embedding": ("bool", True, ("True", "False")),
    "enc1_layers": ("layers", None, 1, 4),
    "enc1_max_seq_len": ("int", None, 1, 5000),
    "enc1_pretrained_embedding_file": ("filename", "", FILENAME),
    "enc1_token_embedding_dim": ("int", 300, 2, 1000),
    "enc1_vocab_file": ("filename", "", FILENAME),
    "enc1_vocab_size": ("int", None, 2, 3_000_000),
    "epochs": ("int", 30, 1, 100),
    "learning_rate": ("float", 0.0004, 1e-6, 1.0),
    "mini_batch_size": ("int", 32, 1, 10000),
    "mlp_activation": ("choice", "linear", ("tanh", "relu", "linear")),
    "mlp_dim": ("int", 512, 2, 10000),
    "mlp_layers": ("int", 2, 0, 10),
    "negative_sampling_rate": ("int", 0, 0, 100),  # docs: int >= 0; SDK validator: 0-100
    "num_classes": ("int", 2, 2, 30),
    "optimizer": ("choice", "adam", OPTIMIZERS),
    "output_layer": ("choice", "softmax", ("softmax", "mean_squared_error")),
    "tied_token_embedding_weight": ("bool", False, ("True", "False")),
    "token_embedding_storage_type": ("choice", "dense", ("dense", "row_sparse")),
    "weight_decay": ("float", 0.0, 0.0, 10000.0),
    # extensions (README "Hyperparameters"): off by default
    "in_batch_softmax_weight": ("float", 0.0, 0.0, 100.0),
    "in_batch_softmax_temperature": ("float", 0.05, 0.001, 10.0),
    "token_weighting": ("choice", "none", ("none", "idf")),
    "early_stopping_metric": ("choice", "loss", ("loss", "retrieval_mrr")),
    "pairs_per_document": ("int", 1, 1, 1000),
    "hard_negatives": ("int", 0, 0, 16),
    "catalog_index": ("choice", "auto", ("auto", "flat", "ivf")),
    "catalog_ivf_lists": ("int", 0, 0, 1_000_000),
    "catalog_ivf_probe": ("int", 32, 1, 65536),
    "catalog_similarity": ("choice", "cosine", ("cosine", "inner_product")),
    "transformer_learning_rate": ("float", 2e-5, 1e-8, 1.0),
    "mixed_precision": ("choice", "auto", ("auto", "off", "bf16", "fp16")),
    "gradient_accumulation_steps": ("int", 1, 1, 1024),
    **{f"enc{side}_{key}": spec for side in (0, 1) for key, spec in (
        ("pooling", ("choice", "mean", ("mean", "sum"))),
        ("activation", ("choice", "linear", ("linear", "sigmoid", "tanh", "relu"))),
        ("tokenizer", ("choice", "wordpiece", ("wordpiece", "bpe", "unigram", "wordlevel"))),
        ("lowercase", ("bool", True, ("True", "False"))),
        ("tokenizer_file", ("filename", "", FILENAME)),
        ("pretrained_model", ("filename", "", FILENAME)),
        ("transformer_pooling", ("choice", "mean", ("mean", "cls"))),
        ("frozen_layers", ("int", 0, 0, 100)))},
}


def parse(**raw) -> Hyperparameters:
    return parse_hyperparameters({**REQUIRED, **raw})


def error_of(raw: dict) -> str:
    with pytest.raises(UserError) as info:
        parse_hyperparameters(raw)
    return str(info.value)


def context_for(key: str, value: str) -> dict:
    """Other keys a value needs to be valid on its own (enc1 not cloned needs its own sizes;
    token weights weight a pooled_embedding encoder's mean)."""
    if key == "token_weighting" or key.startswith("enc0_") and key.endswith(("_pooling",
                                                                            "_activation")) \
            and "transformer" not in key:
        return {"enc0_network": "pooled_embedding"}
    if key.startswith("enc1_") and key.endswith(("_pooling", "_activation")) and "transformer" not in key:
        return {**ENC1_OWN, "enc1_network": "pooled_embedding"}
    if key == "hard_negatives":
        return {"in_batch_softmax_weight": "1"}
    side = key[3]
    if key.endswith(("_pretrained_model", "_transformer_pooling", "_frozen_layers")) or (
            key.endswith("_network") and value.strip('" ').lower() == "transformer"):
        if key.endswith("_pretrained_model") and not value.strip('" '):
            return {}  # '' is the default: no folder, no transformer
        own = {"enc1_max_seq_len": "7"} if side == "1" else {}
        folder = {} if key.endswith("_pretrained_model") else {f"enc{side}_pretrained_model": "m"}
        network = {} if key.endswith("_network") else {f"enc{side}_network": "transformer"}
        return {**own, **folder, **network}
    return dict(ENC1_OWN) if key == "enc1_network" and value.strip('" ').lower() != "enc0" else {}


# -- the table itself ------------------------------------------------------------------------------


def test_every_documented_hyperparameter_is_declared_and_nothing_else():
    """SPECS holds exactly the documented keys, so the tables below cover every hyperparameter."""
    assert set(SPECS) == set(DOCUMENTED)


def test_only_enc0_max_seq_len_and_vocab_size_are_required():
    """Parsing {} names both required keys; nothing else is required."""
    msg = error_of({})
    assert "enc0_max_seq_len: required" in msg and "enc0_vocab_size: required" in msg
    assert "(2 problems)" in msg
    assert {k for k, s in SPECS.items() if s.required} == {"enc0_max_seq_len", "enc0_vocab_size"}


@pytest.mark.parametrize("key", sorted(k for k, d in DOCUMENTED.items() if d[1] is not None
                                       or d[0] == "layers" or k.startswith("enc1_")))
def test_default_when_absent(key):
    """An absent optional key takes its documented default."""
    assert getattr(parse(), key) == DOCUMENTED[key][1]


def test_required_keys_parse_to_integers():
    """The required keys come back as ints from their string form."""
    hp = parse()
    assert (hp.enc0_max_seq_len, hp.enc0_vocab_size) == (10, 100)
    assert type(hp.enc0_max_seq_len) is int


# -- valid values in every spelling ----------------------------------------------------------------


def _valid_cases() -> list[tuple[str, str, object]]:
    cases: list[tuple[str, str, object]] = []
    for key, (kind, *_rest) in DOCUMENTED.items():
        if kind == "int":
            low, high = DOCUMENTED[key][2], DOCUMENTED[key][3]
            mid = (low + high) // 2
            cases += [(key, str(low), low), (key, str(high), high), (key, f'"{mid}"', mid),
                      (key, f" {mid} ", mid)]
        elif kind == "float":
            low, high = DOCUMENTED[key][2], DOCUMENTED[key][3]
            cases += [(key, repr(low), low), (key, repr(high), high), (key, f'"{high}"', high)]
        elif kind == "bool":
            cases += [(key, "True", True), (key, "true", True), (key, "False", False),
                      (key, "false", False), (key, '"true"', True), (key, "TRUE", True)]
        elif kind == "choice":
            for choice in DOCUMENTED[key][2]:
                cases += [(key, choice, choice), (key, f'"{choice}"', choice),
                          (key, choice.upper(), choice)]
        elif kind == "layers":
            cases += [(key, "auto", None), (key, '"auto"', None), (key, "AUTO", None),
                      (key, "1", 1), (key, "4", 4), (key, '"2"', 2)]
        elif kind == "filename":
            cases += [(key, "", ""), (key, '""', ""), (key, "vocab.json", "vocab.json"),
                      (key, "glove.840B-trim.txt", "glove.840B-trim.txt"),  # AWS SNLI notebook
                      (key, "all_vocab.json", "all_vocab.json")]
        elif kind == "comparators":
            cases += [(key, "hadamard, concat, abs_diff", ("hadamard", "concat", "abs_diff")),
                      (key, "hadamard,concat,abs_diff", ("hadamard", "concat", "abs_diff")),
                      (key, "hadamard", ("hadamard",)),
                      (key, '"hadamard"', ("hadamard",)),
                      (key, " abs_diff , Hadamard ", ("abs_diff", "hadamard")),
                      (key, "concat,abs_diff", ("concat", "abs_diff"))]
    cases += [("learning_rate", "4e-4", 0.0004), ("learning_rate", "0.0004", 0.0004),
              ("learning_rate", '"4e-4"', 0.0004), ("enc_dim", '"4096"', 4096),
              ("enc_dim", "4096", 4096), ("mini_batch_size", "1e2", 100), ("dropout", "0.4", 0.4),
              ("weight_decay", "1e-3", 0.001), ("early_stopping_tolerance", "1e-6", 1e-6)]
    return cases


VALID = _valid_cases()


def test_valid_table_covers_every_key():
    """The spelling table below has cases for every documented hyperparameter."""
    assert {key for key, _, _ in VALID} == set(DOCUMENTED)


@pytest.mark.parametrize("key,raw,expected", VALID, ids=[f"{k}={r}" for k, r, _ in VALID])
def test_valid_value_in_each_spelling(key, raw, expected):
    """Every spelling seen in the wild (True/true, JSON-quoted, auto, lists with or without spaces,
    scientific notation, upper case) parses to the typed value."""
    value = getattr(parse(**{key: raw}, **context_for(key, raw)), key)
    assert value == expected
    assert type(value) is type(expected)


# -- values out of range or of the wrong kind ------------------------------------------------------


def _bad_cases() -> list[tuple[str, str, tuple[str, ...]]]:
    """(key, bad value, words the message must contain to say what is allowed)."""
    cases: list[tuple[str, str, tuple[str, ...]]] = []
    for key, (kind, *_rest) in DOCUMENTED.items():
        if kind in ("int", "float", "layers"):
            low, high = DOCUMENTED[key][2], DOCUMENTED[key][3]
            if kind == "float":
                below = low / 10 if low > 0 else -0.1
                above = high * 2
            else:
                below, above = low - 1, high + 1
            words = ("<low>", "<high>") + (("auto",) if kind == "layers" else ())
            cases += [(key, repr(below), words), (key, repr(above), words), (key, "abc", words)]
            if kind != "float":
                cases.append((key, "2.5", words))
        elif kind == "bool":
            cases += [(key, "yes", ("True", "False")), (key, "1", ("True", "False"))]
        elif kind == "choice":
            cases += [(key, "nonsense", DOCUMENTED[key][2])]
        elif kind == "comparators":
            cases += [(key, "dot", COMPARATORS), (key, "hadamard,hadamard", COMPARATORS),
                      (key, "", COMPARATORS), (key, "hadamard,,concat", COMPARATORS)]
        elif kind == "filename":
            cases += [(key, "../etc/passwd", ("file name",)), (key, "a/b.txt", ("file name",)),
                      (key, "..", ("file name",)), (key, "my vocab.json", ("file name",))]
    bounds = ("<low>", "<high>")
    cases += [("learning_rate", "nan", bounds), ("dropout", "inf", bounds),
              ("enc_dim", "true", bounds), ("enc0_network", "enc0", NETWORKS)]
    return cases


BAD = _bad_cases()

NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:e[-+]?\d+)?")


def test_bad_table_covers_every_key():
    """The range-error table below has cases for every documented hyperparameter."""
    assert {key for key, _, _ in BAD} == set(DOCUMENTED)


@pytest.mark.parametrize("key,raw,allowed", BAD, ids=[f"{k}={r}" for k, r, _ in BAD])
def test_bad_value_names_key_value_and_what_is_allowed(key, raw, allowed):
    """A bad value fails with a UserError naming the key, the value as given, and the allowed range
    (both documented bounds) or choices."""
    msg = error_of({**REQUIRED, key: raw, **context_for(key, raw)})
    line = next((ln for ln in msg.splitlines() if key in ln), "")
    assert line, msg
    assert repr(raw) in line
    assert "(1 problem)" in msg
    for word in allowed:
        if word in ("<low>", "<high>"):
            bound = DOCUMENTED[key][2] if word == "<low>" else DOCUMENTED[key][3]
            numbers = [float(n) for n in NUMBER.findall(line.split("must be", 1)[1])]
            assert any(math.isclose(n, bound) for n in numbers), (bound, line)
        else:
            assert word in line, (word, line)


def test_every_bad_key_is_named_at_once():
    """One UserError lists every problem: bad values, unknown keys and missing required keys."""
    msg = error_of({"enc0_vocab_size": "1", "enc_dim": "3", "optimizer": "lbfgs",
                    "enc0_layers": "many", "comparator_list": "dot", "epochs": "0",
                    "enc_dimm": "8"})
    assert "(8 problems)" in msg
    for needle in ("enc0_vocab_size='1'", "enc_dim='3'", "optimizer='lbfgs'",
                   "enc0_layers='many'", "comparator_list='dot'", "epochs='0'", "enc_dimm='8'",
                   "enc0_max_seq_len: required"):
        assert needle in msg, needle


# -- unknown, ignored and warned keys --------------------------------------------------------------


@pytest.mark.parametrize("key,suggestion", [
    ("enc_dimm", "enc_dim"), ("learningrate", "learning_rate"),
    ("enc0_vocabsize", "enc0_vocab_size"), ("mini_batch", "mini_batch_size"), ("epoch", "epochs")])
def test_unknown_key_is_an_error_with_did_you_mean(key, suggestion):
    """A typo is not silently ignored: the error names it and the closest real key."""
    msg = error_of({**REQUIRED, key: "5"})
    assert f"{key}='5': unknown hyperparameter" in msg
    assert f"did you mean {suggestion!r}" in msg


def test_unknown_key_without_a_close_match_has_no_suggestion():
    """An unrelated unknown key is named without a misleading suggestion."""
    msg = error_of({**REQUIRED, "zzz_qqq": "1"})
    assert "zzz_qqq='1': unknown hyperparameter" in msg and "did you mean" not in msg


IGNORED = {"sagemaker_job_name": "job-1", "sagemaker_region": '"us-west-2"',
           "sagemaker_container_log_level": "20", "sagemaker_program": "train.py",
           "sagemaker_submit_directory": "s3://b/k", "sagemaker_mpi_enabled": "false",
           "_tuning_objective_metric": "validation:cross_entropy", "_kvstore": "device",
           "_num_gpus": "auto", "_num_kv_servers": "auto"}


@pytest.mark.parametrize("key", sorted(IGNORED))
def test_platform_keys_are_accepted_and_ignored(key, caplog):
    """Keys that SageMaker, the SDK, tuning jobs and AWS notebooks send parse to the same object as
    without them, with no warning."""
    with caplog.at_level(logging.WARNING):
        assert parse(**{key: IGNORED[key]}) == parse()
    assert key not in caplog.text


def test_all_platform_keys_together_are_ignored():
    """An AWS-notebook-style map with every ignored key at once still parses."""
    assert parse(**IGNORED) == parse()


def test_feature_dim_is_ignored_with_a_warning(caplog):
    """feature_dim (SDK RecordSet path) is ignored, and the log says so."""
    with caplog.at_level(logging.WARNING):
        assert parse(feature_dim="300") == parse()
    assert "feature_dim" in caplog.text


# -- resolution rules (object2vec.md section 3.2) --------------------------------------------------


def test_enc1_enc0_clones_every_enc0_value_and_ignores_user_enc1_values():
    """enc1_network=enc0 (the default) copies every enc0_* value; enc1_* values set by the user (as
    in aws/sagemaker-python-sdk#834) are ignored."""
    hp = parse(enc0_network="bilstm", enc0_max_seq_len="17", enc0_vocab_size="2",
               enc0_token_embedding_dim="12", enc0_layers="2", enc0_cnn_filter_width="5",
               enc0_vocab_file="v.json", enc0_pretrained_embedding_file="g.txt",
               enc0_freeze_pretrained_embedding="false",
               enc1_vocab_size="3", enc1_max_seq_len="99", enc1_token_embedding_dim="7",
               enc1_layers="1", enc1_cnn_filter_width="2", enc1_vocab_file="other.json",
               enc1_pretrained_embedding_file="other.txt", enc1_freeze_pretrained_embedding="true")
    assert hp.enc1 == hp.enc0
    assert (hp.enc1.network, hp.enc1.vocab_size, hp.enc1.max_seq_len) == ("bilstm", 2, 17)
    assert (hp.enc1.token_embedding_dim, hp.enc1.layers, hp.enc1.cnn_filter_width) == (12, 2, 5)
    assert (hp.enc1.vocab_file, hp.enc1.pretrained_embedding_file) == ("v.json", "g.txt")
    assert hp.enc1.freeze_pretrained_embedding is False


def test_cloned_encoders_have_separate_weights():
    """Cloning copies settings, not parameters: the two encoders and tables are distinct tensors."""
    hp = parse(enc0_network="hcnn", enc_dim="8", enc0_token_embedding_dim="4", enc0_layers="1",
               mlp_dim="4")
    model = Object2Vec(ModelConfig.from_hyperparameters(hp))
    assert len(model.embeddings) == 2
    assert model.embedding(0).weight.data_ptr() != model.embedding(1).weight.data_ptr()
    p0 = {id(p) for p in model.encoders[0].parameters()}
    p1 = {id(p) for p in model.encoders[1].parameters()}
    assert p0 and p1 and not p0 & p1
    assert not all(a.equal(b) for a, b in zip(model.encoders[0].parameters(),
                                              model.encoders[1].parameters()))


def test_enc1_own_values_are_used_when_not_cloned():
    """With an explicit enc1_network, enc1 takes its own enc1_* values."""
    hp = parse(enc1_network="hcnn", enc1_max_seq_len="7", enc1_vocab_size="50",
               enc1_token_embedding_dim="20", enc1_layers="2", enc1_cnn_filter_width="1",
               enc1_vocab_file="b.json")
    assert (hp.enc1.network, hp.enc1.max_seq_len, hp.enc1.vocab_size) == ("hcnn", 7, 50)
    assert (hp.enc1.token_embedding_dim, hp.enc1.layers, hp.enc1.cnn_filter_width) == (20, 2, 1)
    assert hp.enc1.vocab_file == "b.json"
    assert (hp.enc0.max_seq_len, hp.enc0.vocab_size) == (10, 100)


@pytest.mark.parametrize("network", ["hcnn", "bilstm", "pooled_embedding"])
def test_enc1_sizes_are_required_when_not_cloned(network):
    """enc1_network other than enc0 without enc1_max_seq_len / enc1_vocab_size names both keys."""
    msg = error_of({**REQUIRED, "enc1_network": network})
    assert "enc1_max_seq_len: required when enc1_network=" + network in msg
    assert "enc1_vocab_size: required when enc1_network=" + network in msg
    msg = error_of({**REQUIRED, "enc1_network": network, "enc1_vocab_size": "5"})
    assert "enc1_max_seq_len" in msg and "enc1_vocab_size" not in msg


def test_pooled_embedding_uses_enc_dim_as_token_dim_with_the_aws_warning(caplog):
    """pooled_embedding overrides the token dim with enc_dim and logs AWS's warning, once per
    encoder (enc1 cloned)."""
    with caplog.at_level(logging.WARNING):
        hp = parse(enc0_network="pooled_embedding", enc_dim="100", enc0_token_embedding_dim="300")
    assert hp.enc0.token_embedding_dim == hp.enc1.token_embedding_dim == 100
    assert hp.enc0_token_embedding_dim == 300  # declared value kept; the resolved one differs
    warnings = [r.getMessage() for r in caplog.records
                if "Inconsistent enc_dim and token_embedding_dim found" in r.getMessage()]
    assert len(warnings) == 2
    assert all("100 vs 300" in w and "Setting token embedding dim to be 100" in w for w in warnings)


def test_pooled_embedding_without_conflict_does_not_warn(caplog):
    """No warning when the token dim already equals enc_dim; other networks keep their token dim."""
    with caplog.at_level(logging.WARNING):
        hp = parse(enc0_network="pooled_embedding", enc_dim="64", enc0_token_embedding_dim="64",
                   enc1_network="hcnn", **ENC1_OWN, enc1_token_embedding_dim="30")
    assert "Inconsistent" not in caplog.text
    assert (hp.enc0.token_embedding_dim, hp.enc1.token_embedding_dim) == (64, 30)


@pytest.mark.parametrize("network,layers,expected", [
    ("hcnn", "auto", 4), ("bilstm", "auto", 1), ("pooled_embedding", "auto", 1),
    ("hcnn", "2", 2), ("bilstm", "3", 3), ("pooled_embedding", "3", 1)])
def test_layers_auto_resolves_per_network(network, layers, expected):
    """layers=auto gives hcnn 4, bilstm 1; pooled_embedding ignores the layer count (1)."""
    hp = parse(enc0_network=network, enc0_layers=layers)
    assert hp.enc0.layers == hp.enc1.layers == expected


def test_layers_auto_resolves_per_side_when_not_cloned():
    """Each side resolves auto for its own network."""
    hp = parse(enc0_network="bilstm", enc1_network="hcnn", **ENC1_OWN)
    assert (hp.enc0.layers, hp.enc1.layers) == (1, 4)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adadelta"])
def test_row_sparse_with_a_non_sparse_optimizer_is_an_error(optimizer):
    """row_sparse needs adam, adagrad or sgd; the error names the optimizer and the choices."""
    msg = error_of({**REQUIRED, "token_embedding_storage_type": "row_sparse",
                    "optimizer": optimizer})
    assert f"optimizer={optimizer!r}" in msg and "row_sparse" in msg
    assert all(name in msg for name in ("adam", "adagrad", "sgd"))


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_row_sparse_with_a_sparse_optimizer_is_accepted(optimizer):
    """adam, adagrad and sgd have lazy updates, so row_sparse accepts them."""
    hp = parse(token_embedding_storage_type="row_sparse", optimizer=optimizer)
    assert (hp.token_embedding_storage_type, hp.optimizer) == ("row_sparse", optimizer)


def test_row_sparse_forces_bucket_width_zero(caplog):
    """row_sparse switches bucketing off (bucket_width -> 0) and says so; dense keeps it."""
    with caplog.at_level(logging.WARNING):
        assert parse(token_embedding_storage_type="row_sparse", bucket_width="10").bucket_width == 0
    assert "bucket_width" in caplog.text
    assert parse(bucket_width="10").bucket_width == 10


@pytest.mark.parametrize("extra,needle", [
    ({**ENC1_OWN, "enc1_network": "hcnn", "enc1_token_embedding_dim": "300"},
     "100x300 vs enc1 50x300"),
    ({"enc1_network": "hcnn", "enc1_max_seq_len": "7", "enc1_vocab_size": "100",
      "enc1_token_embedding_dim": "64"}, "100x300 vs enc1 100x64"),
])
def test_tied_with_mismatched_vocab_or_dims_is_an_error(extra, needle):
    """Tying one table to both encoders needs equal vocab size and token dim; the error shows
    both."""
    msg = error_of({**REQUIRED, "tied_token_embedding_weight": "true", **extra})
    assert "tied_token_embedding_weight" in msg and needle in msg


def test_tied_with_matching_sides_is_accepted():
    """Cloned sides, or pooled sides sharing enc_dim, can be tied."""
    assert parse(tied_token_embedding_weight="True").tied_token_embedding_weight is True
    hp = parse(tied_token_embedding_weight="true", enc0_network="pooled_embedding", enc_dim="16",
               enc1_network="pooled_embedding", enc1_max_seq_len="3", enc1_vocab_size="100",
               enc1_token_embedding_dim="5")
    assert hp.enc0.token_embedding_dim == hp.enc1.token_embedding_dim == 16


def test_num_classes_is_kept_but_unused_for_regression():
    """AWS's MovieLens regression passed num_classes=2: accepted, one output."""
    hp = parse(output_layer="mean_squared_error", num_classes="2")
    assert hp.is_regression and hp.num_outputs == 1
    assert parse(num_classes="3").num_outputs == 3


# -- round trip ------------------------------------------------------------------------------------


ROUND_TRIP = [
    {},
    {"enc1_network": "bilstm", **ENC1_OWN, "enc1_layers": "2",
     "comparator_list": "abs_diff, hadamard", "learning_rate": "4e-4", "dropout": "0.25",
     "mlp_layers": "0", "optimizer": "sgd",
     "token_embedding_storage_type": "row_sparse", "enc0_vocab_file": "glove.840B-trim.txt",
     "enc0_freeze_pretrained_embedding": "false"},
    {"enc0_network": "pooled_embedding", "enc_dim": "32", "tied_token_embedding_weight": "true",
     "output_layer": "mean_squared_error", "negative_sampling_rate": "3", "bucket_width": "5"},
]


@pytest.mark.parametrize("raw", ROUND_TRIP, ids=["defaults", "enc1-own", "pooled-tied"])
def test_to_dict_round_trips_through_parse(raw):
    """to_dict() is JSON-friendly, and parsing it (as values or as SageMaker-style strings) gives an
    equal object with equal resolved encoders."""
    hp = parse(**raw)
    d = hp.to_dict()
    again = parse_hyperparameters(json.loads(json.dumps(d)))
    assert again == hp and (again.enc0, again.enc1) == (hp.enc0, hp.enc1)
    as_strings = parse_hyperparameters({k: str(v) for k, v in d.items()})
    assert as_strings == hp and (as_strings.enc0, as_strings.enc1) == (hp.enc0, hp.enc1)


# -- numbers too large for a float, or for Python's int-string limit -------------------------------

NUMERIC_KEYS = [k for k, spec in DOCUMENTED.items() if spec[0] in ("int", "float", "layers")]
HUGE = {
    "400-digit string": "1" + "0" * 400,  # json.loads gives an int that float() cannot take
    "negative 400-digit string": "-1" + "0" * 400,
    "5000-digit string": "1" + "0" * 5000,  # beyond Python's 4300-digit int-string limit
    "400-digit JSON number": 10 ** 400,  # hyperparameters.json may hold numbers, not strings
    "5000-digit JSON number": 10 ** 5000,  # repr() of this int raises in Python >= 3.11
}


@pytest.mark.parametrize("key", NUMERIC_KEYS)
@pytest.mark.parametrize("value", HUGE.values(), ids=HUGE.keys())
def test_a_huge_number_is_rejected_like_any_bad_value(key, value):
    """Every numeric kind (int, float, layers) answers a huge number with the same 'must be ...'
    as for 'abc', names the key, and keeps the message short (the value is abbreviated)."""
    expected = error_of({**REQUIRED, key: "abc"})
    msg = error_of({**REQUIRED, key: value})
    line = next(ln for ln in msg.splitlines() if f"{key}=" in ln)
    want = next(ln for ln in expected.splitlines() if f"{key}=" in ln)
    assert line.split(": must be ", 1)[1] == want.split(": must be ", 1)[1]
    assert "(1 problem)" in msg and len(msg) < 300, msg
    assert line.lstrip(" -").startswith(f"{key}=") and ("1000" in line or "digits" in line), line


# -- the pooled_embedding token-dim warning --------------------------------------------------------


def test_pooled_embedding_with_the_default_token_dim_does_not_warn(caplog):
    """The AWS warning is for a token dim the user set; the default (300) is silently replaced."""
    with caplog.at_level(logging.WARNING):
        hp = parse(enc0_network="pooled_embedding", enc_dim="8")
        parse(enc0_network="pooled_embedding", enc_dim="8", enc1_network="pooled_embedding",
              **ENC1_OWN)
    assert "Inconsistent" not in caplog.text
    assert hp.enc0.token_embedding_dim == hp.enc1.token_embedding_dim == 8


def test_the_token_dim_warning_names_only_the_side_the_user_set(caplog):
    """Only enc1's explicit token dim conflicts (enc0's is the default): one warning, for enc1."""
    with caplog.at_level(logging.WARNING):
        parse(enc0_network="pooled_embedding", enc_dim="8", enc1_network="pooled_embedding",
              **ENC1_OWN, enc1_token_embedding_dim="30")
    warnings = [r.getMessage() for r in caplog.records if "Inconsistent" in r.getMessage()]
    assert len(warnings) == 1 and "enc1: 8 vs 30" in warnings[0], warnings


def test_reparsing_saved_hyperparameters_does_not_warn_again(caplog):
    """A resolved map this container wrote (artifact, checkpoint) is parsed with saved=True: the
    user was warned when the job started, not again in every server worker."""
    hp = parse(enc0_network="pooled_embedding", enc_dim="8", enc0_token_embedding_dim="300")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = parse_hyperparameters(hp.to_dict(), saved=True)
    assert again == hp
    assert "Inconsistent" not in caplog.text


@pytest.mark.parametrize("key", sorted(DOCUMENTED))
def test_a_number_past_the_int_string_limit_is_rejected_for_every_key(key):
    """Keys of other kinds (choices, booleans, file names) read the value as text: a 5000-digit
    JSON number, which Python cannot turn into text, is just another bad value."""
    msg = error_of({**REQUIRED, key: 10 ** 5000, **context_for(key, "x")})
    line = next(ln for ln in msg.splitlines() if f"{key}=" in ln)
    assert "digits" in line and ": must be " in line, line


# -- one declaration per key: the model's settings, the registries' names ---------------------------


@pytest.mark.parametrize("raw,line", [
    ({"optimizer": "lbfgs"}, "optimizer='lbfgs': must be one of adadelta, adagrad, adam, sgd, rmsprop"),
    ({"enc0_network": "cnn"}, "enc0_network='cnn': must be one of hcnn, bilstm, pooled_embedding, "
                              "transformer"),
    ({"enc1_network": "cnn"},
     "enc1_network='cnn': must be one of hcnn, bilstm, pooled_embedding, transformer, enc0"),
    ({"comparator_list": "dot"}, ("comparator_list='dot': must be a comma-separated, "
                                  "non-repeating subset of hadamard, concat, abs_diff")),
    ({"token_embedding_storage_type": "row_sparse", "optimizer": "rmsprop"},
     "optimizer='rmsprop': token_embedding_storage_type=row_sparse needs one of adam, adagrad, sgd"),
])
def test_choices_of_pluggable_pieces_are_listed_in_their_documented_order(raw, line):
    """The choices are the registries' names, listed in the order the messages always had."""
    assert f"  - {line}" in error_of({**REQUIRED, **raw}).splitlines()


def test_choices_of_pluggable_pieces_are_the_registries_names():
    """A name registered as an encoder, comparator, optimizer or lazy update is accepted, and
    nothing else: the parser keeps no list of its own."""
    from object2vec.model.comparator import COMPARATORS as comparators
    from object2vec.model.encoders import ENCODERS
    from object2vec.training.optimizers import OPTIMIZERS as optimizers
    from object2vec.training.sparse import LAZY_UPDATES

    assert sorted(SPECS["enc0_network"].choices) == ENCODERS.names()
    assert sorted(SPECS["comparator_list"].choices) == comparators.names()
    assert sorted(SPECS["optimizer"].choices) == optimizers.names()
    for name in LAZY_UPDATES.names():
        assert parse(token_embedding_storage_type="row_sparse", optimizer=name).optimizer == name


def test_every_encoder_setting_is_a_pair_of_keys_and_reaches_the_resolved_encoder():
    """Each EncoderConfig field f is declared once and is the keys enc0_f and enc1_f."""
    import dataclasses

    from object2vec.model.config import EncoderConfig

    names = [f.name for f in dataclasses.fields(EncoderConfig)]
    assert {f"enc{side}_{name}" for side in (0, 1) for name in names} == {
        key for key in SPECS if key.startswith(("enc0_", "enc1_"))}
    hp = parse(enc0_network="bilstm", enc0_cnn_filter_width="5")
    assert hp.enc1.cnn_filter_width == hp.enc0.cnn_filter_width == 5


def test_the_model_imports_nothing_from_the_parser():
    """object2vec.model owns its config types; the parser depends on the model, not the reverse."""
    from pathlib import Path

    import object2vec.model

    for path in Path(object2vec.model.__file__).parent.glob("*.py"):
        assert not re.search(r"^\s*(from|import) object2vec\.config", path.read_text(),
                             re.MULTILINE), path


# -- moved from test_sparse_features.py, test_pooling_extensions.py, test_retrieval_extensions.py ---

from helpers import pooling_hp, retrieval_hp, sparse_hp  # noqa: E402


def test_row_sparse_rejects_other_optimizers():
    with pytest.raises(UserError, match="optimizer='rmsprop'.*row_sparse"):
        sparse_hp(token_embedding_storage_type="row_sparse", optimizer="rmsprop")


def test_tied_tables_need_equal_vocab_and_dim():
    with pytest.raises(UserError, match="tied_token_embedding_weight.*enc0 40x8 vs enc1 50x8"):
        sparse_hp(tied_token_embedding_weight=True, enc1_network="pooled_embedding",
                  enc1_vocab_size=50, enc1_max_seq_len=8)


def test_pretrained_file_names_are_restricted():
    with pytest.raises(UserError, match="enc0_pretrained_embedding_file='../x'"):
        sparse_hp(enc0_pretrained_embedding_file="../x")


def test_settings_that_would_be_ignored_are_errors_naming_every_key():
    with pytest.raises(UserError) as info:
        pooling_hp(enc0_network="hcnn", enc0_pooling="sum", enc1_network="enc0",
                   enc1_activation="sigmoid")
    message = str(info.value)
    assert "2 problems" in message
    assert "enc0_pooling=sum: only a pooled_embedding encoder pools token embeddings, " \
           "enc0_network is hcnn" in message
    assert "enc1_activation=sigmoid: enc1_network=enc0 clones enc0's settings; set " \
           "enc0_activation instead" in message


def test_cloned_enc1_takes_enc0s_settings():
    hp = pooling_hp(enc1_network="enc0", enc0_max_seq_len="8", enc0_pooling="sum",
                    enc0_activation="tanh")
    assert (hp.enc1.pooling, hp.enc1.activation) == ("sum", "tanh")


def test_unknown_values_list_the_choices():
    with pytest.raises(UserError, match=r"enc1_pooling='max': must be one of mean, sum"):
        pooling_hp(enc1_pooling="max")
    with pytest.raises(UserError,
                       match=r"enc0_activation='softmax': must be one of linear, sigmoid, tanh, relu"):
        pooling_hp(enc0_activation="softmax")


def test_defaults_are_off():
    hp = retrieval_hp()
    assert hp.in_batch_softmax_weight == 0.0 and hp.in_batch_softmax_temperature == 0.05


@pytest.mark.parametrize("extra", [{"output_layer": "mean_squared_error"}, {"num_classes": "3"}])
def test_needs_binary_softmax(extra):
    with pytest.raises(UserError, match="in_batch_softmax_weight=0.5: needs output_layer=softmax"):
        retrieval_hp(in_batch_softmax_weight="0.5", **extra)
    retrieval_hp(in_batch_softmax_weight="0", **extra)  # off: anything goes


def test_idf_needs_a_pooled_embedding_encoder():
    with pytest.raises(UserError, match="token_weighting=idf: weights the mean of a pooled_embedding"):
        retrieval_hp(token_weighting="idf", enc0_network="hcnn")
    retrieval_hp(token_weighting="idf", enc0_network="hcnn", enc1_network="pooled_embedding",
                 enc1_vocab_size="104", enc1_max_seq_len="8", tied_token_embedding_weight="false",
                 enc0_token_embedding_dim="16")
