"""TARP's band in the calibration report: centred on what a calibrated run with N samples gives."""

from __future__ import annotations

import numpy as np

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
