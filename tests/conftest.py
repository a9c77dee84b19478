"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    # Tiny FFTs on two threads cost ~400x more than on one (thread start-up dominates).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
