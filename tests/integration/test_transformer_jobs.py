"""``encN_network=transformer`` through the real ``container/train`` and ``container/serve``: a tied
text job fine-tuning a tiny BERT folder from the auxiliary channel (``helpers.tiny_transformer``);
its artifact (a Hugging Face model folder beside object2vec.pt); the server answering text and the
tokenizer's ids for it with what the Hugging Face model gives; a folder whose weights are only a
pickle failing the job as a user error; a job stopped by SIGTERM resuming from its checkpoint to
the model of the job that was not stopped.

The three training jobs of the first phase start at once; the resumed job runs beside the server."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TRAIN, free_port, make_tree, subprocess_env, tiny_transformer
from safetensors.torch import load_file
from test_serve import Server, invoke, ok_json

from object2vec.artifact import load_artifact
from object2vec.model.tokens import Tokens

pytestmark = pytest.mark.slow

DEADLINE_S = 180
# one OpenMP thread per process: the jobs and the server share the cores, and a transformer's many
# tiny ops on spin-waiting thread pools of several processes get far slower, not faster
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
CLS, SEP = 2, 3  # the tiny tokenizer's [CLS] and [SEP]
MAX_LEN = 12
TOPICS = [("news", "vote", "party", "law", "court"), ("sport", "game", "team", "goal", "match", "player"),
          ("film", "actor", "star"), ("music", "song", "album"), ("market", "bank", "price"),
          ("rain", "storm", "sun")]
HP = {"enc0_network": "transformer", "enc0_pretrained_model": "tiny", "enc0_max_seq_len": MAX_LEN,
      "enc1_network": "enc0", "tied_token_embedding_weight": "true", "enc_dim": 8, "mlp_dim": 16,
      "epochs": 3, "mini_batch_size": 32, "negative_sampling_rate": 1, "in_batch_softmax_weight": 0.5,
      "learning_rate": 0.01, "transformer_learning_rate": 0.001, "gradient_accumulation_steps": 2,
      "early_stopping_metric": "retrieval_mrr", "early_stopping_patience": 5}


def sentences(n: int, seed: int) -> list[dict]:
    """Pairs (label 1) of sentences on one topic each, with filler words and an unknown word now
    and then."""
    rng = random.Random(seed)
    filler = ["the", "a", "of", "in", "is", "it", "unknownword"]

    def text(topic: tuple[str, ...], k: int) -> str:
        return " ".join(rng.choice(topic) if rng.random() < 0.7 else rng.choice(filler) for _ in range(k))

    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        out.append({"label": 1, "in0": text(topic, rng.randint(2, 6)).capitalize() + ".",
                    "in1": text(topic, rng.randint(3, 9))})
    return out


def tree(base: Path, weights: str = "safetensors") -> Path:
    make_tree(base, HP, {"train": sentences(600, 0), "validation": sentences(60, 1), "auxiliary": []})
    folder = tiny_transformer(base / "input" / "data" / "auxiliary" / "tiny")
    if weights == "pickle":  # the same weights, as the pickle an older save_pretrained wrote
        torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return base


class Job:
    """A ``container/train`` process over ``base``, its log in a file (no pipe to block on)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.log = base.parent / f"{base.name}-{len(list(base.parent.glob(f'{base.name}-*.log')))}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([str(TRAIN)], cwd=base.parent, stdout=log, stderr=subprocess.STDOUT,
                                         env=subprocess_env(base, **ONE_THREAD))

    def finish(self) -> tuple[int, str]:
        try:
            self.proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_for(path: Path, job: Job, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert job.proc.poll() is None, job.log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Phase 1, at once: the job (uninterrupted), the same job with a checkpoint folder (stopped by
    SIGTERM once its first checkpoint is written) and the pickle-only job. Phase 2: the stopped job
    again (resumes), beside a server of the first job's model."""
    root = tmp_path_factory.mktemp("transformer_jobs")
    trees = {"whole": tree(root / "whole"), "stopped": tree(root / "stopped"),
             "pickle": tree(root / "pickle", weights="pickle")}
    (trees["stopped"] / "checkpoints").mkdir()
    started = {name: Job(base) for name, base in trees.items()}
    try:
        wait_for(trees["stopped"] / "checkpoints" / "object2vec-checkpoint.pt", started["stopped"])
        started["stopped"].proc.send_signal(signal.SIGTERM)
        done = {name: job.finish() for name, job in started.items()}
    finally:
        for job in started.values():
            job.stop()
    code, log = done["whole"]
    assert code == 0, log[-3000:]
    done["stopped_left_a_model"] = (trees["stopped"] / "model").exists()
    server = Server(trees["whole"], tmp_path_factory.mktemp("cwd"), **ONE_THREAD)
    resumed = None
    try:
        resumed = Job(trees["stopped"])
        server.wait_ready()
        done["resumed"] = resumed.finish()
        yield trees, done, server
    finally:
        server.stop()
        if resumed is not None:
            resumed.stop()


@pytest.fixture(scope="module")
def whole(jobs):
    trees, done, server = jobs
    return trees["whole"], load_artifact(trees["whole"] / "model")


def test_the_job_fine_tunes_the_folder_s_weights(jobs, whole):
    _, done, _ = jobs
    log = done["whole"][1]
    assert "enc0: bert model from tiny: hidden size 16, 40 tokens, special tokens [2] + [3]" in log
    assert "enc0: pretrained weights loaded from tiny; 0 of 2 layers frozen" in log
    assert "enc1: enc0's transformer (tied_token_embedding_weight=True)" in log
    base, loaded = whole
    pretrained = load_file(str(base / "input" / "data" / "auxiliary" / "tiny" / "model.safetensors"))
    table = loaded.model.embedding(0).weight
    assert table.shape == (40, 16) and not torch.equal(table, pretrained["embeddings.word_embeddings.weight"])
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3 and "validation:retrieval_mrr" in metrics["epochs"][0]


def test_the_artifact_holds_the_transformer_as_a_hugging_face_folder(whole):
    from transformers import AutoModel

    base, loaded = whole
    model_dir = base / "model"
    desc = json.loads((model_dir / "object2vec.json").read_text())
    assert desc["format_version"] == 3
    assert desc["transformers"] == {side: {"folder": "transformer-in0", "prefix": [CLS], "suffix": [SEP]}
                                    for side in ("in0", "in1")}
    assert sorted(p.name for p in (model_dir / "transformer-in0").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    state = torch.load(model_dir / "object2vec.pt", weights_only=True)["state_dict"]
    assert not [k for k in state if ".transformer." in k or k.startswith("embeddings.")]
    hf = AutoModel.from_pretrained(model_dir / "transformer-in0")
    assert torch.equal(hf.get_input_embeddings().weight, loaded.model.embedding(0).weight)
    assert loaded.model.encoders[0] is loaded.model.encoders[1]


def embeddings_by_hugging_face(base: Path, loaded, ids: list[int]) -> np.ndarray:
    """What the artifact's Hugging Face folder gives for ``ids``: the mean of the last hidden state of
    [CLS] ids [SEP], projected to enc_dim by the artifact's projection."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(base / "model" / "transformer-in0").eval()
    with torch.inference_mode():
        pooled = hf(input_ids=torch.tensor([[CLS, *ids, SEP]])).last_hidden_state[0].mean(0)
        return loaded.model.encoders[0].proj(pooled).numpy()


def test_text_in_is_embedded_as_the_hugging_face_model_embeds_it(jobs, whole):
    _, _, server = jobs
    base, loaded = whole
    texts = ["News of the vote.", "The team scored a goal in the match", "rain"]
    got = ok_json(invoke(server, {"instances": [{"in0": t} for t in texts] + [{"in1": texts[1]}]}))
    tokenizer = loaded.text[0]
    for text, answer in zip(texts, got):
        ids = tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
        assert CLS not in ids and SEP not in ids
        assert np.allclose(answer["embeddings"], embeddings_by_hugging_face(base, loaded, ids), atol=1e-5)
    assert np.allclose(got[3]["embeddings"], got[1]["embeddings"], atol=1e-6)  # tied: one encoder


def test_the_tokenizer_s_ids_give_the_text_s_embeddings_and_scores(jobs, whole):
    _, _, server = jobs
    base, loaded = whole
    tokenizer = loaded.text[0].tokenizer
    pairs = [("Film star and actor", "the album of a song"), ("bank price", "market price of the bank")]
    ids = [[tokenizer.encode(t, add_special_tokens=False).ids for t in pair] for pair in pairs]
    text = ok_json(invoke(server, {"instances": [{"in0": a, "in1": b} for a, b in pairs]
                                   + [{"in0": pairs[0][0]}]}))
    by_ids = ok_json(invoke(server, {"instances": [{"in0": a, "in1": b} for a, b in ids]
                                     + [{"in0": ids[0][0]}]}))
    with torch.inference_mode():
        scores = loaded.model.scores(Tokens.from_lists([a for a, _ in ids]),
                                     Tokens.from_lists([b for _, b in ids]))
    for i in range(2):
        assert np.allclose(text[i]["scores"], by_ids[i]["scores"], atol=1e-6)
        assert np.allclose(text[i]["scores"], scores[i].numpy(), atol=1e-5)
    assert np.allclose(text[2]["embeddings"], by_ids[2]["embeddings"], atol=1e-6)


def test_infer_max_seqlens_past_the_model_s_positions_reads_what_the_model_can(jobs, whole):
    """The tiny model reads 40 positions: of 50 ids with infer_max_seqlens=60,60, the first 38."""
    _, _, server = jobs
    base, loaded = whole
    ids = [5 + i % 30 for i in range(50)]
    got = ok_json(invoke(server, {"instances": [{"in0": ids}, {"in0": ids[:38]}]},
                         "application/json; infer_max_seqlens=60,60"))
    assert np.allclose(got[0]["embeddings"], got[1]["embeddings"], atol=1e-6)
    assert np.allclose(got[0]["embeddings"], embeddings_by_hugging_face(base, loaded, ids[:38]), atol=1e-5)


def test_a_folder_with_pickled_weights_only_fails_the_job(jobs):
    trees, done, _ = jobs
    code, log = done["pickle"]
    assert code == 2, log[-3000:]
    reason = (trees["pickle"] / "output" / "failure").read_text()
    assert reason.startswith("ClientError: enc0_pretrained_model tiny: the folder holds its weights only "
                             "as a pickle (pytorch_model.bin)"), reason
    assert "safetensors" in reason and "Traceback" not in log
    assert not (trees["pickle"] / "model").exists()


def test_a_stopped_job_resumes_to_the_model_of_the_job_that_was_not_stopped(jobs, whole):
    trees, done, _ = jobs
    code, log = done["stopped"]
    assert code == 128 + signal.SIGTERM, log[-3000:]
    assert "stopped by SIGTERM" in log and "checkpoint saved" in log
    assert not done["stopped_left_a_model"]
    code, log = done["resumed"]
    assert code == 0, log[-3000:]
    assert "resumed from checkpoint" in log
    reference = whole[1].model.state_dict()
    resumed = load_artifact(trees["stopped"] / "model").model.state_dict()
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-6, msg=key)
    ref = json.loads((trees["whole"] / "output" / "data" / "metrics.json").read_text())
    run = json.loads((trees["stopped"] / "output" / "data" / "metrics.json").read_text())
    assert run["best_epoch"] == ref["best_epoch"]
    for r, m in zip(ref["epochs"], run["epochs"], strict=True):
        assert m["validation:retrieval_mrr"] == pytest.approx(r["validation:retrieval_mrr"], abs=1e-6)


def test_two_processes_train_the_model_of_one(tmp_path):
    """DistributedDataParallel over a tied transformer (one module read by both sides): two gloo
    processes sharing each global batch train the model one process trains (no dropout, no in-batch
    softmax, whose negatives are each process's share)."""
    hp = {**HP, "in_batch_softmax_weight": 0, "gradient_accumulation_steps": 1, "epochs": 2,
          "early_stopping_metric": "loss"}
    bases = {}
    for name in ("one", "two"):
        bases[name] = make_tree(tmp_path / name, hp, {"train": sentences(200, 0), "auxiliary": []})
        tiny_transformer(bases[name] / "input" / "data" / "auxiliary" / "tiny", dropout=0.0)
    env = subprocess_env(bases["two"], OBJECT2VEC_NPROC_PER_HOST="2",
                         OBJECT2VEC_MASTER_PORT=str(free_port()), **ONE_THREAD)
    runs = [subprocess.run([str(TRAIN)], capture_output=True, text=True, timeout=DEADLINE_S,
                           env=subprocess_env(bases["one"], **ONE_THREAD)),
            subprocess.run([str(TRAIN)], capture_output=True, text=True, timeout=DEADLINE_S, env=env)]
    for run in runs:
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    one, two = (load_artifact(base / "model").model.state_dict() for base in bases.values())
    moved = load_file(str(bases["one"] / "input" / "data" / "auxiliary" / "tiny" / "model.safetensors"))
    assert not torch.equal(one["encoders.0.transformer.encoder.layer.1.output.dense.weight"],
                           moved["encoder.layer.1.output.dense.weight"])  # it trained
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-4, atol=1e-5, msg=key)
