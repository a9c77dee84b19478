"""The FFT exact posterior (Fourier-diagonal prior and model) against dense linear algebra."""

from __future__ import annotations

import pytest
import torch

from forward_models import (
    CorrelatedGaussianNoise,
    ForwardModel,
    GaussianNoise,
    Identity,
    Mask,
    PoissonNoise,
    Shear,
    Smoothing,
)
from forward_models.blur import Blur
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.references.gaussian import exact_posterior, fourier_exact_posterior

SHAPE = (12, 16)  # non-square, to catch transposed frequency grids


@pytest.fixture()
def blurred():
    prior = GaussianPrior(default_power_spectrum(), (1, *SHAPE))
    noise = GaussianNoise(0.3 * prior.pixel_variance() ** 0.5)
    model = ForwardModel(Blur.gaussian(2.5, SHAPE), noise, (1, *SHAPE), name="blur")
    g = torch.Generator().manual_seed(3)
    y = model.simulate(prior.sample(1, g)[0], g)
    return prior, model, y


@pytest.mark.parametrize("smoothed", [False, True])
def test_mean_and_std_match_the_dense_posterior(blurred, smoothed):
    prior, model, y = blurred
    if smoothed:
        model = ForwardModel(Smoothing("tophat", 1.5, SHAPE), model.noise, (1, *SHAPE))
    dense, fast = exact_posterior(prior, model, y), fourier_exact_posterior(prior, model, y)
    scale = float(dense.std.mean())
    assert float((dense.mean - fast.mean).abs().max()) < 1e-10 * scale
    assert float((dense.std - fast.std).abs().max()) < 1e-10 * scale


def test_samples_have_the_posterior_moments(seeded, blurred):
    prior, model, y = blurred
    fast = fourier_exact_posterior(prior, model, y)
    n = 4000
    samples = fast.sample(n, seeded(0))
    # Per-pixel sample variance / exact variance has sd sqrt(2 / (n - 1)); averaged over 192
    # correlated pixels it is no noisier than one pixel: 5 sd.
    ratio = float((samples.var(0) / fast.std.square()).mean())
    assert abs(ratio - 1) < 5 * (2 / (n - 1)) ** 0.5
    z = (samples.mean(0) - fast.mean) / (fast.std / n**0.5)
    assert float(z.abs().max()) < 5


def test_models_that_are_not_fourier_diagonal_are_refused(blurred):
    prior, model, y = blurred
    mask = torch.ones(SHAPE, dtype=torch.float64)
    mask[0, 0] = 0
    masked = ForwardModel(Mask(mask), GaussianNoise(0.1, mask), (1, *SHAPE), name="inpainting")
    with pytest.raises(ValueError, match="not a Fourier transfer"):
        fourier_exact_posterior(prior, masked, y)
    noisy_map = ForwardModel(
        Blur.gaussian(2.0, SHAPE), GaussianNoise(torch.rand(1, *SHAPE) + 0.1), (1, *SHAPE)
    )
    with pytest.raises(ValueError, match="not white Gaussian"):
        fourier_exact_posterior(prior, noisy_map, y)
    masked_noise = ForwardModel(Blur.gaussian(2.0, SHAPE), GaussianNoise(0.1, mask), (1, *SHAPE))
    with pytest.raises(ValueError, match="not white Gaussian"):
        fourier_exact_posterior(prior, masked_noise, y)


def test_forward_models_state_their_transfer_function_and_noise_std():
    blur, smoothing = Blur.gaussian(2.0, SHAPE), Smoothing("gaussian", 1.0, SHAPE)
    assert torch.equal(blur.transfer_function(), blur.transfer)
    assert torch.equal(smoothing.transfer_function(), smoothing.window)
    for operator in (Identity(), Mask(torch.ones(SHAPE)), Shear(SHAPE)):
        assert operator.transfer_function() is None
    sigma = torch.full(SHAPE, 0.2, dtype=torch.float64)
    assert torch.equal(GaussianNoise(sigma).independent_std(), sigma)
    for noise in (PoissonNoise(), CorrelatedGaussianNoise(lambda k: 1 + k, (1, *SHAPE))):
        assert noise.independent_std() is None
