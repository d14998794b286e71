"""o2vtools.retrieval.truth_ranks: the rank of each query's own truth by cosine similarity."""

import numpy as np
from o2vtools.retrieval import truth_ranks


def test_ranks_count_the_truth_and_every_tie_against_it():
    queries = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    truths = np.array([[3.0, 0.0], [1.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    # query 0: truth 0 ties truth 1 (same direction) -> rank 2; query 1: its truth is the worst of 4;
    # query 2: truths 2 and 3 tie at the top -> 2; query 3 (zero vector) ties with all -> 4
    assert truth_ranks(queries, truths).tolist() == [2, 4, 2, 4]


def test_the_scale_of_a_vector_does_not_matter():
    rng = np.random.default_rng(0)
    q, t = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    assert (truth_ranks(q, t) == truth_ranks(q * 7.0, t * rng.uniform(0.1, 3, (50, 1)))).all()
