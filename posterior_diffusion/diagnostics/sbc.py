"""Simulation-based calibration ranks (Talts, Betancourt, Simpson, Vehtari and Gelman 2018,
"Validating Bayesian inference algorithms with simulation-based calibration").

For a statistic s and test j, rank_j = #{i : s(theta_ij) < s(theta*_j)} in {0, ..., N}; if the
posterior is exact the rank is uniform on those N + 1 values. Ties (integer statistics such as
peak counts) are broken uniformly at random. Ranks of different statistics of one map are
correlated (neighbouring pixels, overlapping bins): histogram each statistic over independent
tests and let the caller decide how to combine them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from ._arrays import as_numpy, batch_tests
from .peaks import local_maxima
from .spectra import power_spectrum


def pixel_values(maps: np.ndarray) -> np.ndarray:
    """Every pixel as a statistic: (M, ...) -> (M, D)."""
    return maps.reshape(maps.shape[0], -1)


def random_projections(maps: np.ndarray, num: int = 16, seed: int = 0) -> np.ndarray:
    """Projections on `num` random unit vectors (fixed by `seed`): (M, ...) -> (M, num)."""
    flat = maps.reshape(maps.shape[0], -1)
    directions = np.random.default_rng(seed).standard_normal((flat.shape[1], num))
    return flat @ (directions / np.linalg.norm(directions, axis=0))


def power_spectrum_bins(maps: np.ndarray, num_bins: int | None = None) -> np.ndarray:
    """Azimuthally binned power spectrum (package convention, see `spectra`): (M, H, W) ->
    (M, num_bins); leading channel axes are averaged."""
    _, power, _ = power_spectrum(maps, num_bins=num_bins)
    return power.reshape(maps.shape[0], -1, power.shape[-1]).mean(axis=1)


def peak_counts(maps: np.ndarray, thresholds=(0.0, 1.0, 2.0)) -> np.ndarray:
    """Number of local maxima (8 neighbours, periodic) above nu sigma, sigma each map's std.

    (M, ..., H, W) -> (M, len(thresholds)); peaks are counted over all channels.
    """
    height = (maps - maps.mean(axis=(-2, -1), keepdims=True)) / maps.std(
        axis=(-2, -1), keepdims=True
    )
    is_peak = local_maxima(height)
    flat_h = height.reshape(maps.shape[0], -1)
    flat_p = is_peak.reshape(maps.shape[0], -1)
    return np.stack([(flat_p & (flat_h > nu)).sum(axis=1) for nu in thresholds], axis=1).astype(
        np.float64
    )


def sbc_ranks(
    samples,
    truth,
    statistic: Callable[[np.ndarray], np.ndarray] = pixel_values,
    seed: int = 0,
    batched: bool | None = None,
) -> np.ndarray:
    """Rank of the truth's statistic among the samples', per test and statistic.

    Args:
        samples: (N, ...) or (K, N, ...).
        truth: (...) or (K, ...).
        statistic: maps (M, ...) -> (M, S) numbers; e.g. `pixel_values`,
            `functools.partial(random_projections, num=16, seed=0)`, `power_spectrum_bins`,
            `peak_counts`.
        seed: for breaking ties at random.
        batched: whether samples are (K, N, ...); None infers it (and refuses if ambiguous).

    Returns:
        Integer ranks in [0, N], shape (K, S) (or (S,) for a single test).
    """
    samples, truth, single = batch_tests(samples, truth, batched)
    k, n = samples.shape[:2]
    s_samples = as_numpy(statistic(samples.reshape(k * n, *samples.shape[2:])))
    s_samples = s_samples.reshape(k, n, -1)
    s_truth = as_numpy(statistic(truth)).reshape(k, 1, -1)
    below = (s_samples < s_truth).sum(axis=1)
    ties = (s_samples == s_truth).sum(axis=1)
    ranks = below + np.random.default_rng(seed).integers(0, ties + 1)
    return ranks[0] if single else ranks


def rank_histogram(ranks, num_samples: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ranks (K, S) in `bins` bins over {0, ..., N}, per statistic.

    Returns:
        counts (S, bins) and the expected fraction per bin (bins,) under uniformity (bins hold
        unequal numbers of rank values when bins does not divide N + 1).
    """
    ranks = np.asarray(ranks).astype(np.int64)
    ranks = ranks.reshape(ranks.shape[0], -1) if ranks.ndim > 1 else ranks[:, None]
    which = (np.arange(num_samples + 1) * bins) // (num_samples + 1)
    expected = np.bincount(which, minlength=bins) / (num_samples + 1)
    binned = which[ranks]  # (K, S)
    counts = np.stack([np.bincount(b, minlength=bins) for b in binned.T])
    return counts, expected


def rank_uniformity_pvalue(ranks, num_samples: int, bins: int) -> np.ndarray:
    """Chi^2 test p-value (scipy.stats.chisquare) that each statistic's ranks are uniform, (S,).

    Valid when the K tests are independent and each bin expects a count of ~5 or more.
    """
    counts, expected = rank_histogram(ranks, num_samples, bins)
    total = counts.sum(axis=1, keepdims=True)
    return stats.chisquare(counts, f_exp=total * expected, axis=1).pvalue


def rank_shift(ranks, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean-rank shift of each statistic: z and its two-sided normal p-value, each (S,).

    Under an exact posterior a rank is uniform on {0, ..., N}: mean N / 2, variance
    ((N + 1)^2 - 1) / 12, so the mean over K independent tests is z-scored against those. A
    steady bias of the samples (the truth a third of a posterior std off, say) moves every rank
    the same way; the chi^2 over histogram bins spreads that over its bins and needs more tests
    to see it. Normal approximation: K of 20 or more.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    ranks = ranks.reshape(ranks.shape[0], -1) if ranks.ndim > 1 else ranks[:, None]
    variance = ((num_samples + 1) ** 2 - 1) / 12.0
    z = (ranks.mean(axis=0) - num_samples / 2.0) / np.sqrt(variance / ranks.shape[0])
    return z, 2.0 * stats.norm.sf(np.abs(z))
