"""Fixtures shared by every test tier."""

import pytest
import torch
from helpers import REPO


@pytest.fixture
def repo():
    return REPO


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
