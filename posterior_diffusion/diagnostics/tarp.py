"""TARP expected coverage probability (Lemos, Coogan, Hezaveh and Perreault-Levasseur 2023, ICML,
"Sampling-based accuracy testing of posterior estimators for general inference").

For test j with samples theta_ij (i = 1..N, flattened to D numbers), truth theta*_j and a
reference point r_j: d_ij = |theta_ij - r_j|, d*_j = |theta*_j - r_j|, f_j = (1/N) sum_i
1[d_ij < d*_j] and ECP(alpha) = (1/K) sum_j 1[f_j < alpha]. A calibrated posterior gives f_j
uniform, so ECP(alpha) = alpha up to a discreteness of 1 / (N + 1).

Why the references are prior draws (calibration draws one per test, independent of it):
  The test is exact whenever (theta*_j, theta_1j, ..., theta_Nj) stay exchangeable given r_j: r_j
  independent of them (an independent prior draw per test -- the paper's construction) or a
  symmetric function of them. The `tarp` package's default draws r_j uniformly in the
  per-coordinate [min, max] box of all samples and truths: symmetric, so valid too. On maps with
  thousands of pixels it has been reported to degenerate (a box-uniform r_j lies ~ sqrt(D / 12)
  box widths from everything, so d_ij and d*_j are long, nearly parallel and f_j is decided by a
  near-constant projection); on 16 x 16 P1 maps with exact posterior samples we measured no
  collapse (max |ECP - alpha| 0.08 at K = 50, 0.11 at K = 100, within noise) but less power than
  prior draws against a mean shifted by one posterior std (0.28 against 0.57 at K = 100,
  N = 64). Prior draws sit at the data's own typical distance, so d_ij and d*_j fluctuate on the
  scale of the posterior whatever D.
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_numpy, batch_tests
from .coverage import binomial_band

DEFAULT_ALPHA = np.linspace(0.0, 1.0, 21)


def tarp_fractions(samples, truth, references, metric: str = "euclidean") -> np.ndarray:
    """f_j = (1/N) sum_i 1[|theta_ij - r_j| < |theta*_j - r_j|] for each test j.

    Args:
        samples: (K, N, ...); truth: (K, ...); references: (K, ...) reference points r_j.
        metric: 'euclidean' or 'manhattan', over all flattened coordinates.
    """
    samples, truth, _ = batch_tests(samples, truth, batched=True)
    k, n = samples.shape[:2]
    samples, truth = samples.reshape(k, n, -1), truth.reshape(k, -1)
    references = as_numpy(references).reshape(k, -1)
    if references.shape != truth.shape:
        raise ValueError(f"references {references.shape} for truths {truth.shape} (flattened)")
    if metric == "euclidean":
        d_samples = np.sqrt(np.square(samples - references[:, None]).sum(-1))
        d_truth = np.sqrt(np.square(truth - references).sum(-1))
    elif metric == "manhattan":
        d_samples = np.abs(samples - references[:, None]).sum(-1)
        d_truth = np.abs(truth - references).sum(-1)
    else:
        raise ValueError(f"metric must be 'euclidean' or 'manhattan', not '{metric}'")
    return (d_samples < d_truth[:, None]).mean(axis=1)


def expected_ecp(alpha, num_samples: int) -> np.ndarray:
    """ECP(alpha) of a calibrated posterior with N samples per test: f_j is uniform on
    {0, 1/N, ..., 1}, so P(f_j < alpha) = ceil(alpha N) / (N + 1), which is N / (N + 1), not 1, at
    alpha = 1 (a band built around alpha itself refused calibrated runs there)."""
    alpha = as_numpy(alpha)
    return np.ceil(np.round(alpha * num_samples, 9)) / (num_samples + 1)


def simultaneous_band(
    alpha, num_tests: int, num_samples: int, level: float = 0.95, draws: int = 4000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(low, high, pointwise level): binomial bands around a calibrated run's ECP, widened until a
    calibrated run stays inside at every alpha with probability `level`.

    A band of pointwise level 0.95 at each of 21 alphas is left somewhere by 23-28% of calibrated
    runs (K = 24-100 tests, N = 32; measured by this simulation), so "inside the band" would refuse
    a quarter of exact samplers. The pointwise level is found by simulating `draws` calibrated
    runs (f uniform on {0, 1/N, ..., 1}; fixed seed, so the band is reproducible; its
    simultaneous level is known to about +-0.004)."""
    alpha = as_numpy(alpha)
    n, k = int(num_samples), max(int(num_tests), 1)
    expected = expected_ecp(alpha, n)
    # ECP(alpha) = #{m < ceil(alpha N)} / K: from each run's counts of the N + 1 values of m.
    counts = np.random.default_rng(seed).multinomial(k, np.full(n + 1, 1.0 / (n + 1)), draws)
    below = np.concatenate([np.zeros((draws, 1)), np.cumsum(counts, axis=1)], axis=1)
    ecp = below[:, np.ceil(np.round(alpha * n, 9)).astype(int)] / k  # (draws, alphas)

    def inside(pointwise: float) -> float:
        low, high = binomial_band(expected, k, pointwise)
        return float(np.mean(np.all((ecp >= low - 1e-12) & (ecp <= high + 1e-12), axis=1)))

    # Bisect on log10(1 - pointwise level); the fraction inside grows with the level.
    lo_exp, hi_exp = -np.log10(1.0 - level), 8.0
    for _ in range(40):
        mid = 0.5 * (lo_exp + hi_exp)
        if inside(1.0 - 10.0**-mid) >= level:
            hi_exp = mid
        else:
            lo_exp = mid
    pointwise = 1.0 - 10.0**-hi_exp
    low, high = binomial_band(expected, k, pointwise)
    return low, high, pointwise


def ecp_curve(f, alpha=DEFAULT_ALPHA) -> np.ndarray:
    """ECP(alpha) = mean_j 1[f_j < alpha], for each alpha."""
    f, alpha = as_numpy(f).reshape(-1), as_numpy(alpha)
    return (f[None, :] < alpha.reshape(-1, 1)).mean(axis=1).reshape(alpha.shape)
