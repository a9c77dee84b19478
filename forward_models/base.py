"""The forward-model contract: a deterministic operator A(x), a separate noise model, their pair."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def cast_like(buffer: Tensor, x: Tensor) -> Tensor:
    """A stored buffer in the dtype and on the device of `x` (complex ones in x's complex dtype)."""
    dtype = (
        x.dtype
        if not buffer.is_complex()
        else (torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    )
    return buffer.to(device=x.device, dtype=dtype)


class ForwardOperator(torch.nn.Module):
    """Noise-free data from a field: x of shape (..., C, H, W) -> A(x) of shape (..., C', H', W').

    Subclasses set `is_linear`; linear ones implement `A_adjoint`. Operators that are elementwise
    in pixel space or in (unitary) Fourier space set `diagonal_basis` to "pixel" or "fourier" so
    samplers may take exact Gaussian steps. Buffers are stored once and cast to the input's
    dtype and device on use, so one operator serves float32/float64 on CPU or CUDA.
    """

    is_linear: bool = False
    diagonal_basis: str | None = None

    def A(self, x: Tensor) -> Tensor:  # noqa: N802 (the math's name)
        raise NotImplementedError

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        raise NotImplementedError(f"{type(self).__name__} is not linear: it has no adjoint")

    def data_shape(self, field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape (C', H', W') of A(x) for a field of shape (C, H, W)."""
        return tuple(field_shape)

    def transfer_function(self) -> Tensor | None:
        """T on the (H, W) FFT grid when A(x) = ifft2(T fft2(x)).real channel by channel (one
        Fourier multiplier, so exact posteriors need no dense algebra), else None."""
        return None

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters, recorded as provenance."""
        return {"operator": type(self).__name__}

    def forward(self, x: Tensor) -> Tensor:
        return self.A(x)

    def adjointness_error(
        self,
        field_shape: tuple[int, int, int],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> float:
        """Relative error |<Ax, y> - <x, A^T y>| / (|Ax| |y|) for random x, y."""
        x = torch.randn(field_shape, generator=generator, dtype=dtype).to(device)
        y = torch.randn(self.data_shape(field_shape), generator=generator, dtype=dtype).to(device)
        ax, aty = self.A(x), self.A_adjoint(y)
        lhs, rhs = (ax * y).sum(), (x * aty).sum()
        scale = ax.norm() * y.norm() + x.norm() * aty.norm()
        return float((lhs - rhs).abs() / scale.clamp_min(torch.finfo(dtype).tiny))


class NoiseModel(torch.nn.Module):
    """p(y | A(x)): `log_prob` summed over the last three (data) dimensions, and `sample`."""

    is_gaussian: bool = False

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, mean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def gaussian_std(self, mean: Tensor) -> Tensor:
        """Per-entry std of the Gaussian with this model's Fisher information at `mean`: the noise
        of a Gauss-Newton linearisation. 0 where an entry is unobserved."""
        raise NotImplementedError(f"{type(self).__name__} has no Gaussian approximation")

    def data_problem(self, y: Tensor) -> str | None:
        """Why data `y` cannot come from this noise model (one line), or None if they can."""
        return None

    def independent_std(self) -> Tensor | None:
        """The std of each data entry, broadcastable to the data (0 where unobserved), when the
        noise is Gaussian and independent between entries; else None."""
        return None

    def params(self) -> dict[str, Any]:
        return {"noise": type(self).__name__}


class GaussianNoiseModel(NoiseModel):
    """Gaussian noise with covariance Sigma; exposes the symmetric whitening Sigma^{-1/2}.

    Unobserved data entries have zero precision: `whiten` returns 0 there, so samplers can work
    with the whitened operator B = Sigma^{-1/2} A and whitened data Sigma^{-1/2} y throughout.
    """

    is_gaussian = True

    def whiten(self, r: Tensor) -> Tensor:
        """Sigma^{-1/2} r (symmetric, so it is its own adjoint)."""
        raise NotImplementedError

    def log_det_term(self, like: Tensor) -> Tensor:
        """-0.5 * log det(2 pi Sigma) over observed entries, as a scalar tensor."""
        raise NotImplementedError

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        w = self.whiten(y - mean)
        return -0.5 * w.square().sum(dim=(-3, -2, -1)) + self.log_det_term(y)


class ForwardModel(torch.nn.Module):
    """An operator and a noise model: y = noise(A(x)). `field_shape` is (C, H, W) of x.

    `is_linear_gaussian` is the one test of whether Gaussian-posterior samplers and exact
    posteriors apply; `operator.transfer_function()` and `noise.independent_std()` say more.
    """

    def __init__(
        self,
        operator: ForwardOperator,
        noise: NoiseModel,
        field_shape: tuple[int, int, int],
        name: str = "custom",
    ):
        super().__init__()
        self.operator = operator
        self.noise = noise
        self.field_shape = tuple(int(n) for n in field_shape)
        self.name = name

    @property
    def is_linear_gaussian(self) -> bool:
        """A linear operator with Gaussian noise: p(x | y) is Gaussian for a Gaussian prior."""
        return self.operator.is_linear and self.noise.is_gaussian

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return self.operator.data_shape(self.field_shape)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        return self.operator.A(x)

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        return self.operator.A_adjoint(y)

    def simulate(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy observation y of the field x."""
        return self.noise.sample(self.operator.A(x), generator)

    def log_likelihood(self, y: Tensor, x: Tensor) -> Tensor:
        return self.noise.log_prob(y, self.operator.A(x))

    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "field_shape": list(self.field_shape),
            **self.operator.params(),
            **self.noise.params(),
        }
