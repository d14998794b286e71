"""Text in, through the real ``container/train`` and ``container/serve``: a job trained on sentence
pairs with a tokenizer per side, pretrained vectors matched by token, the artifact with its
tokenizers, text in every serving format, the errors, the tokenizers kept for a resumed job, and id
jobs unchanged bit for bit."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TRAIN, free_port, make_tree, subprocess_env
from test_serve import Server, invoke, ok_json, ok_jsonlines

from object2vec.artifact import load_artifact
from object2vec.errors import UserError
from object2vec.serving.predictor import Predictor, by_instance

pytestmark = pytest.mark.slow

TOPICS = [("cat", "dog", "mat", "pet"), ("stock", "market", "trader", "price"),
          ("rain", "cloud", "storm", "wind")]
VECTORS = {"cat": [0.5] * 8, "market": [-0.25] * 8}  # pretrained rows of the enc0 word table


def sentence(rng: np.random.Generator, topic: int, n: int) -> str:
    words = [str(w) for w in rng.choice(TOPICS[topic], n)]
    return " ".join(words).capitalize() + "."


def sentence_pairs(n: int = 90, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        topic, other = i % 3, (i + 1 + i % 2) % 3
        label = int(rng.integers(0, 2))
        out.append({"label": label, "in0": sentence(rng, topic, 4),
                    "in1": sentence(rng, topic if label else other, 6)})
    return out


TEXT_HP = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "100", "enc0_max_seq_len": "8",
           "enc0_tokenizer": "wordlevel", "enc0_pretrained_embedding_file": "vectors.txt",
           "enc1_network": "hcnn", "enc1_vocab_size": "60", "enc1_max_seq_len": "10",
           "enc1_token_embedding_dim": "8", "enc_dim": "8", "epochs": "2", "mini_batch_size": "16"}


def train(base: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TRAIN)], env=subprocess_env(base), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def text_job(tmp_path_factory):
    """A trained text model (wordlevel enc0 with pretrained vectors, wordpiece hcnn enc1) and its
    training log."""
    base = make_tree(tmp_path_factory.mktemp("opt_ml"), TEXT_HP, {"train": sentence_pairs()})
    aux = base / "input" / "data" / "auxiliary"
    aux.mkdir()
    (aux / "vectors.txt").write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VECTORS.items())
                                     + "unseen " + " ".join(["9"] * 8) + "\n")
    run = train(base)
    assert run.returncode == 0, run.stdout[-3000:]
    return base, run.stdout


@pytest.fixture(scope="module")
def text_server(text_job, tmp_path_factory):
    base, _ = text_job
    server = Server(base, tmp_path_factory.mktemp("cwd"))
    try:
        server.wait_ready()
        yield server, Predictor.from_model_dir(base / "model")
    finally:
        server.stop()


def test_each_side_has_its_tokenizer_in_the_artifact(text_job):
    base, log = text_job
    desc = json.loads((base / "model" / "object2vec.json").read_text())
    assert desc["format_version"] == 2
    assert desc["tokenizers"] == {"in0": "tokenizer-in0.json", "in1": "tokenizer-in1.json"}
    loaded = load_artifact(base / "model")
    words, pieces = loaded.text
    assert words is not pieces
    assert set(words.vocab()) >= {"cat", "market", "[UNK]"} and "cat." not in words.vocab()
    assert "wordlevel tokenizer trained on the train channel's in0 text" in log
    assert "wordpiece tokenizer trained on the train channel's in1 text" in log


def test_pretrained_vectors_are_matched_by_token(text_job):
    base, log = text_job
    assert "enc0: 2 of" in log and "vocabulary tokens found in vectors.txt" in log and "frozen" in log
    loaded = load_artifact(base / "model")
    table = loaded.model.embeddings[0].weight
    vocab = loaded.text[0].vocab()
    for word, vector in VECTORS.items():
        assert torch.equal(table[vocab[word]], torch.tensor(vector))


def test_a_tokenizer_that_is_not_the_model_s_is_refused(text_job, tmp_path):
    base, _ = text_job
    model = tmp_path / "model"
    model.mkdir()
    for f in (base / "model").iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    big = json.loads((model / "tokenizer-in0.json").read_text())
    big["model"]["vocab"] = {f"w{i}": i for i in range(500)}
    (model / "tokenizer-in0.json").write_text(json.dumps(big))
    with pytest.raises(UserError, match="has 501 tokens but enc0's vocabulary has 100 rows"):
        load_artifact(model)


def test_text_in_json_with_mixed_modes_matches_the_ids_it_tokenizes_to(text_server):
    server, predictor = text_server
    in0, in1 = "The cat sat on a mat.", "Stock prices and the market"
    ids0 = predictor.text[0].encode([in0], 8)[0].tolist()
    ids1 = predictor.text[1].encode([in1], 10)[0].tolist()
    got = ok_json(invoke(server, {"instances": [{"in0": in0}, {"in0": in0, "in1": in1}, {"in1": in1},
                                                {"in0": ids0, "in1": in1}]}))
    expect = by_instance(predictor.predict([{"in0": ids0}, {"in0": ids0, "in1": ids1}, {"in1": ids1}]))
    assert np.allclose(got[0]["embeddings"], expect[0]["embeddings"])
    assert np.allclose(got[1]["scores"], expect[1]["scores"]) and np.allclose(got[3]["scores"],
                                                                               expect[1]["scores"])
    assert np.allclose(got[2]["embeddings"], expect[2]["embeddings"])


def test_text_in_json_lines_and_batch_transform(text_server):
    server, predictor = text_server
    lines = [{"in0": "cat and dog"}, {"in0": "rain", "in1": "storm wind"}]
    body = "\n".join(json.dumps(line) for line in lines)
    for content_type in ("application/jsonlines", "application/jsonl"):  # batch transform: the first
        got = ok_jsonlines(invoke(server, body, content_type, accept="application/jsonlines"))
        assert [list(g) for g in got] == [["embeddings"], ["scores"]]
        assert np.allclose(got[0]["embeddings"], by_instance(predictor.predict(lines))[0]["embeddings"])


def test_infer_max_seqlens_cuts_text_after_tokenizing(text_server):
    server, predictor = text_server
    text = "cat dog mat pet cat dog"
    cut = predictor.text[0].encode([text])[0].tolist()[:2]
    got = ok_json(invoke(server, {"instances": [{"in0": text}]},
                         "application/json; infer_max_seqlens=2,3"))
    assert np.allclose(got[0]["embeddings"], by_instance(predictor.predict([{"in0": cut}]))[0]["embeddings"])


@pytest.mark.parametrize("instance, words", [
    ({"in0": ""}, ['instance 1: \\"in0\\" is empty text']),
    ({"in1": " \t "}, ['instance 1: \\"in1\\" is empty text']),
    ({"in0": "bad \ud800"}, ["instance 1", "lone surrogate"]),
    ({"in0": 7}, ["instance 1", "must be a non-empty list"]),
])
def test_bad_text_is_a_400_naming_instance_and_side(text_server, instance, words):
    server, _ = text_server
    status, _, body = invoke(server, json.dumps({"instances": [{"in0": "cat"}, instance]}))
    assert status == 400, body
    for word in words:
        assert word in body.decode(), body


def test_unknown_characters_embed_as_unknown_tokens(text_server):
    server, _ = text_server
    got = ok_json(invoke(server, {"instances": [{"in0": "\u2603 \U0001F600"}, {"in0": "zzz qqq"}]}))
    assert np.allclose(got[0]["embeddings"], got[1]["embeddings"])  # both all [UNK]


def test_mixing_text_and_ids_on_a_side_fails_the_job_naming_file_and_line(tmp_path):
    records = sentence_pairs(6)
    records[4] = {"label": 1, "in0": [1, 2], "in1": "cat"}
    base = make_tree(tmp_path, {**TEXT_HP, "enc0_pretrained_embedding_file": ""}, {"train": records})
    run = train(base)
    assert run.returncode == 2
    failure = (base / "output" / "failure").read_text()
    assert "data.jsonl, line 5: 'in0' holds [1, 2], but this job's in0 is text (as in" in failure
    assert "data.jsonl, line 1)" in failure


def test_a_resumed_job_keeps_its_tokenizers(tmp_path):
    """Subword training is not deterministic; a job with checkpoints keeps its tokenizers."""
    hp = {**TEXT_HP, "enc0_pretrained_embedding_file": "", "enc0_tokenizer": "unigram", "epochs": "1"}
    base = make_tree(tmp_path, hp, {"train": sentence_pairs()})
    (base / "checkpoints").mkdir()
    first = train(base)
    assert first.returncode == 0, first.stdout[-2000:]
    kept = json.loads((base / "checkpoints" / "object2vec-tokenizers.json").read_text())
    again = train(base)
    assert again.returncode == 0 and "tokenizers from" in again.stdout
    saved = json.loads((base / "model" / "tokenizer-in0.json").read_text())["model"]["vocab"]
    first_pieces = json.loads(kept["tokenizers"][0])["model"]["vocab"]  # [[piece, log p], ...]
    assert [p for p, _ in saved] == [p for p, _ in first_pieces]
    assert [s for _, s in saved] == pytest.approx([s for _, s in first_pieces], rel=1e-12)


# sha256 of the weights of the id job below, trained by the code before text inputs existed
# (commit c83434e, torch 2.13.0 CPU, one thread): id jobs must give the same model bit for bit.
ID_JOB_WEIGHTS = "95678630eabb4971f2470c6d1b0a16870a39bb0f8c3bb03dc738cb63cd49f8de"


def test_id_jobs_train_the_same_model_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    records = [{"in0": rng.integers(0, 50, rng.integers(1, 8)).tolist(),
                "in1": rng.integers(0, 50, rng.integers(1, 8)).tolist(), "label": int(rng.integers(0, 2))}
               for _ in range(200)]
    hp = {"enc0_network": "hcnn", "enc0_vocab_size": "50", "enc0_max_seq_len": "6",
          "enc1_network": "bilstm", "enc1_vocab_size": "50", "enc1_max_seq_len": "6", "enc_dim": "16",
          "enc0_token_embedding_dim": "8", "enc1_token_embedding_dim": "8", "epochs": "2",
          "mini_batch_size": "32", "negative_sampling_rate": "1"}
    base = make_tree(tmp_path, hp, {"train": records, "validation": records})
    run = subprocess.run([sys.executable, str(TRAIN)], env=subprocess_env(base, OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:]
    state = torch.load(base / "model" / "object2vec.pt", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].numpy().tobytes())
    assert digest.hexdigest() == ID_JOB_WEIGHTS
    assert "tokenizers" not in json.loads((base / "model" / "object2vec.json").read_text())


def test_a_text_job_on_two_processes_shares_rank_0_s_tokenizer(tmp_path):
    """Each rank loads the data; only rank 0 trains the (non-deterministic) subword tokenizer and
    every rank tokenizes with it, so both train the same rows."""
    hp = {**TEXT_HP, "enc0_pretrained_embedding_file": "", "enc0_tokenizer": "unigram", "epochs": "1"}
    base = make_tree(tmp_path, hp, {"train": sentence_pairs()})
    run = subprocess.run([sys.executable, str(TRAIN)], capture_output=True, text=True, timeout=240,
                         env=subprocess_env(base, OBJECT2VEC_NPROC_PER_HOST="2",
                                            OBJECT2VEC_MASTER_PORT=str(free_port())))
    assert run.returncode == 0, run.stdout[-3000:]
    assert run.stdout.count("unigram tokenizer trained") == 1  # rank 0 alone
    loaded = load_artifact(base / "model")
    assert loaded.text[0] is not None and loaded.text[0].vocab_size <= 100


def test_early_stopping_on_retrieval_mrr_through_container_train(tmp_path):
    """A real job with early_stopping_metric=retrieval_mrr: every epoch prints the validation MRR and
    hits@1 lines SageMaker scrapes, metrics.json holds them, and the epoch kept is the one with the
    highest MRR (the log says so)."""
    hp = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "60", "enc0_max_seq_len": "10",
          "enc1_network": "enc0", "tied_token_embedding_weight": "true", "enc_dim": "16",
          "epochs": "4", "early_stopping_patience": "5", "mini_batch_size": "16", "learning_rate": "0.05",
          "in_batch_softmax_weight": "1", "early_stopping_metric": "retrieval_mrr"}
    base = make_tree(tmp_path, hp, {"train": sentence_pairs(120), "validation": sentence_pairs(40, 1)})
    out = train(base)
    assert out.returncode == 0, out.stdout + out.stderr
    log = out.stdout + out.stderr
    mrr = [float(line.rsplit("=", 1)[1]) for line in log.splitlines()
           if "#quality_metric" in line and "validation retrieval_mrr <score>=" in line]
    assert len(mrr) == 4 and all(0 < m <= 1 for m in mrr), log
    assert log.count("validation retrieval_accuracy <score>=") == 4, log
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    history = [e["validation:retrieval_mrr"] for e in metrics["epochs"]]
    assert history == pytest.approx(mrr, rel=1e-4)
    assert metrics["best_epoch"] == int(np.argmax(history))
    assert f"keeping the weights of epoch {metrics['best_epoch']} (highest validation retrieval_mrr" in log


def documents(n: int, seed: int) -> list[dict]:
    """Documents of 2-5 sentences, each document on one topic."""
    rng = np.random.default_rng(seed)
    return [{"document": [sentence(rng, i % 3, 5) for _ in range(int(rng.integers(2, 6)))]} for i in range(n)]


DOCUMENT_HP = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "60", "enc0_max_seq_len": "30",
               "enc0_tokenizer": "wordlevel", "enc_dim": "16", "epochs": "3", "mini_batch_size": "16",
               "pairs_per_document": "2", "negative_sampling_rate": "1", "learning_rate": "0.05"}


def test_a_document_job_draws_pairs_in_the_job_the_same_on_two_processes(tmp_path):
    """A train channel of documents and a validation channel of documents, through container/train
    on one process and on two: the drawn pairs agree on every rank (the models match), the
    validation MRR is scraped, and the model embeds text."""
    hp = {**DOCUMENT_HP, "early_stopping_metric": "retrieval_mrr"}
    channels = {"train": documents(60, 0), "validation": documents(12, 1)}
    one, two = (make_tree(tmp_path / name, hp, channels) for name in ("one", "two"))
    env = subprocess_env(two, OBJECT2VEC_NPROC_PER_HOST="2", OBJECT2VEC_MASTER_PORT=str(free_port()))
    runs = [train(one), subprocess.run([sys.executable, str(TRAIN)], capture_output=True, text=True,
                                       timeout=240, env=env)]
    for run in runs:
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    log = runs[0].stdout + runs[0].stderr
    assert "channel train: 60 documents" in log and "channel validation: 12 documents" in log
    assert log.count("validation retrieval_mrr <score>=") == 3
    a, b = (torch.load(base / "model" / "object2vec.pt", weights_only=True)["state_dict"]
            for base in (one, two))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    predictor = Predictor(load_artifact(one / "model"))
    assert len(by_instance(predictor.predict([{"in0": "Cat dog mat."}]))[0]["embeddings"]) == 16


def test_a_document_job_with_hard_negatives_trains_on_two_processes(tmp_path):
    """hard_negatives through container/train on two processes: each rank mines its neighbours
    before every epoch and takes its positives with their own negatives (the in-batch softmax is
    per process, so unlike the test above the model is not the one-process model)."""
    hp = {**DOCUMENT_HP, "early_stopping_metric": "retrieval_mrr", "hard_negatives": "1",
          "negative_sampling_rate": "0", "in_batch_softmax_weight": "1"}
    base = make_tree(tmp_path, hp, {"train": documents(60, 0), "validation": documents(12, 1)})
    env = subprocess_env(base, OBJECT2VEC_NPROC_PER_HOST="2", OBJECT2VEC_MASTER_PORT=str(free_port()))
    run = subprocess.run([sys.executable, str(TRAIN)], capture_output=True, text=True, timeout=240, env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert log.count("hard_negatives: the 10 nearest of each of 60 documents mined") >= 3, log[-3000:]
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3 and metrics["epochs"][-1]["validation:retrieval_mrr"] > 0.3


@pytest.mark.parametrize("change, channel, words", [
    ({}, [{"document": ["Cat dog.", "Mat pet."]}, {"document": ["Rain cloud.", ""]}],
     ["data.jsonl, line 2: sentence 1 of 'document' has no token"]),
    ({}, [{"document": ["Cat dog.", "Mat pet."]}, {"in0": "Cat.", "in1": "Dog.", "label": 1}],
     ["line 2", "documents or pairs"]),
    ({"negative_sampling_rate": "0"}, [{"document": ["Cat dog.", "Mat pet."]}],
     ["negative_sampling_rate >= 1 or in_batch_softmax_weight > 0"]),
])
def test_bad_document_jobs_fail_with_a_clear_reason(tmp_path, change, channel, words):
    base = make_tree(tmp_path, {**DOCUMENT_HP, **change}, {"train": channel})
    run = train(base)
    assert run.returncode == 2, run.stdout + run.stderr
    failure = (base / "output" / "failure").read_text()
    assert all(w in failure for w in words), failure
    assert "Traceback" not in run.stdout + run.stderr
