"""Survey edges: a non-periodic patch embedded in a larger periodic domain of unobserved pixels.

The FFT-based operators and the priors are periodic: on the patch's own grid its left edge is its
right edge's neighbour. Padded with unobserved pixels (bottom and right; on a torus that separates
every edge from the opposite one by the padding), the patch's far sides decorrelate, and the
samples are cropped back. How much: the lag beyond which the prior's correlation function stays
below CORRELATION_LEFT of its variance, from the spectrum the prior was built or trained on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from posterior_diffusion.defaults import MAP_SIDE_MULTIPLE
from posterior_diffusion.io import Observation
from posterior_diffusion.priors import SHIPPED_PRIORS, Prior, default_power_spectrum, shipped_prior
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.power_spectrum import TabulatedPowerSpectrum, power_on_grid

CORRELATION_LEFT = 0.05


def correlation_length(spectrum: Callable[[np.ndarray], np.ndarray], shape: tuple[int, int]) -> int:
    """Pixels beyond which |xi(r)| / xi(0) < CORRELATION_LEFT, xi the correlation function of
    `spectrum` on a grid four times `shape` (so lags up to twice the patch are resolved)."""
    height, width = (4 * int(n) for n in shape)
    xi = np.fft.ifft2(power_on_grid(spectrum, height, width)).real
    xi = np.abs(xi / xi[0, 0])
    lag_y = np.minimum(np.arange(height), height - np.arange(height))[:, None]
    lag_x = np.minimum(np.arange(width), width - np.arange(width))[None, :]
    distance = np.hypot(lag_y, lag_x)
    above = distance[xi >= CORRELATION_LEFT]
    return int(math.ceil(above.max())) + 1 if above.size else 1


def prior_spectrum(
    prior: str | Prior | None, power_spectrum: str | None
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The spectrum behind a prior named as `reconstruct` names it, or None when unknown."""
    if power_spectrum is not None:
        return TabulatedPowerSpectrum.from_file(power_spectrum)
    if isinstance(prior, Prior):
        return None
    name = "default" if prior is None else str(prior).strip()
    if name.lower() in ("default", "gaussian"):
        return default_power_spectrum()  # the spectrum the shipped prior's maps were made with
    network = shipped_prior(name.lower()) if name.lower() in SHIPPED_PRIORS else None
    tables = (network or NetworkPrior.from_file(name)).power_tables
    if not tables:
        return None
    return tables[0]


def padded_shape(shape: tuple[int, int], pad: int) -> tuple[int, int]:
    """Each side plus `pad`, rounded up to a multiple of MAP_SIDE_MULTIPLE (unchanged when pad = 0)."""
    if pad <= 0:
        return tuple(shape)
    return tuple(MAP_SIDE_MULTIPLE * math.ceil((int(n) + pad) / MAP_SIDE_MULTIPLE) for n in shape)


def pad_observation(obs: Observation, shape: tuple[int, int]) -> Observation:
    """`obs` on an (H', W') grid: data 0 and unobserved in the new pixels (bottom and right)."""
    height, width = obs.y.shape[-2:]
    extra = ((0, shape[0] - height), (0, shape[1] - width))

    def spatial(array: np.ndarray, value: float) -> np.ndarray:
        if array.ndim < 2 or array.shape[-2:] != (height, width):
            return array  # a scalar or per-channel value broadcasts on any grid
        return np.pad(array, ((0, 0),) * (array.ndim - 2) + extra, constant_values=value)

    mask = np.ones((height, width)) if obs.mask is None else obs.mask
    arrays = {
        name: spatial(np.asarray(a), 0.0 if name == "n_gal_per_arcmin2" else 1.0)
        for name, a in obs.arrays.items()
        if name != "psf"
    }
    if "psf" in obs.arrays:
        arrays["psf"] = obs.arrays["psf"]
    return replace(
        obs,
        y=spatial(obs.y, 0.0),
        mask=spatial(np.asarray(mask, dtype=np.float64), 0.0),
        noise_std=None if obs.noise_std is None else spatial(np.asarray(obs.noise_std), 1.0),
        truth=None,
        arrays=arrays,
    )
