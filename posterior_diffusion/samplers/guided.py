"""Classifier-guided score with a Tweedie-covariance likelihood (PiGDM / TMPD family), on the PF-ODE.

p(y | x_sigma) is approximated by N(y; A D(x_sigma), Sigma + A C A^T) with C = Cov[x0 | x_sigma],
whose conditional denoiser is D_y = D + C A^T (Sigma + A C A^T)^{-1} (y - A D) (solved by CG in
whitened data space). For a Gaussian prior and a linear Gaussian model D_y = E[x0 | x_sigma, y]
exactly, so the probability-flow ODE below transports N(0, sigma_max^2) to the exact posterior
(up to its discretisation error).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from forward_models.base import ForwardModel
from forward_models.fourier import fourier_filter
from forward_models.registry import has_shear_data

from ..likelihood import WhitenedLinearGaussian
from ..linalg import batch_dot, conjugate_gradient_with_image
from ..priors.base import Prior
from ..priors.draw import langevin_corrector, reverse_sde
from ..rng import EnsembleRNG
from ..schedules import log_uniform_sigmas
from .common import StepCallback, report
from .evidence import NON_GAUSSIAN_KINDS, ComponentWeights, latent_component_weights
from .refine import MoveStatistics, RefinementWarning, noised_posterior_mala

# CG solves (I + B C B^T) u = r, where C = Cov[x0 | x_sigma] must be positive semi-definite. A
# learned denoiser's Jacobian need not be: a member whose search direction finds B C B^T negative
# (beyond rounding) keeps its last iterate instead of amplifying along a non-covariance. With
# `misfit_guard` below, both no-ops for exact priors, measured on a trained lognormal prior
# against HMC (24 x 32, mask + noise, N = 64): median std ratio 2.25 with 9 runaway members
# (RMS z > 3) without either, 1.41 (4) with this floor alone, 1.09 (0) with the guard alone,
# 1.06 (0) with both.
CURVATURE_FLOOR = 1.0 - 1e-6


def misfit_guard(likelihood: WhitenedLinearGaussian, x0_hat: Tensor, step: Tensor) -> Tensor:
    """The guidance step C B^T u, shortened where it would fit the data worse than D does.

    With C positive semi-definite and u = (I + K)^{-1} r, the misfit after the step is
    |(I + K)^{-1} r| <= |r|; with u from 3 warm-started CG iterations it was never worse either
    (P1, P2 and three R1 problems, 3072 member-steps each), so exact priors keep their steps.
    Where a learned covariance breaks that, the step is scaled by the t in [0, 1] that minimises
    |r - t B step| (forward-model products only, no prior evaluation).
    """
    r = likelihood.residual(x0_hat)
    b_step = likelihood.B(step)
    worse = batch_dot(r - b_step, r - b_step) > batch_dot(r, r)
    if not bool(worse.any()):
        return step
    t = (batch_dot(r, b_step) / batch_dot(b_step, b_step).clamp_min(1e-300)).clamp(0.0, 1.0)
    return torch.where(worse, t * step, step)


# Above this many data std a learned Tweedie covariance sigma^2 dD/dx is mostly the network's
# error (its Jacobian's trace was negative for 47-95% of inputs at sigma_max), while
# Cov[x0 | x_sigma] itself tends to the prior covariance; there, for a prior that knows the power
# spectrum P of its training maps, guidance uses P sigma^2 / (P + sigma^2), a Gaussian field's
# Cov[x0 | x_sigma], and only the network's D. Below, the network's Jacobian is kept: it carries
# what a Gaussian misses where the field is far from Gaussian (peaks up to ~10 data std).
# Measured with trained priors against HMC (24 x 32, N = 128, docs/samplers.md): lognormal + mask
# std ratio 1.08-1.12 and log-power spread / HMC's 1.56-2.18 with the learned Jacobian at every
# level; switching at 10 data std gave 1.001-1.005 and 0.88-1.12. Switching at 1 data std did as
# well there but widened lensing posteriors (std ratio 1.15 against 1.03-1.04 at 6-10).
GAUSSIAN_COVARIANCE_ABOVE_STD = 10.0


def tweedie_linearization(
    prior: Prior,
) -> Callable[[Tensor, float], tuple[Tensor, Callable[[Tensor], Tensor]]]:
    """x, sigma -> (D(x, sigma), v -> Cov[x0 | x_sigma] v): the prior's own `linearize`, except
    above GAUSSIAN_COVARIANCE_ABOVE_STD data std for a prior with a `stationary_power`."""

    def linearize(x: Tensor, sigma: float) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        power = prior.stationary_power(tuple(x.shape[-3:]))
        if power is None or sigma <= GAUSSIAN_COVARIANCE_ABOVE_STD * prior.data_std():
            return prior.linearize(x, sigma)
        grid = power.to(device=x.device, dtype=x.dtype)
        posterior_power = grid * sigma**2 / (grid + sigma**2)
        return prior.denoise(x, sigma), lambda v: fourier_filter(v, posterior_power)

    return linearize


def noise_preconditioner(
    prior: Prior, likelihood: WhitenedLinearGaussian, field_shape: tuple[int, ...]
) -> Callable[[float], Callable[[Tensor], Tensor]] | None:
    """sigma -> r -> r / (1 + c(sigma) s / noise_std^2): a diagonal (Jacobi) preconditioner for
    guided's I + B C B^T when the noise differs between data entries; None when it is the same
    everywhere (plain CG then, as measured before) or not independent per entry.

    c(sigma) is the mean of Cov[x0 | x_sigma]'s diagonal for a stationary field (P sigma^2 /
    (P + sigma^2) averaged over the grid, P the prior's spectrum, or white at its pixel variance)
    and s the operator's mean squared row norm. Without it, three warm-started CG iterations per
    step left a posterior 21% too wide where a 20x noise map is largest (docs/samplers.md).
    """
    w2 = likelihood.precision_diagonal()
    if w2 is None or not bool((w2 > 0).any()):
        return None
    seen = w2[w2 > 0]
    if float(seen.max()) <= float(seen.min()) * (1 + 1e-9):
        return None
    row_norm2 = likelihood.mean_row_norm2()
    power = prior.stationary_power(tuple(field_shape))
    try:
        variance = prior.data_std() ** 2
    except NotImplementedError:  # a prior without a scale: plain CG
        return None

    def at(sigma: float) -> Callable[[Tensor], Tensor]:
        if power is None:
            mean_cov = variance * sigma**2 / (variance + sigma**2)
        else:
            mean_cov = float((power * sigma**2 / (power + sigma**2)).mean())
        diagonal = 1.0 + mean_cov * row_norm2 * w2
        return lambda r: r / diagonal

    return at


def conditional_denoiser(
    prior: Prior,
    likelihood: WhitenedLinearGaussian,
    cg_rtol: float,
    cg_max_iter: int,
) -> Callable[[Tensor, float], Tensor]:
    """x, sigma -> D_y(x, sigma); CG warm-starts from the previous call's solution.

    `linearized`, when given, is `tweedie_linearization(prior)(x, sigma)` computed already (a
    caller that needed D(x, sigma) anyway). `denoise_given_y.warm` holds the warm start ("u"),
    for an ensemble sampler to reorder with its members and to checkpoint."""
    warm: dict[str, Tensor] = {}
    linearize = tweedie_linearization(prior)
    preconditioner = None  # made on the first call, when the field's shape is known
    made = False

    def denoise_given_y(
        x: Tensor, sigma: float, linearized: tuple[Tensor, Callable] | None = None
    ) -> Tensor:
        nonlocal preconditioner, made
        if not made:
            preconditioner, made = noise_preconditioner(prior, likelihood, x.shape[-3:]), True
        x0_hat, cov = linearize(x, sigma) if linearized is None else linearized

        def matvec(v: Tensor) -> tuple[Tensor, Tensor]:
            cov_bt_v = cov(likelihood.B_adjoint(v))
            return v + likelihood.B(cov_bt_v), cov_bt_v

        u, cov_bt_u, _ = conjugate_gradient_with_image(
            matvec,
            likelihood.residual(x0_hat),
            warm.get("u"),
            cg_rtol,
            cg_max_iter,
            curvature_floor=CURVATURE_FLOOR,
            preconditioner=None if preconditioner is None else preconditioner(sigma),
        )
        warm["u"] = u
        if cov_bt_u is None:
            return x0_hat
        return x0_hat + misfit_guard(likelihood, x0_hat, cov_bt_u)

    denoise_given_y.warm = warm  # type: ignore[attr-defined]
    return denoise_given_y


class GlobalStatisticsWarning(UserWarning):
    """`guided` runs a kind of problem on which its samples' global statistics (total and band
    powers) were measured off against a gold-standard posterior, though its pixel intervals held."""


def measured_off(prior: Prior, model: ForwardModel) -> bool:
    """A prior learned from non-Gaussian fields (`NON_GAUSSIAN_KINDS`), blind to any components,
    behind shear data: where plain `guided`'s samples were measured too faint (docs/samplers.md)."""
    kind = prior.identity().get("data_kind")
    return bool(
        prior.learned
        and kind in NON_GAUSSIAN_KINDS
        and has_shear_data(model.name)
        and prior.latent_components() is None
    )


