"""The README stays true to the code: its metric regexes match the trainer's real log, and its
hyperparameter reference names every hyperparameter the parser knows."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess

import pytest
from helpers import REPO, free_port, make_tree, subprocess_env, tiny_transformer

from object2vec.config.hyperparameters import SPECS

README = (REPO / "README.md").read_text()


def metric_definitions() -> dict[str, re.Pattern]:
    found = re.findall(r'\{"Name": "([^"]+)", "Regex": r"([^"]+)"\}', README)
    return {name: re.compile(regex) for name, regex in found}


def train_log(tmp_path, output_layer: str) -> str:
    rng = random.Random(0)
    recs = [{"in0": [rng.randrange(20)], "in1": [rng.randrange(20)], "label": rng.randrange(2)}
            for _ in range(64)]
    hp = dict(enc0_max_seq_len=2, enc0_vocab_size=20, enc0_network="pooled_embedding", enc_dim=4,
              mlp_dim=4, epochs=2, output_layer=output_layer)
    base = make_tree(tmp_path / output_layer, hp, {"train": recs, "validation": recs, "test": recs},
                     {"current_host": "algo-7", "hosts": ["algo-7"]})
    out = subprocess.run([str(REPO / "container" / "train")], cwd=tmp_path, env=subprocess_env(base),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_readme_lists_every_metric_the_trainer_prints():
    assert set(metric_definitions()) == {
        f"{split}:{m}" for split in ("train", "validation", "test")
        for m in ("accuracy", "cross_entropy", "mean_squared_error")} | {"train:progress",
                                                                       "train:throughput"}


@pytest.mark.parametrize("output_layer", ["softmax", "mean_squared_error"])
def test_readme_metric_regexes_match_the_real_log(tmp_path, output_layer):
    log = train_log(tmp_path, output_layer)
    family = ("mean_squared_error",) if output_layer == "mean_squared_error" else (
        "accuracy", "cross_entropy")
    for name, regex in metric_definitions().items():
        values = regex.findall(log)
        metric = name.split(":")[1]
        if metric in ("progress", "throughput"):
            expected = 2  # once per epoch
        elif metric in family:
            expected = 1 if name.startswith("test") else 2
        else:
            expected = 0
        assert len(values) == expected, (name, values)
        assert all(float(v) >= 0 for v in values)
    assert "host=algo-7" in log


def test_readme_documents_every_hyperparameter():
    table = README[README.index("## Hyperparameters"):README.index("## Differences")]
    missing = [key for key in SPECS if f"`{key}`" not in table]
    assert not missing


def readme_blocks(section: str) -> dict[str, str]:
    """The fenced blocks of a README section, by language."""
    text = README[README.index(f"## {section}\n"):]
    text = text[: text.index("\n## ", 1)]
    return {lang: body for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, re.DOTALL)}


def run_readme_example(tmp_path, section: str, files: dict[str, str]) -> str:
    """Write the section's blocks into ``files`` (name -> language), run its bash block with only
    the tree and port moved, stop the server it started; the answer to its last curl line."""
    blocks = readme_blocks(section)
    for name, lang in files.items():
        (tmp_path / name).write_text(blocks[lang])
    port = str(free_port())
    script = (blocks["bash"].replace("/tmp/opt_ml", str(tmp_path / "opt_ml"))
              .replace("localhost:8080", f"localhost:{port}")
              .replace("container/", f"{REPO}/container/"))
    log = tmp_path / "out.log"  # a file, not a pipe: the backgrounded server keeps a pipe open
    with open(log, "w") as fh:
        proc = subprocess.Popen(["bash", "-ec", script], cwd=tmp_path, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=subprocess_env(SAGEMAKER_BIND_TO_PORT=port))
    try:
        proc.wait(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the backgrounded server
    out = log.read_text()
    assert proc.returncode == 0, out[-3000:]
    # the server logs to the same output, around curl's answer (which ends without a newline)
    return json.JSONDecoder().raw_decode(out, out.rindex('{"predictions"'))[0]


def test_the_text_in_example_runs_as_written(tmp_path):
    """README "Text in": the hand-written sentence pairs train through container/train, serve, and
    the curl line gets an embedding -- the lines of the README, with only the tree and port moved."""
    answer = run_readme_example(tmp_path, "Text in", {"train.jsonl": "jsonl", "hyperparameters.json": "json"})
    embedding = answer["predictions"][0]["embeddings"]
    assert len(embedding) == 16 and all(isinstance(x, float) for x in embedding)
    assert (tmp_path / "opt_ml" / "model" / "tokenizer-in0.json").is_file()


def test_the_neighbours_example_runs_as_written(tmp_path):
    """README "Neighbours out": the Text in job plus a catalog channel answers top_k with the
    catalog's ids, best first."""
    text_in = readme_blocks("Text in")
    (tmp_path / "train.jsonl").write_text(text_in["jsonl"])
    (tmp_path / "hyperparameters.json").write_text(text_in["json"])
    answer = run_readme_example(tmp_path, "Neighbours out", {"catalog.jsonl": "jsonl"})
    neighbors = answer["predictions"][0]["neighbors"]
    assert len(neighbors) == 2 and {n["id"] for n in neighbors} <= {"cats", "markets", "paris", "football"}
    assert neighbors[0]["score"] >= neighbors[1]["score"]


