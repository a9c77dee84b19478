"""A differentiable operator linearised at a point (Gauss-Newton): A(p + v) ~ A(p) + J v."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from forward_models.base import ForwardOperator


class LinearizedOperator(ForwardOperator):
    """v -> J v, with J the Jacobian of `operator` at `point` (C, H, W); `offset` is A(point).

    Jacobian products come from torch.func (forward- and reverse-mode), so any differentiable
    operator can be linearised; leading dims of v are a batch.
    """

    is_linear = True

    def __init__(self, operator: ForwardOperator, point: Tensor):
        super().__init__()
        self.operator = operator
        self.register_buffer("point", point.detach().clone())
        with torch.no_grad():
            self.register_buffer("offset", operator.A(self.point))

    def _batched(self, fn, v: Tensor, ndim: int) -> Tensor:
        if v.ndim == ndim:
            return fn(v)
        flat = v.reshape(-1, *v.shape[-ndim:])
        out = torch.func.vmap(fn)(flat)
        return out.reshape(*v.shape[:-ndim], *out.shape[1:])

    def A(self, v: Tensor) -> Tensor:  # noqa: N802
        point = self.point.to(v)

        def jvp(tangent: Tensor) -> Tensor:
            return torch.func.jvp(self.operator.A, (point,), (tangent,))[1]

        return self._batched(jvp, v, point.ndim)

    def A_adjoint(self, r: Tensor) -> Tensor:  # noqa: N802
        point = self.point.to(r)
        _, pullback = torch.func.vjp(self.operator.A, point)
        return self._batched(lambda c: pullback(c)[0], r, self.offset.ndim)

    def data_shape(self, field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return self.operator.data_shape(field_shape)

    def params(self) -> dict[str, Any]:
        return {"operator": "Linearized", "linearized": self.operator.params()}
