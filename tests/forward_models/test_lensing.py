"""Pins the weak-lensing shear convention and checks it against independent constructions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forward_models import Shear, kaiser_squires, shape_noise_sigma, shear_filters

try:
    from lenspack.image.inversion import ks93, ks93inv
except ImportError:  # lenspack is a dev extra
    ks93 = ks93inv = None

needs_lenspack = pytest.mark.skipif(ks93 is None, reason="lenspack not installed")


def spec_filters(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """D1, D2 written out from the convention's text, entry by entry."""
    d1, d2 = np.zeros((h, w)), np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            k2 = i / h if i < (h + 1) // 2 else i / h - 1  # numpy.fft.fftfreq, by hand
            k1 = j / w if j < (w + 1) // 2 else j / w - 1
            if i == 0 and j == 0:
                continue
            d1[i, j] = (k1 * k1 - k2 * k2) / (k1 * k1 + k2 * k2)
            nyquist = (h % 2 == 0 and i == h // 2) or (w % 2 == 0 and j == w // 2)
            d2[i, j] = 0.0 if nyquist else 2 * k1 * k2 / (k1 * k1 + k2 * k2)
    return d1, d2


def delta(h: int, w: int) -> torch.Tensor:
    x = torch.zeros(1, h, w, dtype=torch.float64)
    x[0, 0, 0] = 1.0
    return x


def test_filters_pinned_on_even_grid():
    h, w = 8, 6
    d1, d2 = spec_filters(h, w)
    assert d1[0, 1] == 1.0 and d1[1, 0] == -1.0  # pure k1 / pure k2 modes
    np.testing.assert_allclose(shear_filters((h, w))[0].numpy(), d1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(shear_filters((h, w))[1].numpy(), d2, rtol=0, atol=1e-15)
    # The operator itself: the transform of its response to a unit impulse is (D1, D2).
    response = torch.fft.fft2(Shear((h, w)).A(delta(h, w)))
    np.testing.assert_allclose(response[0].real.numpy(), d1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(response[1].real.numpy(), d2, rtol=0, atol=1e-14)
    assert float(response.imag.abs().max()) < 1e-14  # real filters
    assert d2[h // 2].tolist() == [0.0] * w and d2[:, w // 2].tolist() == [0.0] * h
    assert d1[0, 0] == d2[0, 0] == 0.0


@pytest.mark.parametrize("grid", [(8, 6), (15, 17), (6, 9)])
def test_filters_real_and_even(grid: tuple[int, int]):
    h, w = grid
    for d in shear_filters(grid):
        d = d.numpy()
        flipped = d[(-np.arange(h)) % h][:, (-np.arange(w)) % w]  # D(-k) on the FFT grid
        np.testing.assert_array_equal(d, flipped)


def test_plane_waves():
    h, w = 8, 6
    x = torch.arange(w, dtype=torch.float64)
    y = torch.arange(h, dtype=torch.float64)[:, None]
    shear = Shear((h, w))
    along_x = torch.cos(2 * math.pi * x / w).expand(1, h, w)
    gamma = shear.A(along_x)
    torch.testing.assert_close(gamma[0], along_x[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(gamma[1], torch.zeros(h, w, dtype=torch.float64), rtol=0, atol=1e-14)
    along_y = torch.cos(2 * math.pi * 3 * y / h).expand(1, h, w)
    gamma = shear.A(along_y)
    torch.testing.assert_close(gamma[0], -along_y[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(gamma[1], torch.zeros(h, w, dtype=torch.float64), rtol=0, atol=1e-14)
    # A diagonal wave (k1, k2) = (1/6, 1/8) fixes the sign of gamma2: D2 = 2 k1 k2 / k^2 > 0.
    k1, k2 = 1 / w, 1 / h
    diagonal = torch.cos(2 * math.pi * (k1 * x + k2 * y))[None]
    gamma = shear.A(diagonal)
    d1 = (k1**2 - k2**2) / (k1**2 + k2**2)
    d2 = 2 * k1 * k2 / (k1**2 + k2**2)
    torch.testing.assert_close(gamma[0], d1 * diagonal[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(gamma[1], d2 * diagonal[0], rtol=0, atol=1e-14)


def direct_shear(kappa: np.ndarray) -> np.ndarray:
    """gamma = F^-1 D F kappa with explicit DFT matrices (no FFT) and the spec's filters."""
    h, w = kappa.shape
    fy = np.exp(-2j * np.pi * np.outer(np.arange(h), np.arange(h)) / h)
    fx = np.exp(-2j * np.pi * np.outer(np.arange(w), np.arange(w)) / w)
    kappa_hat = fy @ kappa @ fx.T
    return np.stack(
        [(fy.conj() @ (d * kappa_hat) @ fx.conj().T).real / (h * w) for d in spec_filters(h, w)]
    )


@pytest.mark.parametrize("grid", [(15, 17), (8, 6)])
def test_shear_against_direct_dft(grid: tuple[int, int]):
    kappa = np.random.default_rng(0).standard_normal(grid)
    gamma = Shear(grid).A(torch.from_numpy(kappa)[None])
    np.testing.assert_allclose(gamma.numpy(), direct_shear(kappa), rtol=0, atol=1e-12)


@needs_lenspack
@pytest.mark.parametrize("grid", [(15, 17), (16, 15), (15, 12)])
def test_shear_against_lenspack(grid: tuple[int, int]):
    """Equal on odd grids, and with one even axis: there lenspack's odd Nyquist D2 drops out."""
    kappa = np.random.default_rng(1).standard_normal(grid)
    g1, g2 = ks93inv(kappa, np.zeros_like(kappa))
    gamma = Shear(grid).A(torch.from_numpy(kappa)[None])
    np.testing.assert_allclose(gamma[0].numpy(), g1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gamma[1].numpy(), g2, rtol=0, atol=1e-12)


@needs_lenspack
def test_shear_differs_from_lenspack_only_at_the_corner_mode():
    """With both axes even, D2 = 0 at k = (-1/2, -1/2) here, where lenspack keeps D2 = 1."""
    h, w = 16, 12
    kappa = np.random.default_rng(6).standard_normal((h, w))
    g1, g2 = ks93inv(kappa, np.zeros_like(kappa))
    gamma = Shear((h, w)).A(torch.from_numpy(kappa)[None]).numpy()
    np.testing.assert_allclose(gamma[0], g1, rtol=0, atol=1e-12)
    diff_hat = np.fft.fft2(g2 - gamma[1])
    corner = np.fft.fft2(kappa)[h // 2, w // 2]
    assert abs(diff_hat[h // 2, w // 2] - corner) < 1e-10
    diff_hat[h // 2, w // 2] = 0
    assert np.abs(diff_hat).max() < 1e-10


def test_kaiser_squires_inverts_shear_on_odd_grid(seeded):
    kappa = torch.randn(3, 1, 15, 17, generator=seeded(2), dtype=torch.float64)
    kappa_e, kappa_b = kaiser_squires(Shear((15, 17)).A(kappa))
    assert kappa_e.shape == kappa_b.shape == (3, 1, 15, 17)
    torch.testing.assert_close(
        kappa_e, kappa - kappa.mean(dim=(-2, -1), keepdim=True), rtol=0, atol=1e-12
    )
    assert float(kappa_b.abs().max()) < 1e-12


def test_kaiser_squires_is_the_shear_adjoint(seeded):
    gamma = torch.randn(2, 2, 8, 6, generator=seeded(3), dtype=torch.float64)
    kappa_e, _ = kaiser_squires(gamma)
    torch.testing.assert_close(kappa_e, Shear((8, 6)).A_adjoint(gamma), rtol=0, atol=1e-13)


def test_kaiser_squires_b_mode_of_rotated_shear(seeded):
    """Rotating the shear by 45 degrees, (g1, g2) -> (-g2, g1), turns an E mode into a B mode."""
    kappa = torch.randn(1, 15, 17, generator=seeded(4), dtype=torch.float64)
    g = Shear((15, 17)).A(kappa)
    kappa_e, kappa_b = kaiser_squires(torch.stack([-g[1], g[0]]))
    assert float(kappa_e.abs().max()) < 1e-12
    torch.testing.assert_close(kappa_b, kappa - kappa.mean(), rtol=0, atol=1e-12)


@needs_lenspack
@pytest.mark.parametrize("grid", [(15, 17), (16, 15)])
def test_kaiser_squires_against_lenspack(grid: tuple[int, int]):
    g1, g2 = np.random.default_rng(5).standard_normal((2, *grid))
    expected_e, expected_b = ks93(g1, g2)
    kappa_e, kappa_b = kaiser_squires(torch.from_numpy(np.stack([g1, g2])))
    np.testing.assert_allclose(kappa_e[0].numpy(), expected_e, rtol=0, atol=1e-12)
    np.testing.assert_allclose(kappa_b[0].numpy(), expected_b, rtol=0, atol=1e-12)


def test_shape_noise_sigma():
    # sigma_e / sqrt(n_gal * pixel area): 0.26 / sqrt(30 * 1) and 0.3 / sqrt(20 * 0.25).
    assert shape_noise_sigma(0.26, 30.0, 1.0) == pytest.approx(0.0474693, rel=1e-6)
    assert shape_noise_sigma(0.3, 20.0, 0.5) == pytest.approx(0.3 / math.sqrt(5.0), rel=1e-14)
    sigma = shape_noise_sigma(0.3, torch.tensor([[20.0, 5.0], [0.0, 80.0]]), 0.5)
    assert isinstance(sigma, torch.Tensor) and sigma.shape == (2, 2)
    expected = [[0.3 / math.sqrt(5.0), 0.3 / math.sqrt(1.25)], [math.inf, 0.3 / math.sqrt(20.0)]]
    torch.testing.assert_close(sigma, torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError):
        shape_noise_sigma(0.3, 0.0, 0.5)
    with pytest.raises(ValueError):
        shape_noise_sigma(0.3, 10.0, -1.0)
    with pytest.raises(ValueError):
        shape_noise_sigma(0.3, torch.tensor([1.0, -1.0]), 1.0)


def test_reduced_shear_its_linearisation_and_the_lensing_option(tmp_path):
    """g = gamma / (1 - kappa): equal to the shear for small kappa, 1/(1 - kappa) larger at a
    peak; its Jacobian products match finite differences and are adjoint to each other; the
    lensing model takes `reduced_shear = 1`, which makes it nonlinear (sampled by `linearized`)."""
    from forward_models.lensing import ReducedShear
    from forward_models.linearized import LinearizedOperator
    from forward_models.registry import build_lensing

    g = torch.Generator().manual_seed(0)
    kappa = 0.05 * torch.randn(1, 12, 10, generator=g, dtype=torch.float64)
    kappa[0, 5, 5] = 0.5  # a massive peak
    reduced, shear = ReducedShear((12, 10)).A(kappa), Shear((12, 10)).A(kappa)
    torch.testing.assert_close(reduced[:, 5, 5], shear[:, 5, 5] / 0.5)
    linear = LinearizedOperator(ReducedShear((12, 10)), kappa)
    v = torch.randn(3, 1, 12, 10, generator=g, dtype=torch.float64)
    u = torch.randn(3, 2, 12, 10, generator=g, dtype=torch.float64)
    step = 1e-6
    finite = (
        ReducedShear((12, 10)).A(kappa + step * v) - ReducedShear((12, 10)).A(kappa - step * v)
    ) / (2 * step)
    torch.testing.assert_close(linear.A(v), finite, rtol=0, atol=1e-8)
    assert abs(float((linear.A(v) * u).sum() - (v * linear.A_adjoint(u)).sum())) < 1e-10
    attrs = {"sigma_e": 0.26, "n_gal_per_arcmin2": 30.0, "pixel_scale_arcmin": 1.0}
    assert build_lensing(attrs, {}, (2, 12, 10)).is_linear_gaussian
    model = build_lensing({**attrs, "reduced_shear": 1}, {}, (2, 12, 10))
    assert not model.is_linear_gaussian and model.params()["operator"] == "ReducedShear"
