"""The auxiliary channel's files: vocabulary ids beyond vocab_size (AWS's notebooks write them),
damaged or non-UTF-8 files and non-finite vectors are user errors naming the hyperparameter, the
file and the line; links out of the channel are refused like in the data channels."""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import QUIET, pairs, side, sparse_hp

from object2vec.data.auxiliary import load_pretrained_into, read_vocab, resolve_aux_file
from object2vec.data.records import PairData
from object2vec.errors import UserError
from object2vec.training.trainer import Trainer

VOCAB_KEY = "enc0_vocab_file"
VECTORS_KEY = "enc0_pretrained_embedding_file"
VOCAB = {"the": 0, "cat": 1, "sat": 2}


def write_vocab(path: Path, vocab: dict, gz: bool = False) -> Path:
    raw = json.dumps(vocab).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def load_vectors(path: Path, vocab: dict[str, int] = VOCAB, dim: int = 3) -> torch.Tensor:
    table = torch.zeros(max(vocab.values()) + 1, dim)
    load_pretrained_into(table, path, vocab, VECTORS_KEY)
    return table


def vectors_error(tmp_path: Path, raw: bytes, gz: bool = False) -> str:
    path = tmp_path / "vectors.txt"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(UserError) as info:
        load_vectors(path)
    return str(info.value)


def damaged(blob: bytes, how: str) -> bytes:
    """A gzip file cut short, or with its deflate stream broken so that zlib itself fails."""
    if how == "truncated":
        return blob[: len(blob) // 2]
    bad = blob[:10] + b"\xff" * 8 + blob[18:]  # a deflate block header no decoder accepts
    with pytest.raises(zlib.error):
        gzip.decompress(bad)
    return bad


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- vocabulary ids --------------------------------------------------------------------------------


def test_vocab_id_equal_to_vocab_size_is_dropped_with_one_warning(tmp_path, caplog):
    """AWS's multilabel-genre notebook sets enc0_vocab_size = len(vocab) and gives <unk> the id
    len(vocab); no record uses it. The entry is dropped, with one warning naming it."""
    path = write_vocab(tmp_path / "vocab.json", {**VOCAB, "<unk>": 3})
    with caplog.at_level(logging.INFO, logger="object2vec"):
        vocab = read_vocab(path, 3, VOCAB_KEY)
    assert vocab == VOCAB
    (warning,) = warnings_of(caplog)
    assert "enc0_vocab_file vocab.json" in warning and "vocab_size=3" in warning
    assert "1 token" in warning and "'<unk>' (id 3)" in warning and "more" not in warning


def test_many_ids_beyond_vocab_size_are_counted_and_the_first_five_named(tmp_path, caplog):
    path = write_vocab(tmp_path / "vocab.json", {f"w{i}": i for i in range(12)})
    with caplog.at_level(logging.INFO, logger="object2vec"):
        vocab = read_vocab(path, 4, VOCAB_KEY)
    assert vocab == {f"w{i}": i for i in range(4)}
    (warning,) = warnings_of(caplog)
    assert "8 tokens" in warning and "and 3 more" in warning
    assert all(f"'w{i}' (id {i})" in warning for i in range(4, 9))
    assert "'w9'" not in warning


def test_vocab_in_range_logs_no_warning(tmp_path, caplog):
    path = write_vocab(tmp_path / "vocab.json", VOCAB)
    with caplog.at_level(logging.INFO, logger="object2vec"):
        assert read_vocab(path, 3, VOCAB_KEY) == VOCAB
    assert not warnings_of(caplog)


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, None, [1]])
def test_negative_or_non_integer_vocab_ids_are_still_rejected(tmp_path, bad):
    path = write_vocab(tmp_path / "vocab.json", {**VOCAB, "dog": bad})
    with pytest.raises(UserError, match=r"enc0_vocab_file vocab.json: token 'dog' has id"):
        read_vocab(path, 4, VOCAB_KEY)


