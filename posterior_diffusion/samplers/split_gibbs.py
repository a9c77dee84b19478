"""Split Gibbs with an annealed coupling (PnP-DM: Wu et al. 2024; Xu & Chi 2024); exact in the limit.

The target p(x) N(z; x, rho^2 I) p(y | z) has x-marginal p(x) N(y; A x, Sigma + rho^2 A A^T), which
tends to p(x | y) as rho -> 0. Each iteration alternates two exact conditionals:
  likelihood step  z ~ p(z | x, y), Gaussian: perturb, then solve (I + rho^2 B^T B) by CG;
  prior step       x ~ p(x0 | x_rho = z): the prior's reverse SDE started at noise level rho.
rho anneals geometrically to rho_min = rho_min_factor / |B| (so the data-noise inflation
rho^2 |B|^2 stays below rho_min_factor^2) and is held there for the last `hold_fraction` of
iterations. The cost is `steps * prior_steps` denoiser calls per sample. On mixture priors at its
defaults it collapses onto one component per observation (docs/samplers.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from forward_models.base import ForwardModel

from ..likelihood import WhitenedLinearGaussian
from ..linalg import batch_dot, conjugate_gradient
from ..priors.base import Prior
from ..priors.draw import reverse_sde
from ..rng import EnsembleRNG
from ..schedules import geometric_sigmas, log_uniform_sigmas
from .common import StepCallback, report


def operator_norm(likelihood: WhitenedLinearGaussian, shape, iterations: int = 30) -> float:
    """|B|_2 by power iteration on B^T B (deterministic start, a few cheap operator calls)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn((1, *shape), generator=g, dtype=torch.float64).to(likelihood.y_white.device)
    norm2 = torch.zeros(1, dtype=torch.float64)
    for _ in range(iterations):
        w = likelihood.B_adjoint(likelihood.B(v))
        norm2 = batch_dot(v, w).flatten() / batch_dot(v, v).flatten()
        v = w / w.norm()
    return float(norm2.clamp_min(0).sqrt())


def split_gibbs(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 50,
    callback: StepCallback | None = None,
    *,
    prior_steps: int = 16,
    rho_max: float | None = None,
    rho_min_factor: float = 0.2,
    hold_fraction: float = 0.3,
    cg_rtol: float = 1e-6,
    cg_max_iter: int = 200,
) -> Tensor:
    """`steps` Gibbs sweeps; each prior step runs `prior_steps` reverse-SDE steps from rho to 0."""
    likelihood = WhitenedLinearGaussian(model, y)
    shape = model.field_shape
    rho_min = rho_min_factor / operator_norm(likelihood, shape)
    rho_max = rho_max or prior.sigma_max() / 50
    anneal = max(1, round(steps * (1 - hold_fraction)))
    rhos = torch.cat(
        [
            geometric_sigmas(anneal, max(rho_max, rho_min), rho_min),
            torch.full((steps - anneal,), rho_min, dtype=torch.float64),
        ]
    )
    sigma_floor = prior.sigma_min()
    x = rho_max * rng.randn(shape)
    for i, rho in enumerate(rhos.tolist()):
        # Likelihood step: z = (I + rho^2 B^T B)^{-1} (rho^2 B^T (y_w + e1) + x + rho e2).
        rhs = (
            rho**2 * likelihood.B_adjoint(likelihood.y_white + rng.randn(likelihood.y_white.shape))
            + x
            + rho * rng.randn(shape)
        )
        z, _ = conjugate_gradient(
            lambda v, r2=rho**2: v + r2 * likelihood.B_adjoint(likelihood.B(v)),
            rhs,
            x0=x,
            rtol=cg_rtol,
            max_iter=cg_max_iter,
        )
        # Prior step: reverse SDE from x_rho = z down to 0.
        levels = log_uniform_sigmas(prior_steps, min(sigma_floor, rho / 2), rho).tolist()
        with torch.no_grad():
            x = reverse_sde(prior.denoise, z, levels, lambda: rng.randn(shape))
        report(callback, i=i, sigma=rho, x=x, denoised=x)
    return x
