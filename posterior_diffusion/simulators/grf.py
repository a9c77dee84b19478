"""Gaussian random fields with an isotropic power spectrum, one seeded stream per map.

Convention (as `priors/power_spectrum.py`): unit pixels, x_hat = fft2(x) unnormalised,
<|x_hat(k)|^2> = H * W * P(|k|), k in cycles per pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from posterior_diffusion.priors.gaussian import GaussianPrior
from posterior_diffusion.priors.power_spectrum import power_on_grid
from posterior_diffusion.rng import member_seed


class _FixedGrid:
    """A 'spectrum' that is already tabulated on the fft grid (possibly not isotropic)."""

    def __init__(self, power: np.ndarray, source: str):
        self.power, self.source = power, source

    def __call__(self, k: np.ndarray) -> np.ndarray:
        if k.shape != self.power.shape:
            raise ValueError(f"power grid {self.power.shape} asked for on a grid {k.shape}")
        return self.power


def check_shape(shape: tuple[int, ...], num: int) -> tuple[int, int]:
    """(H, W) from `shape`, with H, W >= 2 and num >= 1, else a one-line ValueError."""
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {tuple(shape)}")
    height, width = (int(n) for n in shape)
    if height < 2 or width < 2:
        raise ValueError(f"shape must be at least 2 x 2 pixels, got {height} x {width}")
    if int(num) < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    return height, width


def gaussian_field_from_power_grid(power: np.ndarray, num: int, seed: int) -> np.ndarray:
    """`num` Gaussian fields (num, H, W) float64 whose mode variances are H * W * power.

    Map i is drawn from its own stream (`member_seed(seed, i)`), so it does not depend on `num`.

    Args:
        power: (H, W) non-negative, even (P(k) = P(-k)) power on the fft2 grid [pixel units].
        num: number of maps.
        seed: random seed.
    """
    prior = GaussianPrior(_FixedGrid(power, "grid"), power.shape, name="grid")
    maps = [
        prior.sample(1, generator=torch.Generator().manual_seed(member_seed(seed, i)))[0, 0]
        for i in range(int(num))
    ]
    return torch.stack(maps).numpy()


def gaussian_random_field(
    power_spectrum: Callable[[np.ndarray], np.ndarray],
    shape: tuple[int, int],
    num: int,
    seed: int,
) -> np.ndarray:
    """`num` Gaussian random fields, shape (num, H, W), float64, with power spectrum P(k).

    Args:
        power_spectrum: callable P(k), k in cycles per pixel (numpy in, numpy out).
        shape: (H, W) [pixels].
        num: number of maps.
        seed: random seed; the same seed reproduces the maps exactly.
    """
    height, width = check_shape(shape, num)
    return gaussian_field_from_power_grid(power_on_grid(power_spectrum, height, width), num, seed)
