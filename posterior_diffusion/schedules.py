"""Noise-level schedules as 1-D tensors, decreasing, ending with 0."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_range(sigma_min: float, sigma_max: float) -> None:
    if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM schedule (Karras et al. 2022, eq. 5): `steps` levels from sigma_max to sigma_min, then 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_range(sigma_min, sigma_max)
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_rho_max, inv_rho_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def geometric_sigmas(steps: int, sigma_start: float, sigma_end: float) -> Tensor:
    """`steps` levels spaced geometrically from sigma_start to sigma_end (no trailing 0)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for value in (sigma_start, sigma_end):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"noise levels must be finite and > 0, got {value}")
    if steps == 1:
        return torch.tensor([sigma_end], dtype=torch.float64)
    return torch.logspace(
        math.log10(sigma_start), math.log10(sigma_end), steps, dtype=torch.float64
    )


def log_uniform_sigmas(steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """`steps` levels uniform in log sigma from sigma_max to sigma_min, then 0."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    check_range(sigma_min, sigma_max)
    sigmas = torch.logspace(
        math.log10(sigma_max), math.log10(sigma_min), steps, dtype=torch.float64
    )
    return torch.cat([sigmas, sigmas.new_zeros(1)])
