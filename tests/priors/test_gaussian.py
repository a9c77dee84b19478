"""The Gaussian prior against dense linear algebra, its sampler's statistics, and references/gaussian.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forward_models import ForwardModel, GaussianNoise, Mask
from forward_models.fourier import frequency_magnitude
from posterior_diffusion.priors import GaussianPrior, Prior, TabulatedPowerSpectrum
from posterior_diffusion.references.gaussian import exact_posterior

SHAPE = (2, 12, 20)  # C, H, W: non-square, two channels
N_PIX = SHAPE[0] * SHAPE[1] * SHAPE[2]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spectrum(k: np.ndarray) -> np.ndarray:
    """Strictly positive, red, with a core: every dense matrix below is well conditioned."""
    return 0.02 + 1.5 / (1.0 + (k / 0.08) ** 2) ** 1.2


def scaled_spectrum(k: np.ndarray) -> np.ndarray:
    return 1.01 * spectrum(k)


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior(spectrum, SHAPE, name="test-spectrum")


def dense_covariance_reference(shape: tuple[int, int, int]) -> torch.Tensor:
    """C0 by its definition, without torch.fft: C0[r, r'] = sum_k P(|k|) cos(2 pi k.(r - r')) / N.

    Channels are independent, so C0 is block diagonal with one block per channel.
    """
    channels, height, width = shape
    ky, kx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    power = spectrum(np.hypot(kx, ky)).ravel()
    ry, rx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    phase = 2 * np.pi * (np.outer(ry.ravel(), ky.ravel()) + np.outer(rx.ravel(), kx.ravel()))
    # cos(a - b) = cos a cos b + sin a sin b, with a, b the phases of pixels r and r'.
    cos, sin = np.cos(phase), np.sin(phase)
    block = ((cos * power) @ cos.T + (sin * power) @ sin.T) / (height * width)
    return torch.from_numpy(np.kron(np.eye(channels), block))


def dense(apply, shape) -> torch.Tensor:
    """The matrix of a linear map on fields of `shape`, by applying it to the identity basis."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    return apply(basis).reshape(n, n).T  # row i of apply(basis) is column i of the matrix


@pytest.fixture(scope="module")
def c0(prior) -> torch.Tensor:
    return dense(prior.covariance_apply, SHAPE)


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).T  # (n, batch): columns are fields


def test_covariance_apply_matches_the_definition_of_a_stationary_field(prior, c0):
    reference = dense_covariance_reference(SHAPE)
    np.testing.assert_allclose(c0, reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c0, c0.T, rtol=0, atol=1e-14)
    # Pixel variance is the mean of P over the grid (the module's normalisation convention).
    np.testing.assert_allclose(c0.diagonal(), prior.pixel_variance(), rtol=1e-12)
    np.testing.assert_allclose(
        prior.pixel_variance(), spectrum(frequency_magnitude(*SHAPE[1:])).mean(), rtol=1e-14
    )


def test_covariance_sqrt_squares_to_the_covariance(prior, c0):
    root = dense(prior.covariance_sqrt_apply, SHAPE)
    np.testing.assert_allclose(root, root.T, rtol=0, atol=1e-14)
    np.testing.assert_allclose(root @ root, c0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.05, 0.7, 10.0])
def test_denoise_equals_the_dense_posterior_mean(prior, c0, sigma):
    x = torch.randn((3, *SHAPE), generator=gen(1), dtype=torch.float64)
    denoised = prior.denoise(x, sigma)
    expected = c0 @ torch.linalg.solve(c0 + sigma**2 * torch.eye(N_PIX, dtype=c0.dtype), flat(x))
    np.testing.assert_allclose(flat(denoised), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.1, 1.3])
