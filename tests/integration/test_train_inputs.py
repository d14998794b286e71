"""``container/train`` on awkward inputs: each job either trains (exit 0) or fails as a user error
(exit 2, ``output/failure`` holding a ClientError naming the key / file / line, no traceback).

Success: a vocabulary with ``<unk>`` at id ``vocab_size`` (AWS's multilabel-genre notebook) trains
with one warning; a UTF-8 byte order mark opening a data file is accepted. User errors: a
400-digit regression label, a line nested 100,000 levels deep, a pretrained-embedding file with
non-UTF-8 bytes, ``nan`` values or a truncated gzip, a truncated gzip vocabulary, and links
leading out of a data channel.

Every scenario's process starts at once from one module fixture (tiny data, one epoch).
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import make_tree, train_all

pytestmark = pytest.mark.slow

VOCAB_SIZE = 6
TOKENS = ["the", "cat", "sat", "on", "a", "mat"]
HP = {"enc0_network": "pooled_embedding", "enc0_max_seq_len": 4, "enc0_vocab_size": VOCAB_SIZE,
      "enc_dim": 4, "mlp_dim": 4, "mini_batch_size": 8, "epochs": 1,
      "sagemaker_job_name": "test-inputs"}
PRETRAINED_HP = {**HP, "enc0_vocab_file": "vocab.json",
                 "enc0_pretrained_embedding_file": "vectors.txt", "tied_token_embedding_weight": True}


def pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"in0": [rng.randrange(VOCAB_SIZE) for _ in range(rng.randint(1, 4))],
             "in1": [rng.randrange(VOCAB_SIZE) for _ in range(rng.randint(1, 4))],
             "label": rng.randrange(2)} for _ in range(n)]


def vectors_text(values: dict[str, str] | None = None) -> bytes:
    """A GloVe file of dim 4 for TOKENS; ``values`` overrides a token's four values."""
    values = values or {}
    return "".join(f"{t} {values.get(t, f'0.{i} 0.5 -0.{i} 1.0')}\n"
                   for i, t in enumerate(TOKENS)).encode()


def with_aux(base: Path, vocab: bytes, vectors: bytes) -> Path:
    aux = base / "input" / "data" / "auxiliary"
    aux.mkdir(parents=True)
    (aux / "vocab.json").write_bytes(vocab)
    (aux / "vectors.txt").write_bytes(vectors)
    return base


