"""Fixtures shared by every test tier."""

import pytest
import torch
from helpers import CUDA_ONLY, REPO


@pytest.fixture
def repo():
    return REPO


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models run fastest on one thread (threads only add
    waiting on a busy 2-core machine), and timing does not depend on other jobs' load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA_ONLY)])
def device(request) -> torch.device:
    """Where a device-sensitive test runs: the CPU always, and CUDA where torch sees a GPU (those
    cases carry the ``cuda`` marker: ``pytest -m cuda`` runs just them, as tools/gpu_check.py does)."""
    return torch.device(request.param)
