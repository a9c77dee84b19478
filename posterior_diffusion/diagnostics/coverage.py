"""Per-pixel central credible-interval coverage of posterior samples.

The central interval at level a is [q_{(1-a)/2}, q_{(1+a)/2}] of the N samples, each pixel on its
own, with linearly interpolated empirical quantiles. A calibrated sampler covers the truth in a
fraction a of pixels and tests, up to a finite-N shrinkage: the interval spans order statistics
whose expected probability content is a (N - 1) / (N + 1), so E[coverage] ~ a (N - 1) / (N + 1)
(use `expected_coverage`).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._arrays import batch_tests

DEFAULT_LEVELS = np.linspace(0.0, 1.0, 21)


def expected_coverage(levels, num_samples: int) -> np.ndarray:
    """a (N - 1) / (N + 1): what an exactly calibrated sampler gives with N samples per test."""
    return np.asarray(levels, dtype=np.float64) * (num_samples - 1) / (num_samples + 1)


def binomial_band(p, n: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central `level` interval of Binomial(n, p) / n, elementwise: where a calibrated run's
    fraction of n independent hits with probability p falls."""
    n = max(int(n), 1)
    low, high = stats.binom.interval(level, n, np.clip(p, 0.0, 1.0))
    return low / n, high / n


def _inside(samples: np.ndarray, truth: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Indicator (L, K, P) that truth (K, P) lies in the central interval of samples (K, N, P)."""
    q = np.concatenate([(1 - levels) / 2, (1 + levels) / 2])
    bounds = np.quantile(samples, q, axis=1)  # (2L, K, P), 'linear' like torch.quantile
    lo, hi = bounds[: len(levels)], bounds[len(levels) :]
    return (truth[None] >= lo) & (truth[None] <= hi)


def coverage_per_test(
    samples, truth, levels=DEFAULT_LEVELS, batched: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of each test, pooled over its pixels.

    Args:
        samples: (N, ...) for one test or (K, N, ...) for K independent tests.
        truth: (...) or (K, ...).
        levels: credible levels a in [0, 1].
        batched: whether samples are (K, N, ...); None infers it (and refuses if ambiguous).

    Returns:
        levels (L,) and coverage (L, K). Pixels within one map are correlated, tests are not:
        the standard error of the pooled curve is std over tests / sqrt(K).
    """
    samples, truth, _ = batch_tests(samples, truth, batched)
    levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    k, n = samples.shape[:2]
    inside = _inside(samples.reshape(k, n, -1), truth.reshape(k, -1), levels)
    return levels, inside.mean(axis=2)


def single_test_band(
    samples: np.ndarray, levels=DEFAULT_LEVELS, max_members: int = 64
) -> tuple[np.ndarray, np.ndarray, float]:
    """Where one test's pixel coverage falls if the sampler is calibrated, and how often.

    Calibrated means the truth is one more draw from the posterior the samples come from. So each
    of M samples in turn plays the truth, its intervals made from the other N - 1: the truth's
    coverage is exchangeable with theirs, with the map's own pixel correlations (a binomial band
    over pixels is far too narrow), and lies between their smallest and largest with probability
    (M - 1) / (M + 1). The band is shifted by the expectation's change from N - 1 to N samples.
    M = min(N, `max_members`), the members evenly spaced.

    Args:
        samples: (N, ...) of one test, N >= 3.

    Returns:
        low, high (L,), and the band's probability (M - 1) / (M + 1).
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[0]
    if n < 3:
        raise ValueError(f"a single-test coverage band needs >= 3 samples, got {n}")
    levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    flat = samples.reshape(n, -1)
    chosen = np.unique(np.linspace(0, n - 1, min(n, max_members)).round().astype(int))
    coverages = np.stack(
        [_inside(np.delete(flat, j, axis=0)[None], flat[j][None], levels)[:, 0].mean(axis=1)
         for j in chosen]
    )  # fmt: skip
    shift = expected_coverage(levels, n) - expected_coverage(levels, n - 1)
    low, high = coverages.min(axis=0) + shift, coverages.max(axis=0) + shift
    m = len(chosen)
    return np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0), (m - 1) / (m + 1)


def coverage_curve(
    samples, truth, levels=DEFAULT_LEVELS, batched: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical coverage of central credible intervals, pooled over pixels and tests.

    Args:
        samples: (N, ...) for one test or (K, N, ...) for K independent tests.
        truth: (...) or (K, ...).
        levels: credible levels a in [0, 1].
        batched: whether samples are (K, N, ...); None infers it (and refuses if ambiguous).

    Returns:
        levels (L,) and empirical coverage (L,); ~ `expected_coverage(levels, N)` if calibrated.
    """
    levels, per_test = coverage_per_test(samples, truth, levels, batched)
    return levels, per_test.mean(axis=1)


def coverage_map(samples, truth, level: float, batched: bool | None = None) -> np.ndarray:
    """Per-pixel indicator that the truth is in the central interval at `level`, mean over tests.

    Args:
        samples: (N, ...) or (K, N, ...).
        truth: (...) or (K, ...).
        level: credible level a in [0, 1].
        batched: whether samples are (K, N, ...); None infers it (and refuses if ambiguous).

    Returns:
        An array of shape (...): the fraction of tests in which each pixel is covered (0 or 1 for
        a single test).
    """
    samples, truth, _ = batch_tests(samples, truth, batched)
    k, n = samples.shape[:2]
    inside = _inside(samples.reshape(k, n, -1), truth.reshape(k, -1), np.array([float(level)]))
    return inside[0].mean(axis=0).reshape(truth.shape[1:])