# -- damaged files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_gzip_vocab_is_a_user_error(tmp_path, how):
    path = tmp_path / "vocab.json"
    write_vocab(path, {f"w{i}": i for i in range(3000)}, gz=True)
    path.write_bytes(damaged(path.read_bytes(), how))
    with pytest.raises(UserError, match=r"enc0_vocab_file vocab.json: cannot read file"):
        read_vocab(path, 3000, VOCAB_KEY)


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_gzip_vectors_are_a_user_error(tmp_path, how):
    raw = b"".join(b"w%d %d.5 1 2\n" % (i, i) for i in range(20000))
    msg = vectors_error(tmp_path, damaged(gzip.compress(raw), how))
    assert msg.startswith("enc0_pretrained_embedding_file vectors.txt") and "cannot read" in msg


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("bad_line", [1, 3, 5000])
def test_non_utf8_vectors_name_the_line(tmp_path, gz, bad_line):
    """Latin-1 bytes in a vectors file name its line, plain or gzip, even far past the first
    read-ahead block."""
    lines = [b"w%d 1 2 3\n" % i for i in range(6000)]
    lines[bad_line - 1] = b"caf\xe9 1 2 3\n"
    msg = vectors_error(tmp_path, b"".join(lines), gz)
    assert f"enc0_pretrained_embedding_file vectors.txt, line {bad_line}: " in msg
    assert "UTF-8" in msg


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e39"])
def test_non_finite_vectors_are_rejected_at_load(tmp_path, value):
    """nan/inf (or a value beyond float32) in a vocabulary token's vector would only surface as a
    diverged training run: it is refused here, naming line and token."""
    msg = vectors_error(tmp_path, f"the 1 2 3\ncat 1 {value} 3\n".encode())
    assert "enc0_pretrained_embedding_file vectors.txt, line 2" in msg
    assert "'cat'" in msg and "finite" in msg


def test_non_finite_vector_of_a_token_outside_the_vocabulary_is_skipped(tmp_path):
    """Lines of tokens the vocabulary lacks are skipped unparsed, as before (streaming)."""
    path = tmp_path / "vectors.txt"
    path.write_text("dog nan nan nan\nthe 1 2 3\n")
    assert load_vectors(path)[0].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("gz", [False, True])
def test_utf8_bom_opening_vocab_and_vectors_is_accepted(tmp_path, gz):
    bom = b"\xef\xbb\xbf"
    vocab_path = tmp_path / "vocab.json"
    raw = bom + json.dumps({"the": 0, "caf\u00e9": 1}).encode()
    vocab_path.write_bytes(gzip.compress(raw) if gz else raw)
    vocab = read_vocab(vocab_path, 2, VOCAB_KEY)
    path = tmp_path / "vectors.txt"
    raw = bom + "the 1 2 3\ncaf\u00e9 4 5 6\n".encode()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    assert np.array_equal(load_vectors(path, vocab).numpy(), [[1, 2, 3], [4, 5, 6]])


# -- links -----------------------------------------------------------------------------------------


def test_link_out_of_the_auxiliary_channel_is_refused_naming_its_target(tmp_path):
    aux = tmp_path / "auxiliary"
    outside = write_vocab(tmp_path / "elsewhere" / "vocab.json", VOCAB)
    aux.mkdir()
    (aux / "vocab.json").symlink_to(outside)
    with pytest.raises(UserError) as info:
        resolve_aux_file(aux, "vocab.json", VOCAB_KEY)
    msg = str(info.value)
    assert "enc0_vocab_file='vocab.json'" in msg and str(outside) in msg and "auxiliary" in msg


def test_link_inside_the_auxiliary_channel_is_fine(tmp_path):
    aux = tmp_path / "auxiliary"
    real = write_vocab(aux / "v1" / "vocab.json", VOCAB)
    (aux / "vocab.json").symlink_to(real)
    assert resolve_aux_file(aux, "vocab.json", VOCAB_KEY) == real.resolve()


# -- pretrained embeddings in a Trainer -------------------------------------------------------------