# On the 24 x 32 lognormal lensing problems with a trained prior, plain `guided` kept pixel
# intervals but its samples' power sat up to 1.8 HMC sd low (0.17 in log power against the
# network's own draws), an error made between 8 and 2 data std. 100 refinement moves at 1 data
# std took it to 0.04 +- 0.02 against the prior's own draws and met issue 14's bar against HMC
# (std ratio 0.978-1.008; band spreads 0.81-1.09 in three of four runs of 128, one 1.28, and
# 0.96-1.13 with 512 members on three observations), at 1,108 prior evaluations per sample
# instead of 304 (30 moves left 0.135). On mask + noise, where plain `guided` passed, the same
# moves narrowed the global spreads (bands 0.79-0.84 on one observation, log power 0.82 on
# another): off there.
REFINE_SIGMA = 1.0
# Larger maps need more moves. On the shipped 64 x 64 prior (with its training spectrum) against
# its own posterior (self_consistency.py, 20 tests) plain `guided` left +0.177 in log power, 100
# moves +0.059 +- 0.021 (ranks non-uniform, p 0.024) and 200 moves +0.010 +- 0.020 (p 0.24). So
# 100 moves up to 1,024 pixels (24 x 32, where they met the HMC bar), rising as the square root
# of the pixel count to 200 at 4,096 (the two measured ends, interpolated between); larger maps
# keep 200, as more moves were not measured there.
REFINE_MOVES_SMALL = 100
REFINE_PIXELS_SMALL, REFINE_PIXELS_LARGE = 1024, 4096


