"""Unconditional samplers of the prior alone, used to validate priors (y and the model are ignored)."""

from __future__ import annotations

import torch
from torch import Tensor

from forward_models.base import ForwardModel

from ..priors.base import Prior
from ..rng import EnsembleRNG
from ..schedules import karras_sigmas, log_uniform_sigmas
from .common import StepCallback, langevin_corrector, report, reverse_sde


def prior_ode(
    prior: Prior,
    model: ForwardModel | None,
    y: Tensor | None,
    rng: EnsembleRNG,
    steps: int = 40,
    callback: StepCallback | None = None,
    *,
    field_shape: tuple[int, int, int] | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    corrector_steps: int = 0,
    snr: float = 0.16,
) -> Tensor:
    """Probability-flow ODE, Heun's method on the EDM schedule (Karras et al. 2022, Algorithm 1).

    `corrector_steps` Langevin steps at each level (signal-to-noise ratio `snr`) make it a
    predictor-corrector sampler (common.langevin_corrector).
    """
    shape = field_shape or model.field_shape
    sigmas = karras_sigmas(
        steps, sigma_min or prior.sigma_min(), sigma_max or prior.sigma_max(), rho
    )
    x = sigmas[0].item() * rng.randn(shape)
    correct = langevin_corrector(prior.denoise, lambda: rng.randn(shape), corrector_steps, snr)
    for i in range(steps):
        sigma, sigma_next = sigmas[i].item(), sigmas[i + 1].item()
        x0_hat = prior.denoise(x, sigma)
        slope = (x - x0_hat) / sigma
        x_next = x + (sigma_next - sigma) * slope
        if sigma_next > 0:
            slope_next = (x_next - prior.denoise(x_next, sigma_next)) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (slope + slope_next)
            if correct is not None:
                x_next = correct(x_next, sigma_next)
        x = x_next
        report(callback, i=i, sigma=sigma, x=x, denoised=x0_hat)
    return x


def prior_sde(
    prior: Prior,
    model: ForwardModel | None,
    y: Tensor | None,
    rng: EnsembleRNG,
    steps: int = 200,
    callback: StepCallback | None = None,
    *,
    field_shape: tuple[int, int, int] | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    corrector_steps: int = 0,
    snr: float = 0.16,
) -> Tensor:
    """Reverse SDE: ancestral steps with a second-order correction (DPM-Solver++(2M) SDE).

    Plain ancestral steps lost 6.5% of the variance at 200 steps on a Gaussian field (the error
    falls only as 1/steps); the corrected steps are the same cost per step. `corrector_steps`
    Langevin steps per level make it a predictor-corrector sampler.
    """
    shape = field_shape or model.field_shape
    sigmas = log_uniform_sigmas(
        steps, sigma_min or prior.sigma_min(), sigma_max or prior.sigma_max()
    )
    x = sigmas[0].item() * rng.randn(shape)
    correct = langevin_corrector(prior.denoise, lambda: rng.randn(shape), corrector_steps, snr)
    with torch.no_grad():
        return reverse_sde(
            prior.denoise,
            x,
            sigmas.tolist(),
            lambda: rng.randn(shape),
            lambda i, sigma, x_next, x0_hat: report(
                callback, i=i, sigma=sigma, x=x_next, denoised=x0_hat
            ),
            correct,
        )
