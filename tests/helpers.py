"""Shared test helpers (importable as `helpers`: pyproject sets pythonpath=tests): a temporary SageMaker
tree, the environment for real subprocesses, free ports, a strict decoder for the PNGs we write; the
small data, hyperparameters and models that several unit test modules build; fake run conditions for
the o2vtools tests."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.records import PairData, Side
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.training.metrics import MetricLogger

REPO = Path(__file__).resolve().parents[1]

# A test (or a ``device`` fixture case) that needs a GPU: marked ``cuda``, skipped without one.
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA_ONLY = (pytest.mark.cuda, NEEDS_CUDA)


def tolerance(device: torch.device | str, rtol: float = 1.3e-6, atol: float = 1e-5) -> dict[str, float]:
    """``assert_close`` tolerances: the given ones on the CPU; on CUDA at least TF32's, since cuDNN
    convolutions and LSTMs use TensorFloat-32 by default (about 1e-3 relative)."""
    if torch.device(device).type == "cpu":
        return {"rtol": rtol, "atol": atol}
    return {"rtol": max(rtol, 2e-3), "atol": max(atol, 2e-3)}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write ``records`` as JSON Lines (one object per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_tree(base: Path, hyperparameters: dict, channels: dict[str, list[dict]],
              resource: dict | None = None) -> Path:
    """A SageMaker ``/opt/ml`` tree under ``base``: config files (every hyperparameter a string, as
    SageMaker sends them) and one ``data.jsonl`` per channel."""
    cfg = base / "input" / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    (cfg / "inputdataconfig.json").write_text(json.dumps(
        {c: {"ContentType": "application/jsonlines", "TrainingInputMode": "File",
             "S3DistributionType": "FullyReplicated"} for c in channels}))
    if resource is not None:
        (cfg / "resourceconfig.json").write_text(json.dumps(resource))
    for name, records in channels.items():
        write_jsonl(base / "input" / "data" / name / "data.jsonl", records)
    return base


def subprocess_env(base: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for running ``container/*`` as real processes: the venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if base is not None:
        env["SAGEMAKER_BASE_DIR"] = str(base)
    env.update(extra)
    return env


TRAIN = REPO / "container" / "train"


def tiny_data(n: int = 64, seed: int = 0) -> PairData:
    """``n`` random pairs of 1-3 ids below 20 each, binary labels (seeded)."""
    rng = np.random.default_rng(seed)

    def side() -> Side:
        lengths = rng.integers(1, 4, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Side(rng.integers(0, 20, int(offsets[-1])).astype(np.int32), offsets)

    return PairData(side(), side(), rng.integers(0, 2, n).astype(np.int64))


def train_all(trees: dict[str, Path], root: Path, timeout: float = 240) -> dict[str, tuple[int, str]]:
    """Run ``container/train`` on every tree at once (cwd ``root/cwd_<name>``, one OpenMP thread
    each: the jobs share the cores, and tiny ops on spin-waiting thread pools of several processes
    get slower, not faster); wait for all. Returns ``name -> (exit status, log)``."""
    procs = {}
    for name, base in trees.items():
        cwd = root / f"cwd_{name}"
        cwd.mkdir(exist_ok=True)
        with (cwd / "log.txt").open("w") as log:  # a file, not a pipe: no process blocks on output
            procs[name] = subprocess.Popen([str(TRAIN)], cwd=cwd,
                                           env=subprocess_env(base, OMP_NUM_THREADS="1"),
                                           stdout=log, stderr=subprocess.STDOUT)
    out = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out[name] = (proc.returncode, (root / f"cwd_{name}" / "log.txt").read_text())
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) pixels of an 8-bit RGB PNG as ``object2vec.reporting.plot`` writes it, checking every
    chunk's CRC and the header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    w, h, depth, color_type, compression, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color_type, compression, filt, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == h * (1 + 3 * w)
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)
    assert not rows[:, 0].any()  # filter type 0 (None) on every row: no unfiltering needed
    return rows[:, 1:].reshape(h, w, 3)


# -- small data and hyperparameters for the unit tests ----------------------------------------------

QUIET = MetricLogger("algo-1", logging.getLogger("test"), enabled=False)


def side(seqs: list[list[int]]) -> Side:
    """One side of a data set holding exactly ``seqs``."""
    lengths = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Side(np.array([t for s in seqs for t in s], dtype=np.int32), offsets)


def pairs(n: int, vocab: int, seed: int = 0, max_len: int = 6, learnable: bool = True) -> PairData:
    """Pairs whose label says whether the two sides share their first token (learnable)."""
    rng = np.random.default_rng(seed)
    a = [list(rng.integers(0, vocab, rng.integers(1, max_len + 1))) for _ in range(n)]
    labels = rng.integers(0, 2, n)
    b = [([s[0]] if y else [int((s[0] + 1) % vocab)]) + list(rng.integers(0, vocab, 2))
         for s, y in zip(a, labels)] if learnable else a
    return PairData(side(a), side(b), labels.astype(np.int64))


def sparse_hp(**over):
    """A small pooled_embedding classifier for ``pairs`` (negative sampling, row_sparse, tied and
    pretrained tables)."""
    base = dict(enc0_max_seq_len="8", enc0_vocab_size="40", enc0_network="pooled_embedding",
                enc_dim="8", mlp_dim="8", mini_batch_size="16", epochs="2", learning_rate="0.01")
    base.update({k: str(v) for k, v in over.items()})
    return parse_hyperparameters(base)


def pooling_hp(**over):
    """A regression model: enc0 = one user id, enc1 = a bag (pooled_embedding, not cloned)."""
    raw = dict(enc0_network="pooled_embedding", enc0_max_seq_len="1", enc0_vocab_size="10",
               enc1_network="pooled_embedding", enc1_max_seq_len="8", enc1_vocab_size="10",
               enc_dim="6", mlp_layers="0", comparator_list="hadamard, concat",
               output_layer="mean_squared_error", dropout="0")
    return parse_hyperparameters({**raw, **over})


# -- retrieval embeddings (in-batch softmax, IDF token weighting) ------------------------------------


def topic_pairs(n: int = 96, topics: int = 24, seed: int = 0) -> PairData:
    """(query, document) pairs, label 1: both sides draw tokens from the pair's own topic (ids
    ``4 t .. 4 t + 3``) plus shared noise tokens (ids >= 4 * topics)."""
    rng = np.random.default_rng(seed)
    noise = np.arange(4 * topics, 4 * topics + 8)
    q, d = [], []
    for k in range(n):
        own = 4 * (k % topics) + np.arange(4)
        q.append([int(rng.choice(own)), int(rng.choice(noise))])
        d.append([int(t) for t in rng.choice(own, 3)] + [int(t) for t in rng.choice(noise, 3)])
    return PairData(side(q), side(d), np.ones(n, dtype=np.int64))


def retrieval_hp(**over):
    """Tied row_sparse pooled_embedding tables for ``topic_pairs``."""
    raw = dict(enc0_max_seq_len="8", enc0_vocab_size="104", enc0_network="pooled_embedding",
               enc_dim="16", mlp_dim="8", mini_batch_size="32", epochs="1", learning_rate="0.05",
               negative_sampling_rate="1", tied_token_embedding_weight="true",
               token_embedding_storage_type="row_sparse")
    raw.update({k: str(v) for k, v in over.items()})
    return parse_hyperparameters(raw)


def trained(hp, data: PairData, seed: int = 0, device: torch.device | str = "cpu"):
    """A Trainer on ``data`` alone (on ``device``), after ``train()``."""
    from object2vec.training.trainer import Trainer

    torch.manual_seed(0)
    trainer = Trainer(hp, {"train": data}, QUIET, seed=seed, device=device)
    trainer.train()
    return trainer


# -- the network: every encoder, every comparator list ------------------------------------------------

MODEL_VOCAB = 12
ENCODER_NETWORKS = ("pooled_embedding", "hcnn", "bilstm")
COMPARATOR_NAMES = ("hadamard", "concat", "abs_diff")
# the 7 non-empty subsets, and some other orders
COMPARATOR_LISTS = ([c for r in (1, 2, 3) for c in itertools.combinations(COMPARATOR_NAMES, r)]
                    + [("abs_diff", "concat", "hadamard"), ("concat", "hadamard")])


def build_model(network="pooled_embedding", output="softmax", comparators=COMPARATOR_NAMES,
                **extra) -> Object2Vec:
    raw = {"enc0_network": network, "enc0_max_seq_len": "6", "enc0_vocab_size": str(MODEL_VOCAB),
           "enc_dim": "8", "enc0_token_embedding_dim": "8", "enc0_layers": "2", "mlp_dim": "16",
           "mlp_layers": "1", "mlp_activation": "relu", "output_layer": output,
           "comparator_list": ",".join(comparators), **{k: str(v) for k, v in extra.items()}}
    return Object2Vec(ModelConfig.from_hyperparameters(parse_hyperparameters(raw)))


# -- o2vtools: fake run conditions ------------------------------------------------------------------

DATE = "2031-01-02 03:04-03:09 UTC"


def fake_conditions(minute: int = 4, load: float = 1.25):
    """A finished measurement of 5 minutes on 2031-01-02 from 03:``minute``."""
    from datetime import datetime, timezone

    from o2vtools import results

    return results.Conditions(
        datetime(2031, 1, 2, 3, minute, tzinfo=timezone.utc), (load, 1.5, 1.75), 60.0 * minute,
        ended=datetime(2031, 1, 2, 3, minute + 5, tzinfo=timezone.utc), load_end=(3.5, 2.25, 2.0),
        seconds=300.0)


TINY_WORDS = ("the a of to and in is it news sport film music game team city law court vote party "
              "market bank price rain storm sun goal match player song album star actor").split()


def tiny_transformer(folder: Path, seed: int = 0, layers: int = 2, positions: int = 40,
                     dropout: float = 0.1) -> Path:
    """A tiny randomly initialised BERT written as a Hugging Face model folder (config.json,
    model.safetensors, tokenizer.json with [CLS] ... [SEP]), as ``save_pretrained`` writes it: the
    offline stand-in for a pretrained model (hidden size 16, ``layers`` layers, about 60 tokens,
    ``positions`` positions, ``dropout`` as BERT's hidden and attention dropout)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials + list(TINY_WORDS) + [f"##{c}" for c in "sed"])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=positions,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder
