"""Sequential Monte Carlo from the prior to the posterior along noised data (ensemble-level).

The targets, for beta from 0 (the prior) to 1 (the posterior), in whitened data space (y_w, B),
with one fixed xi ~ N(0, I) in data space shared by the ensemble:

    pi_beta(x) ∝ p(x) N(y_beta; B x, I / beta),   y_beta = y_w + sqrt(1 / beta - 1) xi

Each is a genuine posterior: if y_w ~ N(B x, I) then y_beta ~ N(B x, I / beta). Tempering the
likelihood with the data held fixed instead makes mid-path data look too quiet for their noise,
and those targets favour low-power fields in every observation (the issue measured component
weights of 0.79-0.99 for the low-power one at split Gibbs' rho ~ 8). On this path the posterior
weight of a mixture component is a martingale in the data's noise (traced on two observations of
the amplitude mixture: omega moved smoothly from 0.50 to 0.08 and to 0.12, with no dip).

- Weights: the prior cancels in pi_beta' / pi_beta, so an increment needs only the data misfit.
- Levels: the next beta is found by bisection so that the conditional ESS of the increment is
  `cess_target` (Zhou, Johansen and Aston 2016).
- Resampling: systematic along the particles sorted by total power, when the ESS falls below
  `resample_below`.
- Moves ("restart"): noise each member to level tau (x + tau z), then integrate `guided`'s
  posterior PF-ODE for pi_beta from tau to 0. If x ~ pi_beta then x + tau z ~ pi_beta(x_tau), and
  the exact posterior PF-ODE maps that back to pi_beta: the move is invariant wherever guided's
  Gaussian p(x0 | x_tau) is exact. tau is `restart_factor` times the spread of the members'
  widest Fourier mode, so that the large scales, which carry a field's amplitude, move too.
- Latent components: a prior that names them (`Prior.latent_components`, e.g. a mixture) gives
  each member a component k ~ pi_k at the start; its moves use p(x | k), exact for a Gaussian
  component at any tau, and only the weights move mass between components. Without them, large
  restarts switch components with guided's bias (docs/samplers.md).

Members depend on one another (weights, resampling), so the ensemble is drawn as a whole: its
shared draws (xi, resampling uniforms) come from the run's seed, each member's noise from its own
stream. The first particles are the prior's own draws (its reverse SDE from sigma_max).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from forward_models.base import ForwardModel

from ..likelihood import WhitenedLinearGaussian
from ..priors.base import Prior
from ..priors.draw import reverse_sde
from ..rng import EnsembleRNG
from ..schedules import log_uniform_sigmas
from .common import StepCallback, report
from .guided import conditional_denoiser, posterior_ode

# Below this fraction of distinct members in the output, the run warns that it cannot vouch for
# its ensemble: that many duplicates make intervals and spreads noisier than N members suggest.
LOW_UNIQUE_FRACTION = 0.5


class EnsembleWarning(UserWarning):
    """An ensemble-level sampler's own diagnostics (ESS, distinct members) are poor."""


@dataclass
class SMCDiagnostics:
    """What the run says about itself: per level beta, ESS (fraction, before resampling)."""

    betas: list[float] = field(default_factory=list)
    ess: list[float] = field(default_factory=list)
    resampled: list[bool] = field(default_factory=list)
    final_ess: float = float("nan")  # at beta = 1, before the last resampling
    unique_fraction: float = float("nan")  # distinct ancestors at the last resampling / members
    component_fractions: list[float] = field(default_factory=list)  # of a latent, at the end

    def as_dict(self) -> dict:
        return {
            "levels": len(self.betas),
            "betas": self.betas,
            "ess": self.ess,
            "resampled": self.resampled,
            "final_ess": self.final_ess,
            "unique_fraction": self.unique_fraction,
            "component_fractions": self.component_fractions,
        }


def effective_sample_size(log_w: Tensor) -> float:
    """(sum w)^2 / sum w^2 / N, from unnormalised log weights."""
    w = torch.softmax(log_w, 0)
    return float(1.0 / (w.square().sum() * len(w)))


