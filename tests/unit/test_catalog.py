"""object2vec.data.catalog: the catalog channel's items -- ids and token sequences, text tokenized
with the job's tokenizer -- and every problem named with its file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from object2vec.data import catalog as catalog_module
from object2vec.data.catalog import load_catalog
from object2vec.data.records import RecordRules
from object2vec.errors import UserError
from object2vec.text import train_text_encoder

IDS = RecordRules((10, 20), (3, 4), False, 2)


def write(tmp_path: Path, lines: list[str], name: str = "items.jsonl") -> Path:
    folder = tmp_path / "catalog"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines))
    return folder


def sequences(catalog) -> list[list[int]]:
    t = catalog.tokens
    return [t.ids[a:b].tolist() for a, b in zip(t.offsets[:-1], t.offsets[1:])]


def test_items_keep_their_ids_side_and_cut_sequences(tmp_path):
    folder = write(tmp_path, ['{"id": "a", "in1": [1, 2, 3, 4, 5, 6]}', '{"id": 7, "in1": [19]}'])
    catalog = load_catalog(folder, IDS)
    assert catalog.ids == ["a", 7] and catalog.side == 1
    assert sequences(catalog) == [[1, 2, 3, 4], [19]]


@pytest.mark.parametrize("batch", [16384, 1])  # 1: every item its own tokenizer batch
def test_text_items_are_tokenized_with_the_side_s_tokenizer(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(catalog_module, "BATCH", batch)
    words = train_text_encoder(iter(["the cat sat", "stocks fell"]), "wordlevel", 30, True)
    rules = RecordRules((30, 30), (2, 2), False, 2, (words, words))
    catalog = load_catalog(write(tmp_path, ['{"id": 1, "in0": "The cat sat"}', '{"id": 2, "in0": "zebra"}']),
                           rules)
    vocab = words.vocab()
    assert catalog.side == 0 and sequences(catalog) == [[vocab["the"], vocab["cat"]], [vocab["[UNK]"]]]


@pytest.mark.parametrize("bad, words", [
    ('{"id": "a", "in1": [1]}', ['line 3: duplicate id "a" (first at', "line 1)"]),
    ('{"in1": [1]}', ['line 3: "id" must be a non-empty string or an integer, got none']),
    ('{"id": true, "in1": [1]}', ["line 3", "got true"]),
    ('{"id": 1.5, "in1": [1]}', ["line 3", "got 1.5"]),
    ('{"id": "", "in1": [1]}', ["line 3", 'got ""']),
    ('{"id": "c", "in0": [1]}', ['line 3: item holds "in0" but the catalog\'s items hold "in1"', "line 1)"]),
    ('{"id": "c", "in0": [1], "in1": [1]}', ['line 3: a catalog item holds exactly one of']),
    ('{"id": "c"}', ["line 3", "got neither"]),
    ('{"id": "c", "in1": [20]}', ['Inconsistent vocab for in1 found. Vocab id "20"', "line 3)"]),
    ('{"id": "c", "in1": []}', ["line 3", "non-empty list"]),
    ('{"id": "c", "in1": "text"}', ["line 3: 'in1' is text, but this job's in1 holds token ids"]),
    ('{"id": "c", "in1": [1]', ["line 3: not valid JSON"]),
    ("[1]", ["line 3: each catalog line must be a JSON object"]),
])
def test_a_bad_item_names_its_file_and_line(tmp_path, bad, words):
    folder = write(tmp_path, ['{"id": "a", "in1": [1]}', '{"id": "b", "in1": [2]}', bad])
    with pytest.raises(UserError) as info:
        load_catalog(folder, IDS)
    message = str(info.value)
    assert "items.jsonl" in message
    for word in words:
        assert word in message, message


def test_empty_text_and_an_empty_channel(tmp_path):
    words = train_text_encoder(iter(["the cat"]), "wordlevel", 30, True)
    rules = RecordRules((30, 30), (5, 5), False, 2, (words, words))
    with pytest.raises(UserError, match="line 2: 'in1' is text without a single token"):
        lines = [json.dumps({"id": 1, "in1": "cat"}), json.dumps({"id": 2, "in1": " "})]
        load_catalog(write(tmp_path, lines), rules)
    (tmp_path / "empty" / "catalog").mkdir(parents=True)
    with pytest.raises(UserError, match="channel 'catalog' has no items"):
        load_catalog(tmp_path / "empty" / "catalog", IDS)
