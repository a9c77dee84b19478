"""Block-average downsampling by an integer factor."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from forward_models.base import ForwardOperator


class Downsample(ForwardOperator):
    """A(x): the mean of each factor x factor block; A^T(y): y repeated over its block / factor^2.

    Args:
        factor: block size in pixels; H and W of the field must be divisible by it.
    """

    is_linear = True

    def __init__(self, factor: int):
        super().__init__()
        if int(factor) != factor or factor < 1:
            raise ValueError(f"downsampling factor must be a positive integer, got {factor}")
        self.factor = int(factor)

    def data_shape(self, field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = field_shape
        f = self.factor
        if h % f or w % f:
            raise ValueError(
                f"field of {h} x {w} pixels is not divisible by downsampling factor {f}"
            )
        return (c, h // f, w // f)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        _, h, w = self.data_shape(tuple(x.shape[-3:]))
        f = self.factor
        return x.reshape(*x.shape[:-2], h, f, w, f).mean(dim=(-3, -1))

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        f = self.factor
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1) / f**2

    def params(self) -> dict[str, Any]:
        return {"operator": "Downsample", "factor": self.factor}