def write_aux(tmp_path, vectors: dict[str, list[float]], vocab: dict[str, int], gz=False, header=""):
    aux = tmp_path / "auxiliary"
    aux.mkdir(exist_ok=True)
    (aux / "vocab.json").write_text(json.dumps(vocab))
    text = header + "".join(f"{w} {' '.join(repr(x) for x in v)}\n" for w, v in vectors.items())
    if gz:
        with gzip.open(aux / "vectors.txt", "wt") as fh:
            fh.write(text)
    else:
        (aux / "vectors.txt").write_text(text)
    return aux


def pretrained_hp(freeze=True, **over):
    return sparse_hp(enc0_vocab_file="vocab.json", enc0_pretrained_embedding_file="vectors.txt",
                     enc0_freeze_pretrained_embedding=freeze, enc0_vocab_size=5, enc_dim=4,
                     tied_token_embedding_weight=True, **over)


@pytest.mark.parametrize("gz,header", [(False, ""), (True, "3 4\n")])
def test_pretrained_rows_arrive_exactly_and_stay_frozen(tmp_path, gz, header, device):
    vectors = {"the": [0.5, -1.0, 2.25, 3.0], "new york": [1.0, 2.0, 3.0, 4.0],
               "unused": [9.0, 9.0, 9.0, 9.0]}
    aux = write_aux(tmp_path, vectors, {"the": 0, "new york": 3, "cat": 1}, gz=gz, header=header)
    seqs = [[0, 1, 2, 3, 4]] * 16
    data = PairData(side(seqs), side(seqs), np.tile([0, 1], 8).astype(np.int64))
    for storage in ("dense", "row_sparse"):
        trainer = Trainer(pretrained_hp(token_embedding_storage_type=storage), {"train": data}, QUIET,
                          auxiliary_dir=aux, device=device)
        weight = trainer.model.embeddings[0].weight
        assert weight[0].tolist() == vectors["the"]
        assert weight[3].tolist() == vectors["new york"]
        before = weight.detach().clone()
        trainer.train()
        assert torch.equal(weight.detach(), before), storage


def test_pretrained_not_frozen_is_trained(tmp_path):
    aux = write_aux(tmp_path, {"the": [0.5, -1.0, 2.25, 3.0]}, {"the": 0})
    data = PairData(side([[0, 1]] * 16), side([[0, 2]] * 16), np.tile([0, 1], 8).astype(np.int64))
    trainer = Trainer(pretrained_hp(freeze=False), {"train": data}, QUIET, auxiliary_dir=aux)
    trainer.train()
    assert trainer.model.embeddings[0].weight[0].tolist() != [0.5, -1.0, 2.25, 3.0]


@pytest.mark.parametrize("content,message", [
    ("the 1.0 2.0\n", r"line 1: vectors have 2 values but the token embedding dim is 4"),
    ("the 1 2 3 4\ncat 1 2\n", r"line 2: expected a token and 4 numbers, got 3 fields"),
    ("the 1 2 x 4\n", r"line 1: the 4 values after token 'the' are not all numbers"),
])
def test_pretrained_file_errors(tmp_path, content, message):
    aux = write_aux(tmp_path, {}, {"the": 0, "cat": 1})
    (aux / "vectors.txt").write_text(content)
    with pytest.raises(UserError, match=message):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=aux)


def test_pretrained_missing_file_and_channel(tmp_path):
    aux = write_aux(tmp_path, {}, {"the": 0})
    (aux / "vectors.txt").unlink()
    with pytest.raises(UserError, match="enc0_pretrained_embedding_file='vectors.txt': file not found"):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=aux)
    with pytest.raises(UserError, match="needs the 'auxiliary' channel"):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=None)


def test_vocab_ids_out_of_range(tmp_path):
    # ids >= vocab_size are dropped with a warning (issue 12, case 3); negative ids stay errors
    aux = write_aux(tmp_path, {"the": [1.0] * 4}, {"the": -1})
    with pytest.raises(UserError, match="token 'the' has id -1"):
        Trainer(pretrained_hp(), {"train": pairs(8, 5)}, QUIET, auxiliary_dir=aux)
