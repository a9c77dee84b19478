"""Gauss-Newton guided sampling for nonlinear or non-Gaussian observations (e.g. galaxy counts).

The forward model is linearised at a point p, A(x) ~ A(p) + J (x - p), and its noise replaced by
the Gaussian with the same Fisher information at A(p) (Poisson: variance A(p)). `guided` then
samples the posterior of that linear Gaussian model, which for a Gaussian prior it does exactly.
p starts at the prior mean and moves to the linearised posterior's mean over `iterations` pilot
ensembles (drawn from the run's shared stream, so members do not depend on the batch), as in
iterated (Gauss-Newton) Laplace approximations.

What remains is the difference between the Gaussian and the true likelihood away from p: measured
against HMC gold standards in docs/samplers.md, not corrected here (importance weights between the
two likelihoods degenerate as the map grows: their log-variance adds up over pixels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from forward_models import ForwardModel, GaussianNoise
from forward_models.linearized import LinearizedOperator

from ..priors.base import Prior
from ..rng import EnsembleRNG
from .common import StepCallback
from .guided import guided


def linearized_model(model: ForwardModel, y: Tensor, point: Tensor) -> tuple[ForwardModel, Tensor]:
    """The linear Gaussian model at `point` (C, H, W) and its data y - A(p) + J p."""
    operator = LinearizedOperator(model.operator, point)
    std = model.noise.gaussian_std(operator.offset)
    # Entries whose mean sits at a floor (a clamped Poisson rate) would get a near-zero std: their
    # enormous whitened residual would end guided's CG at once. They carry no usable slope.
    observed = std > 0
    if bool(observed.any()):
        observed = observed & (std > 1e-6 * std[observed].median())
    if not bool(observed.any()):
        raise ValueError(f"'{model.name}': no observed data entry to linearise about")
    noise = GaussianNoise(torch.where(observed, std, 1.0), observed)
    data = y - operator.offset + operator.A(operator.point)
    data = torch.where(observed, data, 0.0)
    return ForwardModel(operator, noise, model.field_shape, name=f"linearized {model.name}"), data


def linearization_point(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    seed: int,
    steps: int = 48,
    iterations: int = 3,
    pilot_members: int = 16,
    cg_rtol: float = 1e-3,
    cg_max_iter: int = 3,
) -> Tensor:
    """The iterated linearisation point: the prior mean, then `iterations` times the mean of a
    pilot ensemble of the model linearised at the previous point (streams from `seed` only)."""
    shape = model.field_shape
    with torch.no_grad():  # the prior mean: E[x0 | x_sigma] as sigma grows, from x_sigma = 0
        zero = torch.zeros((1, *shape), dtype=torch.float64, device=y.device)
        point = prior.denoise(zero, prior.sigma_max())[0]
    shared = EnsembleRNG(seed, [], y.device).shared_seed()
    for i in range(iterations):
        linear, data = linearized_model(model, y, point)
        pilot = EnsembleRNG(shared + i, range(pilot_members), y.device)
        point = guided(prior, linear, data, pilot, steps, cg_rtol=cg_rtol, cg_max_iter=cg_max_iter)
        point = point.mean(0)
    return point


def prepare_linearized(
    prior: Prior, model: ForwardModel, y: Tensor, seed: int, steps: int, options: dict
) -> tuple[dict, dict]:
    """Once per run: the linearisation point, shared by every batch (so the pilot ensembles are
    drawn once, not once per batch)."""
    point = linearization_point(prior, model, y, seed, steps, **options)
    return {"point": point}, {}


def linearized(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 48,
    callback: StepCallback | None = None,
    *,
    iterations: int = 3,
    pilot_members: int = 16,
    cg_rtol: float = 1e-3,
    cg_max_iter: int = 3,
    point: Tensor | None = None,
) -> Tensor:
    """`guided` on the model linearised at the (iterated) posterior mean `point`
    (`linearization_point`, computed here when not given)."""
    if point is None:
        point = linearization_point(prior, model, y, rng.seed, steps, iterations, pilot_members,
                                    cg_rtol, cg_max_iter)  # fmt: skip
    linear, data = linearized_model(model, y, point)
    return guided(prior, linear, data, rng, steps, callback, cg_rtol=cg_rtol,
                  cg_max_iter=cg_max_iter)  # fmt: skip
