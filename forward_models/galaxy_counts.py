"""Galaxy counts: the Poisson mean of a biased tracer of the density contrast (nonlinear)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from forward_models.base import ForwardOperator


class GalaxyCounts(ForwardOperator):
    """A(x) = n_bar * max(1 + bias * x, 0): expected counts per pixel, to pair with PoissonNoise.

    The clamp keeps the mean non-negative where bias * x < -1; its gradient is zero there.

    Args:
        n_bar: mean number of galaxies per pixel, > 0.
        bias: linear galaxy bias (dimensionless).
    """

    is_linear = False

    def __init__(self, n_bar: float, bias: float):
        super().__init__()
        if not (math.isfinite(n_bar) and n_bar > 0) or not math.isfinite(bias):
            raise ValueError(
                f"need finite n_bar > 0 and finite bias, got n_bar={n_bar}, bias={bias}"
            )
        self.n_bar = float(n_bar)
        self.bias = float(bias)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        return self.n_bar * torch.clamp(1.0 + self.bias * x, min=0.0)

    def params(self) -> dict[str, Any]:
        return {"operator": "GalaxyCounts", "n_bar": self.n_bar, "bias": self.bias}
