"""Pixel masking (inpainting): unobserved pixels are set to zero."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from forward_models.base import ForwardOperator, cast_like


def as_binary_mask(mask: Any, who: str) -> Tensor:
    """A 0/1 mask as a bool tensor of at most 3 dims; 1 (True) means observed."""
    m = torch.as_tensor(mask).detach().cpu()
    if m.ndim > 3:
        raise ValueError(
            f"{who}: mask must be (H, W) or broadcastable to (C, H, W), got {tuple(m.shape)}"
        )
    if m.dtype != torch.bool:
        if m.is_complex() or not torch.all((m == 0) | (m == 1)):
            raise ValueError(f"{who}: mask values must be 0 (unobserved) or 1 (observed)")
        m = m != 0
    return m


class Mask(ForwardOperator):
    """A(x) = m * x with m in {0, 1}: self-adjoint and diagonal in pixel space.

    Args:
        mask: (H, W) or broadcastable to (C, H, W); 1 = observed pixel.
    """

    is_linear = True
    diagonal_basis = "pixel"

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", as_binary_mask(mask, "Mask").to(torch.float64))

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        return x * cast_like(self.mask, x)

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        return self.A(y)

    def data_shape(self, field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        field_shape = tuple(field_shape)
        try:
            ok = torch.broadcast_shapes(self.mask.shape, field_shape) == field_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"Mask of shape {tuple(self.mask.shape)} does not fit a field {field_shape}"
            )
        return field_shape

    def params(self) -> dict[str, Any]:
        return {
            "operator": "Mask",
            "mask_shape": list(self.mask.shape),
            "mask_observed_fraction": float(self.mask.mean()),
        }
