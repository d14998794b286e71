"""object2vec.data.text_inputs: which sides are text, the settings that must fit them, and each
side's tokenizer -- trained on its own side, shared by tied or cloned sides, or the user's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.text_inputs import TextSides, build_text_encoders, text_sides
from object2vec.errors import UserError

BASE = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "200", "enc0_max_seq_len": "10",
        "enc_dim": "8"}
OWN_ENC1 = {"enc1_network": "pooled_embedding", "enc1_vocab_size": "200", "enc1_max_seq_len": "10"}
RECORDS = [{"in0": "the cat sat", "in1": "stocks fell sharply", "label": 1},
           {"in0": "a dog ran", "in1": "markets rose", "label": 0}] * 3


def channel(tmp_path: Path, records: list[dict], name: str = "train") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def hp(**over):
    return parse_hyperparameters({**BASE, **over})


def test_kinds_come_from_the_first_record(tmp_path):
    sides = text_sides(hp(), channel(tmp_path, [{"in0": "text", "in1": [1, 2], "label": 0}]))
    assert sides.kinds == (True, False)
    assert sides.origin.endswith("part.jsonl, line 1")
    assert text_sides(hp(), channel(tmp_path / "b", [{"in0": [3], "in1": [1], "label": 0}])).kinds == \
        (False, False)


@pytest.mark.parametrize("first, settings, words", [
    ({"in0": [1], "in1": [2]}, {"enc0_tokenizer_file": "t.json"},
     ["enc0_tokenizer_file is for text inputs, but in0 is token ids (as in", "line 1"]),
    ({"in0": "a b", "in1": "c"}, {"enc0_vocab_file": "vocab.json"},
     ["enc0_vocab_file maps the tokens of id inputs, but in0 is text", "enc0_tokenizer_file"]),
    ({"in0": "a b", "in1": [2]}, {"tied_token_embedding_weight": "true"},
     ["tied_token_embedding_weight=True needs both sides to be text or both token ids"]),
])
def test_settings_that_do_not_fit_a_side_s_kind_are_user_errors(tmp_path, first, settings, words):
    train = channel(tmp_path, [{**first, "label": 0}])
    with pytest.raises(UserError) as info:
        text_sides(hp(**settings), train)
    for word in words:
        assert word in str(info.value)


def test_untied_sides_each_train_on_their_own_text(tmp_path):
    train = channel(tmp_path, RECORDS)
    params = hp(**OWN_ENC1, enc0_tokenizer="wordlevel", enc1_tokenizer="wordlevel")
    enc0, enc1 = build_text_encoders(params, text_sides(params, train), train, None)
    assert enc0 is not enc1
    assert {"cat", "dog"} <= set(enc0.vocab()) and "stocks" not in enc0.vocab()
    assert {"stocks", "markets"} <= set(enc1.vocab()) and "cat" not in enc1.vocab()


@pytest.mark.parametrize("settings", [{}, {**OWN_ENC1, "tied_token_embedding_weight": "true"}])
def test_cloned_or_tied_sides_share_one_tokenizer_trained_on_both(tmp_path, settings):
    train = channel(tmp_path, RECORDS)
    params = hp(enc0_tokenizer="wordlevel", **settings)
    enc0, enc1 = build_text_encoders(params, text_sides(params, train), train, None)
    assert enc0 is enc1
    assert {"cat", "stocks"} <= set(enc0.vocab())


def test_one_text_side_and_one_side_of_ids(tmp_path):
    train = channel(tmp_path, [{"in0": "the cat", "in1": [1], "label": 0}])
    params = hp(**OWN_ENC1)
    enc0, enc1 = build_text_encoders(params, text_sides(params, train), train, None)
    assert enc0 is not None and enc1 is None


def user_tokenizer(path: Path, words: list[str]) -> None:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])},
                                           unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path.write_text(tokenizer.to_str())


def test_a_tokenizer_file_is_used_as_is(tmp_path):
    train, aux = channel(tmp_path, RECORDS), tmp_path / "auxiliary"
    aux.mkdir()
    user_tokenizer(aux / "tok.json", ["zebra", "cat"])
    params = hp(enc0_tokenizer_file="tok.json")
    enc0, enc1 = build_text_encoders(params, text_sides(params, train), train, aux)
    assert enc0 is enc1 and enc0.vocab() == {"[UNK]": 0, "zebra": 1, "cat": 2}
    assert enc0.encode(["The CAT"])[0].tolist() == [0, 2]


@pytest.mark.parametrize("setup, settings, words", [
    (lambda aux: user_tokenizer(aux / "tok.json", [f"w{i}" for i in range(300)]),
     {"enc0_tokenizer_file": "tok.json"},
     ["enc0_tokenizer_file tok.json has 301 tokens, more than enc0_vocab_size=200",
      "at least 301"]),
    (lambda aux: None, {"enc0_tokenizer_file": "missing.json"},
     ["enc0_tokenizer_file='missing.json': file not found in the auxiliary channel"]),
    (None, {"enc0_tokenizer_file": "tok.json"}, ["needs the 'auxiliary' channel"]),
])
def test_tokenizer_file_problems(tmp_path, setup, settings, words):
    train, aux = channel(tmp_path, RECORDS), None
    if setup is not None:
        aux = tmp_path / "auxiliary"
        aux.mkdir()
        setup(aux)
    params = hp(**settings)
    with pytest.raises(UserError) as info:
        build_text_encoders(params, TextSides((True, True), "x"), train, aux)
    for word in words:
        assert word in str(info.value)


def test_tied_sides_must_tokenize_alike():
    with pytest.raises(UserError, match="enc1_tokenizer"):
        hp(**OWN_ENC1, tied_token_embedding_weight="true", enc1_tokenizer="bpe")