def refine_moves_for(field_shape: tuple[int, ...]) -> int:
    """The default number of refinement moves for a field of shape (..., H, W)."""
    pixels = field_shape[-2] * field_shape[-1]
    ratio = min(max(pixels, REFINE_PIXELS_SMALL), REFINE_PIXELS_LARGE) / REFINE_PIXELS_SMALL
    return round(REFINE_MOVES_SMALL * math.sqrt(ratio))


def guided_defaults(prior: Prior, model: ForwardModel) -> dict:
    """Options that depend on the problem: the refinement where plain `guided` was measured off,
    with as many moves as the map's size needs (`refine_moves_for`)."""
    if not measured_off(prior, model):
        return {}
    return {"refine_moves": refine_moves_for(model.field_shape), "refine_sigma": REFINE_SIGMA}


def warn_if_measured_off(
    prior: Prior, model: ForwardModel, options: dict, sampler: str = "guided"
) -> str | None:
    """Warn when `sampler` (`guided`, or `linearized` whose final run it is) runs without
    refinement where it was measured off (`measured_off`):
    on the 24 x 32 lognormal lensing problems against HMC (docs/samplers.md) plain `guided` kept
    pixel std at 1.010-1.026 of HMC's, but its samples' power sat up to 1.8 HMC sd low and their
    band-power spreads reached 1.36x HMC's, on two trained priors and at N = 128 and 512. Returns
    the warning's text (for the run's diagnostics), or None."""
    if not measured_off(prior, model) or options.get("refine_moves", 0) > 0:
        return None
    kind = prior.identity().get("data_kind")
    message = (
        f"sampler '{sampler}' without refinement moves, with a prior learned from {kind} fields "
        "behind shear data: on lognormal lensing problems its pixel intervals held but its "
        "samples' power came out up to 1.8 posterior sd low and their band-power spreads up to "
        "1.36x a gold standard's, which refinement moves were measured to remove (the default "
        f"here: --refine-moves {refine_moves_for(model.field_shape)} --refine-sigma "
        f"{REFINE_SIGMA:g}; docs/samplers.md)"
    )
    warnings.warn(GlobalStatisticsWarning(message), stacklevel=4)
    return message


def prepare_guided(
    prior: Prior, model: ForwardModel, y: Tensor, seed: int, steps: int, options: dict
) -> tuple[dict[str, ComponentWeights], dict]:
    """Once per run: the latent components' weights (if the prior names components), so that
    every batch draws from the same omega without recomputing it; a prior without them gets
    `warn_if_measured_off`, whose text the run's diagnostics keep."""
    weights = latent_component_weights(prior, WhitenedLinearGaussian(model, y))
    if weights is None:
        message = warn_if_measured_off(prior, model, options)
        return {}, ({} if message is None else {"global_statistics_warning": message})
    return {"component_weights": weights}, weights.as_dict()


