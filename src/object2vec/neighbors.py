"""The catalog's vector index: items embedded by the trained model, searched with FAISS.

    index = CatalogIndex.build(vectors, ids, side=1, kind="auto", lists=0, probe=32)
    scores, ids = index.search(queries, k)            # best first
    index.save(model_dir); CatalogIndex.load(model_dir, enc_dim)

Similarity is the cosine of the embeddings (vectors are L2-normalised, then searched by inner
product) unless ``catalog_similarity=inner_product``. ``flat`` is exact search; ``ivf`` an inverted
file (k-means cells, ``probe`` cells searched per query) for large catalogs; ``auto`` is ``flat`` up to
:data:`EXACT_MAX` items. Saved as FAISS's own binary index file and a JSON list of item ids: nothing
is unpickled when a model loads.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from object2vec.data.catalog import Catalog
from object2vec.data.records import Side
from object2vec.errors import UserError
from object2vec.model.tokens import Tokens

log = logging.getLogger(__name__)


def _faiss():
    """FAISS, imported when a catalog is first built or loaded: a model without one never loads
    its 60 MB of native code. Its loader's INFO lines (which CPU build it tried) are kept out of
    the job's and the endpoint's logs."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss

EXACT_MAX = 100_000  # catalog_index=auto: exact search up to this many items, ivf above
INDEX_FILE, IDS_FILE, TOKENS_FILE = "catalog.faiss", "catalog.json", "catalog-tokens.npz"
TRAIN_SAMPLE = 64  # ivf: k-means training points per cell (FAISS warns below 39)
EMBED_BATCH = 1024  # items per forward pass when the catalog is embedded


