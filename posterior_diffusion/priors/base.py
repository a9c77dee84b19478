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


# Reverse-SDE steps of a prior that draws fields by integrating its own denoiser.
DRAW_STEPS = 200


class Prior(torch.nn.Module):
    """A denoiser for fields of shape (C, H, W), batched over leading dims.

    `sigma` is a float or a tensor broadcastable against the batch dims of `x`.

    The whole contract: `denoise` (required), `score` and `linearize` (derived from it unless an
    analytic prior does better), `sample` when `can_sample`, the noise range a sampler visits
    (`sigma_min`, `sigma_max`), `data_std`, `identity` for provenance, the fields it describes
    (`field_shape`, `check_fields`) and, for mixtures, `latent_components`.
    """

    field_shape: tuple[int, int, int] | None = None  # None: any H x W (fully convolutional)
    can_sample: bool = False  # whether `sample` draws fields
    # A trained network's denoiser: `guided` then integrates the reverse SDE by default, whose
    # fresh noise keeps the network's errors from staying with a member (docs/samplers.md).
    learned: bool = False

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

    def stationary_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        """P(|k|) of the fields this prior was built from, on the fft grid of `field_shape`
        (C, H, W), shape (C, H, W), where it is known as a table (a network's training maps);
        None otherwise. Samplers may use it for Cov[x0 | x_sigma] at noise levels where a learned
        Jacobian is mostly the network's error (`samplers/guided.py`)."""
        return None

    def second_moment_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        """The prior's variance per Fourier mode on the fft grid of `field_shape` (C, H, W),
        where known: exact for Gaussian fields and their mixtures, a network's training maps'
        spectrum (`stationary_power`) otherwise; None when unknown. Unlike `stationary_power` it
        changes nothing in `guided`'s guidance; refinement moves (`samplers/refine.py`) and the
        `twisted` sampler's twist use it."""
        return self.stationary_power(field_shape)

    def latent_components(self) -> tuple[Tensor, list[Prior]] | None:
        """(weights pi_k, priors p(x | k)) when this prior is a mixture over a latent it can name
        (a parameter marginalised over a grid, the components of a mixture), else None.

        Ensemble samplers then carry k with each member, so their moves need only be right for
        each p(x | k), which may be Gaussian where the mixture is not.
        """
        return None

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        field_shape: tuple[int, ...] | None = None,
        steps: int = DRAW_STEPS,
    ) -> Tensor:
        """`num` independent fields (num, C, H, W) from the prior, when `can_sample`.

        Args:
            generator: the draws' randomness (a CPU generator).
            field_shape: (C, H, W) of the fields, checked as for an observation; None: the
                prior's own `field_shape`.
            steps: reverse-SDE steps, for priors that draw by integrating their denoiser
                (exact draws ignore it).
        """
        raise NotImplementedError(f"prior '{self.identity()['name']}' cannot draw fields")

    def check_fields(
        self,
        field_shape: tuple[int, ...],
        pixel_scale_arcmin: float | None = None,
        where: str = "observation",
    ) -> None:
        """Raise ValueError if this prior cannot describe fields of shape (C, H, W) with pixels
        of `pixel_scale_arcmin` (None: unknown, not checked); `where` names them in the message."""
        if self.field_shape is not None and tuple(field_shape) != tuple(self.field_shape):
            raise ValueError(
                f"prior is for fields of shape {tuple(self.field_shape)}, the {where} has fields "
                f"of shape {tuple(field_shape)}"
            )

    def data_std(self) -> float:
        """The standard deviation of the prior's fields per pixel (the scale of sigma)."""
        raise NotImplementedError(f"prior '{self.identity()['name']}' does not know its data std")

    def identity(self) -> dict[str, Any]:
        """What this prior is, for provenance: at least `name` and a `checksum` of its parameters."""
        return {"name": type(self).__name__}

    def sigma_max(self) -> float:
        """A noise level at which x_sigma is, for sampling purposes, pure noise."""
        return 80.0

    def sigma_min(self) -> float:
        """The smallest noise level a sampler visits before its final step to 0."""
        return 2e-3
