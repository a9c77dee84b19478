"""Convolution with a point-spread function on a periodic grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from forward_models.base import ForwardOperator
from forward_models.fourier import check_grid, fourier_filter, grid_shape

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


class Blur(ForwardOperator):
    """A(x) = psf (*) x, circular convolution: ifft2(fft2(x) * T).real; the adjoint uses conj(T).

    Args:
        psf_image: (h, w) PSF with h <= H, w <= W; its centre is pixel (h // 2, w // 2).
            Normalised to unit sum, so the blur conserves flux.
        shape: (H, W) of the field in pixels ((C, H, W) is accepted too).
    """

    is_linear = True
    diagonal_basis = "fourier"

    def __init__(self, psf_image: Tensor | np.ndarray, shape: tuple[int, ...]):
        super().__init__()
        self.shape = grid_shape(shape)
        psf = np.asarray(torch.as_tensor(psf_image).detach().cpu(), dtype=np.float64)
        h, w = psf.shape if psf.ndim == 2 else (0, 0)
        if psf.ndim != 2 or h > self.shape[0] or w > self.shape[1]:
            raise ValueError(f"PSF must be 2-D and at most {self.shape} pixels, got {psf.shape}")
        if not np.all(np.isfinite(psf)) or psf.sum() <= 0:
            raise ValueError("PSF must be finite with a positive sum")
        kernel = np.zeros(self.shape)
        kernel[:h, :w] = psf / psf.sum()
        # Put the PSF centre on pixel (0, 0) so the blur does not shift the field.
        kernel = np.roll(kernel, (-(h // 2), -(w // 2)), axis=(0, 1))
        self.register_buffer("transfer", torch.from_numpy(np.fft.fft2(kernel)))
        self.psf_shape = (h, w)
        self.fwhm_pixels: float | None = None

    @classmethod
    def gaussian(cls, fwhm_pixels: float, shape: tuple[int, ...]) -> Blur:
        """A circular Gaussian PSF of full width at half maximum `fwhm_pixels` (pixels).

        Built on the whole grid with periodic distances, so T is real and even.
        """
        if not fwhm_pixels > 0:
            raise ValueError(f"fwhm_pixels must be > 0, got {fwhm_pixels}")
        h, w = grid_shape(shape)
        sigma = fwhm_pixels / FWHM_PER_SIGMA
        dy = np.abs(np.arange(h) - h // 2)
        dx = np.abs(np.arange(w) - w // 2)
        dy, dx = np.minimum(dy, h - dy), np.minimum(dx, w - dx)
        psf = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2.0 * sigma**2))
        blur = cls(psf, (h, w))
        blur.fwhm_pixels = float(fwhm_pixels)
        return blur

    def transfer_function(self) -> Tensor:
        return self.transfer

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        check_grid(x, self.shape, "Blur")
        return fourier_filter(x, self.transfer)

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        check_grid(y, self.shape, "Blur")
        return fourier_filter(y, self.transfer.conj())

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operator": "Blur", "shape": list(self.shape)}
        if self.fwhm_pixels is not None:
            out["fwhm_pixels"] = self.fwhm_pixels
        else:
            out["psf_shape"] = list(self.psf_shape)
        return out
