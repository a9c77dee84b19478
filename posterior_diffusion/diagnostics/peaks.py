"""A peak catalogue from a posterior ensemble: the peaks of the smoothed field, how sure the
posterior is of each, and the distribution of its height.

Candidates are the local maxima (8 periodic neighbours) of the smoothed posterior mean whose
posterior signal-to-noise (mean over the samples' std, both smoothed) exceeds a threshold. For
each, every smoothed sample is searched for a local maximum within `radius` pixels at least
`match_fraction` of the mean's peak height (so that a noise blip is not taken for the peak): the
fraction of samples that have one is the posterior probability that the peak is there (at that
smoothing), and the heights (and positions) of the found maxima are its posterior distribution.
Pure arrays here; sky positions and files: `peak_catalog.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gaussian_smooth(maps: np.ndarray, sigma_pixels: float) -> np.ndarray:
    """Periodic Gaussian smoothing of (..., H, W) maps, kernel std `sigma_pixels` (0: none)."""
    if sigma_pixels <= 0:
        return np.asarray(maps, dtype=np.float64)
    height, width = maps.shape[-2:]
    ky = np.fft.fftfreq(height)[:, None]
    kx = np.fft.fftfreq(width)[None, :]
    transfer = np.exp(-2.0 * np.pi**2 * sigma_pixels**2 * (kx**2 + ky**2))
    return np.fft.ifft2(np.fft.fft2(maps) * transfer).real


def local_maxima(field: np.ndarray) -> np.ndarray:
    """(..., H, W) bool: strictly above its 8 periodic neighbours."""
    is_peak = np.ones(field.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                is_peak &= field > np.roll(field, (dy, dx), axis=(-2, -1))
    return is_peak


@dataclass
class Peak:
    row: int  # pixel of the posterior mean's peak
    column: int
    mean_height: float  # the smoothed posterior mean there
    probability: float  # fraction of samples with a local maximum within the radius
    heights: np.ndarray  # the found maxima's heights, one per sample that has one
    offsets: np.ndarray  # (found, 2): their (row, column) offsets from the mean's peak


def peak_catalogue(
    samples: np.ndarray,
    sigma_pixels: float,
    radius_pixels: float,
    min_snr: float,
    match_fraction: float = 0.5,
) -> list[Peak]:
    """Peaks of the smoothed posterior mean of `samples` (N, H, W) with mean / std > `min_snr`,
    highest first, each with its posterior probability and height distribution."""
    smoothed = gaussian_smooth(np.asarray(samples, dtype=np.float64), sigma_pixels)
    mean = smoothed.mean(axis=0)
    maxima = local_maxima(smoothed)
    height, width = mean.shape
    snr = mean / np.maximum(smoothed.std(axis=0, ddof=1), np.finfo(float).tiny)
    rows, columns = np.nonzero(local_maxima(mean) & (snr > min_snr))
    order = np.argsort(-mean[rows, columns])
    span = int(np.ceil(radius_pixels))
    dy, dx = np.mgrid[-span : span + 1, -span : span + 1]
    inside = dy**2 + dx**2 <= radius_pixels**2
    dy, dx = dy[inside], dx[inside]
    peaks = []
    for r, c in zip(rows[order], columns[order], strict=True):
        ys, xs = (r + dy) % height, (c + dx) % width
        high_enough = smoothed[:, ys, xs] >= match_fraction * mean[r, c]
        window = np.where(maxima[:, ys, xs] & high_enough, smoothed[:, ys, xs], -np.inf)
        found = np.isfinite(window.max(axis=1))
        best = window[found].argmax(axis=1)
        peaks.append(
            Peak(
                row=int(r),
                column=int(c),
                mean_height=float(mean[r, c]),
                probability=float(found.mean()),
                heights=window[found][np.arange(best.size), best],
                offsets=np.stack([dy[best], dx[best]], axis=1),
            )
        )
    return peaks
