"""`guided`'s two safeguards against a learned covariance that is not one: CG stops along a
direction where B C B^T is negative, and a guidance step that fits the data worse than the
denoiser alone is shortened. Both leave exact priors untouched; a broken covariance shows they
act (and, without them, how far a step goes wrong)."""

from __future__ import annotations

import pytest
import torch

from posterior_diffusion.likelihood import WhitenedLinearGaussian
from posterior_diffusion.linalg import batch_dot, conjugate_gradient_with_image
from posterior_diffusion.priors.base import Prior
from posterior_diffusion.references.gaussian_problems import gaussian_problem
from posterior_diffusion.samplers.guided import conditional_denoiser, misfit_guard


class NegatedCovariance(Prior):
    """An exact Gaussian denoiser whose covariance product is multiplied by -factor."""

    def __init__(self, prior: Prior, factor: float):
        super().__init__()
        self.inner, self.factor, self.field_shape = prior, factor, prior.field_shape

    def denoise(self, x, sigma):
        return self.inner.denoise(x, sigma)

    def linearize(self, x, sigma):
        x0_hat, cov = self.inner.linearize(x, sigma)
        return x0_hat, lambda v: -self.factor * cov(v)


@pytest.fixture(scope="module")
def problem():
    prior, model = gaussian_problem("P1", (12, 16), seed=0)
    generator = torch.Generator().manual_seed(3)
    y = model.simulate(prior.sample(1, generator)[0], generator)
    return prior, WhitenedLinearGaussian(model, y)


def misfit(likelihood, x):
    return batch_dot(likelihood.residual(x), likelihood.residual(x)).flatten()


def raw_cg_step(prior, likelihood, x, sigma, floor: float = 0.0):
    """C B^T u with u from 3 CG iterations, without the misfit guard."""
    x0_hat, cov = prior.linearize(x, sigma)

    def matvec(v):
        c = cov(likelihood.B_adjoint(v))
        return v + likelihood.B(c), c

    r = likelihood.residual(x0_hat)
    _, step, _ = conjugate_gradient_with_image(matvec, r, None, 1e-3, 3, curvature_floor=floor)
    return x0_hat, step


def test_exact_prior_steps_are_kept_as_they_are(seeded, problem):
    prior, likelihood = problem
    x = 3 * torch.randn((4, *prior.field_shape), generator=seeded(0), dtype=torch.float64)
    for sigma in (0.05, 1.0, 20.0):
        x0_hat, step = raw_cg_step(prior, likelihood, x, sigma, floor=1 - 1e-6)
        assert torch.equal(misfit_guard(likelihood, x0_hat, step), step)
        guarded = conditional_denoiser(prior, likelihood, 1e-3, 3)(x, sigma)
        torch.testing.assert_close(guarded, x0_hat + step, rtol=0, atol=0)
        assert bool((misfit(likelihood, guarded) <= misfit(likelihood, x0_hat)).all())


def largest_gain(prior, likelihood, x, sigma) -> float:
    """The largest eigenvalue of K = B C B^T at (x, sigma), by 30 power iterations."""
    _, cov = prior.linearize(x, sigma)
    v = torch.ones_like(likelihood.residual(x))
    for _ in range(30):
        w = likelihood.B(cov(likelihood.B_adjoint(v)))
        v = w / w.flatten(1).norm(dim=1).reshape(-1, *([1] * (w.ndim - 1)))
    return float(w.flatten(1).norm(dim=1).max())


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_a_negative_covariance_never_makes_the_fit_worse(seeded, problem, fraction):
    """The covariance negated and scaled so that I + K stays positive (plain CG runs on it):
    the raw step moves away from the data (control), the guarded one never does."""
    prior, likelihood = problem
    x = 3 * torch.randn((4, *prior.field_shape), generator=seeded(1), dtype=torch.float64)
    sigma = 1.0
    broken = NegatedCovariance(prior, fraction / largest_gain(prior, likelihood, x, sigma))
    x0_hat, raw = raw_cg_step(broken, likelihood, x, sigma)
    assert bool((misfit(likelihood, x0_hat + raw) > misfit(likelihood, x0_hat)).all())
    guarded = conditional_denoiser(broken, likelihood, 1e-3, 3)(x, sigma)
    assert bool((misfit(likelihood, guarded) <= misfit(likelihood, x0_hat) * (1 + 1e-12)).all())


def test_cg_stops_where_the_covariance_part_is_negative():
    """M = I + K with K = -0.5 I: SPD, so plain CG solves it (and doubles r); with the floor
    just below 1 it stops at once and keeps its start."""
    b = torch.ones((2, 3), dtype=torch.float64)

    def matvec(v):
        return 0.5 * v, None

    plain, _, _ = conjugate_gradient_with_image(matvec, b, None, 1e-9, 5)
    floored, _, _ = conjugate_gradient_with_image(
        matvec, b, None, 1e-9, 5, curvature_floor=1 - 1e-6
    )
    torch.testing.assert_close(plain, 2 * b)
    assert torch.equal(floored, torch.zeros_like(b))
