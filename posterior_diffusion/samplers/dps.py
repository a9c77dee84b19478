"""Diffusion Posterior Sampling (Chung et al., ICLR 2023, Algorithm 1), the classic baseline.

We follow the paper, not the official code: the guidance step is zeta_i * grad ||y - A(x0_hat)||^2
with zeta_i = zeta' / ||y - A(x0_hat)|| (the code differentiates the unsquared norm, half this step).
The residual is in data units as in the paper; with a per-pixel noise map or a mask it is weighted
by sigma_rms / sigma (zero where unobserved), and for Poisson counts by 1 / sqrt(max(y, 1)) (the
paper's Lambda up to its constant factor 2).
The DDPM chain is the paper's VP one with a linear beta schedule (1e-4 to 0.02 at 1000 steps);
the VE denoiser is evaluated at x_i / sqrt(alpha_bar_i) with sigma_i^2 = (1 - alpha_bar_i) / alpha_bar_i.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from forward_models.base import ForwardModel

from ..priors.base import Prior
from ..rng import EnsembleRNG
from .common import StepCallback, report


def residual_weighting(model: ForwardModel, y: Tensor) -> Callable[[Tensor], Tensor]:
    """x0_hat -> the residual DPS takes the norm of, in data units, down-weighted where the noise
    is larger. The weights are fixed per run, so they are computed once (a boolean index syncs a
    GPU)."""
    if model.noise.is_gaussian:
        inverse_sigma = model.noise.whiten(torch.ones_like(y))
        sigma_rms = inverse_sigma[inverse_sigma > 0].square().mean().rsqrt()
        return lambda x0_hat: sigma_rms * model.noise.whiten(y - model.A(x0_hat))
    poisson_scale = y.clamp_min(1.0).sqrt()
    return lambda x0_hat: (y - model.A(x0_hat)) / poisson_scale


def dps(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 1000,
    callback: StepCallback | None = None,
    *,
    zeta: float = 1.0,
    beta_min: float = 0.1,
    beta_max: float = 20.0,
) -> Tensor:
    """DPS, Algorithm 1 of Chung et al. (2023); beta_i = beta_{min..max} / steps, linearly spaced."""
    shape = model.field_shape
    # Clamped so that short test runs (steps <= 20) keep every beta_i < 1.
    betas = torch.linspace(beta_min / steps, beta_max / steps, steps, dtype=torch.float64)
    betas = betas.clamp(max=0.999)
    alphas = 1 - betas
    alpha_bars = torch.cumprod(alphas, 0)
    weighted_residual = residual_weighting(model, y)
    x = rng.randn(shape)
    for i in reversed(range(steps)):
        alpha, beta, alpha_bar = alphas[i].item(), betas[i].item(), alpha_bars[i].item()
        alpha_bar_prev = alpha_bars[i - 1].item() if i > 0 else 1.0
        sigma = ((1 - alpha_bar) / alpha_bar) ** 0.5
        # The gradient through the denoiser is a vector-Jacobian product, J^T g = Cov g / sigma^2
        # (J symmetric), taken through `linearize` so that it is counted like guided's products.
        x0_hat, cov = prior.linearize(x / alpha_bar**0.5, sigma)
        with torch.enable_grad():
            x0_leaf = x0_hat.detach().requires_grad_(True)
            residual_norm = weighted_residual(x0_leaf).flatten(1).norm(dim=1)
            (grad_x0,) = torch.autograd.grad(residual_norm.square().sum(), x0_leaf)
        grad = cov(grad_x0) / (sigma**2 * alpha_bar**0.5)
        x_prime = (
            alpha**0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar) * x
            + alpha_bar_prev**0.5 * beta / (1 - alpha_bar) * x0_hat
        )
        if i > 0:
            sigma_tilde = ((1 - alpha_bar_prev) / (1 - alpha_bar) * beta) ** 0.5
            x_prime = x_prime + sigma_tilde * rng.randn(shape)
        zeta_i = zeta / residual_norm.detach().clamp_min(1e-30)
        x = x_prime - zeta_i.reshape(-1, *([1] * len(shape))) * grad
        report(callback, i=steps - 1 - i, sigma=sigma, x=x, denoised=x0_hat)
    return x