def draw_components(weights: Tensor, rng: EnsembleRNG) -> Tensor:
    """One component per member, k ~ weights, from the member's own stream (so a member's
    component does not depend on the batch it is drawn in)."""
    u = rng.rand(())
    cumulative = torch.cumsum(weights.to(u), 0)
    return torch.searchsorted(cumulative, u * cumulative[-1]).clamp_max(len(weights) - 1).cpu()


def componentwise_denoiser(
    parts: list[Prior],
    labels: Tensor,
    likelihood: WhitenedLinearGaussian,
    cg_rtol: float,
    cg_max_iter: int,
) -> Callable[[Tensor, float], Tensor]:
    """D_y of member i under component labels[i]'s prior, one batched call per component."""
    groups = {k: (labels == k).nonzero().flatten() for k in labels.unique().tolist()}
    denoisers = {
        k: conditional_denoiser(parts[k], likelihood, cg_rtol, cg_max_iter) for k in groups
    }

    def denoise_given_y(x: Tensor, sigma: float) -> Tensor:
        out = torch.empty_like(x)
        for k, index in groups.items():
            index = index.to(x.device)
            out[index] = denoisers[k](x[index], sigma)
        return out

    return denoise_given_y


def guided(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 48,
    callback: StepCallback | None = None,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    cg_rtol: float = 1e-3,
    cg_max_iter: int = 3,
    corrector_steps: int = 0,
    snr: float = 0.16,
    stochastic: bool = False,
    refine_moves: int = 0,
    refine_sigma: float = 1.0,
    component_weights: ComponentWeights | None = None,
) -> Tensor:
    """PF-ODE with the Tweedie-covariance conditional denoiser, by DPM-Solver++(2M).

    DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) is an exponential integrator in log sigma on
    the data prediction D_y: one D_y per step, second order by reusing the previous one. On a
    Gaussian posterior it beat Heun at equal cost (std error 1% at 32 evaluations vs 2.5% at 63),
    and a log-uniform sigma grid spreads its error evenly over modes of every posterior variance.

    `corrector_steps` Langevin steps per level on the conditional score (D_y - x) / sigma^2
    (signal-to-noise ratio `snr`) make it a predictor-corrector sampler; each costs one D_y.

    `stochastic` integrates the reverse SDE of the same D_y instead (DPM-Solver++(2M) SDE,
    `priors.draw.reverse_sde`), fresh noise from each member's stream at every step: the same
    path of marginals, but a member no longer carries its starting noise to the end, which with
    a learned prior narrowed the members' spread of band powers (docs/samplers.md). Its
    discretisation needs more steps than the ODE's on a Gaussian posterior (std ratio 1.010 and
    1.021 at 48 steps, 1.003 and 1.009 at 96, against the ODE's 1.003 and 1.004 at 48), so
    `sample_posterior` gives it 96 steps unless told otherwise.

    `refine_moves` Metropolis-adjusted Langevin moves (`refine.py`) at the level nearest
    `refine_sigma` data std pull the members towards p(x_sigma | y) with the prior's own noised
    density, where guided's Gaussian p(x0 | x_sigma) has biased them on a non-Gaussian prior; eight
    prior evaluations per move (a Langevin and a scale proposal). Off (0) unless
    `guided_defaults` turns them on (at 1 data std where plain guided was measured off, a learned
    non-Gaussian prior behind shear: 100 moves up to 32 x 32, 200 from 64 x 64,
    `refine_moves_for`; docs/samplers.md, "Refinement at 1 data std").

    A prior with latent components (`Prior.latent_components`) is sampled component-first: each
    member draws k from omega_k ∝ pi_k p(y | k) (`component_weights`, computed here when not
    given; `evidence.py`) with its own stream, then follows p(x | y, k)'s ODE, exact for a
    Gaussian component.
    """
    likelihood = WhitenedLinearGaussian(model, y)
    if component_weights is None:
        component_weights = latent_component_weights(prior, likelihood)
    if component_weights is None:
        denoise_y = conditional_denoiser(prior, likelihood, cg_rtol, cg_max_iter)
    else:
        _, parts = prior.latent_components()
        labels = draw_components(component_weights.weights, rng)
        denoise_y = componentwise_denoiser(parts, labels, likelihood, cg_rtol, cg_max_iter)
    shape = model.field_shape
    sigmas = log_uniform_sigmas(
        steps, sigma_min or prior.sigma_min(), sigma_max or prior.sigma_max()
    )
    x = sigmas[0].item() * rng.randn(shape)
    correct = langevin_corrector(denoise_y, lambda: rng.randn(shape), corrector_steps, snr)
    if refine_moves > 0:
        statistics = MoveStatistics(moves=refine_moves)
        callback = with_state(callback, refinement=statistics)
        on_move = None if callback is None else lambda x: callback({"refine_move": True, "x": x})
        correct = with_refinement(
            correct, prior, likelihood, sigmas, refine_sigma, refine_moves, rng, statistics,
            on_move,
        )  # fmt: skip
    if not stochastic:
        return posterior_ode(denoise_y, x, sigmas, callback, correct)

    def on_step(i: int, sigma: float, x: Tensor, x0_hat: Tensor) -> None:
        report(callback, i=i, sigma=sigma, x=x, denoised=x0_hat)

    with torch.no_grad():
        return reverse_sde(
            denoise_y, x, sigmas.tolist(), lambda: rng.randn(shape), on_step, correct
        )


