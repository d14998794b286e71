"""The comparator (object2vec.model.comparator): its ops on literal tensors, in comparator_list
order."""

from __future__ import annotations

import pytest
import torch
from helpers import COMPARATOR_LISTS

from object2vec.model.comparator import Comparator

pytestmark = pytest.mark.usefixtures("one_thread")

U = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
V = torch.tensor([[2.0, 0.0], [-1.0, 1.0]])
EXPECTED = {"hadamard": [[2.0, 0.0], [-3.0, -4.0]],
            "concat": [[1.0, 2.0, 2.0, 0.0], [3.0, -4.0, -1.0, 1.0]],
            "abs_diff": [[1.0, 2.0], [4.0, 5.0]]}


@pytest.mark.parametrize("names", COMPARATOR_LISTS, ids=[",".join(c) for c in COMPARATOR_LISTS])
def test_comparator_concatenates_the_ops_in_list_order(names):
    """hadamard = u*v, concat = [u; v], abs_diff = |u - v|, concatenated in comparator_list
    order."""
    comparator = Comparator(names, dim=2)
    expected = torch.cat([torch.tensor(EXPECTED[n]) for n in names], dim=1)
    assert torch.equal(comparator(U, V), expected)
    assert comparator.out_dim == expected.shape[1]
