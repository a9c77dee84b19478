"""Draws from any denoiser: the reverse SDE and the probability-flow ODE from noise down to 0.

Priors use them to sample themselves (`Prior.sample`), samplers to run the prior alone
(`prior_sde`, `prior_ode`) or the prior's half of a split step; guided samplers reuse the
Langevin corrector on their conditional denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..rng import EnsembleRNG
from ..schedules import karras_sigmas, log_uniform_sigmas
from .base import Prior

Denoiser = Callable[[Tensor, float], Tensor]
# on_step(i, sigma, x_next, x0_hat) after every step
StepHook = Callable[[int, float, Tensor, Tensor], None]


def langevin_corrector(
    denoise: Denoiser,
    randn: Callable[[], Tensor],
    steps: int,
    snr: float,
) -> Callable[[Tensor, float], Tensor] | None:
    """Langevin corrector steps at one noise level (Song et al. 2021, Algorithm 5), or None.

    x <- x + eps s + sqrt(2 eps) z with the score s = (D(x, sigma) - x) / sigma^2 and the step
    eps = 2 (snr |z| / |s|)^2, norms per member so that no member depends on the others.
    """
    if steps < 0 or not snr > 0:
        raise ValueError(f"corrector_steps must be >= 0 and snr > 0, got {steps} and {snr}")
    if steps == 0:
        return None

    def correct(x: Tensor, sigma: float) -> Tensor:
        for _ in range(steps):
            score = (denoise(x, sigma) - x) / sigma**2
            z = randn()
            ratio = z.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)
            eps = (2 * (snr * ratio) ** 2).reshape(-1, *([1] * (x.ndim - 1)))
            x = x + eps * score + (2 * eps).sqrt() * z
        return x

    return correct


def reverse_sde(
    denoise: Denoiser,
    x: Tensor,
    sigmas: list[float],
    randn: Callable[[], Tensor],
    on_step: StepHook | None = None,
    corrector: Callable[[Tensor, float], Tensor] | None = None,
) -> Tensor:
    """Sample p(x0 | x_{sigmas[0]} = x) by DPM-Solver++(2M) SDE steps (Lu et al. 2022; eta = 1).

    Each step is the ancestral (DDPM) transition plus a second-order correction that reuses the
    previous denoised estimate; on a Gaussian mode it cut the conditional-variance error of 10
    steps over three decades of sigma from 70% (ancestral) to 17%. `sigmas` ends with 0;
    `on_step(i, sigma, x_next, x0_hat)` sees every step; `corrector(x, sigma)`, if given, moves
    x after each step that ends above 0 (predictor-corrector sampling).
    """
    previous = None
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0_hat = denoise(x, sigma)
        if sigma_next == 0:
            x = x0_hat
        else:
            h = math.log(sigma / sigma_next)
            ratio = (sigma_next / sigma) ** 2  # e^{-2h}
            x_next = ratio * x + (1 - ratio) * x0_hat
            if previous is not None:
                x0_prev, h_prev = previous
                x_next = x_next + 0.5 * (1 - ratio) * (h / h_prev) * (x0_hat - x0_prev)
            x = x_next + sigma_next * (1 - ratio) ** 0.5 * randn()
            previous = (x0_hat, h)
            if corrector is not None:
                moved = corrector(x, sigma_next)
                if moved is not x:  # the second-order term must not span a move
                    previous = None
                x = moved
        if on_step is not None:
            on_step(i, sigma, x, x0_hat)
    return x


def sde_draw(
    prior: Prior,
    rng: EnsembleRNG,
    shape: tuple[int, ...],
    steps: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    corrector_steps: int = 0,
    snr: float = 0.16,
    on_step: StepHook | None = None,
) -> Tensor:
    """One field of `shape` per member of `rng`, by the reverse SDE from pure noise at
    sigma_max down a log-uniform grid (default range: the prior's own)."""
    sigmas = log_uniform_sigmas(
        steps, sigma_min or prior.sigma_min(), sigma_max or prior.sigma_max()
    )
    x = sigmas[0].item() * rng.randn(shape)
    correct = langevin_corrector(prior.denoise, lambda: rng.randn(shape), corrector_steps, snr)
    with torch.no_grad():
        return reverse_sde(
            prior.denoise, x, sigmas.tolist(), lambda: rng.randn(shape), on_step, correct
        )


def ode_draw(
    prior: Prior,
    rng: EnsembleRNG,
    shape: tuple[int, ...],
    steps: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    corrector_steps: int = 0,
    snr: float = 0.16,
    on_step: StepHook | None = None,
) -> Tensor:
    """One field of `shape` per member of `rng`, by the probability-flow ODE, Heun's method on
    the EDM schedule (Karras et al. 2022, Algorithm 1), from pure noise at sigma_max."""
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
        if on_step is not None:
            on_step(i, sigma, x, x0_hat)
    return x


def draw_fields(
    prior: Prior,
    num: int,
    generator: torch.Generator | None,
    shape: tuple[int, int, int],
    steps: int,
    device: torch.device | str = "cpu",
) -> Tensor:
    """`num` fields (num, C, H, W) by the reverse SDE, in float64 on `device`: one seed from
    `generator`, then one stream per field, so field i does not depend on `num`."""
    seed = int(torch.randint(2**62, (), generator=generator))
    rng = EnsembleRNG(seed, range(num), device=device)
    return sde_draw(prior, rng, shape, steps)
