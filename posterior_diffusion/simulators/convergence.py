"""Weak-lensing convergence maps: shifted-lognormal kappa with an analytic C_ell.

kappa = kappa_0 * (exp(g - sigma_g^2 / 2) - 1), the shifted-lognormal model (Hilbert, Hartlap &
Schneider 2011, A&A 536, A85; Xavier et al. 2016, MNRAS 459, 3693): mean 0, kappa > -kappa_0.
The flat-sky C_ell becomes the pixel convention of `priors/power_spectrum.py` through
P(k) = C_ell(ell = 2 pi k / pixel_rad) / pixel_rad^2, pixel_rad the pixel side in radians.
TODO: C_ell from pyccl or camb for a given cosmology and source redshift.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from posterior_diffusion.priors.power_spectrum import power_on_grid

from .grf import check_shape
from .lognormal import lognormal_from_power_grid

ARCMIN = np.pi / (180.0 * 60.0)  # one arcminute in radians

DEFAULT_SHIFT = 0.02  # kappa_0, roughly right for sources at z ~ 1 (Xavier et al. 2016, Fig. 3)
D_ELL_AMPLITUDE = 1e-4  # ell (ell + 1) C_ell / 2 pi at ell = 1000
D_ELL_SLOPE = 0.8  # logarithmic slope of ell (ell + 1) C_ell / 2 pi above the turnover
ELL_TURNOVER = 100.0  # below it ell (ell + 1) C_ell / 2 pi falls as ell^(2 + slope)


def convergence_cl(ell: np.ndarray) -> np.ndarray:
    """An approximate convergence C_ell for sources at z ~ 1 (an analytic fit, not a theory).

    ell (ell + 1) C_ell / 2 pi = 1e-4 (ell / 1000)^0.8 / (1 + (100 / ell)^2), and C_0 = 0: within
    a factor ~2 of LCDM predictions for 100 < ell < 10^4; the turnover makes C_ell ~ ell^0.8 at
    low ell, close to Limber's ~ ell^1 for a matter spectrum P(k) ~ k on large scales.
    """
    ell = np.asarray(ell, dtype=np.float64)
    out = np.zeros_like(ell)
    pos = ell > 0
    d_ell = (
        D_ELL_AMPLITUDE
        * (ell[pos] / 1000.0) ** D_ELL_SLOPE
        / (1.0 + (ELL_TURNOVER / ell[pos]) ** 2)
    )
    out[pos] = 2 * np.pi * d_ell / (ell[pos] * (ell[pos] + 1.0))
    return out


def convergence_power_spectrum(
    pixel_scale_arcmin: float, cl: Callable[[np.ndarray], np.ndarray] = convergence_cl
) -> Callable[[np.ndarray], np.ndarray]:
    """P(k), k in cycles per pixel, of a convergence with spectrum C_ell at the given pixel side.

    Args:
        pixel_scale_arcmin: pixel side [arcmin].
        cl: C_ell as a function of ell [steradian].
    """
    if not pixel_scale_arcmin > 0:
        raise ValueError(f"pixel scale must be > 0 arcmin, got {pixel_scale_arcmin}")
    pixel_rad = pixel_scale_arcmin * ARCMIN

    def power(k: np.ndarray) -> np.ndarray:
        return cl(2 * np.pi * np.asarray(k) / pixel_rad) / pixel_rad**2

    return power


def convergence_map(
    shape: tuple[int, int],
    num: int,
    seed: int,
    pixel_scale_arcmin: float = 1.0,
    shift: float = DEFAULT_SHIFT,
    power_spectrum: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """`num` shifted-lognormal convergence maps (num, H, W) float64.

    Mean 0, pixel variance the mean over the fft grid of P(k), and kappa > -shift everywhere.

    Args:
        shape: (H, W) [pixels].
        num: number of maps.
        seed: random seed; the same seed reproduces the maps exactly.
        pixel_scale_arcmin: pixel side [arcmin]; sets which ell each pixel frequency is.
        shift: kappa_0, the shifted-lognormal parameter (kappa > -kappa_0).
        power_spectrum: P(k), k in cycles per pixel, instead of the analytic C_ell at this scale.
    """
    height, width = check_shape(shape, num)
    spectrum = power_spectrum or convergence_power_spectrum(pixel_scale_arcmin)
    return lognormal_from_power_grid(power_on_grid(spectrum, height, width), num, seed, shift)
