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
from .guided import guided, warn_if_measured_off


def linearized_model(
    model: ForwardModel, y: Tensor, point: Tensor, members: Tensor | None = None
) -> tuple[ForwardModel, Tensor]:
    """The linear Gaussian model at `point` (C, H, W) and its data y - A(p) + J p; with a pilot
    ensemble `members` (M, C, H, W), the noise model's stand-in fitted to their spread where it
    has one (`gaussian_site`)."""
    operator = LinearizedOperator(model.operator, point)
    if members is not None and hasattr(model.noise, "gaussian_site"):
        with torch.no_grad():
            y, std = model.noise.gaussian_site(y, model.operator.A(members))
    else:
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


SITES = ("averaged", "point")


def linearization_point(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    seed: int,
    steps: int = 48,
    iterations: int = 3,
    pilot_members: int = 32,
    cg_rtol: float = 1e-3,
    cg_max_iter: int = 3,
    site: str = "averaged",
) -> tuple[Tensor, Tensor | None]:
    """The iterated linearisation point: the prior mean, then `iterations` times the mean of a
    pilot ensemble of the model linearised at the previous point (streams from `seed` only).
    Returns the point and, for `site="averaged"`, the last pilot ensemble (else None)."""
    if site not in SITES:
        raise ValueError(f"sampler option site must be one of {', '.join(SITES)}, got {site!r}")
    shape = model.field_shape
    with torch.no_grad():  # the prior mean: E[x0 | x_sigma] as sigma grows, from x_sigma = 0
        zero = torch.zeros((1, *shape), dtype=torch.float64, device=y.device)
        point = prior.denoise(zero, prior.sigma_max())[0]
    shared = EnsembleRNG(seed, [], y.device).shared_seed()
    members = None
    for i in range(iterations):
        linear, data = linearized_model(model, y, point, members)
        pilot = EnsembleRNG(shared + i, range(pilot_members), y.device)
        draws = guided(prior, linear, data, pilot, steps, cg_rtol=cg_rtol, cg_max_iter=cg_max_iter)
        point = draws.mean(0)
        members = draws if site == "averaged" else None
    return point, members


def pilot_steps(steps: int, stochastic: bool) -> int:
    """The pilots' steps: they run the probability-flow ODE, which needs half the reverse SDE's
    steps for the same error (docs/samplers.md), so a stochastic final run's are halved."""
    return max(steps // 2, 1) if stochastic else steps


def prepare_linearized(
    prior: Prior, model: ForwardModel, y: Tensor, seed: int, steps: int, options: dict
) -> tuple[dict, dict]:
    """Once per run: the linearisation point (and pilot ensemble), shared by every batch (so the
    pilot ensembles are drawn once, not once per batch); the final run's `guided` warns as
    `guided` does where it was measured off without its refinement (`warn_if_measured_off`)."""
    # pilots stay plain `guided`: they only place the linearisation point (a mean)
    final_run_only = ("corrector_steps", "snr", "stochastic", "refine_moves", "refine_sigma")
    pilot = {k: v for k, v in options.items() if k not in final_run_only}
    steps = pilot_steps(steps, options.get("stochastic", False))
    point, members = linearization_point(prior, model, y, seed, steps, **pilot)
    message = warn_if_measured_off(prior, model, options, "linearized")
    diagnostics = {} if message is None else {"global_statistics_warning": message}
    return {"point": point, "members": members}, diagnostics


def linearized(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 48,
    callback: StepCallback | None = None,
    *,
    iterations: int = 3,
    pilot_members: int = 32,
    cg_rtol: float = 1e-3,
    cg_max_iter: int = 3,
    site: str = "averaged",
    corrector_steps: int = 0,
    snr: float = 0.16,
    stochastic: bool = False,
    refine_moves: int = 0,
    refine_sigma: float = 1.0,
    point: Tensor | None = None,
    members: Tensor | None = None,
) -> Tensor:
    """`guided` on the model linearised at the (iterated) posterior mean `point`
    (`linearization_point`, computed here when not given), with the noise's stand-in fitted to
    the pilot ensemble `members` where `site="averaged"`; `corrector_steps`, `snr`, `stochastic`
    and the refinement (`refine_moves` at `refine_sigma`) are `guided`'s, for the final run."""
    if point is None:
        point, members = linearization_point(prior, model, y, rng.seed,
                                             pilot_steps(steps, stochastic), iterations,
                                             pilot_members, cg_rtol, cg_max_iter, site)  # fmt: skip
    linear, data = linearized_model(model, y, point, members)
    return guided(prior, linear, data, rng, steps, callback, cg_rtol=cg_rtol,
                  cg_max_iter=cg_max_iter, corrector_steps=corrector_steps, snr=snr,
                  stochastic=stochastic, refine_moves=refine_moves,
                  refine_sigma=refine_sigma)  # fmt: skip
