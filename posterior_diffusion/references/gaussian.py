"""The exact posterior of a Gaussian prior under a linear Gaussian model, by dense linear algebra.

With G = B C0^{1/2} (B the whitened operator, C0 the prior covariance) and M = I + G^T G:
mean = C0^{1/2} M^{-1} G^T y_w and Cov = C0^{1/2} M^{-1} C0^{1/2}. M is n x n with n pixels and
has eigenvalues >= 1, so a Cholesky factor always exists. For small grids (n up to ~64 x 64).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from forward_models.base import ForwardModel
from forward_models.fourier import fourier_filter
from posterior_diffusion.likelihood import WhitenedLinearGaussian
from posterior_diffusion.priors.gaussian import GaussianPrior


@dataclass
class ExactPosterior:
    mean: Tensor  # (C, H, W)
    std: Tensor  # (C, H, W)
    covariance: Tensor  # (n, n), n = C H W
    sqrt_factor: Tensor  # S with Cov = S S^T, (n, n)
    # log p(y) up to a term that depends on the forward model only (not on the prior), so
    # differences between priors are exact log Bayes factors (mixture weights use them).
    log_evidence: float = float("nan")

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(
            (self.sqrt_factor.shape[1], num), generator=generator, dtype=torch.float64
        )
        draws = (self.sqrt_factor @ eps).T.reshape(num, *self.mean.shape)
        return self.mean + draws


def exact_posterior(prior: GaussianPrior, model: ForwardModel, y: Tensor) -> ExactPosterior:
    shape = tuple(model.field_shape)
    n = shape[0] * shape[1] * shape[2]
    model = copy.deepcopy(model).to("cpu")  # leave the caller's model where it is
    likelihood = WhitenedLinearGaussian(model, torch.as_tensor(y, dtype=torch.float64).cpu())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    root = prior.covariance_sqrt_apply(basis).reshape(n, n)  # symmetric: row i = C0^{1/2} e_i
    g_t = likelihood.B(root.reshape(n, *shape)).reshape(n, -1)  # rows: (B C0^{1/2} e_i)^T = G^T
    m = torch.eye(n, dtype=torch.float64) + g_t @ g_t.T
    chol = torch.linalg.cholesky(m)
    rhs = g_t @ likelihood.y_white.reshape(-1)
    mean = root @ torch.cholesky_solve(rhs[:, None], chol)[:, 0]
    # Cov = C0^{1/2} L^{-T} L^{-1} C0^{1/2}, so S = C0^{1/2} L^{-T}.
    sqrt_factor = torch.linalg.solve_triangular(chol, root, upper=False).T
    covariance = sqrt_factor @ sqrt_factor.T
    # y_w ~ N(0, I + G G^T) on observed entries; by Woodbury and Sylvester's determinant
    # identity the quadratic form is |y_w|^2 - rhs^T M^{-1} rhs and the log-det is log det M.
    solved = torch.linalg.solve_triangular(chol, rhs[:, None], upper=False)[:, 0]
    quadratic = likelihood.y_white.square().sum() - solved.square().sum()
    log_evidence = -0.5 * quadratic - chol.diagonal().log().sum()
    return ExactPosterior(
        mean=mean.reshape(shape),
        std=covariance.diagonal().clamp_min(0).sqrt().reshape(shape),
        covariance=covariance,
        sqrt_factor=sqrt_factor,
        log_evidence=float(log_evidence),
    )


@dataclass
class FourierExactPosterior:
    """The exact posterior when prior and model are both diagonal in Fourier space: any grid size.

    Cov = ifft2(Q fft2(.)) with Q = 1 / (1 / P + |T|^2 / sigma^2) per mode, so every pixel has the
    same variance, mean(Q).
    """

    mean: Tensor  # (C, H, W)
    std: Tensor  # (C, H, W), constant
    posterior_power: Tensor  # Q on the (H, W) fft grid

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        white = torch.randn((num, *self.mean.shape), generator=generator, dtype=torch.float64)
        return self.mean + fourier_filter(white, self.posterior_power.sqrt())


def fourier_exact_posterior(
    prior: GaussianPrior, model: ForwardModel, y: Tensor
) -> FourierExactPosterior:
    """Exact posterior for an operator with a transfer function T (blur, smoothing) and white
    Gaussian noise of one sigma on every entry; no dense matrices, so 256 x 256 and beyond."""
    transfer = model.operator.transfer_function()
    sigma = model.noise.independent_std()
    if transfer is None:
        raise ValueError(f"'{model.name}': the operator is not a Fourier transfer function")
    # One value, and not 0: no entry is unobserved.
    if sigma is None or sigma.unique().numel() != 1 or not bool((sigma > 0).all()):
        raise ValueError(f"'{model.name}': the noise is not white Gaussian with one sigma")
    power = prior.power.double().cpu()
    noise_var = float(sigma.reshape(-1)[0]) ** 2
    gain2 = transfer.cpu().abs().square()
    precision = torch.where(power > 0, 1 / power.clamp_min(1e-300), torch.inf) + gain2 / noise_var
    q = 1 / precision  # 0 on modes the prior forbids (P = 0)
    y_hat = torch.fft.fft2(torch.as_tensor(y, dtype=torch.float64).cpu())
    mean = torch.fft.ifft2(q * transfer.cpu().conj() * y_hat / noise_var).real
    std = torch.full_like(mean, float(q.mean()) ** 0.5)
    return FourierExactPosterior(mean=mean, std=std, posterior_power=q)
