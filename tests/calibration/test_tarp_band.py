"""TARP's band in the calibration report: centred on what a calibrated run with N samples gives,
and simultaneous (a calibrated run leaves it at some alpha 5% of the time)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from posterior_diffusion.calibration.aggregate import tarp
from posterior_diffusion.diagnostics.tarp import DEFAULT_ALPHA, expected_ecp


def test_a_calibrated_run_lies_inside_the_band_at_every_level():
    # A calibrated posterior with N samples gives f uniform on {0, 1/N, ..., 1}: take each value
    # equally often, so the ECP is exactly its expectation (N / (N + 1) at alpha = 1, not 1).
    n = 32
    tests = [{"tarp_f": m / n} for m in range(n + 1)] * 2
    result = tarp(tests, n)
    ecp = result["ecp"]
    assert ecp[-1] == n / (n + 1)
    np.testing.assert_allclose(ecp, expected_ecp(DEFAULT_ALPHA, n))
    assert np.all((result["band_low"] <= ecp) & (ecp <= result["band_high"]))


def test_a_sampler_too_narrow_leaves_the_band():
    # Too narrow: the truth is farther from the reference than every sample in most tests.
    n = 32
    tests = [{"tarp_f": 1.0}] * 40 + [{"tarp_f": 0.5}] * 26
    result = tarp(tests, n)
    outside = (result["ecp"] < result["band_low"]) | (result["ecp"] > result["band_high"])
    assert outside.sum() >= 5


def outside_rate(low, high, num_tests, num_samples, runs, seed):
    """Fraction of simulated calibrated runs whose ECP leaves [low, high] at some alpha."""
    rng = np.random.default_rng(seed)
    f = rng.integers(0, num_samples + 1, size=(runs, num_tests)) / num_samples
    ecp = (f[:, :, None] < DEFAULT_ALPHA[None, None, :]).mean(axis=1)
    return float(np.mean(np.any((ecp < low - 1e-12) | (ecp > high + 1e-12), axis=1)))


def test_a_calibrated_run_leaves_the_band_somewhere_five_percent_of_the_time():
    # Checked on runs simulated with another seed than the band's own; 2,000 runs give the rate
    # to +-0.005 (one binomial error), so +-0.02 is four errors.
    n, k, runs = 32, 40, 2000
    result = tarp([{"tarp_f": 0.5}] * k, n)
    rate = outside_rate(result["band_low"], result["band_high"], k, n, runs, seed=12345)
    assert abs(rate - 0.05) < 0.02
    assert 0.95 < result["band_pointwise_level"] < 1.0
    # Control: the pointwise 95% band, used before, refuses about a quarter of calibrated runs.
    expected = expected_ecp(DEFAULT_ALPHA, n)
    low, high = stats.binom.interval(0.95, k, expected)
    assert outside_rate(low / k, high / k, k, n, runs, seed=12345) > 0.15
