"""Shifted-lognormal fields delta = shift * (exp(g - sigma_g^2 / 2) - 1) with a target P(k).

The Gaussian g gets the spectrum that makes delta's spectrum the target on the periodic grid:
xi_delta = ifft2(P) (the per-pixel correlation function, xi(0) = mean of P = pixel variance),
xi_g = log(1 + xi_delta / shift^2), P_g = fft2(xi_g).real. A lognormal field cannot have every
target spectrum: where P_g < 0 it is clipped to 0, and `LognormalSpectrum.clipped_fraction`
reports how much (sum of the negative part over sum of the positive part). With a target that has
P(0) = 0 (no power in the map mean) the mean mode is always clipped, since mean(log(1 + xi)) < 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from posterior_diffusion.priors.power_spectrum import power_on_grid

from .grf import check_shape, gaussian_field_from_power_grid


class LognormalSpectrum(NamedTuple):
    """The Gaussian field behind a shifted-lognormal one, on the fft2 grid."""

    gaussian_power: np.ndarray  # P_g on the fft2 grid, clipped at 0 [pixel units]
    sigma_g2: float  # variance of g: mean of the clipped P_g (= xi_g(0) when nothing is clipped)
    clipped_fraction: float  # -sum(min(P_g, 0)) / sum(max(P_g, 0)) before clipping


def lognormal_spectrum(power: np.ndarray, shift: float = 1.0) -> LognormalSpectrum:
    """P_g for a target power grid `power` (H, W) and lognormal shift (kappa_0) `shift`.

    Raises:
        ValueError: if 1 + xi_delta / shift^2 <= 0 somewhere (no lognormal field has this
            correlation function), or if shift <= 0.
    """
    if not shift > 0:
        raise ValueError(f"lognormal shift must be > 0, got {shift}")
    xi_delta = np.fft.ifft2(power).real
    argument = 1.0 + xi_delta / shift**2
    if np.any(argument <= 0):
        raise ValueError(
            f"no lognormal field has this spectrum: 1 + xi(r) / shift^2 reaches "
            f"{argument.min():.3g} <= 0 (shift {shift:g}); use a larger shift or less power"
        )
    xi_g = np.log(argument)
    gaussian_power = np.fft.fft2(xi_g).real
    positive = gaussian_power.clip(min=0.0)
    negative = np.maximum(-gaussian_power, 0.0)
    clipped = float(negative.sum() / max(positive.sum(), np.finfo(float).tiny))
    # sigma_g^2 is the variance g really has after clipping, so that E[delta] = 0 stays exact.
    return LognormalSpectrum(positive, float(positive.mean()), clipped)


def lognormal_from_power_grid(
    power: np.ndarray, num: int, seed: int, shift: float = 1.0
) -> np.ndarray:
    """`num` shifted-lognormal maps (num, H, W) with target power grid `power` (H, W)."""
    spectrum = lognormal_spectrum(power, shift)
    g = gaussian_field_from_power_grid(spectrum.gaussian_power, num, seed)
    return shift * np.expm1(g - spectrum.sigma_g2 / 2)


def lognormal_field(
    power_spectrum: Callable[[np.ndarray], np.ndarray],
    shape: tuple[int, int],
    num: int,
    seed: int,
    shift: float = 1.0,
) -> np.ndarray:
    """`num` lognormal density contrasts delta (num, H, W) float64 with power spectrum P(k).

    delta = shift * (exp(g - sigma_g^2 / 2) - 1) > -shift, mean 0, pixel variance mean(P).

    Args:
        power_spectrum: callable target P(k), k in cycles per pixel.
        shape: (H, W) [pixels].
        num: number of maps.
        seed: random seed; the same seed reproduces the maps exactly.
        shift: the lognormal shift (the field's lower bound is -shift); 1 for a density contrast.
    """
    height, width = check_shape(shape, num)
    return lognormal_from_power_grid(power_on_grid(power_spectrum, height, width), num, seed, shift)
