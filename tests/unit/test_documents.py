"""Document channels (issue 16): ``{"document": [sentences]}`` records, validated with file, line and
sentence; (sentence, rest-of-document) pairs drawn with numpy agree with a plain Python reference, are
fresh each epoch and the same on every rank; validation documents give fixed pairs and negatives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from object2vec.data.batching import EpochSampler
from object2vec.data.documents import DocumentData, fixed_pairs, is_document_channel, load_documents
from object2vec.data.records import RecordRules, Side, sniff_text_sides
from object2vec.errors import UserError
from object2vec.text import train_text_encoder

IDS = RecordRules(vocab_sizes=(50, 40), max_seq_lens=(4, 9), regression=False, num_classes=2)


def write_docs(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path.parent


def sequences(side: Side) -> list[list[int]]:
    return [side.ids[a:b].tolist() for a, b in zip(side.offsets[:-1], side.offsets[1:])]


def random_documents(rng: np.random.Generator, n: int) -> list[list[list[int]]]:
    return [[rng.integers(0, 40, rng.integers(1, 7)).tolist() for _ in range(rng.integers(2, 8))]
            for _ in range(n)]


@pytest.mark.parametrize("per_document", [1, 3, 100])
def test_drawn_pairs_are_a_sentence_and_the_rest_of_its_document(tmp_path, per_document):
    docs = random_documents(np.random.default_rng(0), 60)
    data = load_documents(write_docs(tmp_path / "c" / "d.jsonl", [{"document": d} for d in docs]), IDS)
    pairs = data.pairs(np.random.default_rng(1), per_document)
    in0, in1 = sequences(pairs.in0), sequences(pairs.in1)
    assert pairs.labels.tolist() == [1] * len(in0)
    assert len(in0) == sum(min(per_document, len(d)) for d in docs)
    k = 0
    for doc in docs:  # pairs come document after document
        chosen = []
        for _ in range(min(per_document, len(doc))):
            # the reference: which sentence of this document gives in0 and the rest in1, in order
            found = [j for j, s in enumerate(doc) if s[:4] == in0[k] and
                     sum(doc[:j] + doc[j + 1:], [])[:9] == in1[k] and j not in chosen]
            assert found, (doc, in0[k], in1[k])
            chosen.append(found[0])
            k += 1
        assert len(set(chosen)) == len(chosen)  # distinct sentences within an epoch


def test_each_epoch_draws_fresh_pairs_the_same_on_every_rank(tmp_path):
    docs = random_documents(np.random.default_rng(2), 200)
    data = load_documents(write_docs(tmp_path / "c" / "d.jsonl", [{"document": d} for d in docs]), IDS)
    ranks = [EpochSampler(data, batch_size=16, negative_sampling_rate=1, seed=5) for _ in range(2)]
    first, again, second = (sequences(s.records(e).in0)
                            for s, e in ((ranks[0], 0), (ranks[1], 0), (ranks[0], 1)))
    assert first == again and first != second
    plan = ranks[1].plan(1)
    assert plan.num_samples == 2 * len(docs) and plan.labels.sum() == len(docs)
    batch = plan.batch(ranks[1].records(1), 0)
    assert len(batch) == 16


def test_validation_documents_give_fixed_pairs_and_one_negative_each(tmp_path):
    docs = random_documents(np.random.default_rng(3), 30)
    data = load_documents(write_docs(tmp_path / "c" / "d.jsonl", [{"document": d} for d in docs]), IDS)
    a, b = fixed_pairs(data, "validation"), fixed_pairs(data, "validation")
    assert sequences(a.in0) == sequences(b.in0) and sequences(a.in1) == sequences(b.in1)
    assert a.labels.tolist() == [1] * 30 + [0] * 30
    in0, in1 = sequences(a.in0), sequences(a.in1)
    assert in0[:30] == in0[30:]  # each negative keeps its pair's in0 ...
    assert sorted(map(tuple, in1[30:])) == sorted(map(tuple, in1[:30]))  # ... with another pair's in1
    assert all(in1[30 + i] != in1[i] or in1.count(in1[i]) > 1 for i in range(30))


def test_text_documents_tokenize_each_sentence_and_train_a_tokenizer_on_them(tmp_path):
    channel = write_docs(tmp_path / "c" / "d.jsonl", [
        {"document": ["the cat sat", "on the mat", "all day"]}, {"document": ["stocks fell", "again"]}])
    assert is_document_channel(channel)
    assert sniff_text_sides(channel)[0] == (True, True)
    text = "the cat sat on the mat all day stocks fell again"
    words = train_text_encoder(iter([text]), "wordlevel", 50, True)
    data = load_documents(channel, RecordRules((50, 50), (2, 4), False, 2, (words, words)))
    vocab = words.vocab()
    assert sequences(data.sentences[0])[:2] == [[vocab["the"], vocab["cat"], vocab["sat"]],
                                                [vocab["on"], vocab["the"], vocab["mat"]]]  # cut at 4
    pairs = data.pairs(np.random.default_rng(0), 3)
    assert all(len(s) <= 2 for s in sequences(pairs.in0)) and all(len(s) <= 4 for s in sequences(pairs.in1))


def test_a_pair_channel_is_not_a_document_channel(tmp_path):
    pairs = write_docs(tmp_path / "c" / "p.jsonl", ['{"in0": [1], "in1": [2], "label": 1}'])
    assert not is_document_channel(pairs)
    assert not is_document_channel(write_docs(tmp_path / "d" / "p.jsonl", ["not json"]))
    assert not is_document_channel(write_docs(tmp_path / "e" / "p.jsonl", ['"a document"']))


@pytest.mark.parametrize("record, words", [
    ('{"in0": [1], "in1": [2], "label": 1}',
     ["line 2", "'document'", "in0, in1, label", "documents or pairs"]),
    ('[1, 2]', ["line 2", "'document'", "got list"]),
    ('{"sentences": ["a", "b"]}', ["line 2", "'document'", "an object without it"]),
    ('{"document": [[1, 2]]}', ["line 2", "at least 2 sentences"]),
    ('{"document": "one. two."}', ["line 2", "at least 2 sentences"]),
    ('{"document": [[1], [45]]}', ["line 2", "sentence 1", "45", "vocab_size=40"]),
    ('{"document": [[1], []]}', ["line 2", "sentence 1", "non-empty list"]),
    ('{"document": [[1], "two"]}', ["line 2", "sentence 1", "non-empty list"]),
    ('{"document": [[1], [true]]}', ["line 2", "sentence 1", "true", "integers"]),
    ('{"document": [[1], [2]', ["line 2", "not valid JSON"]),
])
def test_bad_documents_name_file_line_and_sentence(tmp_path, record, words):
    channel = write_docs(tmp_path / "c" / "d.jsonl", ['{"document": [[1], [2, 3]]}', record])
    with pytest.raises(UserError) as info:
        load_documents(channel, IDS)
    assert str(channel / "d.jsonl") in str(info.value)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("sentence, words", [
    ([1, 2], ["sentence 1", "[1, 2]", "documents are text"]),
    ("", ["sentence 1", "no token"]),
    ("   ", ["sentence 1", "no token"]),
    ("\ud800", ["sentence 1", "lone surrogate"]),
])
def test_bad_text_sentences_name_file_line_and_sentence(tmp_path, sentence, words):
    encoder = train_text_encoder(iter(["a b c"]), "wordlevel", 20, True)
    channel = write_docs(tmp_path / "c" / "d.jsonl",
                         [{"document": ["a b", "c"]}, {"document": ["a", sentence]}])
    with pytest.raises(UserError) as info:
        load_documents(channel, RecordRules((20, 20), (5, 5), False, 2, (encoder, encoder), "first"))
    assert "line 2" in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_documents_need_a_classifier_and_at_least_one_document(tmp_path):
    channel = write_docs(tmp_path / "c" / "d.jsonl", ['{"document": [[1], [2]]}'])
    with pytest.raises(UserError, match="output_layer=softmax"):
        load_documents(channel, RecordRules((50, 50), (4, 4), True, 2))
    empty = tmp_path / "e"
    (empty / "x.jsonl").parent.mkdir()
    (empty / "x.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no records"):
        load_documents(empty, IDS)


def test_untied_text_sides_tokenize_sentences_with_each_sides_tokenizer(tmp_path):
    a = train_text_encoder(iter(["red green blue"]), "wordlevel", 10, True)
    b = train_text_encoder(iter(["blue green red yellow"]), "wordlevel", 10, True)
    channel = write_docs(tmp_path / "c" / "d.jsonl", [{"document": ["red green", "blue"]}])
    data = load_documents(channel, RecordRules((10, 10), (5, 5), False, 2, (a, b)))
    assert isinstance(data, DocumentData) and data.sentences[0] is not data.sentences[1]
    assert sequences(data.sentences[0]) == [[a.vocab()["red"], a.vocab()["green"]], [a.vocab()["blue"]]]
    assert sequences(data.sentences[1]) == [[b.vocab()["red"], b.vocab()["green"]], [b.vocab()["blue"]]]


def test_pairs_per_document_on_a_channel_of_pairs_is_warned_about(caplog):
    from helpers import QUIET, retrieval_hp, topic_pairs

    from object2vec.training.trainer import Trainer

    with caplog.at_level("WARNING"):
        Trainer(retrieval_hp(pairs_per_document="5"), {"train": topic_pairs()}, QUIET)
    assert "pairs_per_document=5 has no effect" in caplog.text
