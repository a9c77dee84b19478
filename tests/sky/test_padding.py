"""Survey edges: a patch cut from a much larger field, reconstructed with a periodic prior, is
calibrated at its edges once padded, against the exact posterior computed densely on the large
domain (issue 18); unpadded it is not (the control)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from posterior_diffusion import api
from posterior_diffusion.io import Observation
from posterior_diffusion.padding import correlation_length
from posterior_diffusion.priors.gaussian import GaussianPrior
from posterior_diffusion.priors.power_spectrum import TabulatedPowerSpectrum

LARGE, PATCH = 64, 16
NOISE = 0.3  # of the field's pixel std
TESTS, MEMBERS = 8, 64


def spectrum(k):
    return 1.0 / (1.0 + (np.asarray(k) / 0.05) ** 2) ** 1.5


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    k = np.linspace(0.0, 0.75, 400)
    table = tmp_path_factory.mktemp("pk") / "pk.txt"
    np.savetxt(table, np.column_stack([k, spectrum(k)]))
    large = GaussianPrior(TabulatedPowerSpectrum.from_file(table), (1, LARGE, LARGE))
    # The patch's prior covariance, exactly: the large periodic field's correlation function.
    xi = np.fft.ifft2(large.power.numpy().reshape(LARGE, LARGE)).real
    rows, cols = np.divmod(np.arange(PATCH * PATCH), PATCH)
    covariance = xi[(rows[:, None] - rows[None]) % LARGE, (cols[:, None] - cols[None]) % LARGE]
    sigma_n = NOISE * float(np.sqrt(xi[0, 0]))
    posterior_cov = np.linalg.inv(np.linalg.inv(covariance) + np.eye(PATCH**2) / sigma_n**2)
    draws = large.sample(TESTS, torch.Generator().manual_seed(0))
    truths = draws[:, 0, :PATCH, :PATCH].numpy()
    rng = np.random.default_rng(1)
    ys = truths + sigma_n * rng.standard_normal(truths.shape)
    means = ys.reshape(TESTS, -1) @ posterior_cov.T / sigma_n**2
    return table, sigma_n, ys, means, np.sqrt(np.diag(posterior_cov)), posterior_cov


EDGE = np.zeros((PATCH, PATCH), dtype=bool)
EDGE[:2], EDGE[-2:], EDGE[:, :2], EDGE[:, -2:] = True, True, True, True


def exact_mass(samples, mean, std, level) -> float:
    """Exact posterior mass of each edge pixel's central interval from the samples, averaged."""
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    mass = norm.cdf((hi - mean) / std) - norm.cdf((lo - mean) / std)
    return float(mass[EDGE].mean())


def edge_masses(setting, pad: int | None) -> tuple[list[float], float]:
    table, sigma_n, ys, means, std, _ = setting
    masses, ratios = [], []
    for t in range(TESTS):
        obs = Observation(
            y=ys[t][None], noise_std=np.asarray(sigma_n), attrs={"forward_model": "noise"}
        )
        ds = api.reconstruct(obs, prior="gaussian", power_spectrum=str(table), num_samples=MEMBERS,
                             seed=t, progress=False, pad=pad)  # fmt: skip
        samples = ds["samples"].values.reshape(MEMBERS, PATCH, PATCH)
        mean, s = means[t].reshape(PATCH, PATCH), std.reshape(PATCH, PATCH)
        masses.append([exact_mass(samples, mean, s, level) for level in (0.68, 0.9)])
        ratios.append(np.median(samples.std(0, ddof=1)[EDGE] / s[EDGE]))
    return np.mean(masses, axis=0).tolist(), float(np.mean(ratios))


def exact_draw_masses(setting) -> list[float]:
    _, _, _, means, std, cov = setting
    rng = np.random.default_rng(2)
    root = np.linalg.cholesky(cov)
    masses = []
    for t in range(TESTS):
        draws = means[t] + rng.standard_normal((MEMBERS, PATCH**2)) @ root.T
        m, s = means[t].reshape(PATCH, PATCH), std.reshape(PATCH, PATCH)
        masses.append(
            [exact_mass(draws.reshape(MEMBERS, PATCH, PATCH), m, s, lv) for lv in (0.68, 0.9)]
        )
    return np.mean(masses, axis=0).tolist()


def test_padding_calibrates_the_patch_edges_and_no_padding_does_not(setting):
    """Per-pixel coverage (the exact posterior mass of each sample interval) within 2 pixels of
    the edge, against exact draws' at the same N: within 0.02 padded; the unpadded run misses.
    Measured: exact draws 0.663 / 0.875 at 68 / 90%; padded by 11 (to 32 x 32) 0.661 / 0.874,
    edge std ratio 1.002; unpadded 0.615 / 0.834, edge std ratio 0.977."""
    pad = correlation_length(spectrum, (PATCH, PATCH))
    assert 4 <= pad <= 3 * PATCH
    reference = exact_draw_masses(setting)
    padded, padded_ratio = edge_masses(setting, pad)
    unpadded, unpadded_ratio = edge_masses(setting, 0)
    assert max(abs(a - b) for a, b in zip(padded, reference, strict=True)) < 0.02, (
        padded,
        reference,
    )
    assert 0.95 < padded_ratio < 1.05
    assert max(abs(a - b) for a, b in zip(unpadded, reference, strict=True)) > 0.02, (
        unpadded,
        reference,
    )
