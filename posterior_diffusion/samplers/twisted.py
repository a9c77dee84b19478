"""(experimental) Twisted SMC along the diffusion's noise levels, with a stationary twist.

Particles follow `guided`'s reverse-SDE proposal (DPM-Solver++(2M) SDE steps on D_y) and carry
importance weights that make the ensemble target, level by level,

    gamma_sigma(x) ∝ p_sigma(x) psi_sigma(x),   psi_sigma(x) = N(y_w; B D(x, sigma), I + B C_sigma B^T)

with C_sigma = sigma^2 P / (P + sigma^2) and P the prior's variance per Fourier mode
(`Prior.second_moment_power`), the same for every particle, so the twist's log-determinant
cancels from the weights (issue 14's twisted lead used guided's particle-dependent covariance and
had to estimate it). psi is exact at every level for a Gaussian prior and tends to the exact
likelihood as sigma -> 0 for any prior, so the last level's target is the posterior. The weight
of a step x -> x' is p(x' | x) psi(x') / (q(x' | x) psi(x)): p the prior's own reverse step (the
same SDE step with D instead of D_y), q the guided one; both Gaussian with the same variance, so
their ratio is exact. Twisted diffusion sampler: Wu et al. 2023; here with a twist whose
normaliser is the same for all particles.

When the ESS falls below `resample_below`, members are resampled systematically along their
total power (as `smc`) and moved by `moves` Metropolis-adjusted Langevin moves on gamma_sigma
(`refine.py`). At the end the ensemble is resampled to equal weights; its ESS and the fraction
of distinct members are recorded, with an `EnsembleWarning` when the latter is below half.

Members depend on one another (weights, resampling), so the ensemble is drawn as a whole: shared
draws (resampling uniforms) from the run's seed, each member's noise from its own stream.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from forward_models.base import ForwardModel
from forward_models.fourier import fourier_filter

from ..likelihood import WhitenedLinearGaussian
from ..linalg import conjugate_gradient_with_image
from ..priors.base import Prior
from ..rng import EnsembleRNG
from ..schedules import log_uniform_sigmas
from .common import StepCallback, report
from .guided import conditional_denoiser
from .refine import dot, noised_posterior_mala
from .smc import LOW_UNIQUE_FRACTION, EnsembleWarning, effective_sample_size, systematic_resample


def stationary_twist(
    prior: Prior, likelihood: WhitenedLinearGaussian, field_shape: tuple[int, ...]
):
    """(D(x, sigma), sigma) -> log psi_sigma per member, up to a constant shared by all."""
    power = prior.second_moment_power(tuple(field_shape))
    if power is None:
        raise ValueError(
            "sampler 'twisted' needs the prior's variance per Fourier mode "
            "(Prior.second_moment_power); this prior does not know it"
        )

    def log_twist(x0_hat: Tensor, sigma: float) -> Tensor:
        cov = power.to(x0_hat) * sigma**2 / (power.to(x0_hat) + sigma**2)
        r = likelihood.residual(x0_hat)

        def matvec(v: Tensor) -> tuple[Tensor, Tensor]:
            bt_v = likelihood.B_adjoint(v)
            return v + likelihood.B(fourier_filter(bt_v, cov)), bt_v

        u, _, _ = conjugate_gradient_with_image(matvec, r, None, 1e-10, 200)
        return -0.5 * dot(r, u)

    return log_twist


def twisted(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 96,
    callback: StepCallback | None = None,
    *,
    moves: int = 4,
    resample_below: float = 0.5,
    cg_rtol: float = 1e-3,
    cg_max_iter: int = 3,
) -> Tensor:
    """The ensemble of `len(rng)` members over `steps` noise levels (about 4.4 prior
    evaluations per member and level: D_y, D at the new point, and resampling moves)."""
    likelihood = WhitenedLinearGaussian(model, y)
    shape = tuple(model.field_shape)
    log_twist = stationary_twist(prior, likelihood, shape)
    denoise_y = conditional_denoiser(prior, likelihood, cg_rtol, cg_max_iter)
    shared = torch.Generator().manual_seed(rng.shared_seed())
    sigmas = log_uniform_sigmas(steps, prior.sigma_min(), prior.sigma_max()).tolist()

    def resample(log_w: Tensor, x: Tensor) -> Tensor:
        order = torch.argsort(x.flatten(1).square().sum(1)).cpu()
        uniform = float(torch.rand((), generator=shared, dtype=torch.float64))
        return systematic_resample(log_w.cpu(), uniform, order).to(x.device)

    with torch.no_grad():
        x = sigmas[0] * rng.randn(shape)
        d = prior.denoise(x, sigmas[0])
        psi = log_twist(d, sigmas[0])
        log_w = psi.clone()
        ess_trace: list[float] = []
        resampled_at: list[float] = []
        previous = None  # (D, D_y, h) of the last step: the SDE steps' second-order term
        for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-2], sigmas[1:-1], strict=True)):
            d_y = denoise_y(x, sigma)
            ratio = (sigma_next / sigma) ** 2
            var = sigma_next**2 * (1 - ratio)
            h = math.log(sigma / sigma_next)
            mean_prior = ratio * x + (1 - ratio) * d
            mean_guided = ratio * x + (1 - ratio) * d_y
            if previous is not None:
                d_prev, d_y_prev, h_prev = previous
                mean_prior = mean_prior + 0.5 * (1 - ratio) * (h / h_prev) * (d - d_prev)
                mean_guided = mean_guided + 0.5 * (1 - ratio) * (h / h_prev) * (d_y - d_y_prev)
            previous = (d, d_y, h)
            x = mean_guided + math.sqrt(var) * rng.randn(shape)
            from_prior, from_guided = x - mean_prior, x - mean_guided
            log_p_over_q = (dot(from_guided, from_guided) - dot(from_prior, from_prior)) / (2 * var)
            d = prior.denoise(x, sigma_next)
            psi_next = log_twist(d, sigma_next)
            log_w = log_w + log_p_over_q + psi_next - psi
            psi = psi_next
            ess_trace.append(effective_sample_size(log_w))
            if ess_trace[-1] < resample_below:
                ancestors = resample(log_w, x)
                x, d, psi = x[ancestors], d[ancestors], psi[ancestors]
                previous = (previous[0][ancestors], previous[1][ancestors], h)
                log_w = torch.zeros_like(log_w)
                resampled_at.append(sigma_next)
                if moves:
                    move = noised_posterior_mala(
                        prior, likelihood, sigma_next, moves, lambda: rng.randn(shape),
                        lambda: rng.rand(()), None, scale_moves=False,
                    )  # fmt: skip
                    x = move(x)
                    previous = None  # the second-order term must not span a move
                    d = prior.denoise(x, sigma_next)
                    psi = log_twist(d, sigma_next)
            report(callback, i=i, sigma=sigma_next, x=x, denoised=d)
        x0 = denoise_y(x, sigmas[-2])  # the last step, to sigma = 0, as guided's
        final_ess = effective_sample_size(log_w)
        ancestors = resample(log_w, x0)
    unique = len(set(ancestors.tolist())) / len(rng)
    diagnostics = {
        "levels": len(sigmas) - 1,
        "final_ess": final_ess,
        "min_ess": min(ess_trace),
        "resampled_at_sigma": resampled_at,
        "unique_fraction": unique,
    }
    report(callback, i=len(sigmas) - 2, sigma=0.0, x=x0, denoised=x0, diagnostics=diagnostics)
    if unique < LOW_UNIQUE_FRACTION:
        warnings.warn(
            f"sampler 'twisted': only {unique:.0%} of the {len(rng)} members are distinct after "
            f"the final resampling (ESS {final_ess:.2f}): intervals and spreads are noisier than "
            "the ensemble's size suggests",
            EnsembleWarning,
            stacklevel=2,
        )
    return x0[ancestors]
