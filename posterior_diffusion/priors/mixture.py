"""A mixture of Gaussian random fields: non-Gaussian, yet its denoiser and posterior are exact.

x0 ~ sum_k pi_k N(0, C_k), each C_k diagonal in Fourier space (a `GaussianPrior`). At noise level
sigma the marginal is sum_k pi_k N(0, C_k + sigma^2 I), so with responsibilities
r_k(x) = p(k | x_sigma = x) and per-component Wiener filters m_k = C_k (C_k + sigma^2)^{-1} x:

    D(x, sigma) = sum_k r_k m_k
    Cov[x0 | x_sigma] = sum_k r_k (S_k + m_k m_k^T) - D D^T,   S_k = sigma^2 C_k (C_k + sigma^2)^{-1}

It stands in for a prior marginalised over cosmology (amplitude or slope unknown), where the
Gaussian approximation of p(x0 | x_sigma) that `guided` makes is no longer exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from forward_models.fourier import fourier_filter

from .base import DRAW_STEPS, CovarianceProduct, Prior, append_dims, sigma_squared
from .gaussian import GaussianPrior
from .power_spectrum import grid_checksum


class GaussianMixturePrior(Prior):
    """sum_k weights[k] N(0, C_k) over fields (C, H, W); the components share one grid.

    Args:
        components: Gaussian priors on the same (C, H, W) grid.
        weights: mixture weights pi_k > 0 (normalised here).
        name: what the mixture is, for provenance.
    """

    can_sample = True

    def __init__(
        self, components: Sequence[GaussianPrior], weights: Sequence[float], name: str = "mixture"
    ):
        super().__init__()
        if len(components) < 1 or len(components) != len(weights):
            raise ValueError("need one weight per component, and at least one component")
        shapes = {tuple(c.field_shape) for c in components}
        if len(shapes) != 1:
            raise ValueError(f"mixture components have different field shapes: {sorted(shapes)}")
        w = torch.as_tensor(weights, dtype=torch.float64)
        if not bool(torch.all(torch.isfinite(w) & (w > 0))):
            raise ValueError(f"mixture weights must be finite and > 0, got {list(weights)}")
        self.field_shape = shapes.pop()
        self.components = torch.nn.ModuleList(components)
        self.register_buffer("log_weights", (w / w.sum()).log())
        self.register_buffer("powers", torch.stack([c.power.double() for c in components]))
        self.name = name
        extra = f"{self.field_shape} {self.log_weights.tolist()}"
        self._checksum = grid_checksum(self.powers.numpy(), extra=extra)

    @property
    def weights(self) -> Tensor:
        return self.log_weights.exp()

    def second_moment_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        """sum_k pi_k P_k: the mixture's covariance is diagonal in Fourier space too."""
        if tuple(field_shape[-2:]) != tuple(self.powers.shape[-2:]):
            return None
        mixed = (self.weights.view(-1, 1, 1) * self.powers).sum(0)
        return mixed.expand(*field_shape[:-2], *mixed.shape)

    def _powers_like(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != tuple(self.powers.shape[-2:]):
            raise ValueError(
                f"field of size {tuple(x.shape[-2:])} given to a mixture prior built for "
                f"{tuple(self.powers.shape[-2:])}"
            )
        return self.powers.to(device=x.device, dtype=x.dtype)

    def component_log_densities(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log pi_k + log N(x; 0, C_k + sigma^2 I) for fields x (..., C, H, W): shape (..., K)."""
        powers, sigma2 = self._powers_like(x), sigma_squared(sigma, x)
        modes = torch.fft.fft2(x, norm="ortho").abs().square()  # unitary: C_k is diag(P_k)
        out = []
        for k in range(powers.shape[0]):
            total = powers[k] + sigma2  # (..., 1 or C, H, W) after broadcasting
            total = total.expand_as(modes)
            quadratic = (modes / total).flatten(-3).sum(-1)
            log_det = torch.log(2 * math.pi * total).flatten(-3).sum(-1)
            out.append(self.log_weights[k].to(x.dtype) - 0.5 * (quadratic + log_det))
        return torch.stack(out, dim=-1)

    def responsibilities(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """p(k | x_sigma = x), shape (..., K). At sigma = 0 this is also p(k | x, y) for any y."""
        return torch.softmax(self.component_log_densities(x, sigma), dim=-1)

    def log_density(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """The exact log p_sigma(x) per field of x (..., C, H, W)."""
        return torch.logsumexp(self.component_log_densities(x, sigma), dim=-1)

    def _parts(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, list[Tensor], Tensor]:
        """Responsibilities (..., K), component Wiener filters m_k, and sigma^2 broadcastable."""
        powers, sigma2 = self._powers_like(x), sigma_squared(sigma, x)
        resp = self.responsibilities(x, sigma)
        means = [fourier_filter(x, p / (p + sigma2)) for p in powers]
        return resp, means, sigma2

    def denoise(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        resp, means, _ = self._parts(x, sigma)
        return sum(append_dims(resp[..., k], x.ndim) * m for k, m in enumerate(means))

    def linearize(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, CovarianceProduct]:
        resp, means, sigma2 = self._parts(x, sigma)
        powers = self._powers_like(x)
        r = [append_dims(resp[..., k], x.ndim) for k in range(len(means))]
        x0_hat = sum(rk * m for rk, m in zip(r, means, strict=True))

        def dot(a: Tensor, b: Tensor) -> Tensor:  # per field, shaped to broadcast back
            return append_dims((a * b).flatten(-3).sum(-1), a.ndim)

        def cov(v: Tensor) -> Tensor:
            out = -x0_hat * dot(x0_hat, v)
            for rk, m, p in zip(r, means, powers, strict=True):
                out = out + rk * (fourier_filter(v, p * sigma2 / (p + sigma2)) + m * dot(m, v))
            return out

        return x0_hat, cov

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        field_shape: tuple[int, ...] | None = None,
        steps: int = DRAW_STEPS,
    ) -> Tensor:
        """`num` independent fields (num, C, H, W) on the CPU: a component, then its field
        (exact draws, so `steps` is ignored)."""
        if field_shape is not None:
            self.check_fields(field_shape, where="requested field")
        which = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        white = torch.randn((num, *self.field_shape), generator=generator, dtype=dtype)
        roots = self.powers.to(dtype).sqrt()[which][:, None]  # (num, 1, H, W)
        return fourier_filter(white, roots)

    def latent_components(self) -> tuple[Tensor, list[Prior]]:
        return self.weights, list(self.components)

    def pixel_variance(self) -> float:
        return float((self.weights[:, None, None] * self.powers).sum(0).mean())

    def data_std(self) -> float:
        return self.pixel_variance() ** 0.5

    def sigma_max(self) -> float:
        return 100.0 * float(self.powers.max().sqrt())

    def sigma_min(self) -> float:
        return 1e-3 * float(self.powers.mean(dim=(-2, -1)).min().sqrt())

    def identity(self) -> dict[str, Any]:
        return {
            "name": "gaussian_mixture",
            "description": self.name,
            "components": [c.source for c in self.components],
            "weights": self.weights.tolist(),
            "field_shape": list(self.field_shape),
            "checksum": self._checksum,
        }
