"""Loading JSON Lines channels: every data error names its file and line, valid data lands in
compact arrays, truncation, several files, sub-directories and gzip (object2vec.md 4.2 and 4.4)."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from object2vec.data.records import CHUNK_LINES, RecordRules, load_channel
from object2vec.errors import UserError

CLASSIFY = RecordRules(vocab_sizes=(10, 2), max_seq_lens=(5, 5), regression=False, num_classes=3)
REGRESS = RecordRules(vocab_sizes=(10, 2), max_seq_lens=(5, 5), regression=True, num_classes=2)
GOOD = '{"in0": [1, 2], "in1": [0], "label": 1}'
HUGE = "9" * 1000  # a 1000-digit integer: beyond float64 and int64


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def load_error(channel: Path, rules: RecordRules = CLASSIFY) -> str:
    with pytest.raises(UserError) as info:
        load_channel(channel, rules)
    return str(info.value)


def sequences(side) -> list[list[int]]:
    return [side.ids[a:b].tolist() for a, b in zip(side.offsets[:-1], side.offsets[1:])]


# (bad line, rules, words the message must contain)
BAD_LINES = [
    ('{"in0": [1], "in1": [0], "label": 1', CLASSIFY, ["not valid JSON"]),
    ("in0 in1 label", CLASSIFY, ["not valid JSON"]),
    ("[1, 2, 3]", CLASSIFY, ["must be a JSON object", "list"]),
    ('"text"', CLASSIFY, ["must be a JSON object", "str"]),
    ("7", CLASSIFY, ["must be a JSON object", "int"]),
    ("null", CLASSIFY, ["must be a JSON object"]),
    ('{"in1": [0], "label": 1}', CLASSIFY, ["missing 'in0'"]),
    ('{"in0": [1], "label": 1}', CLASSIFY, ["missing 'in1'"]),
    ('{"in0": [1], "in1": [0]}', CLASSIFY, ["missing 'label'"]),
    ('{"in0": [], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "non-empty list"]),
    ('{"in0": [1], "in1": [], "label": 1}', CLASSIFY, ["'in1'", "non-empty list"]),
    ('{"in0": 3, "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "non-empty list"]),
    ('{"in0": "1 2", "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "non-empty list"]),
    ('{"in0": null, "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "non-empty list"]),
    ('{"in0": {"a": 1}, "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "non-empty list"]),
    ('{"in0": [1, 2.5], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "2.5", "integers"]),
    ('{"in0": [1.0], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "1.0", "integers"]),
    ('{"in0": [1, "2"], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", '"2"', "integers"]),
    ('{"in0": [1], "in1": [true], "label": 1}', CLASSIFY, ["'in1'", "true", "integers"]),
    ('{"in0": [false, 1], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "false", "integers"]),
    ('{"in0": [1, null], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "null", "integers"]),
    ('{"in0": [[1]], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "integers"]),
    ('{"in0": [1, -1], "in1": [0], "label": 1}', CLASSIFY, ["'in0'", "negative token id -1"]),
    ('{"in0": [1], "in1": [2], "label": 1}', CLASSIFY,
     ['Inconsistent vocab for in1 found. Vocab id "2" is not less than vocab_size=2']),
    ('{"in0": [10], "in1": [0], "label": 1}', CLASSIFY,
     ['Inconsistent vocab for in0 found. Vocab id "10" is not less than vocab_size=10']),
    ('{"in0": [99999999999], "in1": [0], "label": 1}', CLASSIFY,
     ['Inconsistent vocab for in0 found. Vocab id "99999999999"']),
    ('{"in0": [1], "in1": [0], "label": 1.5}', CLASSIFY,
     ["label 1.5", "integer class id in [0, 2]"]),
    ('{"in0": [1], "in1": [0], "label": 3}', CLASSIFY, ["label 3", "[0, 2]", "num_classes=3"]),
    ('{"in0": [1], "in1": [0], "label": -1}', CLASSIFY, ["label -1", "[0, 2]"]),
    ('{"in0": [1], "in1": [0], "label": "1"}', CLASSIFY, ['label "1"', "integer class id"]),
    ('{"in0": [1], "in1": [0], "label": true}', CLASSIFY, ["label true", "integer class id"]),
    ('{"in0": [1], "in1": [0], "label": null}', CLASSIFY, ["label null", "integer class id"]),
    ('{"in0": [1], "in1": [0], "label": "3.5"}', REGRESS, ['label "3.5"', "must be a finite number",
                                                          "mean_squared_error"]),
    ('{"in0": [1], "in1": [0], "label": null}', REGRESS, ["label null", "must be a finite number"]),
    ('{"in0": [1], "in1": [0], "label": false}', REGRESS, ["label false", "a finite number"]),
    ('{"in0": [1], "in1": [0], "label": [4.0]}', REGRESS, ["label [4.0]", "a finite number"]),
    ('{"in0": [1], "in1": [0], "label": NaN}', REGRESS, ["label NaN", "must be a finite number"]),
    ('{"in0": [1], "in1": [0], "label": -Infinity}', REGRESS, ["label -Infinity", "finite number"]),
    # Finite in JSON but inf as a float32 label: training would only "diverge".
    ('{"in0": [1], "in1": [0], "label": 1e39}', REGRESS,
     ["label 1e+39", "finite number", "float32"]),
    (f'{{"in0": [1], "in1": [0], "label": {10**39}}}', REGRESS, ["label 1000", "finite number"]),
    # Integers too large for a float64 / an int32 (json reads them as exact Python ints).
    (f'{{"in0": [1], "in1": [0], "label": {HUGE}}}', REGRESS,
     ["label 99999", "must be a finite number", "mean_squared_error"]),
    (f'{{"in0": [1], "in1": [0], "label": -{HUGE}}}', REGRESS, ["label -99999", "finite number"]),
    (f'{{"in0": [1], "in1": [0], "label": {HUGE}}}', CLASSIFY,
     ["label 99999", "integer class id in [0, 2]"]),
    (f'{{"in0": [1, {HUGE}], "in1": [0], "label": 1}}', CLASSIFY,
     ['Inconsistent vocab for in0 found. Vocab id "99999', "is not less than vocab_size=10"]),
    (f'{{"in0": [1], "in1": [-{HUGE}], "label": 1}}', CLASSIFY,
     ["'in1'", "negative token id -99999"]),
    # More digits than Python's int parsing allows (sys.get_int_max_str_digits(), 4300).
    ('{"in0": [1], "in1": [0], "label": ' + "7" * 5000 + "}", REGRESS,
     ["not valid JSON", "4300 digits"]),
    # Nesting deeper than the JSON parser's recursion limit, in any key.
    ('{"in0": ' + "[" * 100_000 + "]" * 100_000 + ', "in1": [0], "label": 1}', CLASSIFY,
     ["not valid JSON (nested too deeply)"]),
    ('{"in0": [1], "in1": [0], "label": ' + "[" * 100_000 + "]" * 100_000 + "}", REGRESS,
     ["not valid JSON (nested too deeply)"]),
    ('{"in0": [1], "in1": [0], "label": 1, "x": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}",
     CLASSIFY, ["not valid JSON (nested too deeply)"]),
]


@pytest.mark.parametrize("line,rules,words", BAD_LINES, ids=[b[0][:40] for b in BAD_LINES])
def test_bad_line_is_a_user_error_naming_file_line_and_problem(tmp_path, line, rules, words):
    """A bad record fails the load with a UserError that names the file, the line number (counting
    blank lines) and what is wrong, in AWS's words where AWS has them."""
    path = write_lines(tmp_path / "train" / "part-1.jsonl", [GOOD, "", GOOD, line, GOOD])
    msg = load_error(tmp_path / "train", rules)
    assert f"{path}, line 4" in msg
    for word in words:
        assert word in msg, (word[:100], msg[:2000])
    # Values are quoted briefly: SageMaker cuts a FailureReason at 1024 characters.
    assert len(msg) <= len(str(path)) + 250, msg[:2000]


