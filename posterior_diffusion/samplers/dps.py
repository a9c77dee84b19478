"""Diffusion Posterior Sampling (Chung et al., ICLR 2023, Algorithm 1), the classic baseline.

We follow the paper, not the official code: the guidance step is zeta_i * grad ||y - A(x0_hat)||^2
with zeta_i = zeta' / ||y - A(x0_hat)|| (the code differentiates the unsquared norm, half this step).
The residual is whitened (Sigma^{-1/2}) for Gaussian noise, and weighted by 1 / sqrt(max(y, 1)) for
Poisson counts (the paper's Lambda up to its constant factor 2), so zeta' does not depend on units.
The DDPM chain is the paper's VP one with a linear beta schedule (1e-4 to 0.02 at 1000 steps);
the VE denoiser is evaluated at x_i / sqrt(alpha_bar_i) with sigma_i^2 = (1 - alpha_bar_i) / alpha_bar_i.
"""

from __future__ import annotations

import torch
from torch import Tensor

from forward_models.base import ForwardModel

from ..priors.base import Prior
from ..rng import EnsembleRNG
from .common import StepCallback, report


def whitened_residual(model: ForwardModel, y: Tensor, x0_hat: Tensor) -> Tensor:
    """The residual DPS takes the norm of, in units of the noise."""
    mean = model.A(x0_hat)
    if model.noise.is_gaussian:
        return model.noise.whiten(y - mean)
    return (y - mean) / y.clamp_min(1.0).sqrt()


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
    x = rng.randn(shape)
    for i in reversed(range(steps)):
        alpha, beta, alpha_bar = alphas[i].item(), betas[i].item(), alpha_bars[i].item()
        alpha_bar_prev = alpha_bars[i - 1].item() if i > 0 else 1.0
        sigma = ((1 - alpha_bar) / alpha_bar) ** 0.5
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0_hat = prior.denoise(x_in / alpha_bar**0.5, sigma)
            residual_norm = whitened_residual(model, y, x0_hat).flatten(1).norm(dim=1)
            (grad,) = torch.autograd.grad(residual_norm.square().sum(), x_in)
        x0_hat = x0_hat.detach()
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