def test_linearize_covariance_is_sigma2_times_the_denoiser_jacobian(prior, c0, sigma):
    x = torch.randn(SHAPE, generator=gen(2), dtype=torch.float64)
    x0_hat, cov = prior.linearize(x, sigma)
    np.testing.assert_allclose(x0_hat, prior.denoise(x, sigma), rtol=0, atol=1e-14)

    cov_dense = dense(cov, SHAPE)
    # Row by row (vectorize=True is 20x slower here: vmap falls back on the FFTs).
    jacobian = torch.autograd.functional.jacobian(lambda z: prior.denoise(z, sigma), x)
    jacobian = jacobian.reshape(N_PIX, N_PIX)
    np.testing.assert_allclose(cov_dense, sigma**2 * jacobian, rtol=0, atol=1e-12)

    # Gaussian conditioning: Cov[x0 | x0 + sigma z] = C0 - C0 (C0 + sigma^2 I)^{-1} C0.
    eye = torch.eye(N_PIX, dtype=c0.dtype)
    expected = c0 - c0 @ torch.linalg.solve(c0 + sigma**2 * eye, c0)
    np.testing.assert_allclose(cov_dense, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.2, 2.0])
def test_score_is_the_gradient_of_the_noisy_log_density(prior, c0, sigma):
    x = torch.randn((2, *SHAPE), generator=gen(3), dtype=torch.float64)
    score = prior.score(x, sigma)
    np.testing.assert_allclose(score, (prior.denoise(x, sigma) - x) / sigma**2, rtol=0, atol=1e-12)
    noisy = torch.distributions.MultivariateNormal(
        torch.zeros(N_PIX, dtype=torch.float64), c0 + sigma**2 * torch.eye(N_PIX, dtype=c0.dtype)
    )
    x_in = x.reshape(2, N_PIX).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(noisy.log_prob(x_in).sum(), x_in)
    np.testing.assert_allclose(score.reshape(2, N_PIX), grad, rtol=1e-9, atol=1e-10)


class DenoiserOnly(Prior):
    """A prior that only defines denoise, so linearize and score come from the base class."""

    def __init__(self, inner: GaussianPrior):
        super().__init__()
        self.inner = inner
        self.field_shape = inner.field_shape

    def denoise(self, x, sigma):
        return self.inner.denoise(x, sigma)


