"""(experimental) Twisted SMC along the diffusion's noise levels, with a twist shared by all members.

Particles follow `guided`'s reverse-SDE proposal (DPM-Solver++(2M) SDE steps on D_y) and carry
importance weights that make the ensemble target, level by level,

    gamma_sigma(x) ∝ p_sigma(x) psi_sigma(x),   psi_sigma(x) = N(y_w; B D(x, sigma), I + B C_sigma B^T)

with C_sigma = sigma^2 a P / (a P + sigma^2), P the prior's variance per Fourier mode
(`Prior.second_moment_power`) and a one scale for the whole ensemble: the same covariance for
every particle, so the twist's log-determinant cancels from the weights (issue 14's twisted lead
used guided's particle-dependent covariance and had to estimate it). With `twist="ensemble"` a is
re-fitted at every level to the weighted members (`ensemble_amplitude`): a prior marginalised
over its amplitude (cosmology) is then twisted with the amplitude the data favour instead of the
prior's mean, which the brightest components dominate; `twist="stationary"` keeps a = 1. Any
twist leaves the method exact (it is a choice of intermediate targets, changed between levels
with the weights); a closer one keeps more of the members. psi tends to the exact likelihood as
sigma -> 0 for any prior, so the last level's target is the posterior. The weight of a step
x -> x' is p(x' | x) psi(x') / (q(x' | x) psi(x)): p the prior's own reverse step (the same SDE
step with D instead of D_y), q the guided one; both Gaussian with the same variance, so their
ratio is exact. Twisted diffusion sampler: Wu et al. 2023; here with a twist whose normaliser is
the same for all particles. Above `wiener_twist_above` data std (off by default) the twist's
mean is the Wiener filter of the member instead of D(x) (below).

When the ESS falls below `resample_below`, members are resampled systematically along their
total power (as `smc`) and moved by `moves` Metropolis-adjusted Langevin moves on gamma_sigma
(`refine.py`, with the fitted a), which restore the spread that resampling takes from the
scales the data pin down (without them a Gaussian prior's whitened posterior variance came out
0.88 instead of 1). Their acceptance takes log p_sigma from the score integrated by
Gauss-Lobatto; by the trapezoid rule, as first, they favoured a multi-modal prior's brighter
modes and sent whole ensembles into components the posterior rules out (`refine.py`). At the
end the ensemble is resampled to equal weights; its ESS, the fraction of distinct members and
the moves' acceptance are recorded, with an `EnsembleWarning` when the distinct fraction is
below half.

Members depend on one another (weights, resampling, the fitted scale), so the ensemble is drawn
as a whole: shared draws (resampling uniforms) from the run's seed, each member's noise from its
own stream.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from forward_models.base import ForwardModel
from forward_models.fourier import fourier_filter

from ..likelihood import WhitenedLinearGaussian
from ..linalg import conjugate_gradient_with_image
from ..priors.base import Prior
from ..rng import EnsembleRNG
from ..schedules import log_uniform_sigmas
from .common import StepCallback, report
from .guided import conditional_denoiser, tweedie_linearization
from .refine import MoveStatistics, dot, noised_posterior_mala
from .smc import LOW_UNIQUE_FRACTION, EnsembleWarning, effective_sample_size, systematic_resample


def stationary_twist(
    prior: Prior, likelihood: WhitenedLinearGaussian, field_shape: tuple[int, ...]
):
    """(D(x, sigma), sigma) -> log psi_sigma per member, up to a constant shared by all."""
    power = prior.second_moment_power(tuple(field_shape))
    if power is None:
        raise ValueError(
            "sampler 'twisted' needs the prior's variance per Fourier mode "
            "(Prior.second_moment_power); this prior does not know it"
        )

    def log_twist(x0_hat: Tensor, sigma: float, amplitude: float = 1.0) -> Tensor:
        scaled = amplitude * power.to(x0_hat)
        cov = scaled * sigma**2 / (scaled + sigma**2)
        r = likelihood.residual(x0_hat)

        def matvec(v: Tensor) -> tuple[Tensor, Tensor]:
            bt_v = likelihood.B_adjoint(v)
            return v + likelihood.B(fourier_filter(bt_v, cov)), bt_v

        u, _, _ = conjugate_gradient_with_image(matvec, r, None, 1e-10, 200)
        return -0.5 * dot(r, u)

    return log_twist


# Langevin moves after each resampling. With a trained lensing prior against HMC at N = 128, 4
# left the posterior 10% narrow (std ratio 0.895; 8: 0.94-0.95, 16: 0.93; 8 at N = 256:
# 0.95-0.96) at 958 prior evaluations per sample (8: 1,185-1,396); R1 unchanged
# (docs/samplers.md, "`twisted`").
DEFAULT_MOVES = 8

# Prior sd of log a: the fit stays near the prior's own spectrum (a = 1) while the members carry
# little information on it (sigma^2 above most of a P), where an unregularised fit jumped by
# 100x between levels and made the weights degenerate on a Gaussian prior (min ESS 0.004).
LOG_AMPLITUDE_SD = 1.0

# `wiener_twist_above` (data std; off by default): above it the twist's mean is the Wiener filter
# W x of the member (W = a P / (a P + sigma^2)) instead of the network's D(x). At the top levels a
# trained D's member-to-member variation is mostly its error (slopes of D on the truth 0.07-0.65
# at 30 data std, docs/default_prior.md) and made the twist itself change by 1.9 nats (sd over
# members) per level, so the weights collapsed at once; with W x above 3 data std it is
# 0.03-0.10 per level above 9 data std.
# Any twist keeps the method exact. Not the default: on the trained lensing prior against HMC it
# resampled half as often at 55-80% of the cost but left 128-256 members narrower (std ratio
# 0.92-0.95 against 0.94-0.96); with 512 it met issue 14's whole R2 bar (0.968-0.976, 810-845
# evaluations per sample); docs/samplers.md ("A Wiener twist at high noise").


def ensemble_amplitude(x: Tensor, log_w: Tensor, power: Tensor, sigma: float) -> float:
    """The scale a of the prior's spectrum that best explains the weighted members x at level
    sigma: the maximum a posteriori a under x ~ N(0, a P + sigma^2) per Fourier mode, given the
    members' weighted mean periodogram S (taken as one field's worth of information) and
    log a ~ N(0, LOG_AMPLITUDE_SD^2); the root of its derivative in log a by bisection over
    |log a| <= 7 (an end when the root lies beyond it)."""
    w = torch.softmax(log_w, 0).to(x)
    periodogram = (w.view(-1, *[1] * (x.dim() - 1)) * torch.fft.fft2(x).abs().square()).sum(0)
    periodogram = (periodogram / (x.shape[-2] * x.shape[-1])).flatten()
    p = power.to(x).flatten()

    def score(log_a: float) -> float:
        a = math.exp(log_a)
        v = a * p + sigma**2
        return (
            0.5 * a * float((p * (periodogram - v) / v.square()).sum())
            - log_a / LOG_AMPLITUDE_SD**2
        )

    low, high = -7.0, 7.0
    if score(low) <= 0:
        return math.exp(low)
    if score(high) >= 0:
        return math.exp(high)
    for _ in range(40):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if score(middle) > 0 else (low, middle)
    return math.exp(0.5 * (low + high))


def restore_state(
    state: dict,
    rng: EnsembleRNG,
    shared: torch.Generator,
    denoise_y: Callable,
    device,
    shape: tuple[int, ...],
) -> tuple[Tensor, Tensor, float, tuple | None, int]:
    """x, log_w, the twist's scale, the second-order term's inputs and the next level from a
    checkpoint, on `device`; the generators and the CG warm start are set in place. A state of
    another ensemble is refused."""
    x = torch.as_tensor(state["x"], dtype=torch.float64)
    if x.shape[0] != len(rng) or len(state["members"]) != len(rng):
        raise ValueError(f"the saved twisted state holds {x.shape[0]} members, this run {len(rng)}")
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"the saved twisted state holds fields of shape {tuple(x.shape[1:])}, "
            f"this run {tuple(shape)}"
        )
    rng.set_state(state["members"])
    shared.set_state(state["shared"])
    if state["warm_u"] is not None:
        denoise_y.warm["u"] = state["warm_u"].to(device)
    previous = None
    if state["previous"] is not None:
        previous = tuple(t.to(device) if torch.is_tensor(t) else t for t in state["previous"])
    log_w = torch.as_tensor(state["log_w"], dtype=torch.float64).to(device)
    return x.to(device), log_w, float(state["amplitude"]), previous, int(state["level"]) + 1


def twisted(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 96,
    callback: StepCallback | None = None,
    *,
    moves: int = DEFAULT_MOVES,
    resample_below: float = 0.5,
    cg_rtol: float = 1e-3,
    cg_max_iter: int = 3,
    twist: str = "ensemble",
    wiener_twist_above: float | None = None,
    checkpoint: Callable[[dict], None] | None = None,
    resume: dict | None = None,
) -> Tensor:
    """The ensemble of `len(rng)` members over `steps` noise levels (about 4 prior evaluations
    per member and level: D and its covariance products for D_y at each new point; after a
    resampling, 4 per move and one D).

    `callback` receives each level's members, their log-weights and log-twists (after any
    resampling and moves; those before a resampling under "before_resampling"), the ESS and the
    twist's scale, for traces (`benchmarks/twisted_trace.py`).
    `checkpoint(state)` receives the whole state after every level; `resume` (such a state, of
    the same run) continues from the level after it to the ensemble of an uninterrupted run."""
    likelihood = WhitenedLinearGaussian(model, y)
    shape = tuple(model.field_shape)
    log_twist = stationary_twist(prior, likelihood, shape)
    power = prior.second_moment_power(shape)
    wiener_above = math.inf if wiener_twist_above is None else wiener_twist_above * prior.data_std()

    def twist_at(x: Tensor, d: Tensor, sigma: float, amplitude: float) -> Tensor:
        """log psi_sigma of members x with denoised d (W x in its mean above the threshold)."""
        if sigma > wiener_above:
            scaled = amplitude * power.to(x)
            d = fourier_filter(x, scaled / (scaled + sigma**2))
        return log_twist(d, sigma, amplitude)

    denoise_y = conditional_denoiser(prior, likelihood, cg_rtol, cg_max_iter)
    # D at each new point comes with its covariance products, which the next step's D_y reuses
    # (one prior evaluation per member and level fewer than denoising twice).
    linearize = tweedie_linearization(prior)
    shared = torch.Generator().manual_seed(rng.shared_seed())
    sigmas = log_uniform_sigmas(steps, prior.sigma_min(), prior.sigma_max()).tolist()

    def resample(log_w: Tensor, x: Tensor) -> Tensor:
        order = torch.argsort(x.flatten(1).square().sum(1)).cpu()
        uniform = float(torch.rand((), generator=shared, dtype=torch.float64))
        return systematic_resample(log_w.cpu(), uniform, order).to(x.device)

    with torch.no_grad():
        if resume is None:
            first, amplitude, previous = 0, 1.0, None
            x = sigmas[0] * rng.randn(shape)
            log_w: Tensor | None = None
            ess_trace: list[float] = []
            resampled_at: list[float] = []
            moves_tried = [0, 0]  # rejuvenation proposals and acceptances (after adaptation)
        else:
            x, log_w, amplitude, previous, first = restore_state(
                resume, rng, shared, denoise_y, likelihood.y_white.device, shape
            )
            ess_trace, resampled_at = list(resume["ess"]), list(resume["resampled_at"])
            moves_tried = list(resume["moves_tried"])
        linearized = linearize(x, sigmas[first])
        d = linearized[0]
        psi = twist_at(x, d, sigmas[first], amplitude)
        log_w = psi.clone() if log_w is None else log_w
        # previous: (D, D_y, h) of the last step, the SDE steps' second-order term
        for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-2], sigmas[1:-1], strict=True)):
            if i < first:
                continue
            d_y = denoise_y(x, sigma, linearized)
            ratio = (sigma_next / sigma) ** 2
            var = sigma_next**2 * (1 - ratio)
            h = math.log(sigma / sigma_next)
            mean_prior = ratio * x + (1 - ratio) * d
            mean_guided = ratio * x + (1 - ratio) * d_y
            if previous is not None:
                d_prev, d_y_prev, h_prev = previous
                mean_prior = mean_prior + 0.5 * (1 - ratio) * (h / h_prev) * (d - d_prev)
                mean_guided = mean_guided + 0.5 * (1 - ratio) * (h / h_prev) * (d_y - d_y_prev)
            previous = (d, d_y, h)
            x = mean_guided + math.sqrt(var) * rng.randn(shape)
            from_prior, from_guided = x - mean_prior, x - mean_guided
            log_p_over_q = (dot(from_guided, from_guided) - dot(from_prior, from_prior)) / (2 * var)
            linearized = linearize(x, sigma_next)
            d = linearized[0]
            if twist == "ensemble":
                amplitude = ensemble_amplitude(x, log_w, power, sigma_next)
            psi_next = twist_at(x, d, sigma_next, amplitude)
            log_w = log_w + log_p_over_q + psi_next - psi
            psi = psi_next
            ess_trace.append(effective_sample_size(log_w))
            before = None  # what a trace needs of the weights a resampling resets
            if ess_trace[-1] < resample_below:
                before = {"x": x, "log_weights": log_w, "log_twist": psi}
                ancestors = resample(log_w, x)
                x, d, psi = x[ancestors], d[ancestors], psi[ancestors]
                previous = (previous[0][ancestors], previous[1][ancestors], h)
                log_w = torch.zeros_like(log_w)
                resampled_at.append(sigma_next)
                linearized = None  # its covariance products belong to the old members
                if "u" in denoise_y.warm:
                    denoise_y.warm["u"] = denoise_y.warm["u"][ancestors]
                if moves:
                    statistics = MoveStatistics(sigma=sigma_next)
                    move = noised_posterior_mala(
                        prior, likelihood, sigma_next, moves, lambda: rng.randn(shape),
                        lambda: rng.rand(()), statistics, scale_moves=False,
                        power_scale=amplitude, wiener_mean=sigma_next > wiener_above,
                    )  # fmt: skip
                    x = move(x)
                    moves_tried[0] += statistics.proposed
                    moves_tried[1] += statistics.accepted
                    previous = None  # the second-order term must not span a move
                    linearized = linearize(x, sigma_next)
                    d = linearized[0]
                    psi = twist_at(x, d, sigma_next, amplitude)
            if checkpoint is not None:
                checkpoint({
                    "level": i, "x": x.cpu(), "log_w": log_w.cpu(), "amplitude": amplitude,
                    "previous": None if previous is None else [
                        t.cpu() if torch.is_tensor(t) else t for t in previous],
                    "warm_u": denoise_y.warm["u"].cpu() if "u" in denoise_y.warm else None,
                    "shared": shared.get_state(), "members": rng.get_state(),
                    "ess": ess_trace, "resampled_at": resampled_at, "moves_tried": moves_tried,
                })  # fmt: skip
            report(
                callback, i=i, sigma=sigma_next, x=x, denoised=d, log_weights=log_w,
                log_twist=psi, ess=ess_trace[-1], twist_amplitude=amplitude,
                before_resampling=before,
            )  # fmt: skip
        x0 = denoise_y(x, sigmas[-2], linearized)  # the last step, to sigma = 0, as guided's
        final_ess = effective_sample_size(log_w)
        ancestors = resample(log_w, x0)
    unique = len(set(ancestors.tolist())) / len(rng)
    diagnostics = {
        "levels": len(sigmas) - 1,
        "final_ess": final_ess,
        "min_ess": min(ess_trace),
        "resampled_at_sigma": resampled_at,
        "unique_fraction": unique,
        "move_acceptance": moves_tried[1] / moves_tried[0] if moves_tried[0] else None,
        "twist": twist,
        "wiener_twist_above": wiener_twist_above,
        "twist_amplitude": amplitude,  # the last level's fitted scale of the prior's spectrum
    }
    report(callback, i=len(sigmas) - 2, sigma=0.0, x=x0, denoised=x0, diagnostics=diagnostics)
    if unique < LOW_UNIQUE_FRACTION:
        warnings.warn(
            f"sampler 'twisted': only {unique:.0%} of the {len(rng)} members are distinct after "
            f"the final resampling (ESS {final_ess:.2f}): intervals and spreads are noisier than "
            "the ensemble's size suggests",
            EnsembleWarning,
            stacklevel=2,
        )
    return x0[ancestors]
