"""Pieces every sampler shares: the step callback and the exact Gaussian reverse transition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

StepCallback = Callable[[dict[str, Any]], None]


def report(callback: StepCallback | None, **state: Any) -> None:
    """Hand the step's state ({'i', 'sigma', 'x', 'denoised'}) to the callback, if any."""
    if callback is not None:
        callback(state)


def ancestral_step(
    x: Tensor, x0_hat: Tensor, sigma: float, sigma_next: float, noise: Tensor
) -> Tensor:
    """Draw x_{sigma_next} from q(x_next | x_sigma, x0 = x0_hat) of the VE process.

    q is Gaussian with mean x0 + (s'^2/s^2)(x - x0) and variance s'^2 (1 - s'^2/s^2)
    (DDPM's posterior in VE variables). With sigma_next = 0 it returns x0_hat.
    """
    ratio = (sigma_next / sigma) ** 2
    return x0_hat + ratio * (x - x0_hat) + sigma_next * (1.0 - ratio) ** 0.5 * noise
