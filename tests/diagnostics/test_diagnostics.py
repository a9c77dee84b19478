"""Calibration diagnostics on exact Gaussian posteriors (P1, 16 x 16) and two broken samplers.

K = 100 independent (truth, y) tests with N = 64 exact posterior samples each. Tolerances are 5
standard errors of the statistic over the K independent tests (pixels of one map are correlated,
so the spread between tests, not the pixel count, sets the error), plus the known finite-N bias.
The broken samplers: over-confident (deviations from the exact mean scaled by 0.5) and biased
(mean shifted by one posterior std along a random whitened direction: w = S u, |u|^2 = D).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from posterior_diffusion import diagnostics as dg
from posterior_diffusion.priors import GaussianPrior
from posterior_diffusion.priors.power_spectrum import power_on_grid
from posterior_diffusion.references.gaussian import exact_posterior
from posterior_diffusion.references.gaussian_problems import gaussian_problem, interval_coverage

SHAPE = (16, 16)
K, N = 100, 64
ALPHA = np.linspace(0, 1, 21)
RANK_BINS = 5  # 13 rank values per bin, 20 tests expected per bin


@pytest.fixture(scope="module")
def ensembles():
    prior, model = gaussian_problem("P1", SHAPE, seed=0)
    g = torch.Generator().manual_seed(0)
    truths = prior.sample(K, g)
    exact, means = [], []
    for truth in truths:
        post = exact_posterior(prior, model, model.simulate(truth, g))
        exact.append(post.sample(N, g))
        means.append(post.mean)
    exact, means = torch.stack(exact).numpy(), torch.stack(means).numpy()[:, None]
    sqrt_factor = post.sqrt_factor.numpy()  # the same for every test: Cov does not depend on y
    u = np.random.default_rng(1).standard_normal(sqrt_factor.shape[1])
    shift = (sqrt_factor @ (u / np.sqrt(np.mean(u**2)))).reshape(truths.shape[1:])
    return {
        "truth": truths.numpy(),
        "references": prior.sample(K, g).numpy(),  # independent prior draws, one per test
        "exact": exact,
        "over-confident": means + 0.5 * (exact - means),
        "biased": exact + shift,
    }


def test_coverage_on_diagonal_for_exact_and_off_for_broken(ensembles):
    truth = ensembles["truth"]
    levels, per_test = dg.coverage_per_test(ensembles["exact"], truth, batched=True)
    expected = dg.expected_coverage(levels, N)
    se = per_test.std(axis=1, ddof=1) / math.sqrt(K)
    assert np.all(np.abs(per_test.mean(1) - expected) <= 5 * se + 1e-12)
    for name in ("over-confident", "biased"):
        _, curve = dg.coverage_curve(ensembles[name], truth, batched=True)
        assert np.max(expected - curve) > 0.1, name  # far outside 5 se (~0.02)
    single = dg.coverage_curve(ensembles["exact"][0], truth[0], (0.5, 0.9), batched=False)[1]
    assert single == pytest.approx(
        interval_coverage(
            torch.from_numpy(ensembles["exact"][0]), torch.from_numpy(truth[0]), (0.5, 0.9)
        )
    )
    cmap = dg.coverage_map(ensembles["exact"], truth, 0.9, batched=True)
    assert cmap.shape == truth.shape[1:]
    assert cmap.mean() == pytest.approx(
        dg.coverage_curve(ensembles["exact"], truth, [0.9], batched=True)[1][0]
    )


def test_tarp_with_prior_references(ensembles):
    # ECP(alpha) of a calibrated posterior is Binomial(K, ~alpha) / K, plus a 1 / (N + 1)
    # discreteness: 5 se = 5 sqrt(alpha (1 - alpha) / K) <= 0.25.
    tol = 5 * np.sqrt(ALPHA * (1 - ALPHA) / K) + 1 / (N + 1)

    def ecp(name):
        f = dg.tarp_fractions(ensembles[name], ensembles["truth"], ensembles["references"])
        return dg.ecp_curve(f, ALPHA)

    assert np.all(np.abs(ecp("exact") - ALPHA) <= tol + 1e-12), ecp("exact")
    for name in ("over-confident", "biased"):
        deviation = np.abs(ecp(name) - ALPHA).max()
        assert deviation > 0.4, (name, deviation)


def test_tarp_matches_tarp_package():
    tarp = pytest.importorskip("tarp")
    rng = np.random.default_rng(0)
    k, n, d = 200, 100, 3
    theta = rng.standard_normal((k, d))
    samples = theta[:, None] + rng.standard_normal((k, n, d)) * 1.3 + 0.2
    references = rng.standard_normal((k, d))
    ecp_ref, alpha_ref = tarp.get_tarp_coverage(
        samples.transpose(1, 0, 2), theta, references=references
    )
    ours = dg.ecp_curve(dg.tarp_fractions(samples, theta, references), alpha_ref)
    # tarp histograms f over its observed range with K // 10 bins: ecp[b] = #(f < edge_b) / K
    # at every edge but the last, where its closed last bin makes it 1.
    np.testing.assert_allclose(ours[:-1], ecp_ref[:-1], atol=1e-12)
    assert ecp_ref[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "statistic",
    [functools.partial(dg.random_projections, num=8, seed=0), dg.power_spectrum_bins],
    ids=["projections", "power-spectrum"],
)
def test_sbc_flat_for_exact_and_not_for_broken(ensembles, statistic):
    truth = ensembles["truth"]
    ranks = dg.sbc_ranks(ensembles["exact"], truth, statistic, batched=True)
    assert ranks.min() >= 0 and ranks.max() <= N
    assert dg.rank_uniformity_pvalue(ranks, N, RANK_BINS).min() > 1e-3
    for name in ("over-confident", "biased"):
        broken = dg.sbc_ranks(ensembles[name], truth, statistic, batched=True)
        assert dg.rank_uniformity_pvalue(broken, N, RANK_BINS).min() < 1e-6, name


def test_rank_shift_flags_the_biased_sampler_only(ensembles):
    statistic = functools.partial(dg.random_projections, num=8, seed=0)
    truth = ensembles["truth"]
    exact = dg.sbc_ranks(ensembles["exact"], truth, statistic, batched=True)
    assert dg.rank_shift(exact, N)[1].min() > 1e-3
    biased = dg.sbc_ranks(ensembles["biased"], truth, statistic, batched=True)
    assert dg.rank_shift(biased, N)[1].min() < 1e-6
    # over-confidence widens the ranks (a U), it does not move their mean: the chi^2 test's job
    wide = dg.sbc_ranks(ensembles["over-confident"], truth, statistic, batched=True)
    assert np.abs(dg.rank_shift(wide, N)[0]).max() < 4


def test_rank_shift_sees_a_steady_offset_the_histogram_chi2_often_misses():
    # 200 repeats of K = 100 tests, N = 32 samples from N(0, 1), the truth from N(-0.32, 1): the
    # truth a third of a posterior std low in every test (the size of the density calibration's
    # peak offset, docs/density_prior.md). Null rate: 0.05 +- 4.5 se = 0.05 +- 0.07.
    rng = np.random.default_rng(0)
    repeats, k, n = 200, 100, 32

    def rejections(offset):
        samples = rng.standard_normal((repeats, k, n))
        truth = rng.standard_normal((repeats, k)) - offset
        ranks = (samples < truth[..., None]).sum(axis=-1).T  # (K, repeats): repeats as statistics
        shift = np.mean(dg.rank_shift(ranks, n)[1] < 0.05)
        chi2 = np.mean(dg.rank_uniformity_pvalue(ranks, n, 20) < 0.05)
        return shift, chi2

    shift, chi2 = rejections(0.0)
    assert shift < 0.12 and chi2 < 0.12, (shift, chi2)
    shift, chi2 = rejections(0.32)
    assert shift > 0.7 and shift > chi2 + 0.25, (shift, chi2)


def test_peak_counts_and_pixel_ranks_run(ensembles):
    ranks = dg.sbc_ranks(
        ensembles["exact"][:5], ensembles["truth"][:5], dg.peak_counts, batched=True
    )
    assert ranks.shape == (5, 3)
    counts, expected = dg.rank_histogram(
        dg.sbc_ranks(ensembles["exact"], ensembles["truth"], batched=True), N, RANK_BINS
    )
    assert counts.shape == (SHAPE[0] * SHAPE[1], RANK_BINS) and expected.sum() == pytest.approx(1)
    assert np.all(counts.sum(1) == K)


def test_zscores_and_reduced_chi2(seeded, ensembles):
    z = dg.zscore_map(ensembles["exact"], ensembles["truth"], batched=True)
    assert z.shape == ensembles["truth"].shape
    # Student-t with N - 1 dof: variance (N - 1) / (N - 3); 25600 correlated pixels, K tests.
    per_test = (z**2).reshape(K, -1).mean(1)
    target = (N - 1) / (N - 3)
    assert abs(per_test.mean() - target) <= 5 * per_test.std(ddof=1) / math.sqrt(K)
    _, model = gaussian_problem("P1", SHAPE, seed=0)
    x = torch.from_numpy(ensembles["truth"][:4])
    y = model.simulate(x, seeded(5))
    chi2 = dg.reduced_chi2(y, model.A(x), model.noise.whiten, batch_dims=1)
    dof = int(model.noise.whiten(torch.ones_like(y[0])).ne(0).sum())
    assert chi2.shape == (4,)
    assert np.all(np.abs(chi2 - 1) <= 5 * math.sqrt(2 / dof))


def test_exact_posterior_distances(seeded):
    prior, model = gaussian_problem("P1", (8, 8), seed=0)
    g = seeded(2)
    post = exact_posterior(prior, model, model.simulate(prior.sample(1, g)[0], g))
    samples = post.sample(4000, g)
    assert dg.z_mean(samples, post.mean, post.std) <= 5 * math.sqrt(1 / 4000)
    assert abs(dg.std_ratio(samples, post.std) - 1) <= 5 * math.sqrt(1 / (2 * 4000))
    w2 = dg.gaussian_w2(samples, post.mean, post.covariance)
    shifted = dg.gaussian_w2(samples + post.std, post.mean, post.covariance)
    assert w2 < 0.2 * shifted
    assert shifted == pytest.approx(float(post.std.square().sum().sqrt()), rel=0.1)


def test_power_spectrum_of_gaussian_prior_samples(seeded):
    def spectrum(k):
        return 2.0 / (1.0 + (np.asarray(k) / 0.1) ** 2)

    maps = GaussianPrior(spectrum, SHAPE).sample(64, seeded(0))[:, 0]
    k, power, counts = dg.power_spectrum(maps)
    _, model, _ = dg.azimuthal_average(power_on_grid(spectrum, *SHAPE), dg.k_bin_edges(*SHAPE))
    mean = power.mean(0)
    # Var(P_b) = 2 P^2 / n per map; 64 independent maps.
    assert np.all(np.abs(mean - model) <= 5 * model * np.sqrt(2 / counts / 64))
    lo, hi = dg.sample_variance_band(model, counts)
    assert np.all(lo < model) and np.all(hi > model)
    assert np.all(np.diff(k) > 0) and counts.sum() > 0


def test_cross_correlation_and_transfer_of_scaled_maps():
    maps = GaussianPrior(lambda k: 1 + 0 * k, SHAPE).sample(3)[:, 0]

    def power(x):  # binned P(k) averaged over the maps, as calibration averages over tests
        return dg.power_spectrum(x)[1].mean(0)

    for scale in (0.5, -2.0):
        scaled = scale * maps
        cross = (power(maps + scaled) - power(maps) - power(scaled)) / 2
        r = dg.cross_correlation(cross, power(maps), torch.from_numpy(power(scaled)))
        np.testing.assert_allclose(r, np.sign(scale), atol=1e-12)
        np.testing.assert_allclose(dg.transfer_function(power(scaled), power(maps)), abs(scale))
    centres, density = dg.one_point_pdf(maps, bins=20)
    assert density.sum() * (centres[1] - centres[0]) == pytest.approx(1)


@pytest.mark.parametrize("grid", [(16, 16), (15, 17)])
def test_eb_power_of_pure_e_mode_shear(seeded, grid):
    """Shear from a real kappa: E is kappa's power at every k > 0, B is 0 to round-off."""
    from forward_models.lensing import Shear

    kappa = torch.randn(3, 1, *grid, generator=seeded(6), dtype=torch.float64)
    eb = dg.eb_power(Shear(grid).A(kappa))  # torch in, batched over 3 maps
    k, p_kappa, modes = dg.power_spectrum(kappa[:, 0])
    _, p_centred, _ = dg.power_spectrum((kappa - kappa.mean(dim=(-2, -1), keepdim=True))[:, 0])
    assert eb.e.shape == eb.b.shape == (3, len(k)) and np.array_equal(eb.modes, modes)
    round_off = 1e-12 * p_kappa.max()
    np.testing.assert_allclose(eb.e, p_centred, rtol=1e-12, atol=round_off)  # k = 0 is lost
    np.testing.assert_allclose(eb.e[:, 1:], p_kappa[:, 1:], rtol=1e-12, atol=round_off)
    assert np.abs(eb.b).max() <= round_off