def conditional_ess(log_w: Tensor, increment: Tensor) -> float:
    """CESS of an incremental weight under the current weights, as a fraction (Zhou et al. 2016)."""
    w = torch.softmax(log_w, 0)
    u = (increment - increment.max()).exp()
    return float((w * u).sum().square() / (w * u.square()).sum())


def systematic_resample(log_w: Tensor, uniform: float, order: Tensor | None = None) -> Tensor:
    """Ancestor indices for N particles from one shared uniform.

    With `order` (a permutation sorting the particles by a scalar summary), the cumulative weights
    are taken along it, so every stretch of that summary keeps its expected count to within one
    particle: in random order, component proportions drifted like a Wright-Fisher process over
    repeated resamplings once moves no longer switched components (0.50 -> 0.94, two components).
    """
    n = len(log_w)
    order = torch.arange(n) if order is None else order
    cdf = torch.softmax(log_w[order], 0).cumsum(0)
    points = (torch.arange(n, dtype=torch.float64) + uniform) / n
    picks = torch.searchsorted(cdf, points.clamp(max=float(cdf[-1]))).clamp(max=n - 1)
    return order[picks]


class NoisedData:
    """The likelihood of pi_beta: whitened data y_beta and operator sqrt(beta) B, noise I."""

    def __init__(self, likelihood: WhitenedLinearGaussian, xi: Tensor):
        self.likelihood = likelihood
        self.xi = xi
        self.model = likelihood.model

    def at(self, beta: float) -> TemperedLikelihood:
        return TemperedLikelihood(self, beta)

    def misfit(self, x: Tensor, beta: float) -> Tensor:
        """log N(y_beta; B x, I / beta) per member, up to a term independent of x."""
        return self.at(beta).log_likelihood(x)


class TemperedLikelihood:
    """`WhitenedLinearGaussian`'s interface (B, B_adjoint, residual) for pi_beta, so `guided`'s
    conditional denoiser samples pi_beta unchanged."""

    def __init__(self, path: NoisedData, beta: float):
        self.path, self.beta = path, beta
        scale = math.sqrt(beta)
        spread = math.sqrt(1.0 / beta - 1.0) if beta > 0 else 0.0
        self.y_white = scale * (path.likelihood.y_white + spread * path.xi)
        self.scale = scale

    def B(self, x: Tensor) -> Tensor:  # noqa: N802
        return self.scale * self.path.likelihood.B(x)

    def B_adjoint(self, r: Tensor) -> Tensor:  # noqa: N802
        return self.scale * self.path.likelihood.B_adjoint(r)

    def residual(self, x: Tensor) -> Tensor:
        return self.y_white - self.B(x)

    def precision_diagonal(self) -> Tensor | None:
        base = self.path.likelihood.precision_diagonal()
        return None if base is None else self.beta * base

    def mean_row_norm2(self) -> float:
        return self.path.likelihood.mean_row_norm2()

    def log_likelihood(self, x: Tensor) -> Tensor:
        return -0.5 * self.residual(x).flatten(1).square().sum(1)


def largest_mode_std(x: Tensor) -> float:
    """The ensemble's std along its widest Fourier mode (unitary FFT): the scale a move must span.

    Pixel stds understate it: the data decide a field's amplitude through its large-scale modes,
    whose spread is several times a pixel's, and moves that could not span them left those modes
    lagging behind the targets, which biased the weights against high-power components.
    """
    modes = torch.fft.fft2(x, norm="ortho")
    return float((modes.real.var(0) + modes.imag.var(0)).sqrt().max())


