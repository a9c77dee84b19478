"""Forward operators and noise models: adjointness, shapes, dtype, device, gradients, statistics."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

from forward_models import (
    Blur,
    Compose,
    CorrelatedGaussianNoise,
    Downsample,
    ForwardOperator,
    GalaxyCounts,
    GaussianNoise,
    Identity,
    Mask,
    PoissonNoise,
    Shear,
    Smoothing,
)

ADJOINT_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_mask(shape: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen(seed)) > 0.3


@dataclass
class Case:
    id: str
    build: Callable[[tuple[int, int]], ForwardOperator]  # the operator on an (H, W) grid
    channels: int  # C of the field
    grid: tuple[int, int]
    data_shape: tuple[int, int, int]  # written out by hand for `grid`, not asked of the operator
    basis: str | None


def asymmetric_psf() -> torch.Tensor:
    return torch.rand(5, 4, generator=gen(2), dtype=torch.float64)


LINEAR_CASES = [
    Case("identity", lambda g: Identity(), 2, (12, 20), (2, 12, 20), "pixel"),
    Case("mask", lambda g: Mask(random_mask(g, 1)), 2, (12, 20), (2, 12, 20), "pixel"),
    Case("blur-gaussian", lambda g: Blur.gaussian(2.5, g), 1, (15, 17), (1, 15, 17), "fourier"),
    Case("blur-psf", lambda g: Blur(asymmetric_psf(), g), 2, (12, 20), (2, 12, 20), "fourier"),
    Case("downsample", lambda g: Downsample(2), 2, (12, 20), (2, 6, 10), None),
    Case(
        "smoothing-gaussian",
        lambda g: Smoothing("gaussian", 1.3, g),
        1,
        (16, 16),
        (1, 16, 16),
        "fourier",
    ),
    Case(
        "smoothing-tophat",
        lambda g: Smoothing("tophat", 2.2, g),
        3,
        (15, 17),
        (3, 15, 17),
        "fourier",
    ),
    Case("shear-even", lambda g: Shear(g), 1, (16, 16), (2, 16, 16), "fourier"),
    Case("shear-odd", lambda g: Shear(g), 1, (15, 17), (2, 15, 17), "fourier"),
    Case(
        "shear-then-mask",
        lambda g: Compose(Shear(g), Mask(random_mask(g, 3))),
        1,
        (12, 20),
        (2, 12, 20),
        None,
    ),
    Case(
        "blur-then-downsample",
        lambda g: Compose(Blur.gaussian(1.5, g), Downsample(2)),
        1,
        (12, 20),
        (1, 6, 10),
        None,
    ),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: c.id)
def test_linear_operator(case: Case, dtype: torch.dtype, device: str):
    op = case.build(case.grid).to(device)
    field_shape = (case.channels, *case.grid)
    assert op.is_linear and op.diagonal_basis == case.basis
    assert op.data_shape(field_shape) == case.data_shape
    g = gen(10)
    x = torch.randn((3, *field_shape), generator=g, dtype=torch.float64).to(device, dtype)
    y = torch.randn((3, *case.data_shape), generator=g, dtype=torch.float64).to(device, dtype)

    ax, aty = op.A(x), op.A_adjoint(y)
    assert ax.shape == y.shape and aty.shape == x.shape
    assert ax.dtype == aty.dtype == dtype
    assert ax.device.type == aty.device.type == device

    # <A x, y> = <x, A^T y> for each batch element separately.
    lhs = (ax * y).sum(dim=(-3, -2, -1))
    rhs = (x * aty).sum(dim=(-3, -2, -1))
    scale = ax.flatten(1).norm(dim=1) * y.flatten(1).norm(dim=1)
    assert float(((lhs - rhs).abs() / scale).max()) < ADJOINT_TOL[dtype]
    error = op.adjointness_error(field_shape, generator=gen(11), dtype=dtype, device=device)
    assert error < ADJOINT_TOL[dtype]

    # Batch elements do not mix.
    torch.testing.assert_close(op.A(x[1:2]), ax[1:2])


@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: c.id)
def test_linear_operator_gradcheck(case: Case):
    field_shape = (1, 6, 8)  # every operator here takes a single channel
    op = case.build(field_shape[1:])
    x = torch.randn((1, *field_shape), generator=gen(4), dtype=torch.float64)
    assert torch.autograd.gradcheck(op.A, (x.requires_grad_(True),))
    y = torch.randn((1, *op.data_shape(field_shape)), generator=gen(5), dtype=torch.float64)
    # The adjoint identity above already ties A^T to A; a random-projection check suffices.
    assert torch.autograd.gradcheck(op.A_adjoint, (y.requires_grad_(True),), fast_mode=True)


def test_blur_matches_scipy_wrap_convolution():
    psf = torch.rand(5, 4, generator=gen(2), dtype=torch.float64)
    x = torch.randn(12, 20, generator=gen(3), dtype=torch.float64)
    expected = scipy.ndimage.convolve(x.numpy(), (psf / psf.sum()).numpy(), mode="wrap")
    blurred = Blur(psf, (12, 20)).A(x[None])[0]
    np.testing.assert_allclose(blurred.numpy(), expected, rtol=0, atol=1e-12)


def test_gaussian_blur_width_and_flux():
    delta = torch.zeros(1, 31, 33, dtype=torch.float64)
    delta[0, 0, 0] = 1.0
    psf = Blur.gaussian(4.0, (31, 33)).A(delta)[0]
    assert float(psf.sum()) == pytest.approx(1.0, abs=1e-12)
    # FWHM 4 pixels: half the peak 2 pixels away along either axis, in either direction.
    for offset in [(0, 2), (0, -2), (2, 0), (-2, 0)]:
        assert float(psf[offset] / psf[0, 0]) == pytest.approx(0.5, rel=1e-12)


def test_downsample_block_means_and_errors():
    x = torch.arange(2 * 4 * 6, dtype=torch.float64).reshape(1, 2, 4, 6)
    y = Downsample(2).A(x)
    assert y.shape == (1, 2, 2, 3)
    assert float(y[0, 1, 1, 2]) == pytest.approx(float(x[0, 1, 2:4, 4:6].mean()))
    with pytest.raises(ValueError, match="divisible"):
        Downsample(4).data_shape((1, 12, 10))
    with pytest.raises(ValueError, match="positive integer"):
        Downsample(1.5)


@pytest.mark.parametrize("kind", ["gaussian", "tophat"])
def test_smoothing_window_matches_real_space_average(kind: str):
    """A plane wave of frequency k is scaled by the window's mean of cos(2 pi k u)."""
    radius, k, h, w = 2.0, 3 / 16, 16, 16
    x = torch.cos(2 * math.pi * k * torch.arange(w, dtype=torch.float64)).expand(1, h, w)
    smoothed = Smoothing(kind, radius, (h, w)).A(x)
    # Independent quadrature of that mean, with no Bessel function.
    if kind == "gaussian":
        u, weight = np.polynomial.hermite_e.hermegauss(60)  # u ~ N(0, 1)
        expected = (weight * np.cos(2 * np.pi * k * radius * u)).sum() / weight.sum()
    else:
        r, w_r = np.polynomial.legendre.leggauss(40)
        r, w_r = radius * (r + 1) / 2, w_r * radius / 2
        theta = np.linspace(0, 2 * np.pi, 256, endpoint=False)
        integrand = np.cos(2 * np.pi * k * r[:, None] * np.cos(theta[None, :])) * r[:, None]
        expected = (w_r[:, None] * integrand).sum() * (2 * np.pi / 256) / (np.pi * radius**2)
    torch.testing.assert_close(smoothed, expected * x, rtol=0, atol=1e-10)


