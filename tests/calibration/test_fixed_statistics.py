"""A P(k) bin the simulations fix (the k = 0 bin of zero-mean maps) is reported apart from SBC:
its ranks are float noise, so they would fail or pass uniformity by accident."""

from __future__ import annotations

import numpy as np

from posterior_diffusion.calibration.aggregate import sbc
from posterior_diffusion.diagnostics import sbc_ranks
from posterior_diffusion.diagnostics.sbc import power_spectrum_bins
from posterior_diffusion.diagnostics.spectra import power_spectrum

N, K, SIDE = 16, 40, 12


def fake_tests(zero_mean: bool, sample_mean_scatter: float) -> list[dict]:
    """Calibrated Gaussian-white-noise tests: truth and samples from one distribution, except
    that the truths' (and optionally the samples') map means are set to 0."""
    rng = np.random.default_rng(1)
    tests = []
    for j in range(K):
        maps = rng.standard_normal((N + 1, SIDE, SIDE))
        if zero_mean:
            maps -= maps.mean(axis=(-2, -1), keepdims=True)
            maps[1:] += sample_mean_scatter * rng.standard_normal((N, 1, 1))
        truth, samples = maps[0], maps[1:]
        ranks = {
            f"rank_{name}": sbc_ranks(samples, truth, statistic, seed=j)
            for name, statistic in (
                ("pixels", lambda m: m.reshape(m.shape[0], -1)),
                ("projections", lambda m: m.reshape(m.shape[0], -1)[:, :4]),
                ("power", power_spectrum_bins),
                ("peaks", lambda m: m.reshape(m.shape[0], -1)[:, :2]),
            )
        }
        _, p_truth, _ = power_spectrum(truth[None])
        _, p_samples, _ = power_spectrum(samples)
        tests.append({**ranks, "p_truth": p_truth[0], "p_samples": p_samples})
    return tests


def test_a_bin_every_truth_shares_is_not_ranked_and_its_departure_is_reported():
    power = sbc(fake_tests(zero_mean=True, sample_mean_scatter=0.0), N)["families"]["power"]
    assert list(power["fixed"]["statistics"]) == [0]
    assert np.isnan(power["pvalues"][0]) and np.all(np.isfinite(power["pvalues"][1:]))
    assert power["num_statistics"] == len(power["pvalues"]) - 1
    assert power["fixed"]["samples_max_departure"] < 1e-20
    # Samples whose means scatter where the truths' cannot: reported as a large departure.
    loose = sbc(fake_tests(zero_mean=True, sample_mean_scatter=0.1), N)["families"]["power"]
    assert loose["fixed"]["samples_max_departure"] > 0.1


def test_bins_that_vary_between_truths_are_all_ranked():
    power = sbc(fake_tests(zero_mean=False, sample_mean_scatter=0.0), N)["families"]["power"]
    assert power["fixed"] is None
    assert np.all(np.isfinite(power["pvalues"]))