def next_beta(
    path: NoisedData,
    x: Tensor,
    log_w: Tensor,
    beta: float,
    cess_target: float,
    iterations: int = 40,
) -> tuple[float, Tensor]:
    """The largest beta' in (beta, 1] whose increment keeps the CESS >= target, and its terms."""
    current = path.misfit(x, beta) if beta > 0 else None

    def increment(candidate: float) -> tuple[Tensor, Tensor]:
        ll = path.misfit(x, candidate)
        return ll, ll if current is None else ll - current

    ll, inc = increment(1.0)
    if conditional_ess(log_w, inc) >= cess_target:
        return 1.0, inc
    # Bisection in log beta between one near enough (lo) and one too far (hi).
    lo, hi = math.log(max(beta, 1e-12)), 0.0
    best = None
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        ll, inc = increment(math.exp(mid))
        if conditional_ess(log_w, inc) >= cess_target:
            lo, best = mid, inc
        else:
            hi = mid
        if hi - lo < 1e-3:
            break
    if best is None:
        best = increment(math.exp(lo))[1]
    return math.exp(lo), best


def smc(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    rng: EnsembleRNG,
    steps: int = 2,
    callback: StepCallback | None = None,
    *,
    cess_target: float = 0.8,
    resample_below: float = 0.5,
    restart_factor: float = 2.0,
    restart_steps_per_decade: int = 10,
    prior_steps_per_decade: int = 16,
    max_levels: int = 200,
    checkpoint: Callable[[dict], None] | None = None,
    resume: dict | None = None,
) -> Tensor:
    """The ensemble of `len(rng)` members, with `steps` restart moves per level.

    `checkpoint(state)` receives the whole state after every level; `resume` (such a state, of
    the same run) continues from there, and the result is the uninterrupted run's."""
    likelihood = WhitenedLinearGaussian(model, y)
    shape = model.field_shape
    n = len(rng)
    diagnostics = SMCDiagnostics()
    shared = torch.Generator().manual_seed(rng.shared_seed())
    xi = torch.randn(likelihood.y_white.shape, generator=shared, dtype=torch.float64)
    # Only observed entries get noise: elsewhere it would sit in guided's CG residual for nothing.
    observed = likelihood.observed()
    path = NoisedData(likelihood, xi.to(likelihood.y_white) * observed)
    sigma_floor = prior.sigma_min()

    def levels_below(sigma: float, per_decade: int) -> Tensor:
        decades = max(math.log10(sigma / sigma_floor), 0.5)
        return log_uniform_sigmas(max(2, math.ceil(per_decade * decades)), sigma_floor, sigma)

    latent = prior.latent_components()
    if latent is None:
        parts, labels = [prior], torch.zeros(n, dtype=torch.long)
    else:  # each member carries a component k ~ pi, drawn from the shared stream
        weights, parts = latent
        labels = torch.multinomial(weights.double().cpu(), n, replacement=True, generator=shared)

    def by_component(move, x: Tensor) -> Tensor:
        """move(prior_k, x_k, noise_k) on each component's members; every member's stream
        advances alike, whatever its component."""
        noise = rng.randn(shape)
        out = x.clone()
        for k in labels.unique().tolist():
            index = (labels == k).nonzero().flatten().to(x.device)
            out[index] = move(parts[k], x[index], noise[index])
        return out

    def restart(x: Tensor, beta: float) -> Tensor:
        def move(part: Prior, x_k: Tensor, noise: Tensor) -> Tensor:
            spread = largest_mode_std(x_k if len(x_k) > 1 else x)
            # A fully collapsed ensemble has no spread left to scale by: restart from the floor.
            tau = max(restart_factor * spread, 10 * sigma_floor)
            denoise_y = conditional_denoiser(part, path.at(beta), cg_rtol=1e-3, cg_max_iter=3)
            levels = levels_below(tau, restart_steps_per_decade)
            return posterior_ode(denoise_y, x_k + tau * noise, levels)

        return by_component(move, x)

    def resample(log_w: Tensor, x: Tensor) -> Tensor:
        # Sorted by component, then by total power within it.
        order = torch.argsort(x.square().flatten(1).mean(1).cpu())
        order = order[torch.argsort(labels[order], stable=True)]
        return systematic_resample(log_w, float(torch.rand((), generator=shared)), order)

    sigma_max = prior.sigma_max()

    def prior_draw(part: Prior, x_k: Tensor, noise: Tensor) -> Tensor:
        index = (labels == parts.index(part)).nonzero().flatten().to(x_k.device)
        with torch.no_grad():
            return reverse_sde(
                part.denoise,
                sigma_max * noise,
                levels_below(sigma_max, prior_steps_per_decade).tolist(),
                lambda: rng.randn(shape)[index],
            )

    if resume is None:
        x = by_component(prior_draw, torch.zeros((n, *shape), dtype=torch.float64))  # beta = 0
        log_w, beta, first = torch.zeros(n, dtype=torch.float64), 0.0, 0
    else:
        x, log_w, beta, labels, first = _restore(resume, rng, shared, diagnostics, n, shape)
        x = x.to(likelihood.y_white.device)
    for i in range(first, max_levels):
        beta, increment = next_beta(path, x, log_w, beta, cess_target)
        log_w = log_w + increment.cpu()
        ess = effective_sample_size(log_w)
        diagnostics.betas.append(beta)
        diagnostics.ess.append(ess)
        last = beta == 1.0
        resampled = ess < resample_below or last
        diagnostics.resampled.append(resampled)
        if resampled:
            ancestors = resample(log_w, x)
            x, labels = x[ancestors.to(x.device)], labels[ancestors]
            log_w = torch.zeros(n, dtype=torch.float64)
            if last:
                diagnostics.final_ess = ess
                diagnostics.unique_fraction = len(ancestors.unique()) / n
        for _ in range(steps):
            x = restart(x, beta)
        if checkpoint is not None:
            checkpoint({
                "level": i, "beta": beta, "x": x.detach().cpu(), "log_w": log_w,
                "labels": labels, "shared": shared.get_state(), "members": rng.get_state(),
                "diagnostics": dataclasses.asdict(diagnostics),
            })  # fmt: skip
        report(callback, i=i, sigma=beta, x=x, denoised=x)
        if last:
            break
    else:
        raise RuntimeError(
            f"smc: beta = {beta:.3g} after {max_levels} levels; the weights degenerate too fast "
            "(raise max_levels or lower cess_target)"
        )
    if diagnostics.unique_fraction < LOW_UNIQUE_FRACTION:
        warnings.warn(
            f"smc: only {diagnostics.unique_fraction:.0%} of the members were distinct at the "
            f"last resampling (ESS {diagnostics.final_ess:.0%}) before the final moves; the "
            "ensemble may be poorer than its size suggests",
            EnsembleWarning,
            stacklevel=2,
        )
    diagnostics.component_fractions = torch.bincount(labels, minlength=len(parts)).div(n).tolist()
    report(callback, i=len(diagnostics.betas), sigma=1.0, x=x, denoised=x,
           diagnostics=diagnostics.as_dict())  # fmt: skip
    return x


def _restore(
    state: dict, rng: EnsembleRNG, shared: torch.Generator, diagnostics: SMCDiagnostics,
    n: int, shape: tuple[int, ...],
) -> tuple[Tensor, Tensor, float, Tensor, int]:  # fmt: skip
    """x, log_w, beta, labels and the next level from a checkpoint; the generators and the
    diagnostics are set in place. A state of another ensemble is refused."""
    x = torch.as_tensor(state["x"], dtype=torch.float64)
    if tuple(x.shape) != (n, *shape) or len(state["members"]) != n:
        raise ValueError(
            f"the saved SMC state holds {tuple(x.shape)} fields, this run {(n, *shape)}"
        )
    rng.set_state(state["members"])
    shared.set_state(state["shared"])
    for name, value in state["diagnostics"].items():
        setattr(diagnostics, name, value)
    labels = torch.as_tensor(state["labels"], dtype=torch.long)
    log_w = torch.as_tensor(state["log_w"], dtype=torch.float64)
    return x, log_w, float(state["beta"]), labels, int(state["level"]) + 1
