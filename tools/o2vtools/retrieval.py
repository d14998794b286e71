"""Retrieval figures the benchmarks share: where each query's own truth ranks."""

from __future__ import annotations

import numpy as np


def truth_ranks(queries: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """Rank of truth ``i`` for query ``i`` (rows of ``(n, d)`` arrays) by cosine similarity,
    1-based; ties count against it, and a zero row ties with everything."""
    q, t = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)  # zero rows stay zero
            for x in (np.asarray(queries, np.float64), np.asarray(truths, np.float64)))
    sims = q @ t.T
    return (sims >= np.diag(sims)[:, None]).sum(axis=1)  # (n,) includes the truth itself
