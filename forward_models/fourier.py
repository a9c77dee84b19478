"""FFT helpers for fields on a periodic grid: the frequency grid and Fourier-diagonal filters.

The one implementation of both, for operators, noise models, priors and diagnostics alike.
Frequencies are numpy.fft.fftfreq, in cycles per pixel, k_x along the last axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from forward_models.base import cast_like


def grid_shape(shape: Sequence[int]) -> tuple[int, int]:
    """(H, W) in pixels from an (H, W) or (C, H, W) shape."""
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape[-2:]) < 1:
        raise ValueError(f"expected a grid shape (H, W) or (C, H, W), got {shape}")
    return shape[-2], shape[-1]


def frequency_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(k_y, k_x) on the FFT grid in cycles per pixel, each (H, W): k_x along the last axis."""
    h, w = shape
    ky, kx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    return ky, kx


def frequency_magnitude(height: int, width: int) -> np.ndarray:
    """|k| = sqrt(k_x^2 + k_y^2) in cycles per pixel on the FFT grid of an H x W map."""
    ky, kx = frequency_grid((height, width))
    return np.sqrt(kx**2 + ky**2)


def check_grid(x: Tensor, shape: tuple[int, int], who: str) -> None:
    if tuple(x.shape[-2:]) != shape or x.ndim < 3:
        raise ValueError(
            f"{who} was built for (..., C, {shape[0]}, {shape[1]}), got {tuple(x.shape)}"
        )


def fourier_filter(x: Tensor, transfer: Tensor) -> Tensor:
    """ifft2(fft2(x) * T).real over the last two dims, T cast to x's precision and device.

    T is on the FFT grid (broadcast against x); real and even T gives a symmetric filter.
    """
    return torch.fft.ifft2(torch.fft.fft2(x) * cast_like(transfer, x)).real
