"""The R1 references: the mixture prior's exact denoiser, its exact posterior, the comparison
metrics (exact samples pass, wrong ones fail). Samplers against them: tests/samplers/test_components.py.

Grids are 12 x 16 (6 x 8 for dense log densities), non-square on purpose. Every tolerance is
derived from the sample size; the comment next to it says how.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from mixture_checks import SHAPE, amplitude_posterior, assert_calibrated, spread_ok

from forward_models.fourier import fourier_filter
from posterior_diffusion.diagnostics import log_band_powers, log_total_power
from posterior_diffusion.references.compare import (
    compare_to_reference,
    component_tv_tolerance,
)
from posterior_diffusion.references.gaussian import exact_posterior
from posterior_diffusion.references.mixture import mixture_exact_posterior
from posterior_diffusion.references.problems import (
    PRIOR_KINDS,
    PROBLEMS,
    draw_observations,
    mixture_prior,
    mixture_problem,
    problem_from_name,
)

PIXELS = SHAPE[0] * SHAPE[1]
# Ensemble size of the metric checks: 12 x 16 exact draws are cheap, and at N = 1024 the
# standard error of the log-power spread ratio is ~0.05, so a 1.4x wrong spread is ~7 of them.
N = 1024


@pytest.fixture(scope="module")
def posterior():
    return amplitude_posterior()


@pytest.mark.parametrize("kind", PRIOR_KINDS)
def test_mixture_denoiser_is_tweedie(seeded, kind):
    """D = x + sigma^2 grad log p_sigma and Cov[x0 | x] v = sigma^2 (dD/dx) v, by autograd.

    Both sides are exact: the differences are round-off, a few 1e-15 of |x| at small sigma and
    up to ~3e-12 at sigma = 30 (x + sigma^2 grad cancels two terms of size |x| ~ 100), so
    1e-10 relative to |x| leaves a margin of 30x.
    """
    prior = mixture_prior(kind, SHAPE)
    generator = seeded(0)
    sigma = torch.tensor([0.03, 0.3, 3.0, 30.0], dtype=torch.float64)  # one per member
    x0 = prior.sample(len(sigma), generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    x = (x0 + sigma[:, None, None, None] * noise).requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.log_density(x, sigma).sum(), x)
    x = x.detach()
    scale = 1e-10 * (1 + x.abs().amax(dim=(1, 2, 3)))

    tweedie = x + sigma[:, None, None, None] ** 2 * grad
    error = (prior.denoise(x, sigma) - tweedie).abs().amax(dim=(1, 2, 3))
    assert torch.all(error <= scale), error

    v = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    _, jvp = torch.func.jvp(lambda z: prior.denoise(z, sigma), (x,), (v,))
    x0_hat, cov = prior.linearize(x, sigma)
    assert torch.allclose(x0_hat, prior.denoise(x, sigma), rtol=0, atol=1e-12)
    error = (cov(v) - sigma[:, None, None, None] ** 2 * jvp).abs().amax(dim=(1, 2, 3))
    assert torch.all(error <= scale), error


@pytest.mark.parametrize("kind", PRIOR_KINDS)
def test_mixture_prior_samples_have_its_pixel_variance(seeded, kind):
    """The mean over 4000 draws of each draw's mean x^2 against `pixel_variance()`, within 5
    standard errors computed exactly: given component k a draw's t = |x|^2 / n has mean
    mean(P_k) and variance 2 tr(C_k^2) / n^2 = 2 sum(P_k^2) / n^2 (C_k = F* diag(P_k) F)."""
    prior = mixture_prior(kind, SHAPE)
    num = 4000
    t = log_total_power(prior.sample(num, seeded(1)))
    t = np.exp(t)
    weights, powers = prior.weights.numpy(), prior.powers.numpy().reshape(len(prior.weights), -1)
    means = powers.mean(axis=1)
    within = 2 * np.square(powers).sum(axis=1) / PIXELS**2
    variance = weights @ (within + means**2) - (weights @ means) ** 2
    assert abs(t.mean() - prior.pixel_variance()) <= 5 * math.sqrt(variance / num)


def test_log_evidence_differences_are_dense_gaussian_log_probs():
    """The Gaussian reference's log evidences differ by log N(y_obs; 0, M C_k M^T + Sigma), and the
    mixture's omega is their softmax with the prior weights. Dense 48 x 48 algebra on 6 x 8 in
    float64: the log densities are ~60 in size, so agreement to 1e-8 is round-off only."""
    prior, model = mixture_problem("slope", "mask", (6, 8), noise=1.0)
    _, y = draw_observations(prior, model, 1, seed=3)[0]
    n = 6 * 8
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, 6, 8)
    observed = model.noise.observed.reshape(-1)
    y_obs = y.reshape(-1)[observed]
    noise_var = model.noise.sigma.reshape(-1)[observed].square()
    dense, evidence = [], []
    for component in prior.components:
        c = fourier_filter(basis, component.power).reshape(n, n)  # C e_i, row by row
        cov = c[observed][:, observed] + torch.diag(noise_var)
        normal = torch.distributions.MultivariateNormal(torch.zeros_like(y_obs), cov)
        dense.append(float(normal.log_prob(y_obs)))
        evidence.append(exact_posterior(component, model, y).log_evidence)
    assert abs((evidence[0] - evidence[1]) - (dense[0] - dense[1])) <= 1e-8
    omega = mixture_exact_posterior(prior, model, y).weights
    expected = torch.softmax(prior.log_weights + torch.tensor(dense, dtype=torch.float64), 0)
    assert torch.allclose(omega, expected, rtol=0, atol=1e-10)
    assert abs(float(omega.sum()) - 1) <= 1e-12


def test_exact_mixture_samples_have_its_mean_and_std(seeded, posterior):
    """4000 exact draws: per pixel, z of the mean (SE std / sqrt(N)) and of the variance about
    the exact mean (SE from the draws' 4th moment) are below 5 everywhere. With 192 pixels a
    union bound gives P(any |z| > 5) < 192 x 6e-7 = 1e-4 for an exact sampler."""
    _, _, _, _, exact = posterior
    num = 4000
    samples = exact.sample(num, seeded(5))
    z = (samples.mean(0) - exact.mean) / (exact.std / math.sqrt(num))
    assert float(z.abs().max()) < 5
    d2 = (samples - exact.mean).square()
    variance = d2.mean(0)
    se = ((d2 - variance).square().mean(0) / num).sqrt()
    assert float(((variance - exact.std.square()) / se).abs().max()) < 5
    assert abs(float(exact.weights.sum()) - 1) <= 1e-12


@pytest.mark.parametrize("name", PROBLEMS)
def test_problems_build_on_non_square_grids_and_are_deterministic(name):
    prior, model = problem_from_name(name, SHAPE)
    assert tuple(model.field_shape) == (1, *SHAPE)
    first = draw_observations(prior, model, 2, seed=4)
    again = draw_observations(prior, model, 1, seed=4)  # observation 0 does not depend on num
    assert torch.equal(first[0][0], again[0][0]) and torch.equal(first[0][1], again[0][1])
    omega = mixture_exact_posterior(prior, model, first[1][1]).weights
    assert omega.dtype == torch.float64 and abs(float(omega.sum()) - 1) <= 1e-12


def test_global_statistics(seeded):
    x = torch.randn((5, 1, *SHAPE), generator=seeded(2), dtype=torch.float64)
    expected = x.square().mean(dim=(1, 2, 3)).log().numpy()
    assert np.allclose(log_total_power(x), expected, rtol=0, atol=1e-12)
    bands = log_band_powers(x, num_bands=3)
    assert bands.shape == (5, 3)
    assert np.allclose(log_band_powers(3 * x.numpy()), bands + 2 * math.log(3), atol=1e-12)


def test_exact_samples_pass_and_wrong_ones_fail(seeded, posterior):
    _, _, truth, _, exact = posterior
    samples = exact.sample(N, seeded(10))
    reference = exact.sample(N, seeded(20))
    comparison = compare_to_reference(samples, reference, truth, exact)

    assert comparison.reference_component_tv <= comparison.component_tv_tolerance, comparison
    assert_calibrated(comparison, reference, truth, exact)

    # Control 1: the right components with weights off by 0.15 (guided is off by 0.2-0.3 below).
    shifted = exact.weights + torch.tensor([0.15, -0.15], dtype=torch.float64)
    wrong = dataclasses.replace(exact, weights=shifted)
    control = compare_to_reference(wrong.sample(N, seeded(11)), reference, truth, exact)
    assert control.component_tv > comparison.component_tv_tolerance, control

    # Control 2: each exact sample's deviation from the mean scaled by exp(0.4 z): the log-power
    # spread grows by 1.45x (9 SE; the issue reports up to 2x for guided). On an amplitude
    # mixture this also moves some samples across components, so only the spread is checked.
    generator = seeded(9)
    factor = torch.exp(0.4 * torch.randn(N, generator=generator, dtype=torch.float64))
    inflated = exact.mean + factor[:, None, None, None] * (samples - exact.mean)
    control = compare_to_reference(inflated, reference, truth, exact)
    assert not spread_ok(control), control


def test_component_tolerance_matches_the_binomial():
    """For two components the TV is |freq - omega|, binomial: the 0.999 quantile is ~3.3 sd."""
    omega, num = np.array([0.3, 0.7]), 400
    sd = math.sqrt(0.3 * 0.7 / num)
    assert 3.0 * sd <= component_tv_tolerance(omega, num) <= 3.6 * sd
    assert component_tv_tolerance(np.array([1.0, 1e-12]), num) == 0.5 / num  # the floor
