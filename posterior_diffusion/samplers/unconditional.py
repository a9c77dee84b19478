"""Unconditional samplers of the prior alone, used to validate priors (y and the model are ignored)."""

from __future__ import annotations

import torch
from torch import Tensor

from forward_models.base import ForwardModel

from ..priors.base import Prior
from ..rng import EnsembleRNG
from ..schedules import karras_sigmas
from .common import StepCallback, ancestral_step, report


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
) -> Tensor:
    """Probability-flow ODE, Heun's method on the EDM schedule (Karras et al. 2022, Algorithm 1)."""
    shape = field_shape or model.field_shape
    sigmas = karras_sigmas(steps, sigma_min or prior.sigma_min(), sigma_max or prior.sigma_max(), rho)
    x = sigmas[0].item() * rng.randn(shape)
    for i in range(steps):
        sigma, sigma_next = sigmas[i].item(), sigmas[i + 1].item()
        x0_hat = prior.denoise(x, sigma)
        slope = (x - x0_hat) / sigma
        x_next = x + (sigma_next - sigma) * slope
        if sigma_next > 0:
            slope_next = (x_next - prior.denoise(x_next, sigma_next)) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (slope + slope_next)
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
    rho: float = 7.0,
) -> Tensor:
    """Reverse SDE by ancestral sampling (DDPM's reverse transitions in VE form)."""
    shape = field_shape or model.field_shape
    sigmas = karras_sigmas(steps, sigma_min or prior.sigma_min(), sigma_max or prior.sigma_max(), rho)
    x = sigmas[0].item() * rng.randn(shape)
    for i in range(steps):
        sigma, sigma_next = sigmas[i].item(), sigmas[i + 1].item()
        with torch.no_grad():
            x0_hat = prior.denoise(x, sigma)
        x = ancestral_step(x, x0_hat, sigma, sigma_next, rng.randn(shape))
        report(callback, i=i, sigma=sigma, x=x, denoised=x0_hat)
    return x
