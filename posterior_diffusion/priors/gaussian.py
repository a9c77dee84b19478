"""The analytic prior: a stationary Gaussian random field, diagonal in Fourier space.

Everything is exact: D(x, sigma) = ifft2(P / (P + sigma^2) fft2(x)) and
Cov[x0 | x_sigma] = ifft2(P sigma^2 / (P + sigma^2) fft2(.)), per mode k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from forward_models.fourier import fourier_filter

from .base import DRAW_STEPS, CovarianceProduct, Prior, sigma_squared
from .power_spectrum import TabulatedPowerSpectrum, grid_checksum, power_on_grid


class GaussianPrior(Prior):
    """Gaussian random field with isotropic power spectrum P(k) on a C x H x W grid.

    Channels are independent with the same spectrum. See `power_spectrum.py` for the convention.

    Args:
        power_spectrum: callable P(k), k in cycles per pixel (numpy in, numpy out).
        field_shape: (C, H, W) or (H, W).
        name: what the spectrum is, for provenance (e.g. the table's path).
    """

    can_sample = True

    def __init__(
        self,
        power_spectrum: Callable[[np.ndarray], np.ndarray],
        field_shape: tuple[int, ...],
        name: str | None = None,
    ):
        super().__init__()
        shape = tuple(int(n) for n in field_shape)
        self.field_shape = shape if len(shape) == 3 else (1, *shape)
        channels, height, width = self.field_shape
        power = power_on_grid(power_spectrum, height, width)
        self.register_buffer("power", torch.from_numpy(power))
        self.source = name or getattr(power_spectrum, "source", None) or repr(power_spectrum)
        self._checksum = grid_checksum(power, extra=str(self.field_shape))

    @classmethod
    def from_power_grid(cls, power: Tensor, channels: int, name: str) -> GaussianPrior:
        """The prior with P already on the H x W fft grid (as stored in a hybrid prior's file)."""
        grid = power.detach().cpu().double().numpy()
        height, width = grid.shape
        prior = cls(lambda k: np.ones_like(k), (channels, height, width), name=name)
        prior.power.copy_(torch.from_numpy(grid))
        prior._checksum = grid_checksum(grid, extra=str(prior.field_shape))
        return prior

    @classmethod
    def from_file(cls, path: str | Path, field_shape: tuple[int, ...]) -> GaussianPrior:
        spectrum = TabulatedPowerSpectrum.from_file(path)
        return cls(spectrum, field_shape, name=str(path))

    def second_moment_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        if tuple(field_shape[-2:]) != tuple(self.power.shape):
            return None
        return self.power.expand(*field_shape[:-2], *self.power.shape)

    def _power_like(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != tuple(self.power.shape):
            raise ValueError(
                f"field of size {tuple(x.shape[-2:])} given to a Gaussian prior built for "
                f"{tuple(self.power.shape)}"
            )
        return self.power.to(device=x.device, dtype=x.dtype)

    def denoise(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        power = self._power_like(x)
        return fourier_filter(x, power / (power + sigma_squared(sigma, x)))

    def linearize(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, CovarianceProduct]:
        power, sigma2 = self._power_like(x), sigma_squared(sigma, x)
        posterior_power = power * sigma2 / (power + sigma2)
        return fourier_filter(x, power / (power + sigma2)), lambda v: fourier_filter(
            v, posterior_power
        )

    def covariance_apply(self, v: Tensor) -> Tensor:
        """The prior covariance times v."""
        return fourier_filter(v, self._power_like(v))

    def covariance_sqrt_apply(self, v: Tensor) -> Tensor:
        """The symmetric square root of the prior covariance times v."""
        return fourier_filter(v, self._power_like(v).sqrt())

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        field_shape: tuple[int, ...] | None = None,
        steps: int = DRAW_STEPS,
    ) -> Tensor:
        """`num` independent fields, shape (num, C, H, W), on the CPU: exact draws, so `steps`
        is ignored (`field_shape`, if given, must be this prior's)."""
        if field_shape is not None:
            self.check_fields(field_shape, where="requested field")
        white = torch.randn((num, *self.field_shape), generator=generator, dtype=dtype)
        return fourier_filter(white, self.power.to(dtype).sqrt())

    def log_density(self, x: Tensor, sigma: float = 0.0) -> Tensor:
        """log N(x; 0, C + sigma^2 I) per field of x (N, C, H, W): the exact log p_sigma."""
        power = self._power_like(x) + sigma**2
        height, width = power.shape
        # Unitary FFT: C is diagonal with eigenvalues P(k) (the convention of fourier_filter).
        modes = torch.fft.fft2(x, norm="ortho").abs().square()
        quadratic = (modes / power).flatten(1).sum(1)
        log_det = x.shape[-3] * torch.log(2 * math.pi * power).sum()
        return -0.5 * (quadratic + log_det)

    def pixel_variance(self) -> float:
        return float(self.power.mean())

    def data_std(self) -> float:
        return self.pixel_variance() ** 0.5

    def sigma_max(self) -> float:
        # x_sigma must be pure noise for every mode, the largest-variance one included.
        return 100.0 * float(self.power.max().sqrt())

    def sigma_min(self) -> float:
        return 1e-3 * float(self.power.mean().sqrt())

    def identity(self) -> dict[str, Any]:
        return {
            "name": "gaussian",
            "power_spectrum": self.source,
            "field_shape": list(self.field_shape),
            "checksum": self._checksum,
        }
