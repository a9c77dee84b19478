"""The exact posterior of a Gaussian-field mixture prior under a linear Gaussian model.

With x ~ sum_k pi_k N(0, C_k) and y = A x + n, n ~ N(0, Sigma), the posterior is the mixture
sum_k omega_k N(mu_k, S_k): each component's Gaussian posterior (dense algebra, `references/gaussian.py`) and
evidence weights omega_k ∝ pi_k N(y; 0, A C_k A^T + Sigma). Since y is independent of k given x,
p(k | x, y) = p(k | x): a sample's component probabilities are the prior's responsibilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from forward_models.base import ForwardModel

from ..priors.base import CovarianceProduct, Prior
from ..priors.mixture import GaussianMixturePrior
from .gaussian import ExactPosterior, exact_posterior


@dataclass
class MixtureExactPosterior:
    prior: GaussianMixturePrior
    components: list[ExactPosterior]
    weights: Tensor  # omega_k(y), (K,), sums to 1

    @property
    def mean(self) -> Tensor:
        return sum(w * c.mean for w, c in zip(self.weights, self.components, strict=True))

    @property
    def std(self) -> Tensor:
        second = sum(
            w * (c.std.square() + c.mean.square())
            for w, c in zip(self.weights, self.components, strict=True)
        )
        return (second - self.mean.square()).clamp_min(0).sqrt()

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """`num` exact posterior draws (num, C, H, W), in random order of components."""
        which = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        out = torch.empty((num, *self.components[0].mean.shape), dtype=torch.float64)
        for k, component in enumerate(self.components):
            chosen = (which == k).nonzero().flatten()
            if len(chosen):
                out[chosen] = component.sample(len(chosen), generator)
        return out

    def component_probabilities(self, samples: Tensor) -> Tensor:
        """p(k | x, y) for each sample (N, C, H, W): shape (N, K)."""
        return self.prior.responsibilities(torch.as_tensor(samples, dtype=torch.float64), 0.0)

    def component_tv(self, samples: Tensor) -> float:
        """Total-variation distance between the ensemble's mean component probabilities and omega."""
        found = self.component_probabilities(samples).mean(0)
        return 0.5 * float((found - self.weights).abs().sum())


def mixture_exact_posterior(
    prior: GaussianMixturePrior, model: ForwardModel, y: Tensor
) -> MixtureExactPosterior:
    components = [exact_posterior(c, model, y) for c in prior.components]
    log_evidence = torch.tensor([c.log_evidence for c in components], dtype=torch.float64)
    weights = torch.softmax(prior.log_weights.cpu() + log_evidence, dim=0)
    return MixtureExactPosterior(prior=prior, components=components, weights=weights)


class MarginalDenoiser(Prior):
    """A mixture's marginal denoiser alone, its latent components hidden: where a network trained
    on simulations pooled over the latent (e.g. over cosmologies) leaves a sampler. Samplers then
    see only D and Cov[x0 | x_sigma] of the mixture, as before they learned to use components."""

    def __init__(self, prior: Prior):
        super().__init__()
        self.inner, self.field_shape = prior, prior.field_shape

    def denoise(self, x: Tensor, sigma) -> Tensor:
        return self.inner.denoise(x, sigma)

    def linearize(self, x: Tensor, sigma) -> tuple[Tensor, CovarianceProduct]:
        return self.inner.linearize(x, sigma)

    def second_moment_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        return self.inner.second_moment_power(field_shape)  # what a network's training maps give

    def sigma_max(self) -> float:
        return self.inner.sigma_max()

    def sigma_min(self) -> float:
        return self.inner.sigma_min()

    def data_std(self) -> float:
        return self.inner.data_std()

    def identity(self) -> dict:
        return {**self.inner.identity(), "latent_components": "hidden"}