def test_first_bad_line_of_a_chunk_is_the_one_reported(tmp_path):
    """With several bad lines, the earliest one is named."""
    write_lines(tmp_path / "c" / "d.jsonl", [GOOD, '{"in0": [1], "in1": [5], "label": 0}',
                                             '{"in0": [-3], "in1": [0], "label": 0}'])
    msg = load_error(tmp_path / "c")
    assert "line 2" in msg and 'Vocab id "5"' in msg and "line 3" not in msg


@pytest.mark.parametrize("bad_at", [CHUNK_LINES, CHUNK_LINES + 1, 2 * CHUNK_LINES + 1234])
def test_bad_line_deep_in_a_large_file_is_reported_with_its_line_number(tmp_path, bad_at):
    """Lines are parsed in chunks of CHUNK_LINES; a bad line past the first chunk (or on a chunk
    boundary) still gets its exact line number."""
    lines = [GOOD] * (2 * CHUNK_LINES + 2000)
    lines[bad_at - 1] = '{"in0": [1], "in1": [2], "label": 0}'
    path = write_lines(tmp_path / "big" / "data.jsonl", lines)
    msg = load_error(tmp_path / "big")
    assert f"{path}, line {bad_at}" in msg and 'Vocab id "2"' in msg


def test_bad_line_in_a_later_file_names_that_file(tmp_path):
    """Errors name the file they are in, not the first file of the channel."""
    write_lines(tmp_path / "ch" / "a.jsonl", [GOOD] * 3)
    bad = write_lines(tmp_path / "ch" / "b.jsonl", [GOOD, '{"in0": [1], "in1": [0]}'])
    msg = load_error(tmp_path / "ch")
    assert f"{bad}, line 2" in msg and "a.jsonl" not in msg


