"""Batch sizes that fit: the memory estimate, the cap it puts on batches, the out-of-memory retry."""

from __future__ import annotations

import pytest
import torch

from forward_models import ForwardModel, GaussianNoise, Mask
from posterior_diffusion import memory
from posterior_diffusion.networks import UNet
from posterior_diffusion.networks.edm import EDMPrecond
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.priors.base import Prior
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.samplers.run import sample_posterior

SHAPE = (1, 16, 16)


def network_prior() -> NetworkPrior:
    torch.manual_seed(0)
    net = UNet(channels=1, base_channels=8, channel_mults=(1, 2), blocks_per_level=1)
    precond = EDMPrecond(net)
    precond.set_normalisation([0.0], 0.03)
    meta = {"field_shape": list(SHAPE), "data_std": 0.03, "hybrid": False, "network": {}}
    return NetworkPrior(precond, meta, source="test", checksum="0")


@pytest.fixture()
def problem():
    prior = GaussianPrior(default_power_spectrum(), SHAPE)
    mask = torch.ones(SHAPE[1:], dtype=torch.float64)
    mask[4:8, 4:10] = 0
    model = ForwardModel(Mask(mask), GaussianNoise(0.01, mask), SHAPE)
    g = torch.Generator().manual_seed(0)
    y = model.simulate(prior.sample(1, g)[0], g)
    return prior, model, y


def test_graph_bytes_count_the_network_activations_and_grow_with_the_map():
    prior = network_prior()
    sizes = {n: memory.graph_bytes(prior, (1, n, n), "cpu") for n in (16, 32, 64)}
    # At least the input and one feature map of 8 channels in float32 are saved.
    assert sizes[16] > 8 * 16 * 16 * 4
    # Activations grow with the pixels on top of a fixed part (the saved weights): each
    # doubling of the side adds 4x what the previous one added.
    growth = (sizes[64] - sizes[32]) / (sizes[32] - sizes[16])
    assert 3.8 < growth < 4.2


def test_analytic_priors_are_not_probed():
    prior = GaussianPrior(default_power_spectrum(), SHAPE)
    assert memory.graph_bytes(prior, SHAPE, "cpu") == 0
    per_member = memory.bytes_per_member(prior, SHAPE, "cpu")
    assert per_member == memory.STATE_COPIES * 16 * 16 * 8


def test_fitting_batch_size_divides_the_free_memory(monkeypatch):
    prior = GaussianPrior(default_power_spectrum(), SHAPE)
    per_member = memory.bytes_per_member(prior, SHAPE, "cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * per_member)
    fits, estimate = memory.fitting_batch_size(prior, SHAPE, "cpu", fraction=0.5)
    assert (fits, estimate) == (5, per_member)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 0)
    assert memory.fitting_batch_size(prior, SHAPE, "cpu")[0] == 1  # never below one member


def test_host_memory_is_read():
    assert memory.available_bytes("cpu") > 2**20


def test_a_batch_that_does_not_fit_is_reduced_with_a_warning_and_the_same_draws(
    problem, monkeypatch
):
    prior, model, y = problem
    reference, _ = sample_posterior(prior, model, y, 6, steps=6, batch_size=6, progress=False)
    per_member = memory.bytes_per_member(prior, SHAPE, "cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(2.9 * per_member / 0.7))
    with pytest.warns(UserWarning, match="batch size 6 does not fit"):
        samples, info = sample_posterior(prior, model, y, 6, steps=6, batch_size=6, progress=False)
    assert info["batch_size"] == 2
    assert torch.equal(samples, reference)


class RunsOutOfMemory(Prior):
    """The Gaussian prior, raising the allocator's error for batches larger than `limit`."""

    def __init__(self, inner: GaussianPrior, limit: int, error: Exception):
        super().__init__()
        self.inner, self.limit, self.error = inner, limit, error
        self.field_shape = inner.field_shape
        self.failures = 0

    def _check(self, x):
        if x.shape[0] > self.limit:
            self.failures += 1
            raise self.error

    def denoise(self, x, sigma):
        self._check(x)
        return self.inner.denoise(x, sigma)

    def linearize(self, x, sigma):
        self._check(x)
        return self.inner.linearize(x, sigma)

    def sigma_max(self):
        return self.inner.sigma_max()

    def sigma_min(self):
        return self.inner.sigma_min()


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
    ],
    ids=["cuda", "cpu"],
)
@pytest.mark.parametrize("sampler", ["guided", "dps"])
def test_out_of_memory_halves_the_batch_and_gives_the_same_ensemble(problem, error, sampler):
    prior, model, y = problem
    steps = 6 if sampler == "guided" else 20
    reference, ref_info = sample_posterior(
        prior, model, y, 8, sampler=sampler, steps=steps, batch_size=2, progress=False
    )
    flaky = RunsOutOfMemory(prior, limit=3, error=error)
    samples, info = sample_posterior(
        flaky, model, y, 8, sampler=sampler, steps=steps, batch_size=8, progress=False
    )
    assert flaky.failures == 2  # 8 -> 4 -> 2
    assert info["batch_size"] == 2
    assert torch.equal(samples, reference)
    # The failed attempts are not counted as work done (guided's CG stops per batch, so its
    # count depends on the batch size: compare with a batch-2 run).
    assert info["nfe_per_sample"] == ref_info["nfe_per_sample"]


def test_other_runtime_errors_are_not_retried(problem):
    prior, model, y = problem
    broken = RunsOutOfMemory(prior, limit=0, error=RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        sample_posterior(broken, model, y, 4, steps=4, batch_size=4, progress=False)
    assert broken.failures == 1
