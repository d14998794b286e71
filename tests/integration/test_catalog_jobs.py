"""Neighbours out, through the real ``container/train`` and ``container/serve``: a job with a catalog
channel saves its index in the model; ``top_k`` instances get the catalog's nearest items in every
format, beside embeddings and scores in the same request; a model without a catalog says so."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import TRAIN, make_tree, subprocess_env, write_jsonl
from test_serve import Server, invoke, ok_json, ok_jsonlines

from object2vec.artifact import load_artifact
from object2vec.serving.predictor import Predictor, by_instance

pytestmark = pytest.mark.slow

HP = {"enc0_network": "pooled_embedding", "enc0_vocab_size": "40", "enc0_max_seq_len": "5",
      "enc_dim": "8", "epochs": "2", "mini_batch_size": "16"}


def records(n: int = 64, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"in0": rng.integers(0, 40, 3).tolist(), "in1": rng.integers(0, 40, 4).tolist(),
             "label": int(rng.integers(0, 2))} for _ in range(n)]


ITEMS = [{"id": f"item-{i}", "in1": [i % 40, (3 * i) % 40]} for i in range(150)]


@pytest.fixture(scope="module")
def catalog_server(tmp_path_factory):
    base = make_tree(tmp_path_factory.mktemp("opt_ml"), HP, {"train": records()})
    write_jsonl(base / "input" / "data" / "catalog" / "items.jsonl", ITEMS)
    run = subprocess.run([sys.executable, str(TRAIN)], env=subprocess_env(base), capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "channel catalog: 150 items (in1)" in run.stdout
    assert "catalog: 150 items embedded" in run.stdout and "flat index built" in run.stdout
    server = Server(base, tmp_path_factory.mktemp("cwd"))
    try:
        server.wait_ready()
        yield server, Predictor.from_model_dir(base / "model"), base
    finally:
        server.stop()


def check_neighbors(predictor: Predictor, query: dict, got: list[dict], k: int) -> None:
    """``got`` are k items with the highest cosine between their enc1 embedding and the query's
    (items with equal sequences tie: their order is free), best first, each with its cosine."""
    items = by_instance(predictor.predict([{"in1": item["in1"]} for item in ITEMS]))
    matrix = np.array([row["embeddings"] for row in items])
    side = "in0" if "in0" in query else "in1"
    q = by_instance(predictor.predict([{side: query[side]}]))[0]["embeddings"]
    cosine = dict(zip((item["id"] for item in ITEMS),
                      matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))))
    assert len(got) == k
    assert [n["score"] for n in got] == pytest.approx(sorted(cosine.values(), reverse=True)[:k], abs=1e-5)
    assert [n["score"] for n in got] == pytest.approx([cosine[n["id"]] for n in got], abs=1e-5)


def test_the_artifact_holds_the_index_and_ids(catalog_server):
    _, _, base = catalog_server
    desc = json.loads((base / "model" / "object2vec.json").read_text())
    assert desc["format_version"] == 2
    assert desc["catalog"] == {"index": "catalog.faiss", "ids": "catalog.json", "kind": "flat", "items": 150,
                               "tokens": "catalog-tokens.npz"}
    loaded = load_artifact(base / "model")
    assert loaded.catalog.ids == [item["id"] for item in ITEMS] and loaded.catalog.side == 1


def test_top_k_in_json_mixed_with_embeddings_and_scores(catalog_server):
    server, predictor, _ = catalog_server
    query = {"in0": [1, 2, 3]}
    got = ok_json(invoke(server, {"instances": [
        {**query, "top_k": 5}, {"in0": [4]}, {"in0": [1], "in1": [2]}, {"in1": [7, 8], "top_k": 1}]}))
    check_neighbors(predictor, query, got[0]["neighbors"], 5)
    assert list(got[1]) == ["embeddings"] and list(got[2]) == ["scores"]
    check_neighbors(predictor, {"in1": [7, 8]}, got[3]["neighbors"], 1)


def test_top_k_in_json_lines_and_batch_transform(catalog_server):
    server, predictor, _ = catalog_server
    body = "\n".join(json.dumps(line) for line in [{"in0": [5], "top_k": 3}, {"in0": [6]}])
    got = ok_jsonlines(invoke(server, body, "application/jsonlines", accept="application/jsonlines"))
    check_neighbors(predictor, {"in0": [5]}, got[0]["neighbors"], 3)
    assert list(got[1]) == ["embeddings"]


@pytest.mark.parametrize("instance, words", [
    ({"in0": [1], "top_k": 0}, ['"top_k" must be an integer from 1 to 1000, got 0']),
    ({"in0": [1], "top_k": 1001}, ["got 1001"]),
    ({"in0": [1], "top_k": True}, ["got true"]),
    ({"in0": [1], "top_k": "5"}, ['got "5"']),
    ({"in0": [1], "in1": [2], "top_k": 2}, ['"top_k" needs exactly one of "in0" and "in1"']),
])
def test_top_k_limits_are_400s_naming_the_instance(catalog_server, instance, words):
    server, _, _ = catalog_server
    status, _, body = invoke(server, {"instances": [{"in0": [1]}, instance]})
    assert status == 400, body
    assert "instance 1" in body.decode()
    for word in words:
        assert word in json.loads(body)["error"], body


def test_k_beyond_the_catalog_returns_every_item(catalog_server):
    server, _, _ = catalog_server
    got = ok_json(invoke(server, {"instances": [{"in0": [1], "top_k": 1000}]}))
    assert len(got[0]["neighbors"]) == len(ITEMS)


def test_a_model_without_a_catalog_says_so(tmp_path):
    base = make_tree(tmp_path, HP, {"train": records()})
    run = subprocess.run([sys.executable, str(TRAIN)], env=subprocess_env(base), capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:]
    from object2vec.serving.predictor import InvalidInstance

    with pytest.raises(InvalidInstance, match="trained without a catalog channel"):
        Predictor.from_model_dir(base / "model").predict([{"in0": [1], "top_k": 3}])


def test_a_bad_catalog_fails_the_job_before_training(tmp_path):
    base = make_tree(tmp_path, HP, {"train": records()})
    write_jsonl(base / "input" / "data" / "catalog" / "items.jsonl", [ITEMS[0], ITEMS[1], ITEMS[0]])
    run = subprocess.run([sys.executable, str(TRAIN)], env=subprocess_env(base), capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 2
    failure = (base / "output" / "failure").read_text()
    assert 'items.jsonl, line 3: duplicate id "item-0" (first at' in failure
    assert "#quality_metric" not in run.stdout  # checked before the first epoch


def test_rerank_orders_the_nearest_items_by_the_pair_model(catalog_server):
    server, predictor, _ = catalog_server
    query = [1, 2, 3]
    got = ok_json(invoke(server, {"instances": [{"in0": query, "top_k": 4, "rerank": True}]}))[0]
    ids = [n["id"] for n in got["neighbors"]]
    scores = [n["score"] for n in got["neighbors"]]
    assert len(ids) == 4 == len(set(ids)) and scores == sorted(scores, reverse=True)
    item = {i["id"]: i["in1"] for i in ITEMS}
    pairs = by_instance(predictor.predict([{"in0": query, "in1": item[i]} for i in item]))
    model_score = {i: float(p["scores"][1]) for i, p in zip(item, pairs)}  # P(label 1)
    assert scores == pytest.approx([model_score[i] for i in ids], abs=1e-5)
    # 100 of the 150 items are candidates: the best reranked one beats at least 100 - 1 of them
    assert sum(s <= scores[0] + 1e-6 for s in model_score.values()) >= 100


@pytest.mark.parametrize("instance, words", [
    ({"in0": [1], "top_k": 2, "rerank": "yes"}, ['"rerank" must be true or false, got "yes"']),
    ({"in1": [1], "top_k": 2, "rerank": True}, ['the query must be the other side than the catalog\'s '
                                                'items ("in0")']),
])
def test_rerank_problems_are_400s(catalog_server, instance, words):
    server, _, _ = catalog_server
    status, _, body = invoke(server, {"instances": [instance]})
    assert status == 400, body
    for word in words:
        assert word in json.loads(body)["error"], body


def test_a_response_of_neighbours_over_the_payload_limit_is_a_413(catalog_server):
    from object2vec.serving.app import create_app

    _, predictor, _ = catalog_server
    client = create_app(predictor, max_payload_mb=1).test_client()
    many = {"instances": [{"in0": [i % 40], "top_k": 150} for i in range(300)]}
    resp = client.post("/invocations", json=many)
    assert resp.status_code == 413
    assert "over the 1 MB payload limit" in resp.get_json()["error"] and "top_k" in resp.get_json()["error"]
    assert client.post("/invocations", json={"instances": many["instances"][:5]}).status_code == 200
