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

import faiss
import numpy as np
import torch

from object2vec.data.catalog import Catalog
from object2vec.errors import UserError
from object2vec.model.tokens import Tokens

log = logging.getLogger(__name__)

EXACT_MAX = 100_000  # catalog_index=auto: exact search up to this many items, ivf above
INDEX_FILE, IDS_FILE = "catalog.faiss", "catalog.json"
TRAIN_SAMPLE = 256  # ivf: k-means training points per cell (FAISS warns below 39)
EMBED_BATCH = 1024  # items per forward pass when the catalog is embedded


def embed_catalog(model: torch.nn.Module, catalog: Catalog, device: torch.device | str = "cpu"
                  ) -> np.ndarray:
    """Every item's embedding by the catalog side's encoder: ``(items, enc_dim)`` float32, batched on
    ``device``, with progress in the log about every tenth of a large catalog."""
    tokens, n = catalog.tokens, len(catalog.ids)
    out = np.empty((n, model.config.enc_dim), dtype=np.float32)
    start, step, next_report = time.perf_counter(), EMBED_BATCH, n // 10
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

    index: faiss.Index
    ids: list[str | int]
    side: int  # which encoder embedded the items (0 or 1)
    cosine: bool = True

    @classmethod
    def build(cls, vectors: np.ndarray, ids: list[str | int], side: int, kind: str = "auto",
              lists: int = 0, probe: int = 32, cosine: bool = True) -> CatalogIndex:
        """Index ``vectors (n, d)`` (float32). ``lists=0``: about ``4 * sqrt(n)`` ivf cells."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if cosine:
            faiss.normalize_L2(x)
        n, dim = x.shape
        if kind == "flat" or (kind == "auto" and n <= EXACT_MAX):
            index = faiss.IndexFlatIP(dim)
        else:
            cells = lists or max(1, min(n // 39, int(4 * math.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).permutation(n)[: cells * TRAIN_SAMPLE]
            index.train(x[np.sort(sample)])
            index.nprobe = min(probe, cells)
        index.add(x)
        return cls(index, list(ids), side, cosine)

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexIVF) else "flat"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str | int]]]:
        """The ``k`` best items of each query ``(q, d)``: ``scores (q, k')`` best first and their ids,
        ``k' = min(k, items)``."""
        x = np.ascontiguousarray(queries, dtype=np.float32)
        if self.cosine:
            faiss.normalize_L2(x)
        scores, rows = self.index.search(x, min(k, len(self.ids)))
        # an ivf search can find fewer than k items in its cells: those slots come back as -1
        return scores, [[self.ids[r] for r in row if r >= 0] for row in rows]

    def save(self, model_dir: Path) -> dict[str, str]:
        """Write the index and ids; the artifact's description of them."""
        faiss.write_index(self.index, str(model_dir / INDEX_FILE))
        (model_dir / IDS_FILE).write_text(json.dumps({"side": f"in{self.side}", "cosine": self.cosine,
                                                      "ids": self.ids}))
        return {"index": INDEX_FILE, "ids": IDS_FILE, "kind": self.kind, "items": len(self.ids)}

    @classmethod
    def load(cls, model_dir: Path, enc_dim: int) -> CatalogIndex:
        """Read what :meth:`save` wrote, checked against the model's embedding size.

        Raises:
            UserError: a missing or unreadable file, or an index that is not this model's.
        """
        where = model_dir / INDEX_FILE
        try:
            index = faiss.read_index(str(where))
            saved = json.loads((model_dir / IDS_FILE).read_text())
            ids, side, cosine = saved["ids"], int(saved["side"][-1]), bool(saved["cosine"])
        except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"cannot read the model's catalog ({where}, {IDS_FILE}): {exc}") from None
        if index.d != enc_dim or index.ntotal != len(ids):
            raise UserError(f"{where} holds {index.ntotal} vectors of size {index.d} for {len(ids)} ids, "
                            f"but the model's embeddings have size {enc_dim}: not this model's catalog")
        return cls(index, ids, side, cosine)