def test_eb_power_of_white_noise_equals_noise_level():
    """E and B of white shear noise are sigma^2 within sample variance, 2 P^2 / (n M)."""
    from forward_models.lensing import Shear

    sigma, maps = 0.3, 64
    rng = np.random.default_rng(7)
    noise = sigma * rng.standard_normal((maps, 2, *SHAPE))
    eb = dg.eb_power(noise)
    expected = dg.eb_noise_power(sigma**2, SHAPE)
    assert expected.e[0] == expected.b[0] == 0  # the k = 0 mode carries no E or B
    np.testing.assert_allclose(expected.e[1:], sigma**2, rtol=1e-12)
    np.testing.assert_allclose(expected.b[1:], sigma**2, rtol=1e-12)
    tol = 5 * sigma**2 * np.sqrt(2 / (eb.modes[1:] * maps))
    assert np.all(np.abs(eb.e.mean(0)[1:] - sigma**2) <= tol), eb.e.mean(0) / sigma**2
    assert np.all(np.abs(eb.b.mean(0)[1:] - sigma**2) <= tol), eb.b.mean(0) / sigma**2
    # The residual of the true shear is the noise, whatever the signal.
    kappa = torch.from_numpy(rng.standard_normal((1, *SHAPE)))
    signal = Shear(SHAPE).A(kappa).numpy()
    residual = dg.residual_eb_power(signal + noise[0], signal)
    np.testing.assert_allclose(residual.e, eb.e[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(residual.b, eb.b[0], rtol=1e-10, atol=1e-14)


def test_eb_noise_power_with_mask_and_varying_sigma():
    """Masked noise of variance v(x): flat E and B power mean(m v) (sigma^2 f_obs)."""
    rng = np.random.default_rng(8)
    observed = rng.random(SHAPE) > 0.3
    sigma = np.stack([np.full(SHAPE, 0.2), 0.1 + 0.2 * rng.random(SHAPE)])  # per component
    variance = np.square(sigma) * observed
    noise = sigma * rng.standard_normal((400, 2, *SHAPE))
    eb = dg.residual_eb_power(noise, 0.0, observed)
    expected = dg.eb_noise_power(variance)
    # Masked modes are correlated: the tolerance is from the spread over the 400 maps.
    for measured, model in ((eb.e, expected.e), (eb.b, expected.b)):
        se = measured.std(0, ddof=1)[1:] / np.sqrt(len(measured))
        assert np.all(np.abs(measured.mean(0)[1:] - model[1:]) <= 5 * se)
    assert expected.e[1:].mean() < 0.75 * np.square(sigma).mean()  # the mask lowers the level


def test_spin_2_rotation_by_45_degrees_swaps_e_and_b():
    """gamma -> exp(2i pi/4) gamma = (-gamma2, gamma1) turns E into B and B into -E."""
    rng = np.random.default_rng(9)
    shear = rng.standard_normal((2, 2, 16, 15))
    rotated = np.stack([-shear[:, 1], shear[:, 0]], axis=1)
    e, b = dg.eb_maps(shear)
    e_rot, b_rot = dg.eb_maps(rotated)
    np.testing.assert_allclose(b_rot, e, atol=1e-12)
    np.testing.assert_allclose(e_rot, -b, atol=1e-12)
    eb, eb_rot = dg.eb_power(shear), dg.eb_power(rotated)
    np.testing.assert_allclose(eb_rot.e, eb.b, rtol=1e-12)
    np.testing.assert_allclose(eb_rot.b, eb.e, rtol=1e-12)


def test_single_test_band_holds_a_calibrated_test_as_often_as_it_says():
    """One map's coverage scatters with its pixel correlations; the band must hold a calibrated
    test's coverage as often as it states, and a too-narrow ensemble must leave it."""
    rng = np.random.default_rng(3)
    k2 = np.add.outer(np.fft.fftfreq(24) ** 2, np.fft.fftfreq(24) ** 2)
    kernel = np.exp(-k2 * (2 * np.pi * 1.5) ** 2 / 2)  # correlated over a few pixels

    def draws(n):
        white = rng.standard_normal((n, 24, 24))
        return np.fft.ifft2(np.fft.fft2(white) * kernel).real

    levels = np.array([0.5, 0.68, 0.9])
    tests, n = 300, 32
    inside = {"calibrated": [], "too narrow": [], "binomial over pixels": []}
    for _ in range(tests):
        samples, truth = draws(n), draws(1)[0]
        low, high, chance = dg.single_test_band(samples, levels)
        _, cov = dg.coverage_per_test(samples, truth, levels, batched=False)
        inside["calibrated"].append((cov[:, 0] >= low) & (cov[:, 0] <= high))
        _, narrow = dg.coverage_per_test(0.7 * samples, truth, levels, batched=False)
        inside["too narrow"].append((narrow[:, 0] >= low) & (narrow[:, 0] <= high))
        p = dg.expected_coverage(levels, n)
        half = 1.96 * np.sqrt(p * (1 - p) / truth.size)  # pixels taken as independent
        inside["binomial over pixels"].append(np.abs(cov[:, 0] - p) <= half)
    share = {name: np.mean(v, axis=0) for name, v in inside.items()}  # per level
    assert chance == 31 / 33
    tolerance = 3 * np.sqrt(chance * (1 - chance) / tests)  # 0.041
    assert np.all(np.abs(share["calibrated"] - chance) <= tolerance), share
    assert np.all(share["too narrow"] < 0.5), share  # the control: miscalibration leaves it
    assert np.all(share["binomial over pixels"] < chance - 0.2), share
