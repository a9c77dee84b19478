"""A linear Gaussian likelihood in whitened form: p(y | x) ∝ exp(-|y_w - B x|^2 / 2).

B = Sigma^{-1/2} A and y_w = Sigma^{-1/2} y, with zero rows where data are unobserved, so samplers
never invert Sigma or A themselves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from forward_models.base import ForwardModel


class WhitenedLinearGaussian:
    def __init__(self, model: ForwardModel, y: Tensor):
        if not model.is_linear_gaussian:
            raise ValueError(
                f"forward model '{model.name}' is not linear with Gaussian noise; "
                "this sampler needs one (samplers.FALLBACK_SAMPLER takes the others)"
            )
        self.model = model
        self.y_white = model.noise.whiten(y)

    def B(self, x: Tensor) -> Tensor:  # noqa: N802
        return self.model.noise.whiten(self.model.A(x))

    def B_adjoint(self, r: Tensor) -> Tensor:  # noqa: N802
        return self.model.A_adjoint(self.model.noise.whiten(r))

    def observed(self) -> Tensor:
        """Data entries that are observed (a nonzero whitening weight), shaped like y."""
        return self.model.noise.whiten(torch.ones_like(self.y_white)) != 0

    def precision_diagonal(self) -> Tensor | None:
        """Sigma^{-1} per data entry (0 where unobserved) when the noise is independent between
        entries, else None."""
        if self.model.noise.independent_std() is None:
            return None
        return self.model.noise.whiten(torch.ones_like(self.y_white)).square()

    def mean_row_norm2(self) -> float:
        """The mean of |A^T e_i|^2 over observed data entries i (1 for a mask or shear)."""
        observed = self.observed().to(self.y_white.dtype)
        return float(self.model.A_adjoint(observed).square().sum() / observed.sum().clamp_min(1))

    def residual(self, x: Tensor) -> Tensor:
        """y_w - B x."""
        return self.y_white - self.B(x)