@pytest.mark.parametrize("no_grad", [False, True])
@pytest.mark.parametrize("per_member", [False, True])
def test_base_class_linearize_matches_the_analytic_one(prior, no_grad, per_member):
    generic = DenoiserOnly(prior)
    x = torch.randn((3, *SHAPE), generator=gen(4), dtype=torch.float64)
    v = torch.randn((3, *SHAPE), generator=gen(5), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.6, 3.0], dtype=torch.float64) if per_member else 0.4
    context = torch.no_grad() if no_grad else torch.enable_grad()
    with context:  # samplers call linearize under no_grad
        x0_generic, cov_generic = generic.linearize(x, sigma)
        x0_exact, cov_exact = prior.linearize(x, sigma)
        first, second = cov_generic(v), cov_generic(2 * v)  # the graph is kept between products
    np.testing.assert_allclose(x0_generic, x0_exact, rtol=0, atol=1e-14)
    np.testing.assert_allclose(first, cov_exact(v), rtol=0, atol=1e-13)
    np.testing.assert_allclose(second, 2 * cov_exact(v), rtol=0, atol=1e-13)
    assert not x0_generic.requires_grad
    np.testing.assert_allclose(generic.score(x, sigma), prior.score(x, sigma), rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", ["gaussian", "generic"])
def test_per_member_sigma_broadcasts_like_scalar_calls(prior, which):
    model = prior if which == "gaussian" else DenoiserOnly(prior)
    sigmas = [0.03, 0.5, 4.0]
    x = torch.randn((3, *SHAPE), generator=gen(6), dtype=torch.float64)
    v = torch.randn((3, *SHAPE), generator=gen(7), dtype=torch.float64)
    sigma = torch.tensor(sigmas, dtype=torch.float64)
    denoised, score = model.denoise(x, sigma), model.score(x, sigma)
    x0_hat, cov = model.linearize(x, sigma)
    cov_v = cov(v)
    for i, s in enumerate(sigmas):
        one, v_one = x[i : i + 1], v[i : i + 1]
        np.testing.assert_allclose(denoised[i : i + 1], model.denoise(one, s), rtol=0, atol=1e-14)
        np.testing.assert_allclose(score[i : i + 1], model.score(one, s), rtol=1e-12, atol=1e-12)
        x0_one, cov_one = model.linearize(one, s)
        np.testing.assert_allclose(x0_hat[i : i + 1], x0_one, rtol=0, atol=1e-14)
        np.testing.assert_allclose(cov_v[i : i + 1], cov_one(v_one), rtol=0, atol=1e-14)
    # The noise levels really differ per member (guards against broadcasting one sigma to all).
    assert not torch.allclose(denoised[0], model.denoise(x[:1], sigmas[2])[0])


def test_unbatched_field_and_python_float_sigma(prior):
    x = torch.randn(SHAPE, generator=gen(8), dtype=torch.float64)
    np.testing.assert_allclose(prior.denoise(x, 0.3), prior.denoise(x[None], 0.3)[0], atol=1e-15)
    assert prior.denoise(x, 0.3).shape == SHAPE


def test_float32_in_float32_out(prior):
    x64 = torch.randn((2, *SHAPE), generator=gen(9), dtype=torch.float64)
    x32 = x64.float()
    sigma32 = torch.tensor([0.3, 1.0], dtype=torch.float32)
    x0_hat, cov = prior.linearize(x32, sigma32)
    outputs = {
        "denoise": prior.denoise(x32, 0.3),
        "denoise_per_member": prior.denoise(x32, sigma32),
        "score": prior.score(x32, 0.3),
        "linearize_mean": x0_hat,
        "linearize_cov": cov(x32),
        "covariance_apply": prior.covariance_apply(x32),
        "covariance_sqrt_apply": prior.covariance_sqrt_apply(x32),
        "sample": prior.sample(2, gen(0), dtype=torch.float32),
    }
    for name, out in outputs.items():
        assert out.dtype == torch.float32, name
    np.testing.assert_allclose(outputs["denoise"], prior.denoise(x64, 0.3), rtol=0, atol=1e-5)
    assert prior.power.dtype == torch.float64  # the buffer itself is left as it is


def test_identity_checksum_tracks_the_spectrum():
    a = GaussianPrior(spectrum, SHAPE)
    same = GaussianPrior(lambda k: spectrum(k), SHAPE)  # another callable, same values
    changed = GaussianPrior(scaled_spectrum, SHAPE)
    reshaped = GaussianPrior(spectrum, (1, 12, 20))
    checksum = a.identity()["checksum"]
    assert isinstance(checksum, str) and len(checksum) == 64
    assert same.identity()["checksum"] == checksum
    assert changed.identity()["checksum"] != checksum
    assert reshaped.identity()["checksum"] != checksum
    identity = GaussianPrior(spectrum, SHAPE, name="my-table").identity()
    assert identity["name"] == "gaussian" and identity["power_spectrum"] == "my-table"
    assert identity["field_shape"] == list(SHAPE)


def test_from_file_records_the_path(tmp_path):
    path = tmp_path / "p.txt"
    k = np.linspace(0.0, 0.75, 40)
    np.savetxt(path, np.column_stack([k, spectrum(k)]), header="k P")
    loaded = GaussianPrior.from_file(path, (12, 20))
    assert loaded.field_shape == (1, 12, 20)
    assert loaded.identity()["power_spectrum"] == str(path)
    table = TabulatedPowerSpectrum.from_file(path)
    assert GaussianPrior(table, (12, 20)).identity()["power_spectrum"] == str(path)


@pytest.mark.parametrize("wrong", [(2, 12, 21), (2, 20, 12), (2, 11, 20)])
def test_size_mismatch_raises_value_error(prior, wrong):
    x = torch.zeros((1, *wrong), dtype=torch.float64)
    for call in (
        lambda: prior.denoise(x, 0.5),
        lambda: prior.linearize(x, 0.5),
        lambda: prior.score(x, 0.5),
        lambda: prior.covariance_apply(x),
        lambda: prior.covariance_sqrt_apply(x),
    ):
        with pytest.raises(ValueError, match=r"\(12, 20\)"):
            call()


def binned_power(samples: torch.Tensor, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal average of |fft2(x)|^2 / (H W) over samples, channels and modes in each bin."""
    height, width = samples.shape[-2:]
    q = (torch.fft.fft2(samples).abs() ** 2 / (height * width)).reshape(-1, height * width)
    which = np.digitize(frequency_magnitude(height, width).ravel(), edges) - 1
    q = q.mean(0).numpy()
    return np.array([q[which == b].mean() for b in range(len(edges) - 1)]), which


def spectrum_tolerance(power: np.ndarray, which: np.ndarray, draws: int, bins: int) -> np.ndarray:
    """Five standard errors of each bin's estimate.

    For a Gaussian field, q_k = |x_hat_k|^2 / (H W) has mean P_k; over a set S closed under
    k -> -k, Var(sum_S q_k) = 2 sum_S P_k^2 (pairs k, -k are one complex Exp(1) mode counted twice;
    self-conjugate modes are chi^2_1). Averaging `draws` independent fields (samples x channels)
    and |S| modes gives SE = sqrt(2 sum_S P_k^2 / draws) / |S|, i.e. a relative SE of roughly
    sqrt(2 / (draws |S|)).
    """
    p = power.ravel()
    return np.array(
        [
            5 * np.sqrt(2 * (p[which == b] ** 2).sum() / draws) / (which == b).sum()
            for b in range(bins)
        ]
    )


def test_samples_have_the_prior_power_spectrum_and_pixel_variance(prior):
    num = 4000  # 5 SE of the pooled pixel variance is then 1.0% of it (67 effective modes)
    samples = prior.sample(num, gen(10))
    assert samples.shape == (num, *SHAPE) and samples.dtype == torch.float64
    power = prior.power.numpy()
    edges = np.linspace(0, frequency_magnitude(*SHAPE[1:]).max() + 1e-9, 9)
    measured, which = binned_power(samples, edges)
    expected = np.array([power.ravel()[which == b].mean() for b in range(len(edges) - 1)])
    draws = num * SHAPE[0]
    tolerance = spectrum_tolerance(power, which, draws, len(edges) - 1)
    assert np.all(np.abs(measured - expected) < tolerance), (measured / expected, tolerance)

    # Pixel variance: sum_r x_r^2 = sum_k q_k per field, so the variance of the pooled estimate
    # mean(x^2) is 2 sum_k P_k^2 / (draws N^2); five of its standard errors.
    n = power.size
    se_variance = math.sqrt(2 * (power**2).sum() / draws) / n
    assert abs(float(samples.square().mean()) - prior.pixel_variance()) < 5 * se_variance
    # Pooled mean: Var(mean_r x_r) = P(0) / N per field.
    se_mean = math.sqrt(power[0, 0] / n / draws)
    assert abs(float(samples.mean())) < 5 * se_mean


def test_channels_are_independent_draws(prior):
    samples = prior.sample(200, gen(11))
    a, b = samples[:, 0], samples[:, 1]
    # The pooled cross moment mean(a * b) has variance sum_k P_k^2 / (num N^2) for independent a, b
    # (one complex product per mode, half the chi^2 variance of a squared modulus).
    power = prior.power.numpy()
    se = math.sqrt((power**2).sum() / 200) / power.size
    assert abs(float((a * b).mean())) < 5 * se
    assert not torch.allclose(a, b)


def test_same_generator_seed_gives_the_same_samples(prior):
    torch.testing.assert_close(prior.sample(3, gen(12)), prior.sample(3, gen(12)), rtol=0, atol=0)
    assert not torch.equal(prior.sample(3, gen(12)), prior.sample(3, gen(13)))


def test_exact_draws_ignore_steps_and_refuse_another_shape(prior):
    torch.testing.assert_close(prior.sample(2, gen(14), steps=3), prior.sample(2, gen(14)))
    with pytest.raises(ValueError, match=r"prior is for fields of shape \(2, 12, 20\)"):
        prior.sample(2, gen(14), field_shape=(1, 12, 20))
    assert prior.can_sample
    assert prior.data_std() == pytest.approx(prior.pixel_variance() ** 0.5, rel=1e-15)


def test_the_base_prior_states_what_it_cannot_do(prior):
    bare = DenoiserOnly(prior)
    assert not bare.can_sample
    with pytest.raises(NotImplementedError, match="prior 'DenoiserOnly' cannot draw fields"):
        bare.sample(1)
    with pytest.raises(NotImplementedError, match="data std"):
        bare.data_std()
    assert bare.latent_components() is None and bare.identity() == {"name": "DenoiserOnly"}
    assert 0 < bare.sigma_min() < bare.sigma_max()
    bare.check_fields(SHAPE)
    with pytest.raises(ValueError, match=r"the requested field has fields of shape \(2, 12, 2\)"):
        bare.check_fields((2, 12, 2), where="requested field")
    bare.field_shape = None  # any H x W
    bare.check_fields((3, 5, 7))


# --- references/gaussian.py: the exact posterior for a masked, noisy observation ---------------

EXACT_SHAPE = (1, 6, 8)
NOISE_STD = 0.3


@pytest.fixture(scope="module")
def masked_problem():
    prior = GaussianPrior(spectrum, EXACT_SHAPE)
    mask = torch.rand(EXACT_SHAPE[1:], generator=gen(20)) > 0.4
    model = ForwardModel(Mask(mask), GaussianNoise(NOISE_STD, mask), EXACT_SHAPE)
    truth = prior.sample(1, gen(21))[0]
    y = model.simulate(truth, gen(22))
    assert torch.all(y[0][~mask] == 0)  # masked data are zero, as the brief of this test needs
    return prior, mask, model, y


def textbook_posterior(prior, mask, y):
    """Sigma = (C0^{-1} + A^T N^{-1} A)^{-1}, mean = Sigma A^T N^{-1} y, A = observed rows of I."""
    n = math.prod(EXACT_SHAPE)
    c0 = dense_covariance_reference(EXACT_SHAPE)
    observed = mask.reshape(-1)
    a = torch.eye(n, dtype=torch.float64)[observed]
    n_inv = torch.eye(int(observed.sum()), dtype=torch.float64) / NOISE_STD**2
    covariance = torch.linalg.inv(torch.linalg.inv(c0) + a.T @ n_inv @ a)
    mean = covariance @ a.T @ n_inv @ y.reshape(-1)[observed]
    return mean, covariance


def test_exact_posterior_equals_the_textbook_formulas(masked_problem):
    prior, mask, model, y = masked_problem
    post = exact_posterior(prior, model, y)
    mean, covariance = textbook_posterior(prior, mask, y)
    assert post.mean.shape == EXACT_SHAPE and post.std.shape == EXACT_SHAPE
    np.testing.assert_allclose(post.mean.reshape(-1), mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(post.covariance, covariance, rtol=0, atol=1e-11)
    np.testing.assert_allclose(post.std.reshape(-1), covariance.diagonal().sqrt(), rtol=1e-10)
    np.testing.assert_allclose(
        post.sqrt_factor @ post.sqrt_factor.T, covariance, rtol=0, atol=1e-11
    )
    # The data pull the mean: observed pixels are far better constrained than masked ones.
    std = post.std.reshape(-1)
    assert std[mask.reshape(-1)].max() < std[~mask.reshape(-1)].min()


def test_exact_posterior_samples_have_its_mean_and_covariance(masked_problem):
    prior, mask, model, y = masked_problem
    post = exact_posterior(prior, model, y)
    num = 4000
    draws = post.sample(num, gen(23))
    assert draws.shape == (num, *EXACT_SHAPE) and draws.dtype == torch.float64
    flat_draws = draws.reshape(num, -1)
    sigma = post.covariance
    # Mean: per-pixel SE = std / sqrt(num); five of them.
    z = (flat_draws.mean(0) - post.mean.reshape(-1)) / (post.std.reshape(-1) / math.sqrt(num))
    assert float(z.abs().max()) < 5
    # Covariance entries: Var(S_ij) = (Sigma_ij^2 + Sigma_ii Sigma_jj) / num for Gaussian draws
    # (Isserlis); five standard errors per entry.
    centred = flat_draws - post.mean.reshape(-1)
    empirical = centred.T @ centred / num
    se = ((sigma**2 + torch.outer(sigma.diagonal(), sigma.diagonal())) / num).sqrt()
    assert float(((empirical - sigma).abs() / se).max()) < 5