def test_valid_records_in_any_key_order_with_extra_keys(tmp_path):
    """Key order is free and extra keys are ignored; sequences and labels come back exactly."""
    write_lines(tmp_path / "t" / "x.jsonl", [
        '{"label": 2, "in1": [1, 0], "in0": [0, 9, 3], "id": "a"}',
        '{"in0": [4], "in1": [1], "label": 0, "note": {"k": [1.5]}}',
        '{"in0": [0], "label": 1, "in1": [0, 0, 1]}'])
    data = load_channel(tmp_path / "t", CLASSIFY)
    assert len(data) == 3
    assert sequences(data.in0) == [[0, 9, 3], [4], [0]]
    assert sequences(data.in1) == [[1, 0], [1], [0, 0, 1]]
    assert data.labels.tolist() == [2, 0, 1]


def test_regression_accepts_int_and_float_labels(tmp_path):
    """mean_squared_error labels may be written as 4 or 3.5 (MovieLens writes floats)."""
    write_lines(tmp_path / "t" / "x.jsonl", ['{"in0": [1], "in1": [0], "label": 4}',
                                             '{"in0": [1], "in1": [0], "label": 3.5}',
                                             '{"in0": [1], "in1": [0], "label": -0.25}'])
    data = load_channel(tmp_path / "t", REGRESS)
    assert data.labels.tolist() == [4.0, 3.5, -0.25]


def test_sequences_are_truncated_to_max_seq_len(tmp_path):
    """Tokens past encN_max_seq_len are dropped, per side, and never range-checked."""
    rules = RecordRules(vocab_sizes=(10, 10), max_seq_lens=(3, 2), regression=False, num_classes=2)
    write_lines(tmp_path / "t" / "x.jsonl", [
        '{"in0": [1, 2, 3, 4, 5], "in1": [6, 7, 8], "label": 0}',
        '{"in0": [9], "in1": [1, 2, 999, -4, "x"], "label": 1}'])
    data = load_channel(tmp_path / "t", rules)
    assert sequences(data.in0) == [[1, 2, 3], [9]]
    assert sequences(data.in1) == [[6, 7], [1, 2]]
    assert data.in0.lengths.tolist() == [3, 1] and data.in1.lengths.tolist() == [2, 2]