def embed_catalog(model: torch.nn.Module, catalog: Catalog, device: torch.device | str = "cpu"
                  ) -> np.ndarray:
    """Every item's embedding by the catalog side's encoder: ``(items, enc_dim)`` float32, batched on
    ``device`` (at most ``EMBED_BATCH`` items and ``model.token_budget`` padded tokens per batch, as
    serving), with progress in the log about every tenth of a large catalog."""
    tokens, n = catalog.tokens, len(catalog.ids)
    out = np.empty((n, model.config.enc_dim), dtype=np.float32)
    longest = int(np.diff(tokens.offsets).max())
    step = max(1, min(EMBED_BATCH, model.token_budget // longest))
    start, next_report = time.perf_counter(), n // 10
    model.eval()
    with torch.inference_mode():
        for begin in range(0, n, step):
            end = min(n, begin + step)
            first, last = int(tokens.offsets[begin]), int(tokens.offsets[end])
            batch = Tokens.from_flat(tokens.ids[first:last].astype(np.int64),
                                     np.diff(tokens.offsets[begin:end + 1]))
            out[begin:end] = model.encode(catalog.side, batch.to(device)).float().cpu().numpy()
            if n >= 100_000 and end >= next_report:
                log.info("catalog: %d of %d items embedded (%.0f s)", end, n, time.perf_counter() - start)
                next_report += n // 10
    return out


@dataclass
class CatalogIndex:
    """The searchable catalog: a FAISS index over the items' embeddings and their ids."""

    index: Any  # a faiss.Index
    ids: list[str | int]
    side: int  # which encoder embedded the items (0 or 1)
    cosine: bool = True
    tokens: Side | None = None  # the items' token sequences (for re-ranking with the pair model)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: list[str | int], side: int, kind: str = "auto",
              lists: int = 0, probe: int = 32, cosine: bool = True,
              tokens: Side | None = None) -> CatalogIndex:
        """Index ``vectors (n, d)`` (float32). ``lists=0``: about ``sqrt(n)`` ivf cells. FAISS
        suggests 4-16 x sqrt(n), but k-means over that many cells is slow on a few cores; with
        sqrt(n) cells and 64 training points each, 1,000,000 clustered 300-d vectors indexed in 6 s
        on 2 cores with recall@10 1.000 at 32 cells probed (a draft benchmark, 2026-11-30)."""
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if cosine:
            faiss.normalize_L2(x)
        n, dim = x.shape
        if kind == "flat" or (kind == "auto" and n <= EXACT_MAX):
            index = faiss.IndexFlatIP(dim)
        else:
            cells = lists or max(1, min(n // 39, int(math.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).permutation(n)[: cells * TRAIN_SAMPLE]
            index.train(x[np.sort(sample)])
            index.nprobe = min(probe, cells)
        index.add(x)
        return cls(index, list(ids), side, cosine, tokens)

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, _faiss().IndexIVF) else "flat"

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items of each query ``(q, d)``: ``scores (q, k')`` best first and their
        rows ``(q, k')``, ``k' = min(k, items)``; an ivf search that finds fewer than k items in its
        cells fills the rest with row -1."""
        x = np.ascontiguousarray(queries, dtype=np.float32)
        if self.cosine:
            _faiss().normalize_L2(x)
        return self.index.search(x, min(k, len(self.ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str | int]]]:
        """:meth:`search_rows` with the items' ids in place of rows."""
        scores, rows = self.search_rows(queries, k)
        return scores, [[self.ids[r] for r in row if r >= 0] for row in rows]

    def item_tokens(self, rows: np.ndarray) -> list[np.ndarray]:
        """The token ids of the items at ``rows``."""
        assert self.tokens is not None
        offsets = self.tokens.offsets
        return [self.tokens.ids[offsets[r]:offsets[r + 1]] for r in rows]

    def save(self, model_dir: Path) -> dict[str, str]:
        """Write the index and ids; the artifact's description of them."""
        _faiss().write_index(self.index, str(model_dir / INDEX_FILE))
        if self.tokens is not None:  # numpy arrays only: read back with allow_pickle=False
            np.savez(model_dir / TOKENS_FILE, ids=self.tokens.ids, offsets=self.tokens.offsets)
        (model_dir / IDS_FILE).write_text(json.dumps({"side": f"in{self.side}", "cosine": self.cosine,
                                                      "ids": self.ids}))
        described = {"index": INDEX_FILE, "ids": IDS_FILE, "kind": self.kind, "items": len(self.ids)}
        return described | ({"tokens": TOKENS_FILE} if self.tokens is not None else {})

    @classmethod
    def load(cls, model_dir: Path, enc_dim: int) -> CatalogIndex:
        """Read what :meth:`save` wrote (the index memory-mapped), checked against the model's
        embedding size.

        Raises:
            UserError: a missing or unreadable file, or an index that is not this model's.
        """
        where = model_dir / INDEX_FILE
        try:
            # Memory-mapped: the vectors stay in the page cache, one copy shared by every serving
            # worker, instead of a private copy per worker (one per CPU by default: 16 x 1.2 GB for
            # 1,000,000 items of 300 floats). A 200,000 x 300 index (240 MB): RssAnon +231 MB read,
            # +2 MB mapped (flat and ivf alike).
            index = _faiss().read_index(str(where), _faiss().IO_FLAG_MMAP_IFC)
            saved = json.loads((model_dir / IDS_FILE).read_text())
            ids, side, cosine = saved["ids"], int(saved["side"][-1]), bool(saved["cosine"])
            tokens = None
            if (model_dir / TOKENS_FILE).is_file():
                with np.load(model_dir / TOKENS_FILE, allow_pickle=False) as saved_tokens:
                    tokens = Side(saved_tokens["ids"], saved_tokens["offsets"])
        except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"cannot read the model's catalog ({where}, {IDS_FILE}): {exc}") from None
        if tokens is not None and len(tokens.offsets) != len(ids) + 1:
            raise UserError(f"{model_dir / TOKENS_FILE} holds {len(tokens.offsets) - 1} items for "
                            f"{len(ids)} ids: not this model's catalog")
        if index.d != enc_dim or index.ntotal != len(ids):
            raise UserError(f"{where} holds {index.ntotal} vectors of size {index.d} for {len(ids)} ids, "
                            f"but the model's embeddings have size {enc_dim}: not this model's catalog")
        return cls(index, ids, side, cosine, tokens)
