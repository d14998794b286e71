"""``hard_negatives`` (extension): each training document's nearest other documents under the current
model, mined before every epoch, from which the sampler draws a pair's hard negatives.

Why: the in-batch softmax's negatives are the batch's other documents, nearly all of them easy ones
(another topic) once the model has learned a little; what hits@1 needs is telling a document from its
nearest neighbours. Mining with the current model (ANCE, Xiong et al. 2021) finds those, and re-mining
every epoch keeps them hard as the model improves. The documents are embedded and searched with the
catalog's own pieces (:func:`~object2vec.neighbors.embed_catalog`, FAISS through
:class:`~object2vec.neighbors.CatalogIndex`: exact up to 100,000 documents, approximate above).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from object2vec.data.catalog import Catalog
from object2vec.data.documents import DocumentData
from object2vec.neighbors import CatalogIndex, embed_catalog

log = logging.getLogger(__name__)

# A pair's hard negatives come from its document's POOL nearest others, not the very nearest only:
# the nearest is too often the same story told twice (a false negative), and a pool varies them.
POOL = 10


def mine_neighbours(model: torch.nn.Module, docs: DocumentData, device: torch.device | str,
                    pool: int = POOL) -> np.ndarray:
    """``(D, k)`` int64: the ``k = min(pool, D - 1)`` documents nearest to each document (itself
    left out), by the cosine of their side-1 encodings (the side that reads the rest of a
    document), whole documents cut to ``enc1_max_seq_len``. Leaves the model in eval mode."""
    n = len(docs)
    k = min(pool, n - 1)
    start = time.perf_counter()
    vectors = embed_catalog(model, Catalog(list(range(n)), 1, docs.whole(1)), device)  # (D, enc_dim)
    _, rows = CatalogIndex.build(vectors, list(range(n)), side=1).search_rows(vectors, k + 1)  # (D, k+1)
    others = (rows != np.arange(n)[:, None]) & (rows >= 0)  # itself (or an ivf miss, -1) left out
    first = np.argsort(~others, axis=1, kind="stable")[:, :k]  # the first k others, best first
    found = np.take_along_axis(rows, first, axis=1)
    valid = np.take_along_axis(others, first, axis=1)
    # an approximate search can find fewer than k others: the next documents in file order fill in
    filler = (np.arange(n)[:, None] + 1 + np.arange(k)[None]) % n
    neighbours = np.where(valid, found, filler).astype(np.int64)
    log.info("hard_negatives: the %d nearest of each of %d documents mined in %.1f s", k, n,
             time.perf_counter() - start)
    return neighbours
