"""object2vec.text: tokenizers trained on a small corpus, the word-cache encoder against the library
itself on arbitrary Unicode, truncation, empty and unknown text, tokenizer.json round trips."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from object2vec.errors import UserError
from object2vec.text import (
    TOKENIZERS,
    UNK,
    TextEncoder,
    UnencodableText,
    read_text_encoder,
    text_encoder_from_json,
    train_text_encoder,
)

CORPUS = [
    "The cat sat on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today.",
    "Stocks dropped on Monday, traders said.", "It rained all day in Paris.",
    "Paris had a wet, rainy day.", "The football match ended in a draw.", "Café owners in Zürich",
] * 5


def library_encode(encoder: TextEncoder, texts, max_len=None):
    """What the tokenizers library itself gives, text by text, cut to max_len."""
    seqs = [e.ids[:max_len] for e in encoder.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    return [list(s) for s in seqs]


def as_lists(ids: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    return [s.tolist() for s in np.split(ids, np.cumsum(lengths)[:-1])] if len(lengths) else []


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def trained(request) -> TextEncoder:
    return train_text_encoder(iter(CORPUS), request.param, vocab_size=60, lowercase=True)


def test_every_model_trains_within_its_budget_with_unk_first(trained):
    assert 2 <= trained.vocab_size <= 60
    assert trained.vocab()[UNK] == 0


def test_the_default_registry_order_and_unknown_names():
    assert list(TOKENIZERS) == ["wordpiece", "bpe", "unigram", "wordlevel"]
    with pytest.raises(KeyError, match="known: bpe, unigram, wordlevel, wordpiece"):
        train_text_encoder(iter(CORPUS), "sentencepiece", 50, True)


def test_encode_matches_the_library_and_cuts_after_tokenizing(trained):
    texts = CORPUS[:8] + ["cat cat cat cat cat cat cat", "  spaced   out\ttext\n"]
    assert as_lists(*trained.encode(texts)) == library_encode(trained, texts)
    ids, lengths = trained.encode(texts, max_len=3)
    assert as_lists(ids, lengths) == library_encode(trained, texts, 3)
    assert lengths.max() == 3 and ids.dtype == np.int64


def test_empty_text_has_no_tokens_and_unknown_characters_are_unk(trained):
    ids, lengths = trained.encode(["", "   ", "\u2603\u2603 \U0001F600"])
    assert lengths[:2].tolist() == [0, 0]
    assert lengths[2] >= 1 and set(ids.tolist()) == {0}


def test_a_fresh_encoder_takes_text_without_words():
    encoder = train_text_encoder(iter(CORPUS), "wordpiece", 60, True)
    ids, lengths = encoder.encode([" \t "])
    assert ids.size == 0 and lengths.tolist() == [0]


def test_wordlevel_is_one_id_per_word_and_lowercases():
    encoder = train_text_encoder(iter(CORPUS), "wordlevel", 100, lowercase=True)
    vocab = encoder.vocab()
    ids, lengths = encoder.encode(["The CAT sat"])
    assert ids.tolist() == [vocab["the"], vocab["cat"], vocab["sat"]]
    cased = train_text_encoder(iter(CORPUS), "wordlevel", 100, lowercase=False)
    assert "The" in cased.vocab() and "the" in cased.vocab()


def test_the_word_cache_is_bounded(trained, monkeypatch):
    monkeypatch.setattr("object2vec.text.WORD_CACHE_LIMIT", 5)
    texts = ["one two three four five six seven", "eight nine ten"]
    assert as_lists(*trained.encode(texts)) == library_encode(trained, texts)
    assert as_lists(*trained.encode(texts[::-1])) == library_encode(trained, texts[::-1])


# Text the word cache must tokenize exactly as the library: any Unicode, every kind of whitespace
# (incl. the separators Python splits at and the tokenizers do not), punctuation, CJK, accents.
TEXT = st.text(st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(
    list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000.,!?-'\u0301\u4e00\u00e9Σς"))), max_size=40)


# Deterministic for CI (a fixed set of 400 examples per tokenizer); 4,000 random examples per
# tokenizer also passed (2026-11-30) after the two fixes the first runs found.
@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_the_word_cache_gives_the_library_s_tokens_on_any_text(trained, texts):
    assert trained.word_local
    assert as_lists(*trained.encode(texts)) == library_encode(trained, texts)


def test_a_lone_surrogate_is_named_not_a_crash(trained):
    with pytest.raises(UnencodableText, match="lone surrogate") as info:
        trained.encode(["fine", "bad \ud800 text"])
    assert info.value.index == 1


def bert_like(vocab: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def test_a_pipeline_that_is_not_word_local_goes_through_the_library_as_is():
    tokenizer = bert_like([UNK, "[MASK]", "a", "b", "##b"])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()  # spaces become part of the tokens
    encoder = TextEncoder(tokenizer)
    assert not encoder.word_local
    assert as_lists(*encoder.encode(["a b", "ab"])) == library_encode(encoder, ["a b", "ab"])
    multiword = bert_like([UNK, "a"])
    multiword.add_tokens(["new york"])  # an added token with a space spans words
    assert not TextEncoder(multiword).word_local


def test_a_user_tokenizer_json_is_used_as_is_without_padding_or_truncation(tmp_path):
    tokenizer = bert_like([UNK, "[PAD]", "hello", "world", "##s"])
    tokenizer.enable_padding(length=10, pad_id=1, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=1)
    path = tmp_path / "tokenizer.json"
    path.write_text(tokenizer.to_str())
    encoder = read_text_encoder(path, "enc0_tokenizer_file tokenizer.json")
    assert as_lists(*encoder.encode(["Hello worlds !"])) == [[2, 3, 4, 0]]
    again = text_encoder_from_json(encoder.to_json(), "saved")
    assert again.vocab() == encoder.vocab()


@pytest.mark.parametrize("content, words", [
    (b"{not json", ["enc0_tokenizer_file t.json: not a Hugging Face tokenizer.json"]),
    (json.dumps({"model": {"type": "Nonsense"}}).encode(), ["not a Hugging Face tokenizer.json"]),
    (b"\xff\xfe{}", ["not UTF-8 text"]),
])
def test_a_bad_tokenizer_file_is_a_user_error_naming_it(tmp_path, content, words):
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        read_text_encoder(path, "enc0_tokenizer_file t.json")
    for word in words:
        assert word in str(info.value)