def test_the_documents_in_example_runs_as_written(tmp_path):
    """README "Documents in": a train channel of documents trains (pairs drawn in the job) and the
    endpoint embeds a sentence and a document."""
    answer = run_readme_example(tmp_path, "Documents in",
                                {"documents.jsonl": "jsonl", "hyperparameters.json": "json"})
    embeddings = [p["embeddings"] for p in answer["predictions"]]
    assert len(embeddings) == 2 and all(len(e) == 16 for e in embeddings)
    log = (tmp_path / "out.log").read_text()
    assert "channel train: 4 documents, 12 sentences" in log


def test_the_recommended_document_configuration_is_the_benchmarked_one():
    """README "Recommended configuration for document embedding": its block parses, and it is the
    documents row benchmarks/doc_retrieval.py measured (setting for setting, but the vocabulary
    budget, which the benchmark takes from the corpus)."""
    import importlib.util

    from object2vec.config.hyperparameters import parse_hyperparameters

    spec = importlib.util.spec_from_file_location("doc_retrieval", REPO / "benchmarks" / "doc_retrieval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    block = json.loads(readme_blocks("Recommended configuration for document embedding")["json"])
    changes, max_len, documents = bench.ROWS["documents"]
    measured = {**bench.COMPATIBLE, **changes, "enc0_max_seq_len": str(max_len),
                "enc0_vocab_size": block["enc0_vocab_size"]}
    assert documents
    readme, benchmark = (parse_hyperparameters(hp).to_dict() for hp in (block, measured))
    assert readme == benchmark


def test_the_transformer_example_runs_as_written(tmp_path):
    """README "A pretrained transformer encoder": the Documents in channel fine-tunes a model folder
    from the auxiliary channel (a tiny random BERT stands in for MiniLM, offline), and the endpoint
    embeds text (enc_dim 384: the tiny model's 16 are projected); the artifact carries the
    fine-tuned folder."""
    (tmp_path / "documents.jsonl").write_text(readme_blocks("Documents in")["jsonl"])
    tiny_transformer(tmp_path / "all-MiniLM-L6-v2", positions=130)
    answer = run_readme_example(tmp_path, "A pretrained transformer encoder",
                                {"hyperparameters.json": "json"})
    embeddings = [p["embeddings"] for p in answer["predictions"]]
    assert len(embeddings) == 2 and all(len(e) == 384 for e in embeddings)
    assert (tmp_path / "opt_ml" / "model" / "transformer-in0" / "model.safetensors").is_file()
