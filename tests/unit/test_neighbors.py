"""object2vec.neighbors: exact and ivf indexes over a catalog's embeddings, cosine or inner product,
saved and loaded without pickle, checked against the model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import tolerance

from object2vec.errors import UserError
from object2vec.neighbors import CatalogIndex


def vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def exact_cosine(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    a = items / np.linalg.norm(items, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ a.T), axis=1, kind="stable")[:, :k]


def test_flat_is_exact_cosine_best_first():
    items, queries = vectors(500), vectors(20, seed=1)
    index = CatalogIndex.build(items, [f"item{i}" for i in range(500)], side=1)
    assert index.kind == "flat"
    scores, ids = index.search(queries, 5)
    assert ids == [[f"item{i}" for i in row] for row in exact_cosine(items, queries, 5)]
    assert np.all(np.diff(scores, axis=1) <= 1e-6) and np.all(np.abs(scores) <= 1 + 1e-5)


def test_inner_product_ranks_by_the_raw_dot_product():
    items = np.array([[1, 0], [10, 10]], np.float32)
    query = np.array([[1, 0.2]], np.float32)
    assert CatalogIndex.build(items, ["a", "b"], 1, cosine=False).search(query, 1)[1] == [["b"]]
    assert CatalogIndex.build(items, ["a", "b"], 1).search(query, 1)[1] == [["a"]]


def test_k_larger_than_the_catalog_gives_every_item():
    scores, ids = CatalogIndex.build(vectors(3), [1, 2, 3], 0).search(vectors(2, seed=3), 10)
    assert [sorted(row) for row in ids] == [[1, 2, 3], [1, 2, 3]] and scores.shape == (2, 3)


def test_ivf_finds_most_exact_neighbours():
    items, queries = vectors(4000, 32), vectors(50, 32, seed=2)
    index = CatalogIndex.build(items, list(range(4000)), 1, kind="ivf", lists=40, probe=20)
    assert index.kind == "ivf"
    _, ids = index.search(queries, 10)
    truth = exact_cosine(items, queries, 10)
    recall = np.mean([len(set(got) & set(true.tolist())) / 10 for got, true in zip(ids, truth)])
    assert recall >= 0.9, recall


def test_auto_is_flat_up_to_the_threshold(monkeypatch):
    monkeypatch.setattr("object2vec.neighbors.EXACT_MAX", 100)
    assert CatalogIndex.build(vectors(100), list(range(100)), 1).kind == "flat"
    assert CatalogIndex.build(vectors(101), list(range(101)), 1).kind == "ivf"


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_and_load_round_trip(tmp_path, kind):
    items = vectors(600)
    index = CatalogIndex.build(items, [f"x{i}" for i in range(600)], 0, kind=kind, lists=8, probe=8)
    described = index.save(tmp_path)
    assert described == {"index": "catalog.faiss", "ids": "catalog.json", "kind": kind, "items": 600}
    loaded = CatalogIndex.load(tmp_path, enc_dim=16)
    assert loaded.side == 0 and loaded.ids == index.ids and loaded.kind == kind
    queries = vectors(5, seed=9)
    assert loaded.search(queries, 4)[1] == index.search(queries, 4)[1]
    with pytest.raises(UserError, match="not this model's catalog"):
        CatalogIndex.load(tmp_path, enc_dim=32)
    (tmp_path / "catalog.faiss").write_bytes(b"nonsense")
    with pytest.raises(UserError, match="cannot read the model's catalog"):
        CatalogIndex.load(tmp_path, enc_dim=16)


LOAD_IN_A_FRESH_PROCESS = """
import sys
from pathlib import Path
import numpy as np
from object2vec.neighbors import CatalogIndex, _faiss

def anonymous_mb():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(x.split()[1]) for x in status if x.startswith("RssAnon:")) / 1024

_faiss()
before = anonymous_mb()
index = CatalogIndex.load(Path(sys.argv[1]), enc_dim=32)  # kept: a freed copy would not count
index.search(np.ones((50, 32), np.float32), 10)
print(anonymous_mb() - before)
"""


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_a_loaded_index_is_memory_mapped_not_copied(tmp_path, kind):
    """Serving workers share one copy of the vectors (the page cache): loading 25.6 MB of them adds
    file-backed pages, not private (anonymous) memory. Measured in a fresh process, whose allocator
    holds no freed memory that a copy could reuse."""
    CatalogIndex.build(vectors(200_000, dim=32), list(range(200_000)), 1, kind=kind).save(tmp_path)
    out = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(tmp_path)],
                         capture_output=True, text=True, check=True)
    assert float(out.stdout) < 10, (kind, out.stdout)  # a private copy would add 25.6 MB


def test_the_catalog_is_embedded_within_the_serving_token_budget(monkeypatch, device):
    """hcnn pads a batch to its longest item: batches of long items shrink to the token budget, with
    the same embeddings."""
    import torch

    from object2vec.config.hyperparameters import parse_hyperparameters
    from object2vec.data.catalog import Catalog
    from object2vec.data.records import Side
    from object2vec.model.object2vec import ModelConfig, Object2Vec
    from object2vec.neighbors import embed_catalog

    torch.manual_seed(0)
    hp = parse_hyperparameters({"enc0_network": "hcnn", "enc0_vocab_size": "30", "enc0_max_seq_len": "40",
                                "enc_dim": "8", "enc0_token_embedding_dim": "8"})
    model = Object2Vec(ModelConfig.from_hyperparameters(hp)).to(device)
    lengths = np.random.default_rng(0).integers(1, 41, 50)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.random.default_rng(1).integers(0, 30, int(offsets[-1])).astype(np.int32)
    catalog = Catalog(list(range(50)), 1, Side(ids, offsets))
    whole = embed_catalog(model, catalog, device)
    sizes = []
    original = model.encode
    monkeypatch.setattr(model, "encode",
                        lambda side, tokens: sizes.append(len(tokens)) or original(side, tokens))
    monkeypatch.setattr("object2vec.model.object2vec.TOKEN_BUDGET", 400)  # 10 items of the longest, 40
    assert np.allclose(embed_catalog(model, catalog, device), whole, **tolerance(device, 1e-5, 1e-6))
    assert max(sizes) == 10 and sum(sizes) == 50
