"""Shared helpers for operators that are diagonal in Fourier space on a periodic grid."""

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


def check_grid(x: Tensor, shape: tuple[int, int], who: str) -> None:
    if tuple(x.shape[-2:]) != shape or x.ndim < 3:
        raise ValueError(
            f"{who} was built for (..., C, {shape[0]}, {shape[1]}), got {tuple(x.shape)}"
        )


def apply_transfer(x: Tensor, transfer: Tensor) -> Tensor:
    """ifft2(fft2(x) * T).real over the last two dims, T cast to x's precision and device."""
    return torch.fft.ifft2(torch.fft.fft2(x) * cast_like(transfer, x)).real