def test_compose_order_and_attributes():
    blur, down = Blur.gaussian(1.5, (12, 20)), Downsample(2)
    x = torch.randn(1, 12, 20, generator=gen(6), dtype=torch.float64)
    torch.testing.assert_close(Compose(blur, down).A(x), down.A(blur.A(x)))
    assert Compose(Mask(random_mask((12, 20), 1)), Identity()).diagonal_basis == "pixel"
    assert not Compose(GalaxyCounts(10.0, 1.0), Identity()).is_linear
    with pytest.raises(NotImplementedError):
        Compose(GalaxyCounts(10.0, 1.0)).A_adjoint(x)
    assert [p["operator"] for p in Compose(blur, down).params()["operators"]] == [
        "Blur",
        "Downsample",
    ]


def test_galaxy_counts_mean_gradcheck_and_clamp():
    op = GalaxyCounts(n_bar=7.0, bias=1.5)
    assert not op.is_linear
    # |x| < 0.5 keeps 1 + 1.5 x >= 0.25, away from the clamp's kink.
    x = (torch.rand(2, 1, 6, 8, generator=gen(7), dtype=torch.float64) - 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(op.A, (x,))
    x = torch.tensor([[[-1.0, 0.0, 2.0]]], dtype=torch.float64, requires_grad=True)
    counts = op.A(x)
    torch.testing.assert_close(counts, torch.tensor([[[0.0, 7.0, 28.0]]], dtype=torch.float64))
    (grad,) = torch.autograd.grad(counts.sum(), x)
    assert grad.tolist() == [[[0.0, 10.5, 10.5]]]


# Noise models ---------------------------------------------------------------------------------


def sigma_map_and_mask() -> tuple[torch.Tensor, torch.Tensor]:
    sigma = 0.2 + torch.rand(2, 6, 8, generator=gen(20), dtype=torch.float64)
    return sigma, random_mask((6, 8), 21)


def test_gaussian_log_prob_matches_scipy_on_observed_pixels():
    sigma, mask = sigma_map_and_mask()
    noise = GaussianNoise(sigma, mask)
    mean = torch.randn(3, 2, 6, 8, generator=gen(22), dtype=torch.float64)
    y = mean + torch.randn(3, 2, 6, 8, generator=gen(23), dtype=torch.float64)
    obs = mask.expand(2, 6, 8)
    expected = [
        scipy.stats.norm.logpdf(y[b][obs], mean[b][obs], sigma[obs]).sum() for b in range(3)
    ]
    np.testing.assert_allclose(noise.log_prob(y, mean).numpy(), expected, rtol=1e-12)
    # Without a mask every entry counts, with a scalar sigma too.
    scalar = GaussianNoise(0.7)
    expected = scipy.stats.norm.logpdf(y[0], mean[0], 0.7).sum()
    assert float(scalar.log_prob(y[0], mean[0])) == pytest.approx(expected, rel=1e-12)


def test_gaussian_masked_pixels_carry_no_information():
    sigma, mask = sigma_map_and_mask()
    noise = GaussianNoise(sigma, mask)
    mean = torch.randn(2, 6, 8, generator=gen(24), dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 6, 8, generator=gen(25), dtype=torch.float64)
    y_other = torch.where(mask, y, torch.nan)  # anything at unobserved pixels
    lp = noise.log_prob(y, mean)
    assert torch.isfinite(noise.log_prob(y_other, mean))
    torch.testing.assert_close(noise.log_prob(y_other, mean), lp)
    (grad,) = torch.autograd.grad(noise.log_prob(y_other, mean), mean)
    assert torch.all(grad[:, ~mask] == 0) and torch.all(grad[:, mask] != 0)
    assert torch.all(noise.whiten(y_other - mean)[:, ~mask] == 0)


def test_gaussian_sample_statistics():
    sigma, mask = sigma_map_and_mask()
    noise = GaussianNoise(sigma, mask)
    n = 4000
    mean = torch.randn(2, 6, 8, generator=gen(26), dtype=torch.float64)
    samples = noise.sample(mean.expand(n, 2, 6, 8), generator=gen(27))
    assert torch.all(samples[:, :, ~mask] == 0)
    z = ((samples - mean) / sigma)[:, :, mask]
    m = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(m)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / m)
    # Per pixel, the sample std matches the sigma map: sd(std estimate) ~ sigma / sqrt(2 n).
    rel = (samples - mean).std(dim=0)[:, mask] / sigma[:, mask] - 1
    assert float(rel.abs().max()) < 5 / math.sqrt(2 * n)