def test_several_files_subdirectories_and_gzip_in_sorted_order(tmp_path):
    """Every file below the channel, recursively and in sorted path order, plain or gzip (detected
    by content, whatever the name); hidden files are skipped."""
    ch = tmp_path / "train"
    write_lines(ch / "a.jsonl", ['{"in0": [1], "in1": [0], "label": 0}'])
    with gzip.open(ch / "b.jsonl.gz", "wt") as fh:
        fh.write('{"in0": [2], "in1": [0], "label": 1}\n{"in0": [3], "in1": [1], "label": 2}\n')
    with gzip.open(ch / "c_no_suffix", "wt") as fh:
        fh.write('{"in0": [4], "in1": [1], "label": 0}\n')
    write_lines(ch / "sub" / "deeper" / "d.jsonl", ['{"in0": [5], "in1": [0], "label": 1}'])
    write_lines(ch / ".hidden.jsonl", ["this is not json"])
    write_lines(ch / ".cache" / "e.jsonl", ["neither is this"])
    data = load_channel(ch, CLASSIFY)
    assert sequences(data.in0) == [[1], [2], [3], [4], [5]]
    assert data.labels.tolist() == [0, 1, 2, 0, 1]


def test_error_in_a_gzip_file_names_it_and_the_line(tmp_path):
    """Line numbers are counted in the decompressed text."""
    ch = tmp_path / "train"
    path = ch / "part.jsonl.gz"
    ch.mkdir()
    with gzip.open(path, "wt") as fh:
        fh.write(GOOD + "\n" + GOOD + "\n" + '{"in0": [1], "in1": [0], "label": 9}\n')
    msg = load_error(ch)
    assert f"{path}, line 3" in msg and "label 9" in msg


