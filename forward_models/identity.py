"""The identity operator: denoising, where the data are the field plus noise."""

from __future__ import annotations

from torch import Tensor

from forward_models.base import ForwardOperator


class Identity(ForwardOperator):
    """A(x) = x."""

    is_linear = True
    diagonal_basis = "pixel"

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        return x

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        return y
