"""Unconditional samplers of the prior alone, used to validate priors (y and the model are ignored)."""

from __future__ import annotations

from torch import Tensor

from forward_models.base import ForwardModel

from ..priors.base import Prior
from ..priors.draw import ode_draw, sde_draw
from ..rng import EnsembleRNG
from .common import StepCallback, report


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
    predictor-corrector sampler (priors.draw.langevin_corrector).
    """
    return ode_draw(
        prior,
        rng,
        field_shape or model.field_shape,
        steps,
        sigma_min,
        sigma_max,
        rho,
        corrector_steps,
        snr,
        lambda i, sigma, x, x0_hat: report(callback, i=i, sigma=sigma, x=x, denoised=x0_hat),
    )


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
    return sde_draw(
        prior,
        rng,
        field_shape or model.field_shape,
        steps,
        sigma_min,
        sigma_max,
        corrector_steps,
        snr,
        lambda i, sigma, x, x0_hat: report(callback, i=i, sigma=sigma, x=x, denoised=x0_hat),
    )
