"""Isotropic smoothing windows (Gaussian or top-hat disk) applied in Fourier space."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special
import torch
from torch import Tensor

from forward_models.base import ForwardOperator
from forward_models.fourier import check_grid, fourier_filter, frequency_grid, grid_shape

KINDS = ("gaussian", "tophat")


def smoothing_window(kind: str, radius_pixels: float, k: np.ndarray) -> np.ndarray:
    """W(k) at |k| in cycles per pixel: exp(-(2 pi k R)^2 / 2), or 2 J1(2 pi k R) / (2 pi k R)."""
    q = 2.0 * np.pi * k * radius_pixels
    if kind == "gaussian":
        return np.exp(-0.5 * q**2)
    if kind == "tophat":
        safe = np.where(q == 0, 1.0, q)
        return np.where(q == 0, 1.0, 2.0 * scipy.special.j1(safe) / safe)
    raise ValueError(f"smoothing kind must be one of {KINDS}, got {kind!r}")


class Smoothing(ForwardOperator):
    """A(x) = ifft2(fft2(x) * W(|k|)).real; W is real and even, so A is self-adjoint.

    Args:
        kind: "gaussian" (R is the Gaussian sigma) or "tophat" (R is the disk radius).
        radius_pixels: R in pixels, >= 0.
        shape: (H, W) of the field in pixels ((C, H, W) is accepted too).
    """

    is_linear = True
    diagonal_basis = "fourier"

    def __init__(self, kind: str, radius_pixels: float, shape: tuple[int, ...]):
        super().__init__()
        if not radius_pixels >= 0:
            raise ValueError(f"radius_pixels must be >= 0, got {radius_pixels}")
        self.kind = str(kind)
        self.radius_pixels = float(radius_pixels)
        self.shape = grid_shape(shape)
        ky, kx = frequency_grid(self.shape)
        # np.hypot, not frequency_magnitude: the two differ in the last bit; windows stay as they were
        window = smoothing_window(self.kind, self.radius_pixels, np.hypot(kx, ky))
        self.register_buffer("window", torch.from_numpy(window))

    def transfer_function(self) -> Tensor:
        return self.window

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        check_grid(x, self.shape, "Smoothing")
        return fourier_filter(x, self.window)

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        return self.A(y)

    def params(self) -> dict[str, Any]:
        return {
            "operator": "Smoothing",
            "kind": self.kind,
            "radius_pixels": self.radius_pixels,
            "shape": list(self.shape),
        }
