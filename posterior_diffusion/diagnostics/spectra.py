"""Azimuthally binned power spectra, cross-correlation, transfer function and one-point PDF.

Convention (as `priors/power_spectrum.py`): unit pixels, x_hat = fft2(x) unnormalised,
<|x_hat(k)|^2> = H W P(|k|), k in cycles per pixel. The estimate in a bin of n modes is
P_b = mean over the bin of |x_hat|^2 / (H W), with Var(P_b) = 2 P^2 / n for a Gaussian field
(each mode's conjugate partner is in the same bin, and self-conjugate modes are chi^2_1).
"""

from __future__ import annotations

import numpy as np

from forward_models.fourier import frequency_magnitude

from ._arrays import as_numpy


def k_bin_edges(height: int, width: int, num_bins: int | None = None) -> np.ndarray:
    """num_bins + 1 edges on [0, 0.5] cycles/pixel (default min(H, W) // 2 bins); the corners
    |k| > 0.5 are left out because they are not sampled at every angle."""
    num_bins = num_bins or min(height, width) // 2
    return np.linspace(0.0, 0.5, num_bins + 1)


def azimuthal_average(grid, k_edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of values on the fft2 grid (..., H, W) over each |k| bin [k_b, k_{b+1}).

    Returns:
        mean |k| per bin (B,), the averages (..., B) and the number of modes per bin (B,).
    """
    grid = as_numpy(grid)
    k = frequency_magnitude(*grid.shape[-2:])
    edges = np.asarray(k_edges, dtype=np.float64)
    which = np.digitize(k, edges) - 1
    which[k == edges[-1]] = len(edges) - 2  # the last bin is closed
    inside = (which >= 0) & (which < len(edges) - 1)
    onehot = (which[inside][:, None] == np.arange(len(edges) - 1)).astype(np.float64)
    counts = onehot.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        k_mean = k[inside] @ onehot / counts
        average = grid[..., inside] @ onehot / counts
    return k_mean, average, counts


def power_spectrum(maps, num_bins: int | None = None, k_edges=None):
    """Binned P(k) of maps (..., H, W), package convention.

    Returns:
        k (B,) mean |k| per bin in cycles/pixel, P (..., B) and modes per bin (B,).
    """
    maps = as_numpy(maps)
    h, w = maps.shape[-2:]
    edges = k_bin_edges(h, w, num_bins) if k_edges is None else k_edges
    x_hat = np.fft.fft2(maps)
    return azimuthal_average((x_hat * np.conj(x_hat)).real / (h * w), edges)


def sample_variance_band(power, counts, nsigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """P (1 -+ nsigma sqrt(2 / n)): the Gaussian-field scatter of one map's binned estimate."""
    power = as_numpy(power)
    width = nsigma * np.sqrt(2.0 / np.asarray(counts, dtype=np.float64))
    return power * (1 - width), power * (1 + width)


def cross_correlation(p_ab, p_aa, p_bb) -> np.ndarray:
    """r(k) = P_ab / sqrt(P_aa P_bb) from binned auto and cross spectra.

    Average each spectrum over the maps (samples, tests) before taking the ratio. r = 1 where b
    is a positive multiple of a, mode by mode; NaN in empty bins.
    """
    return as_numpy(p_ab) / np.sqrt(as_numpy(p_aa) * as_numpy(p_bb))


def transfer_function(p_estimate, p_truth) -> np.ndarray:
    """T(k) = sqrt(P_estimate / P_truth) from binned spectra, each averaged over the maps first.

    T < 1 where the reconstruction has lost power (e.g. a Wiener filter).
    """
    return np.sqrt(as_numpy(p_estimate) / as_numpy(p_truth))


def one_point_pdf(maps, bins=50, value_range=None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram density of all pixel values: bin centres and density (integrates to 1)."""
    density, edges = np.histogram(
        as_numpy(maps).ravel(), bins=bins, range=value_range, density=True
    )
    return (edges[:-1] + edges[1:]) / 2, density