def with_state(callback: StepCallback | None, **extra) -> StepCallback | None:
    """The callback, with `extra` added to every state it is handed."""
    if callback is None:
        return None
    return lambda state: callback({**state, **extra})


def with_refinement(
    correct: Callable[[Tensor, float], Tensor] | None,
    prior: Prior,
    likelihood: WhitenedLinearGaussian,
    sigmas: Tensor,
    refine_sigma: float,
    moves: int,
    rng: EnsembleRNG,
    statistics: MoveStatistics,
    on_move: Callable[[Tensor], None] | None = None,
) -> Callable[[Tensor, float], Tensor]:
    """`correct`, plus `moves` refinement moves (`refine.py`: on p(x_sigma | y), exactly for a
    Gaussian prior) at the level of the grid nearest refine_sigma data std (never the first:
    moves act after a step); `on_move(x)` after each move."""
    levels = sigmas[1:-1]
    target = math.log(refine_sigma * prior.data_std())
    level = float(levels[(levels.log() - target).abs().argmin()])
    statistics.sigma = level
    shape = tuple(likelihood.model.field_shape)
    if prior.second_moment_power(shape) is None:
        warnings.warn(
            "the prior has no power spectrum (a network file trained before `train` recorded its "
            "training maps' spectrum), so the refinement moves run without scale proposals and "
            "with a flat-prior preconditioner, and do less (measured on the shipped 64 x 64 "
            "prior: 200 moves left +0.048 in log power without it, +0.010 with it); "
            "benchmarks/attach_training_power.py in the source tree adds it",
            RefinementWarning,
            stacklevel=2,
        )
    mala = noised_posterior_mala(
        prior,
        likelihood,
        level,
        moves,
        lambda: rng.randn(shape),
        lambda: rng.rand(()),
        statistics,
        randn_scalar=lambda: rng.randn(()),
        on_move=on_move,
    )

    def refined(x: Tensor, sigma: float) -> Tensor:
        if correct is not None:
            x = correct(x, sigma)
        return mala(x) if sigma == level else x

    return refined


def posterior_ode(
    denoise_y: Callable[[Tensor, float], Tensor],
    x: Tensor,
    sigmas: Tensor,
    callback: StepCallback | None = None,
    correct: Callable[[Tensor, float], Tensor] | None = None,
) -> Tensor:
    """Integrate the PF-ODE of D_y from x at sigmas[0] down the levels `sigmas` (ending with 0)."""
    steps = len(sigmas) - 1
    previous: tuple[Tensor, float] | None = None
    for i in range(steps):
        sigma, sigma_next = sigmas[i].item(), sigmas[i + 1].item()
        with torch.no_grad():
            x0_hat = denoise_y(x, sigma)
        if sigma_next == 0:
            x_next = x0_hat
        else:
            h = math.log(sigma / sigma_next)
            if previous is None:
                x0_mix = x0_hat
            else:
                x0_prev, sigma_prev = previous
                r = math.log(sigma_prev / sigma) / h
                x0_mix = (1 + 0.5 / r) * x0_hat - (0.5 / r) * x0_prev
            x_next = x0_mix + (sigma_next / sigma) * (x - x0_mix)
        previous = (x0_hat, sigma)
        if correct is not None and sigma_next > 0:
            with torch.no_grad():
                moved = correct(x_next, sigma_next)
            # The multistep correction extrapolates D_y along one trajectory; a Langevin move
            # leaves it, and reusing the old D_y then inflated the variance by 13-42%. A
            # corrector that returns its input unchanged (refinement away from its level) keeps
            # the second order: dropping it at every level cost 8% of the variance (P1, 12 x 16).
            if moved is not x_next:
                previous = None
            x_next = moved
        x = x_next
        report(callback, i=i, sigma=sigma, x=x, denoised=x0_hat)
    return x
