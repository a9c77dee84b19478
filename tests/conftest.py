"""Shared test set-up."""

import pytest
import torch
from ctrl_c import pytest_configure, pytest_runtest_teardown  # noqa: F401 - hooks: Ctrl-C stops

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request) -> str:
    """A test that takes `device` runs on the CPU, and on CUDA where there is one."""
    return request.param


@pytest.fixture
def seeded():
    """seeded(seed) -> a CPU torch.Generator with that seed (each test names its own seeds)."""
    return lambda seed: torch.Generator().manual_seed(int(seed))


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    # Tiny FFTs on two threads cost ~400x more than on one (thread start-up dominates).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def grf_file(tmp_path_factory):
    """96 Gaussian random fields of 16 x 16 (default spectrum, seed 3) in an HDF5 training file."""
    import numpy as np

    from posterior_diffusion.simulators import simulate_fields, write_dataset_file

    path = tmp_path_factory.mktemp("data") / "grf16.h5"
    fields, attrs = simulate_fields("grf", (16, 16), num=96, seed=3)
    write_dataset_file(path, fields.astype(np.float32), attrs)
    return path