def test_corrupt_gzip_is_a_user_error(tmp_path):
    """A truncated gzip file is reported as unreadable, naming the file."""
    ch = tmp_path / "train"
    ch.mkdir()
    blob = gzip.compress((GOOD + "\n").encode() * 1000)
    (ch / "x.gz").write_bytes(blob[: len(blob) // 2])
    assert "x.gz" in load_error(ch)


def test_corrupt_gzip_data_is_a_user_error(tmp_path):
    """Damaged deflate data (zlib.error, not an OSError) is reported as unreadable, naming the
    file."""
    ch = tmp_path / "train"
    ch.mkdir()
    blob = corrupt_deflate(gzip.compress((GOOD + "\n").encode() * 1000))
    (ch / "x.gz").write_bytes(blob)
    msg = load_error(ch)
    assert "x.gz" in msg and "cannot read file" in msg


def corrupt_deflate(blob: bytes) -> bytes:
    """``blob`` (a gzip file) with its deflate stream damaged so that zlib itself fails."""
    bad = blob[:10] + b"\xff" * 8 + blob[18:]  # a deflate block header no decoder accepts
    with pytest.raises(zlib.error):
        gzip.decompress(bad)
    return bad


@pytest.mark.parametrize("gz", [False, True])
def test_utf8_bom_at_the_start_of_a_file_is_accepted(tmp_path, gz):
    """A byte order mark opening a file (as some Windows tools write it) is skipped, plain or gzip,
    as /invocations does; line numbers are unchanged."""
    ch = tmp_path / "train"
    ch.mkdir()
    raw = ("\ufeff" + GOOD + "\n" + '{"in0": [3], "in1": [1], "label": 2}\n').encode("utf-8")
    (ch / "a.jsonl").write_bytes(gzip.compress(raw) if gz else raw)
    (ch / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"in0": [4], "in1": [0], "label": 0}\n'
                                 + b'{"in0": [4], "in1": [0], "label": 7}\n')
    msg = load_error(ch)
    assert f"{ch / 'b.jsonl'}, line 2" in msg and "label 7" in msg
    (ch / "b.jsonl").unlink()
    data = load_channel(ch, CLASSIFY)
    assert sequences(data.in0) == [[1, 2], [3]] and data.labels.tolist() == [1, 2]


@pytest.mark.parametrize("kind", ["file", "directory", "relative file", "chain"])
def test_links_leading_outside_the_channel_are_refused(tmp_path, kind):
    """A file or directory link whose target resolves outside the channel is a user error naming
    the link (its path inside the channel) and where it points, whatever it points to."""
    outside = write_lines(tmp_path / "elsewhere" / "x.jsonl", [GOOD]).parent
    ch = tmp_path / "train"
    write_lines(ch / "a.jsonl", [GOOD])
    link = ch / "sub" / "link"
    link.parent.mkdir()
    if kind == "file":
        link.symlink_to(outside / "x.jsonl")
    elif kind == "directory":
        link.symlink_to(outside, target_is_directory=True)
    elif kind == "relative file":
        link.symlink_to(Path("..") / ".." / "elsewhere" / "x.jsonl")
    else:  # a link to a link inside the channel that itself leads out
        (ch / "hop").symlink_to(outside / "x.jsonl")
        link.symlink_to(ch / "hop")
    msg = load_error(ch)
    where = "hop" if kind == "chain" else str(Path("sub") / "link")
    assert f"'{where}'" in msg and "'train'" in msg, msg
    assert str(outside.resolve()) in msg, msg


def test_links_inside_the_channel_are_followed_once(tmp_path):
    """Links that stay inside the channel are fine: a file link is read like a file; a directory
    link is not descended into (its files are read where they are; a link to a parent would loop);
    a channel directory that is itself a link is read."""
    real = tmp_path / "real_train"
    write_lines(real / "a.jsonl", ['{"in0": [1], "in1": [0], "label": 0}'])
    write_lines(real / "sub" / "b.jsonl", ['{"in0": [2], "in1": [0], "label": 1}'])
    (real / "c_link.jsonl").symlink_to(real / "sub" / "b.jsonl")
    (real / "dir_link").symlink_to(real / "sub", target_is_directory=True)
    (real / "loop").symlink_to(real, target_is_directory=True)
    (real / "dangling").symlink_to(real / "missing.jsonl")
    ch = tmp_path / "train"
    ch.symlink_to(real, target_is_directory=True)
    data = load_channel(ch, CLASSIFY)
    assert sequences(data.in0) == [[1], [2], [2]]


def test_empty_channel_is_a_user_error(tmp_path):
    """A channel directory without files, or with only blank lines, names the channel."""
    (tmp_path / "validation").mkdir()
    msg = load_error(tmp_path / "validation")
    assert "'validation'" in msg and "no files" in msg
    write_lines(tmp_path / "validation" / "blank.jsonl", ["", "   ", ""])
    msg = load_error(tmp_path / "validation")
    assert "'validation'" in msg and "no records" in msg


def test_arrays_are_compact(tmp_path):
    """Ids are int32 in one flat array per side, offsets int64, labels int64 (classes) or float32
    (regression): no per-record Python objects."""
    rng = np.random.default_rng(0)
    records = [{"in0": rng.integers(0, 10, rng.integers(1, 6)).tolist(),
                "in1": rng.integers(0, 2, rng.integers(1, 6)).tolist(),
                "label": int(rng.integers(0, 3))} for _ in range(500)]
    write_lines(tmp_path / "t" / "x.jsonl", [json.dumps(r) for r in records])
    for rules, label_dtype in ((CLASSIFY, np.int64), (REGRESS, np.float32)):
        data = load_channel(tmp_path / "t", rules)
        for side, key in ((data.in0, "in0"), (data.in1, "in1")):
            assert side.ids.dtype == np.int32 and side.offsets.dtype == np.int64
            assert side.ids.ndim == 1 and side.offsets.shape == (501,)
            assert side.ids.nbytes == 4 * sum(len(r[key]) for r in records)
            assert sequences(side) == [r[key] for r in records]
        assert data.labels.dtype == label_dtype
        assert data.labels.tolist() == [r["label"] for r in records]


# -- text sides (object2vec.text tokenizes them; the job decides each side's kind) --------------------


@pytest.fixture(scope="module")
def words():
    from object2vec.text import train_text_encoder

    return train_text_encoder(iter(["the cat sat on the mat", "stocks fell"]), "wordlevel", 50, True)


def text_rules(encoder, sides=(True, True), max_len=5):
    return RecordRules((50, 50), (max_len, max_len), False, 2,
                       tuple(encoder if s else None for s in sides), "train/first.jsonl, line 1")


def test_text_sides_load_as_token_ids_cut_after_tokenizing(tmp_path, words):
    vocab = words.vocab()
    write_lines(tmp_path / "c" / "a.jsonl", [
        '{"in0": "The cat sat on the mat", "in1": [1, 2], "label": 1}',
        '{"in0": "cat", "in1": [3, 4], "label": 0}'])
    data = load_channel(tmp_path / "c", text_rules(words, (True, False)))
    assert sequences(data.in0) == [[vocab[w] for w in "the cat sat on the".split()], [vocab["cat"]]]
    assert data.in0.ids.dtype == np.int32
    with pytest.raises(UserError, match="in1"):  # in1 is ids here: a string is the other kind
        load_channel(tmp_path / "c", text_rules(words, (True, True)))


def test_text_loading_agrees_with_the_tokenizer_over_many_chunks(tmp_path, words):
    texts = [" ".join(["cat", "mat", "stocks", "unknownword", "the"][: 1 + i % 5]) for i in range(300)]
    lines = [json.dumps({"in0": t, "in1": t[::-1] or "x", "label": i % 2}) for i, t in enumerate(texts)]
    write_lines(tmp_path / "c" / "a.jsonl", lines)
    import object2vec.data.records as records

    original = records.CHUNK_LINES
    records.CHUNK_LINES = 7  # many chunks, the last one short
    try:
        data = load_channel(tmp_path / "c", text_rules(words))
    finally:
        records.CHUNK_LINES = original
    expect = [e.ids[:5] for e in words.tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert sequences(data.in0) == expect


@pytest.mark.parametrize("line, sides, words_in_message", [
    ('{"in0": [1, 2], "in1": "b", "label": 1}', (True, True),
     ["line 3", "'in0' holds [1, 2], but this job's in0 is text (as in train/first.jsonl, line 1)",
      "text or ids for the whole job"]),
    ('{"in0": "cat", "in1": "stocks", "label": 1}', (False, True),
     ["line 3", "'in0' must be a non-empty list", "this job's in0 is token ids (as in "
      "train/first.jsonl, line 1)"]),
    ('{"in0": "", "in1": "cat", "label": 1}', (True, True), ["line 3", "'in0' is empty text"]),
    ('{"in0": "cat", "in1": "   ", "label": 1}', (True, True), ["line 3", "'in1' is empty text"]),
    ('{"in0": "cat", "in1": "\\ud800", "label": 1}', (True, True),
     ["line 3", "'in1' holds a lone surrogate"]),
    ('{"in0": null, "in1": "cat", "label": 1}', (True, True), ["line 3", "'in0' holds null"]),
])
def test_mixed_and_empty_text_name_file_and_line(tmp_path, words, line, sides, words_in_message):
    first = ('{"in0": "cat", "in1": "mat", "label": 0}' if sides[0]
             else '{"in0": [1], "in1": "mat", "label": 0}')
    write_lines(tmp_path / "c" / "a.jsonl", [first, first, line])
    msg = load_error(tmp_path / "c", text_rules(words, sides))
    for word in words_in_message:
        assert word in msg, msg


def test_unknown_characters_are_unk_tokens_not_errors(tmp_path, words):
    write_lines(tmp_path / "c" / "a.jsonl", ['{"in0": "\\u2603\\u2603", "in1": "cat", "label": 0}'])
    data = load_channel(tmp_path / "c", text_rules(words))
    assert sequences(data.in0) == [[0]]


def test_text_loads_the_same_in_worker_processes_and_names_a_bad_line(tmp_path, words, monkeypatch):
    import object2vec.data.records as records

    monkeypatch.setattr(records, "CHUNK_LINES", 50)
    monkeypatch.setattr(records, "PARALLEL_MIN_BYTES", 0)
    lines = [json.dumps({"in0": " ".join(["cat", "the", "mat", "stocks"][: 1 + i % 4]), "in1": "fell",
                         "label": i % 2}) for i in range(400)]
    write_lines(tmp_path / "c" / "a.jsonl", lines[:230])
    write_lines(tmp_path / "c" / "b.jsonl", lines[230:])
    alone = load_channel(tmp_path / "c", text_rules(words))
    parallel = load_channel(tmp_path / "c", text_rules(words), workers=2)
    for a, b in ((alone.in0, parallel.in0), (alone.in1, parallel.in1)):
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(alone.labels, parallel.labels)
    lines[300] = '{"in0": "", "in1": "fell", "label": 0}'
    write_lines(tmp_path / "c" / "b.jsonl", lines[230:])
    with pytest.raises(UserError, match=r"b.jsonl, line 71: 'in0' is empty text"):
        load_channel(tmp_path / "c", text_rules(words), workers=2)
