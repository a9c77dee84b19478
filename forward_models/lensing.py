"""Weak-lensing shear from convergence on a periodic grid, its Kaiser-Squires inverse, shape noise.

Convention (pinned by tests/forward_models/test_lensing.py): k1 along the last axis (x), k2 along the
second-to-last (y), both numpy.fft.fftfreq in cycles per pixel;
D1 = (k1^2 - k2^2) / k^2, D2 = 2 k1 k2 / k^2, both 0 at k = 0, and D2 = 0 on the Nyquist row
(k2 = -1/2, H even) and column (k1 = -1/2, W even) so both filters are real and even.
gamma_i = ifft2(D_i fft2(kappa)).real. This equals lenspack's ks93inv except, when H and W are
both even, at the single mode k = (-1/2, -1/2), where lenspack keeps D2 = 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from forward_models.base import ForwardOperator, cast_like
from forward_models.fourier import check_grid, fourier_filter, frequency_grid, grid_shape


def shear_filters(shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(D1, D2), each (H, W) float64 on the FFT grid, as in the module docstring."""
    h, w = grid_shape(shape)
    k2, k1 = frequency_grid((h, w))
    ksq = k1**2 + k2**2
    ksq[0, 0] = 1.0  # D1 = D2 = 0 at k = 0: the numerators vanish there
    d1 = (k1**2 - k2**2) / ksq
    d2 = 2.0 * k1 * k2 / ksq
    # On a Nyquist line -k aliases to k while D2 flips sign: only D2 = 0 keeps it real and even.
    if h % 2 == 0:
        d2[h // 2, :] = 0.0
    if w % 2 == 0:
        d2[:, w // 2] = 0.0
    return torch.from_numpy(d1), torch.from_numpy(d2)


class Shear(ForwardOperator):
    """Convergence (..., 1, H, W) -> shear (..., 2, H, W) with channels (gamma1, gamma2).

    The adjoint applies the same real, even filters and sums:
    A^T(g) = ifft2(D1 g1_hat + D2 g2_hat).real.

    Args:
        shape: (H, W) of the convergence map in pixels ((C, H, W) is accepted too).
    """

    is_linear = True
    diagonal_basis = "fourier"

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = grid_shape(shape)
        d1, d2 = shear_filters(self.shape)
        self.register_buffer("filters", torch.stack([d1, d2]))  # (2, H, W)

    def data_shape(self, field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = field_shape
        if c != 1 or (h, w) != self.shape:
            raise ValueError(
                f"Shear maps a (1, {self.shape[0]}, {self.shape[1]}) field, got {field_shape}"
            )
        return (2, h, w)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        check_grid(x, self.shape, "Shear")
        self.data_shape(tuple(x.shape[-3:]))
        return fourier_filter(x, self.filters)  # (..., 1, H, W) against (2, H, W) broadcasts

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        check_grid(y, self.shape, "Shear")
        if y.shape[-3] != 2:
            raise ValueError(f"Shear adjoint takes (..., 2, H, W), got {tuple(y.shape)}")
        y_hat = torch.fft.fft2(y) * cast_like(self.filters, y)
        return torch.fft.ifft2(y_hat.sum(dim=-3, keepdim=True)).real

    def params(self) -> dict[str, Any]:
        return {"operator": "Shear", "shape": list(self.shape)}


# Reduced shear diverges at kappa = 1 (strong lensing, outside this model); kappa is capped here
# so that a sampler's trial fields keep finite data.
REDUCED_SHEAR_MAX_KAPPA = 0.9


class ReducedShear(ForwardOperator):
    """Convergence (..., 1, H, W) -> reduced shear g = gamma / (1 - kappa) (..., 2, H, W), with
    kappa capped at REDUCED_SHEAR_MAX_KAPPA: what galaxy ellipticities measure (nonlinear; the
    `linearized` sampler takes it through its Jacobian).

    Args:
        shape: (H, W) of the convergence map in pixels.
    """

    is_linear = False

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shear = Shear(shape)
        self.shape = self.shear.shape

    def data_shape(self, field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return self.shear.data_shape(field_shape)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        kappa = torch.clamp(x, max=REDUCED_SHEAR_MAX_KAPPA)
        return self.shear.A(x) / (1.0 - kappa)

    def params(self) -> dict[str, Any]:
        return {"operator": "ReducedShear", "shape": list(self.shape),
                "max_kappa": REDUCED_SHEAR_MAX_KAPPA}  # fmt: skip


def kaiser_squires(gamma: Tensor) -> tuple[Tensor, Tensor]:
    """Kaiser & Squires (1993): shear (..., 2, H, W) -> (kappa_E, kappa_B), each (..., 1, H, W).

    kE_hat = D1 g1_hat + D2 g2_hat, kB_hat = -D2 g1_hat + D1 g2_hat, with the zeroed-Nyquist filters
    of `shear_filters`, so kappa_E = Shear.A_adjoint(gamma). For real shear, zeroing D2 on a
    Nyquist line only drops its odd part, which .real discards anyway, so this equals lenspack's
    ks93 except at the corner mode (-1/2, -1/2) of an even x even grid. The k = 0 mode is lost
    (mass-sheet degeneracy): kappa_E = kappa minus its mean on odd grids; on even grids the
    Nyquist lines are damped, where D1^2 + D2^2 < 1.
    """
    if gamma.ndim < 3 or gamma.shape[-3] != 2:
        raise ValueError(
            f"kaiser_squires takes shear of shape (..., 2, H, W), got {tuple(gamma.shape)}"
        )
    d1, d2 = (cast_like(d, gamma) for d in shear_filters(tuple(gamma.shape[-2:])))
    g_hat = torch.fft.fft2(gamma)
    g1, g2 = g_hat[..., 0:1, :, :], g_hat[..., 1:2, :, :]
    kappa_e = torch.fft.ifft2(d1 * g1 + d2 * g2).real
    kappa_b = torch.fft.ifft2(-d2 * g1 + d1 * g2).real
    return kappa_e, kappa_b


def shape_noise_sigma(
    sigma_e: float,
    n_gal_per_arcmin2: float | Tensor | np.ndarray,
    pixel_scale_arcmin: float,
) -> float | Tensor:
    """Shear noise per pixel and per component: sigma_e / sqrt(n_gal * pixel_scale^2).

    Args:
        sigma_e: intrinsic ellipticity dispersion per component (dimensionless).
        n_gal_per_arcmin2: galaxy density in arcmin^-2, a scalar or a map (H, W).
        pixel_scale_arcmin: pixel side in arcmin.

    Returns:
        A float for scalar density, else a float64 tensor (inf where the map has no galaxies).
    """
    if not sigma_e > 0 or not pixel_scale_arcmin > 0:
        raise ValueError(
            f"need sigma_e > 0 and pixel_scale_arcmin > 0, got {sigma_e}, {pixel_scale_arcmin}"
        )
    n_gal = torch.as_tensor(n_gal_per_arcmin2, dtype=torch.float64)
    if not torch.all(torch.isfinite(n_gal) & (n_gal >= 0)):
        raise ValueError("n_gal_per_arcmin2 must be finite and >= 0")
    if n_gal.ndim == 0:
        if n_gal <= 0:
            raise ValueError(f"n_gal_per_arcmin2 must be > 0, got {float(n_gal)}")
        return float(sigma_e / math.sqrt(float(n_gal) * pixel_scale_arcmin**2))
    return sigma_e / torch.sqrt(n_gal * pixel_scale_arcmin**2)