def test_gaussian_validation_and_params():
    sigma, mask = sigma_map_and_mask()
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(torch.where(mask, 0.0, sigma))
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(float("nan"))
    with pytest.raises(ValueError, match="0 .* or 1"):
        GaussianNoise(1.0, mask=torch.full((6, 8), 0.5))
    # Zero or infinite sigma is fine where nothing is observed.
    GaussianNoise(torch.where(mask, sigma, torch.inf), mask)
    GaussianNoise(torch.where(mask, sigma, 0.0), mask)
    assert GaussianNoise(0.3).params() == {"noise": "GaussianNoise", "sigma": 0.3}
    summary = GaussianNoise(sigma, mask).params()
    assert summary["sigma"] == "per-pixel map"
    assert summary["sigma_min"] == pytest.approx(float(sigma[:, mask].min()))


def correlated_power(k: np.ndarray) -> np.ndarray:
    """A red spectrum with a floor, S(k) in (data units)^2 per unit frequency area."""
    return 0.05 + 2.0 / (1.0 + (k / 0.1) ** 2)


def dense_covariance(power: np.ndarray) -> np.ndarray:
    """Sigma[p, q] = (1 / N) sum_k S(k) exp(2 pi i k . (p - q)), by explicit sums (no FFT)."""
    h, w = power.shape
    ky = np.array([i / h if i < (h + 1) // 2 else i / h - 1 for i in range(h)])
    kx = np.array([j / w if j < (w + 1) // 2 else j / w - 1 for j in range(w)])
    py, px = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    py, px = py.ravel(), px.ravel()
    dy, dx = py[:, None] - py[None, :], px[:, None] - px[None, :]
    cov = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            cov += power[i, j] * np.cos(2 * np.pi * (ky[i] * dy + kx[j] * dx))
    return cov / (h * w)


@pytest.mark.parametrize("grid", [(4, 6), (5, 3)])
def test_correlated_noise_against_dense_covariance(grid: tuple[int, int]):
    h, w = grid
    noise = CorrelatedGaussianNoise(correlated_power, (2, h, w))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    cov = dense_covariance(correlated_power(k))
    mean = torch.randn(2, h, w, generator=gen(30), dtype=torch.float64)
    y = torch.randn(3, 2, h, w, generator=gen(31), dtype=torch.float64)
    expected = [
        sum(
            scipy.stats.multivariate_normal(mean[c].ravel(), cov).logpdf(y[b, c].ravel())
            for c in (0, 1)
        )
        for b in range(3)
    ]
    np.testing.assert_allclose(noise.log_prob(y, mean).numpy(), expected, rtol=1e-10)
    # whiten is the symmetric inverse square root of the covariance.
    evals, evecs = np.linalg.eigh(cov)
    inv_sqrt = evecs @ np.diag(evals**-0.5) @ evecs.T
    basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    np.testing.assert_allclose(
        noise.whiten(basis).reshape(h * w, h * w).numpy(), inv_sqrt, atol=1e-10
    )


def test_correlated_noise_power_spectrum_and_whitening():
    h, w, n = 16, 16, 2000
    noise = CorrelatedGaussianNoise(correlated_power, (1, h, w))
    mean = torch.randn(1, h, w, generator=gen(32), dtype=torch.float64)
    samples = noise.sample(mean.expand(n, 1, h, w), generator=gen(33))
    # Measured power per mode: <|n_hat|^2> / (H W) = S. Each mode's estimate is a mean of n
    # Exp(1) draws (relative sd 1/sqrt(n)), or of chi^2_1 draws on self-conjugate modes (sqrt(2/n)).
    measured = torch.fft.fft2(samples - mean).abs().square().mean(dim=0)[0] / (h * w)
    ky, kx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    ratio = measured.numpy() / correlated_power(np.hypot(kx, ky))
    self_conjugate = np.zeros((h, w), bool)
    self_conjugate[np.ix_([0, h // 2], [0, w // 2])] = True
    sd = np.where(self_conjugate, math.sqrt(2 / n), math.sqrt(1 / n))
    assert np.all(np.abs(ratio - 1) < 5 * sd)
    white = noise.whiten(samples - mean)
    m = white.numel()
    assert abs(float(white.var()) - 1) < 5 * math.sqrt(2 / m)
    assert abs(float(white.mean())) < 5 / math.sqrt(m)


def test_correlated_noise_grid_input_and_validation():
    h, w = 6, 5
    ky, kx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    grid = torch.from_numpy(correlated_power(np.hypot(kx, ky)))
    r = torch.randn(1, h, w, generator=gen(34), dtype=torch.float64)
    from_grid = CorrelatedGaussianNoise(grid, (1, h, w))
    from_callable = CorrelatedGaussianNoise(correlated_power, (1, h, w))
    torch.testing.assert_close(from_grid.whiten(r), from_callable.whiten(r))
    with pytest.raises(ValueError, match="> 0"):
        CorrelatedGaussianNoise(lambda k: k, (1, h, w))  # S(0) = 0
    uneven = grid.clone()
    uneven[1, 1] *= 2
    with pytest.raises(ValueError, match="even"):
        CorrelatedGaussianNoise(uneven, (1, h, w))


def test_poisson_log_prob_matches_scipy_and_stays_finite():
    noise = PoissonNoise()
    mean = 0.1 + 5 * torch.rand(3, 1, 6, 8, generator=gen(40), dtype=torch.float64)
    y = torch.poisson(mean, generator=gen(41))
    expected = [scipy.stats.poisson.logpmf(y[b].numpy(), mean[b].numpy()).sum() for b in range(3)]
    np.testing.assert_allclose(noise.log_prob(y, mean).numpy(), expected, rtol=1e-12)
    zero = torch.zeros(1, 1, 2, dtype=torch.float64)
    assert float(noise.log_prob(zero, zero)) == pytest.approx(0.0, abs=1e-15)
    assert torch.isfinite(noise.log_prob(zero + 3, zero))
    masked = PoissonNoise(mask=torch.tensor([[True, False]]))
    y_nan = torch.tensor([[[2.0, torch.nan]]], dtype=torch.float64)
    mean2 = torch.tensor([[[1.5, 1.5]]], dtype=torch.float64)
    expected = scipy.stats.poisson.logpmf(2, 1.5)
    assert float(masked.log_prob(y_nan, mean2)) == pytest.approx(expected, rel=1e-12)


def test_poisson_sample_statistics():
    n = 4000
    mean = 0.5 + 4 * torch.rand(1, 4, 4, generator=gen(42), dtype=torch.float64)
    counts = PoissonNoise().sample(mean.expand(n, 1, 4, 4), generator=gen(43))
    assert torch.all(counts == counts.round()) and torch.all(counts >= 0)
    # Per pixel: the sample mean has sd sqrt(mean / n).
    assert torch.all((counts.mean(dim=0) - mean).abs() < 5 * (mean / n).sqrt())


@pytest.mark.parametrize(
    "noise",
    [
        GaussianNoise(0.2 + torch.rand(1, 6, 8, generator=gen(50)), random_mask((6, 8), 51)),
        CorrelatedGaussianNoise(correlated_power, (1, 6, 8)),
        PoissonNoise(),
    ],
    ids=["gaussian", "correlated", "poisson"],
)
def test_noise_log_prob_gradcheck(noise):
    mean = 0.5 + torch.rand(1, 1, 6, 8, generator=gen(52), dtype=torch.float64)
    y = torch.poisson(mean, generator=gen(53))
    assert torch.autograd.gradcheck(lambda m: noise.log_prob(y, m), (mean.requires_grad_(True),))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_noise_models_follow_dtype_and_device(dtype: torch.dtype, device: str):
    sigma, mask = sigma_map_and_mask()
    models = [
        GaussianNoise(sigma, mask),
        CorrelatedGaussianNoise(correlated_power, (2, 6, 8)),
        PoissonNoise(),
    ]
    mean = (1 + torch.rand(3, 2, 6, 8, generator=gen(54))).to(device, dtype)
    generator = torch.Generator(device).manual_seed(55)
    for noise in models:
        y = noise.sample(mean, generator=generator)
        lp = noise.log_prob(y, mean)
        assert y.shape == mean.shape and y.dtype == dtype and y.device.type == device
        assert lp.shape == (3,) and lp.dtype == dtype and torch.all(torch.isfinite(lp))
