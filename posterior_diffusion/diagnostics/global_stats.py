"""Whole-map statistics of each sample: log total power and log power in a few broad k bands.

Per-pixel checks miss what a non-Gaussian prior gets wrong: on a mixture prior a sampler can
cover the truth pixel by pixel while putting whole samples in the wrong component (amplitude or
slope). These statistics are one number per sample (or per sample and band), so their spread over
an ensemble can be compared with a reference's.
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_numpy
from .spectra import power_spectrum


def _fields(samples) -> np.ndarray:
    """Samples (N, ..., H, W) as (N, M, H, W), M maps per sample (channels)."""
    samples = as_numpy(samples)
    if samples.ndim < 3:
        raise ValueError(f"samples must be (N, ..., H, W), got shape {samples.shape}")
    return samples.reshape(samples.shape[0], -1, *samples.shape[-2:])


def log_total_power(samples) -> np.ndarray:
    """log of the mean over pixels (and channels) of x^2, per sample.

    Args:
        samples: (N, ..., H, W), numpy or torch.

    Returns:
        (N,) natural logs; for a zero-mean field this is the log of its pixel variance.
    """
    fields = _fields(samples)
    return np.log(np.square(fields).mean(axis=(1, 2, 3)))


def band_edges(height: int, width: int, num_bands: int = 3) -> np.ndarray:
    """num_bands + 1 edges in |k| (cycles per pixel), log-spaced from the fundamental
    1 / max(H, W) to 0.5 so each band spans the same factor in scale, with the first edge moved
    to 0 so the first band also holds the k = 0 mode.

    Corners |k| > 0.5 are left out, as in `spectra.k_bin_edges`.
    """
    if num_bands < 1:
        raise ValueError(f"num_bands must be >= 1, got {num_bands}")
    fundamental = 1.0 / max(height, width)
    edges = np.geomspace(fundamental, 0.5, num_bands + 1)
    edges[0] = 0.0
    return edges


def log_band_powers(samples, num_bands: int = 3) -> np.ndarray:
    """log of the power P_b per sample in `num_bands` broad |k| bands (`band_edges`).

    P_b is the package's binned estimate (`spectra.power_spectrum`): the mean over the band's
    modes of |x_hat|^2 / (H W), averaged over channels.

    Args:
        samples: (N, ..., H, W), numpy or torch.
        num_bands: number of bands between k = 0 and 0.5 cycles per pixel.

    Returns:
        (N, num_bands) natural logs, the largest scales first.
    """
    fields = _fields(samples)
    edges = band_edges(*fields.shape[-2:], num_bands)
    _, power, counts = power_spectrum(fields, k_edges=edges)
    if np.any(counts == 0):
        raise ValueError(
            f"a {fields.shape[-2]} x {fields.shape[-1]} grid has no modes in some of "
            f"{num_bands} bands: use fewer"
        )
    return np.log(power.mean(axis=1))
