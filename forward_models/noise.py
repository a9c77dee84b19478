"""Noise models p(y | mean): independent Gaussian, stationary correlated Gaussian, and Poisson."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from forward_models.base import GaussianNoiseModel, NoiseModel, cast_like
from forward_models.fourier import check_grid, fourier_filter, frequency_grid
from forward_models.mask import as_binary_mask

# Poisson means below this (counts per pixel) are raised to it so log(mean) stays finite.
POISSON_MEAN_FLOOR = 1e-20


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normals shaped like `like`, drawn on the generator's device (CPU or CUDA)."""
    device = generator.device if generator is not None else like.device
    z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=device)
    return z.to(like.device)


def _summary(values: Tensor) -> dict[str, Any]:
    if values.numel() == 1:
        return {"sigma": float(values.reshape(()))}
    return {
        "sigma": "per-pixel map",
        "sigma_min": float(values.min()),
        "sigma_max": float(values.max()),
    }


class GaussianNoise(GaussianNoiseModel):
    """Independent Gaussian noise y = mean + sigma * z on observed entries, none elsewhere.

    Args:
        sigma: noise standard deviation (data units), a float or a tensor broadcastable to the
            data shape (C', H', W'); must be finite and > 0 on observed entries.
        mask: optional (H', W') or broadcastable 0/1 map, 1 = observed. Unobserved entries have zero
            precision: `whiten` returns 0, `log_prob` skips them and `sample` returns 0 there.
    """

    def __init__(self, sigma: float | Tensor, mask: Tensor | None = None):
        super().__init__()
        sigma = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
        if sigma.ndim > 3:
            raise ValueError(
                f"sigma must be broadcastable to (C, H, W), got shape {tuple(sigma.shape)}"
            )
        observed = None if mask is None else as_binary_mask(mask, "GaussianNoise")
        valid = torch.isfinite(sigma) & (sigma > 0)
        if observed is not None:
            try:
                sigma, observed, valid = torch.broadcast_tensors(sigma, observed, valid)
            except RuntimeError as err:
                raise ValueError(
                    f"sigma {tuple(sigma.shape)} and mask {tuple(observed.shape)} do not broadcast"
                ) from err
            if not observed.any():
                raise ValueError("GaussianNoise: the mask leaves no observed entry")
            valid = valid | ~observed  # unobserved entries may hold 0, inf or NaN
            sigma = torch.where(observed, sigma, 0.0)
            observed = observed.clone()
        if not torch.all(valid):
            raise ValueError("GaussianNoise: sigma must be finite and > 0 on every observed entry")
        self.register_buffer("observed", observed)
        positive = sigma > 0
        inv_sigma = torch.where(positive, 1.0 / torch.where(positive, sigma, 1.0), 0.0)
        log_2pi_var = torch.where(positive, torch.log(2.0 * math.pi * sigma.square()), 0.0)
        self.register_buffer("sigma", sigma.clone())
        self.register_buffer("inv_sigma", inv_sigma)
        self.register_buffer("log_2pi_var", log_2pi_var)

    def _keep_observed(self, t: Tensor) -> Tensor:
        # where(), not a product with 0, so NaN or inf placeholders in unobserved data stay out.
        if self.observed is None:
            return t
        return torch.where(self.observed.to(t.device), t, 0.0)

    def whiten(self, r: Tensor) -> Tensor:
        return self._keep_observed(r * cast_like(self.inv_sigma, r))

    def log_det_term(self, like: Tensor) -> Tensor:
        terms = cast_like(self.log_2pi_var, like).expand(like.shape[-3:])
        return -0.5 * terms.sum()

    def sample(self, mean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._keep_observed(mean + cast_like(self.sigma, mean) * _randn(mean, generator))

    def gaussian_std(self, mean: Tensor) -> Tensor:
        return cast_like(self.sigma, mean).expand(mean.shape[-3:])

    def independent_std(self) -> Tensor:
        return self.sigma

    def params(self) -> dict[str, Any]:
        sigma = self.sigma if self.observed is None else self.sigma[self.observed]
        out = {"noise": "GaussianNoise", **_summary(sigma.unique())}
        if self.observed is not None:
            out["noise_mask_observed_fraction"] = float(self.observed.double().mean())
        return out


class CorrelatedGaussianNoise(GaussianNoiseModel):
    """Stationary Gaussian noise, diagonal in Fourier space: <|n_hat(k)|^2> = H' W' S(|k|).

    Same convention as the Gaussian prior's power spectrum, with n_hat = fft2(n) unnormalised.
    Each channel is independent with the same spectrum.

    Args:
        noise_power: S(k) with k in cycles per pixel (a callable taking and returning a numpy
            array), or a tensor (H', W') of S on the FFT grid, real, even (S(-k) = S(k)) and > 0.
        data_shape: (C', H', W') of the data.
    """

    def __init__(
        self,
        noise_power: Callable[[np.ndarray], np.ndarray] | Tensor,
        data_shape: tuple[int, int, int],
    ):
        super().__init__()
        self.data_shape = tuple(int(n) for n in data_shape)
        if len(self.data_shape) != 3:
            raise ValueError(f"data_shape must be (C, H, W), got {self.data_shape}")
        grid = self.data_shape[-2:]
        if callable(noise_power):
            # np.hypot, not frequency_magnitude: the two differ in the last bit; S stays as it was
            ky, kx = frequency_grid(grid)
            power = np.broadcast_to(
                np.asarray(noise_power(np.hypot(kx, ky)), dtype=np.float64), grid
            )
            self.source = getattr(noise_power, "__name__", type(noise_power).__name__)
        else:
            power = np.asarray(torch.as_tensor(noise_power).detach().cpu(), dtype=np.float64)
            self.source = "grid"
            if power.shape != grid:
                raise ValueError(f"noise_power grid must have shape {grid}, got {power.shape}")
            mirrored = np.roll(power[::-1, ::-1], (1, 1), axis=(0, 1))  # S(-k) on the FFT grid
            if not np.allclose(power, mirrored, rtol=1e-10, atol=0.0):
                raise ValueError(
                    "noise_power must be even, S(-k) = S(k), for real stationary noise"
                )
        if not np.all(np.isfinite(power) & (power > 0)):
            raise ValueError(
                "CorrelatedGaussianNoise: noise_power S(k) must be finite and > 0 everywhere"
            )
        power = torch.from_numpy(np.array(power))
        self.register_buffer("power", power)
        self.register_buffer("sqrt_power", power.sqrt())
        self.register_buffer("inv_sqrt_power", power.rsqrt())

    def whiten(self, r: Tensor) -> Tensor:
        check_grid(r, self.data_shape[-2:], "CorrelatedGaussianNoise")
        return fourier_filter(r, self.inv_sqrt_power)

    def log_det_term(self, like: Tensor) -> Tensor:
        # The unitary DFT diagonalises each channel's covariance, with eigenvalues S(k).
        channels, n = like.shape[-3], like.shape[-2] * like.shape[-1]
        log_det = channels * (n * math.log(2.0 * math.pi) + cast_like(self.power, like).log().sum())
        return -0.5 * log_det

    def sample(self, mean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_grid(mean, self.data_shape[-2:], "CorrelatedGaussianNoise")
        return mean + fourier_filter(_randn(mean, generator), self.sqrt_power)

    def params(self) -> dict[str, Any]:
        return {
            "noise": "CorrelatedGaussianNoise",
            "noise_power": self.source,
            "noise_power_min": float(self.power.min()),
            "noise_power_max": float(self.power.max()),
            "data_shape": list(self.data_shape),
        }


class PoissonNoise(NoiseModel):
    """Counts y ~ Poisson(mean) per pixel; `mean` is clamped to POISSON_MEAN_FLOOR inside the log.

    Args:
        mask: optional (H', W') or broadcastable 0/1 map, 1 = observed; unobserved pixels are
            left out of `log_prob` and sampled as 0.
    """

    def __init__(self, mask: Tensor | None = None):
        super().__init__()
        observed = None if mask is None else as_binary_mask(mask, "PoissonNoise")
        self.register_buffer("observed", observed)

    def _keep_observed(self, t: Tensor) -> Tensor:
        if self.observed is None:
            return t
        return torch.where(self.observed.to(t.device), t, 0.0)

    def data_problem(self, y: Tensor) -> str | None:
        counts = self._keep_observed(torch.nan_to_num(y, nan=0.0)).detach()
        bad = ~torch.isfinite(counts) | (counts < 0) | (counts != torch.round(counts))
        if bool(bad.any()):
            first = counts[bad].flatten()[0].item()
            return (
                f"Poisson counts must be non-negative integers; {int(bad.sum())} observed "
                f"entries are not (e.g. {first:g})"
            )
        return None

    def log_prob(self, y: Tensor, mean: Tensor) -> Tensor:
        y = self._keep_observed(y)  # NaN placeholders at unobserved pixels would poison gradients
        rate = mean.clamp_min(POISSON_MEAN_FLOOR)
        terms = torch.xlogy(y, rate) - rate - torch.lgamma(y + 1.0)
        return self._keep_observed(terms).sum(dim=(-3, -2, -1))

    def sample(self, mean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._keep_observed(torch.poisson(mean.clamp_min(0.0), generator=generator))

    def gaussian_std(self, mean: Tensor) -> Tensor:
        # Fisher information of a Poisson count about its mean is 1 / mean.
        return self._keep_observed(mean.clamp_min(POISSON_MEAN_FLOOR).sqrt())

    def gaussian_site(self, y: Tensor, member_means: Tensor) -> tuple[Tensor, Tensor]:
        """A Gaussian stand-in N(data; mean, std^2) for the counts y, fitted to the spread of the
        means `member_means` (M, ...) of an ensemble close to the posterior: its curvature is the
        Fisher information averaged over the members, 1 / std^2 = E[1 / mean], and its slope at
        the members' average mean m equals theirs, E[y / mean - 1]; so data = y + m - std^2.

        At a single point (the Gauss-Newton stand-in, data = y) the stand-in's mean sits about
        one count low per pixel, which matters where counts are few (docs/samplers.md).
        """
        means = member_means.clamp_min(POISSON_MEAN_FLOOR)
        variance = 1.0 / (1.0 / means).mean(0)
        data = y + means.mean(0) - variance
        return self._keep_observed(data), self._keep_observed(variance.sqrt())

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"noise": "PoissonNoise"}
        if self.observed is not None:
            out["noise_mask_observed_fraction"] = float(self.observed.double().mean())
        return out