def truncated_gzip(raw: bytes) -> bytes:
    blob = gzip.compress(raw)
    return blob[: len(blob) // 2]


def train_file(base: Path, channel: str = "train") -> Path:
    return base / "input" / "data" / channel / "data.jsonl"


def replace_line(base: Path, number: int, text: str) -> None:
    path = train_file(base)
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    path.write_text("".join(lines))


VOCAB = json.dumps({t: i for i, t in enumerate(TOKENS)}).encode()
VOCAB_WITH_UNK = json.dumps({**{t: i for i, t in enumerate(TOKENS)}, "<unk>": VOCAB_SIZE}).encode()


def scenario_trees(root: Path) -> dict[str, Path]:
    """One SageMaker tree per scenario."""
    def tree(name: str, hp: dict, regression: bool = False) -> Path:
        records = pairs(24, len(name))
        if regression:
            records = [{**r, "label": 0.5 * r["label"]} for r in records]
        return make_tree(root / name, hp, {"train": records})

    trees = {"unk_vocab": with_aux(tree("unk_vocab", PRETRAINED_HP), VOCAB_WITH_UNK,
                                   vectors_text())}
    trees["bom"] = tree("bom", HP)
    train_file(trees["bom"]).write_bytes(b"\xef\xbb\xbf" + train_file(trees["bom"]).read_bytes())
    gz = trees["bom"] / "input" / "data" / "train" / "more.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + json.dumps(pairs(1, 99)[0]).encode() + b"\n"))

    trees["huge_label"] = tree("huge_label", {**HP, "output_layer": "mean_squared_error"}, True)
    replace_line(trees["huge_label"], 3, '{"in0": [1], "in1": [2], "label": ' + "9" * 400 + "}")
    trees["deep_nesting"] = tree("deep_nesting", HP)
    replace_line(trees["deep_nesting"], 2,
                 '{"in0": ' + "[" * 100_000 + "]" * 100_000 + ', "in1": [0], "label": 1}')

    def pretrained(name: str, vocab: bytes, vectors: bytes) -> None:
        trees[name] = with_aux(tree(name, PRETRAINED_HP), vocab, vectors)

    pretrained("vectors_nan", VOCAB, vectors_text({"sat": "0.1 nan 0.3 0.4"}))
    pretrained("vectors_not_utf8", VOCAB, vectors_text().replace(b"on ", b"\xe9on "))
    pretrained("vectors_truncated_gz", VOCAB, truncated_gzip(vectors_text() * 3000))
    pretrained("vocab_truncated_gz", truncated_gzip(
        json.dumps({f"w{i}": i for i in range(5000)}).encode()), vectors_text())

    outside = root / "outside"
    (outside / "data").mkdir(parents=True)
    (outside / "data" / "x.jsonl").write_text(json.dumps(pairs(1, 7)[0]) + "\n")
    trees["file_link_out"] = tree("file_link_out", HP)
    link = train_file(trees["file_link_out"]).parent / "part-2.jsonl"
    link.symlink_to(outside / "data" / "x.jsonl")
    trees["dir_link_out"] = tree("dir_link_out", HP)
    (train_file(trees["dir_link_out"]).parent / "extra").symlink_to(outside / "data",
                                                                    target_is_directory=True)
    return trees


@dataclass
class Run:
    base: Path
    returncode: int
    output: str

    @property
    def failure(self) -> Path:
        return self.base / "output" / "failure"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    """Start container/train for every scenario at once (one OpenMP thread each), wait for all."""
    root = tmp_path_factory.mktemp("train_inputs")
    trees = scenario_trees(root)
    return {name: Run(trees[name], *result) for name, result in train_all(trees, root).items()}


def test_vocab_with_unk_at_vocab_size_trains_with_one_warning(runs):
    """AWS's multilabel-genre notebook: enc0_vocab_size = len(vocab), <unk> at id len(vocab). The
    original trained on this; the entry is dropped with one warning naming it."""
    run = runs["unk_vocab"]
    assert run.returncode == 0, run.output[-3000:]
    assert (run.base / "model" / "object2vec.pt").is_file()
    warnings = [ln for ln in run.output.splitlines() if " WARNING " in ln and "vocab_size" in ln]
    assert len(warnings) == 1, warnings
    assert "enc0_vocab_file vocab.json" in warnings[0] and "'<unk>' (id 6)" in warnings[0]
    assert "enc0: 6 of 6 vocabulary tokens found in vectors.txt" in run.output


def test_byte_order_mark_opening_a_data_file_is_accepted(runs):
    """As /invocations accepts it: a UTF-8 BOM before the first record of a plain or gzip file."""
    run = runs["bom"]
    assert run.returncode == 0, run.output[-3000:]
    assert "channel train: 25 records" in run.output


USER_ERRORS = [
    ("huge_label", ["train", "data.jsonl, line 3", "label 9999", "must be a finite number"]),
    ("deep_nesting", ["data.jsonl, line 2", "not valid JSON (nested too deeply)"]),
    ("vectors_nan", ["enc0_pretrained_embedding_file vectors.txt, line 3", "'sat'", "finite"]),
    ("vectors_not_utf8", ["enc0_pretrained_embedding_file vectors.txt, line 4", "UTF-8"]),
    ("vectors_truncated_gz", ["enc0_pretrained_embedding_file vectors.txt", "cannot read"]),
    ("vocab_truncated_gz", ["enc0_vocab_file vocab.json", "cannot read"]),
    ("file_link_out", ["'part-2.jsonl'", "'train'", "outside", "x.jsonl"]),
    ("dir_link_out", ["'extra'", "'train'", "outside", "/outside/data"]),
]


@pytest.mark.parametrize("name,words", USER_ERRORS, ids=[u[0] for u in USER_ERRORS])
def test_bad_input_is_a_user_error(runs, name, words):
    """Exit 2, a one-line ClientError naming key / file / line in output/failure, no traceback,
    no model."""
    run = runs[name]
    assert run.returncode == 2, run.output[-3000:]
    reason = run.failure.read_text()
    assert reason.startswith("ClientError: ") and len(reason) <= 1024, reason[:2000]
    for word in words:
        assert word in reason, (word, reason)
    assert "Traceback" not in run.output, run.output[-3000:]
    assert not (run.base / "model").exists() or not any((run.base / "model").iterdir())
