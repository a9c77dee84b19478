"""Composition of forward operators, applied in the order given."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from forward_models.base import ForwardOperator


class Compose(ForwardOperator):
    """A = A_n o ... o A_1 for Compose(A_1, ..., A_n): the first operator is applied first.

    Linear iff every part is; the adjoint applies the parts' adjoints in reverse order.
    `diagonal_basis` is kept only when every part shares it.
    """

    def __init__(self, *operators: ForwardOperator):
        super().__init__()
        if not operators:
            raise ValueError("Compose needs at least one operator")
        self.operators = torch.nn.ModuleList(operators)
        self.is_linear = all(op.is_linear for op in operators)
        bases = {op.diagonal_basis for op in operators}
        self.diagonal_basis = bases.pop() if len(bases) == 1 else None

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        for op in self.operators:
            x = op.A(x)
        return x

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        if not self.is_linear:
            return super().A_adjoint(y)
        for op in reversed(self.operators):
            y = op.A_adjoint(y)
        return y

    def data_shape(self, field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        shape = tuple(field_shape)
        for op in self.operators:
            shape = op.data_shape(shape)
        return shape

    def params(self) -> dict[str, Any]:
        return {"operator": "Compose", "operators": [op.params() for op in self.operators]}
