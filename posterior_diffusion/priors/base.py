"""The prior contract: a Tweedie denoiser D(x, sigma) = E[x0 | x0 + sigma z = x], variance-exploding form.

The score is derived, (D - x) / sigma^2, and Cov[x0 | x_sigma] = sigma^2 dD/dx (second-order Tweedie).
An analytic Gaussian prior, a trained network and a hybrid of both all look the same to samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def append_dims(t: Tensor | float, ndim: int) -> Tensor:
    """Right-pad `t` with singleton dims to `ndim` dims (a per-batch sigma against (..., C, H, W))."""
    t = torch.as_tensor(t)
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def sigma_squared(sigma: Tensor | float, x: Tensor) -> Tensor:
    """sigma^2 in x's dtype and device, right-padded to broadcast against fields x."""
    return append_dims(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim) ** 2


CovarianceProduct = Callable[[Tensor], Tensor]


class Prior(torch.nn.Module):
    """A denoiser for fields of shape (C, H, W), batched over leading dims.

    `sigma` is a float or a tensor broadcastable against the batch dims of `x`.
    """

    field_shape: tuple[int, int, int] | None = None  # None: any H x W (fully convolutional)

    def denoise(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        raise NotImplementedError

    def score(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        sigma = append_dims(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim)
        return (self.denoise(x, sigma) - x) / sigma**2

    def linearize(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, CovarianceProduct]:
        """D(x, sigma) and v -> Cov[x0 | x_sigma = x] v.

        The default differentiates the denoiser: Cov v = sigma^2 (dD/dx)^T v, one vector-Jacobian
        product per call (dD/dx is symmetric for an exact denoiser). Analytic priors override it.
        """
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0_hat = self.denoise(x_in, sigma)
        sigma_b = append_dims(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim)

        def cov(v: Tensor) -> Tensor:
            (vjp,) = torch.autograd.grad(x0_hat, x_in, v, retain_graph=True)
            return sigma_b**2 * vjp

        return x0_hat.detach(), cov

    def latent_components(self) -> tuple[Tensor, list[Prior]] | None:
        """(weights pi_k, priors p(x | k)) when this prior is a mixture over a latent it can name
        (a parameter marginalised over a grid, the components of a mixture), else None.

        Ensemble samplers then carry k with each member, so their moves need only be right for
        each p(x | k), which may be Gaussian where the mixture is not.
        """
        return None

    def identity(self) -> dict[str, Any]:
        """What this prior is, for provenance: at least `name` and a `checksum` of its parameters."""
        return {"name": type(self).__name__}

    def sigma_max(self) -> float:
        """A noise level at which x_sigma is, for sampling purposes, pure noise."""
        return 80.0

    def sigma_min(self) -> float:
        """The smallest noise level a sampler visits before its final step to 0."""
        return 2e-3
