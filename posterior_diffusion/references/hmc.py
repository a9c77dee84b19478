"""Gold-standard posterior draws by batched HMC in a whitened latent space, and the convergence
diagnostics that certify them: rank-normalised split R-hat and bulk / tail ESS.

Sampler: Hoffman & Gelman (2014, JMLR 15, 1593), Algorithm 5 (HMC with dual averaging) for every
chain at once: each chain adapts its own step size during warm-up, integrates for a trajectory
length lambda (jittered each iteration, the same draw for all chains) with an identity mass matrix
(the latent is whitened, so the prior is N(0, I)), and runs max_c(L_c) leapfrog steps in lockstep,
frozen once its own L_c is done. Diagnostics: Vehtari, Gelman, Simpson, Carpenter & Buerkner (2021,
Bayesian Analysis 16, 667), written to match ArviZ's `rhat(method="rank")`, `ess(method="bulk")`
and `ess(method="tail")`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import fft as scipy_fft
from scipy import stats
from torch import Tensor

from ..priors.base import append_dims
from ..rng import member_seed

LogDensity = Callable[[Tensor], Tensor]  # u (chains, *shape) -> log p(u | y) + const, (chains,)

# ---------------------------------------------------------------------------------------------
# Convergence diagnostics. `draws` are (chains, iterations, *quantity_shape); every function
# returns one value per quantity, shape quantity_shape.


def _as_chains(draws) -> tuple[np.ndarray, tuple[int, ...]]:
    """(chains, iterations, Q) float64 and the quantity shape."""
    array = np.asarray(draws.detach().cpu() if hasattr(draws, "detach") else draws, np.float64)
    if array.ndim < 2:
        raise ValueError(f"draws must be (chains, iterations, ...), got shape {array.shape}")
    if array.shape[1] < 4:
        raise ValueError(f"need at least 4 iterations per chain, got {array.shape[1]}")
    return array.reshape(array.shape[0], array.shape[1], -1), array.shape[2:]


def split_chains(draws: np.ndarray) -> np.ndarray:
    """Each chain cut into its first and last halves (the middle draw dropped if odd)."""
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, draws.shape[1] - half :]], axis=0)


def rank_normalize(draws: np.ndarray) -> np.ndarray:
    """z = Phi^-1((r - 3/8) / (S + 1/4)), r the average rank among all S draws of a quantity."""
    chains, iterations, quantities = draws.shape
    ranks = stats.rankdata(draws.reshape(-1, quantities), method="average", axis=0)
    z = stats.norm.ppf((ranks - 0.375) / (ranks.shape[0] + 0.25))
    return z.reshape(chains, iterations, quantities)


def _constant(draws: np.ndarray) -> np.ndarray:
    flat = draws.reshape(-1, draws.shape[-1])
    return (flat.max(0) - flat.min(0)) <= np.finfo(float).resolution * np.abs(flat).max(0)


def _rhat(draws: np.ndarray) -> np.ndarray:
    """The classic potential scale reduction of Gelman & Rubin on the chains as given."""
    iterations = draws.shape[1]
    within = draws.var(axis=1, ddof=1).mean(0)
    between = iterations * draws.mean(axis=1).var(axis=0, ddof=1)
    var_plus = (iterations - 1) / iterations * within + between / iterations
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var_plus / within)


def split_rhat(draws) -> np.ndarray:
    """Rank-normalised split R-hat: the larger of the bulk and the folded (tail) R-hat.

    A quantity that never changes gets 1 (nothing to mix), as ArviZ gives it no value at all.
    """
    array, shape = _as_chains(draws)
    split = split_chains(array)
    bulk = _rhat(rank_normalize(split))
    folded = np.abs(split - np.median(split.reshape(-1, split.shape[-1]), axis=0))
    tail = _rhat(rank_normalize(folded))
    out = np.where(_constant(array), 1.0, np.maximum(bulk, tail))
    return out.reshape(shape)


def _autocovariance(draws: np.ndarray) -> np.ndarray:
    """Biased (1 / n) autocovariance per chain and quantity, lags 0..n-1, by FFT."""
    iterations = draws.shape[1]
    centred = draws - draws.mean(axis=1, keepdims=True)
    size = scipy_fft.next_fast_len(2 * iterations)
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(spectrum * spectrum.conj(), n=size, axis=1)[:, :iterations] / iterations


def _ess(draws: np.ndarray) -> np.ndarray:
    """Multi-chain ESS with Geyer's initial monotone sequence (Vehtari et al. 2021, eq. 10-11).

    rho_t = 1 - (W - mean_m acov_m(t)) / var_plus over all chains; pairs rho_2k + rho_2k+1 are
    summed while positive, made monotone, and the first dropped pair's even term is kept if > 0.
    """
    chains, iterations, quantities = draws.shape
    acov = _autocovariance(draws)
    within = acov[:, 0].mean(0) * iterations / (iterations - 1)
    var_plus = within * (iterations - 1) / iterations
    if chains > 1:
        var_plus = var_plus + draws.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (within - acov.mean(0)) / var_plus  # (iterations, Q)
    rho[0] = 1.0
    pairs_count = max((iterations - 3) // 2 + 1, 1)  # ArviZ computes pair k while 2k - 1 < n - 3
    pairs = rho[0 : 2 * pairs_count : 2] + rho[1 : 2 * pairs_count : 2]  # (K, Q)
    stop = pairs <= 0
    any_stop = stop.any(0)
    end = np.where(any_stop, stop.argmax(0), pairs_count - 1)  # first pair left out
    monotone = np.minimum.accumulate(pairs, axis=0)
    kept = np.arange(pairs_count)[:, None] < end[None, :]
    last_even = rho[2 * end, np.arange(quantities)]
    last_even = np.where(any_stop, np.maximum(last_even, 0.0), last_even)
    tau = -1.0 + 2.0 * np.where(kept, monotone, 0.0).sum(0) + last_even
    total = chains * iterations
    tau = np.maximum(tau, 1.0 / math.log10(total))
    ess = total / tau
    ess = np.where(np.isnan(rho).any(0), np.nan, ess)
    return np.where(_constant(draws), float(total), ess)


def effective_sample_size(draws) -> np.ndarray:
    """Multi-chain ESS of the draws as they are (no splitting, no rank normalisation)."""
    array, shape = _as_chains(draws)
    return _ess(array).reshape(shape)


def ess_bulk(draws) -> np.ndarray:
    """Bulk ESS: the ESS of the rank-normalised split chains."""
    array, shape = _as_chains(draws)
    return _ess(rank_normalize(split_chains(array))).reshape(shape)


def ess_tail(draws) -> np.ndarray:
    """Tail ESS: the smaller ESS of the indicators I(x <= q_5%) and I(x <= q_95%), split chains."""
    array, shape = _as_chains(draws)
    flat = array.reshape(-1, array.shape[-1])
    low, high = np.quantile(flat, [0.05, 0.95], axis=0)
    split = split_chains(array)
    ess_low = _ess((split <= low).astype(np.float64))
    ess_high = _ess((split <= high).astype(np.float64))
    return np.minimum(ess_low, ess_high).reshape(shape)


class Convergence(NamedTuple):
    rhat: np.ndarray  # rank-normalised split R-hat, per quantity
    ess_bulk: np.ndarray
    ess_tail: np.ndarray


def convergence(draws) -> Convergence:
    """R-hat, bulk ESS and tail ESS of draws (chains, iterations, *quantity_shape)."""
    return Convergence(split_rhat(draws), ess_bulk(draws), ess_tail(draws))


def global_statistics(fields: np.ndarray) -> dict[str, np.ndarray]:
    """Scalar summaries of fields (..., C, H, W) that a per-pixel check misses.

    log_total_power: log of the power summed over all Fourier modes per pixel, which by Parseval
    is log mean(x^2); field_mean: the k = 0 mode; field_max: the highest pixel (tails, peaks).
    """
    flat = fields.reshape(*fields.shape[:-3], -1)
    return {
        "log_total_power": np.log(np.mean(flat**2, axis=-1)),
        "field_mean": flat.mean(-1),
        "field_max": flat.max(-1),
    }


# ---------------------------------------------------------------------------------------------
# The sampler.


@dataclass(frozen=True)
class HMCSettings:
    chains: int = 16  # chains run in lockstep as one batch
    warmup: int = 500  # adaptation iterations per chain, discarded
    draws: int = 1000  # iterations per chain kept after warm-up
    thin: int = 4  # every thin-th draw is stored as a sample (diagnostics use all draws)
    target_accept: float = 0.8  # dual-averaging target for the Metropolis acceptance rate
    trajectory_length: float = math.pi / 2  # lambda: a quarter period for a unit-std direction
    jitter: float = 0.5  # lambda is drawn from lambda * U(1 - jitter, 1 + jitter) per iteration
    max_steps: int = 1024  # cap on leapfrog steps per iteration (reached only with tiny steps)
    init_scale: float = 1.0  # gold_standard_posterior starts chains at init_scale * N(0, I)
    seed: int = 0  # chain c draws from its own stream member_seed(seed, c)


class DualAveraging:
    """Nesterov dual averaging of log step size, per chain (Hoffman & Gelman 2014, Algorithm 5)."""

    gamma, t0, kappa = 0.05, 10.0, 0.75

    def __init__(self, step_size: Tensor, target: float):
        self.target = target
        self.restart(step_size)

    def restart(self, step_size: Tensor) -> None:
        self.mu = torch.log(10.0 * step_size)
        self.h_bar = torch.zeros_like(step_size)
        # Any start is forgotten after one update (weight 1); this one makes `final` the step
        # size given when no update has been made (no warm-up).
        self.log_step_bar = torch.log(step_size)
        self.m = 0

    def update(self, accept_prob: Tensor) -> Tensor:
        """The next step size to use after an iteration with Metropolis probability accept_prob."""
        self.m += 1
        m = self.m
        eta = 1.0 / (m + self.t0)
        self.h_bar = (1 - eta) * self.h_bar + eta * (self.target - accept_prob)
        log_step = self.mu - math.sqrt(m) / self.gamma * self.h_bar
        weight = m ** (-self.kappa)
        self.log_step_bar = weight * log_step + (1 - weight) * self.log_step_bar
        return log_step.exp()

    @property
    def final(self) -> Tensor:
        return self.log_step_bar.exp()


class HMCRun(NamedTuple):
    fields: np.ndarray  # (chains, draws, C, H, W): every post-warm-up draw in field space
    log_density: np.ndarray  # (chains, draws): log p(u | y) + const at each draw
    step_size: np.ndarray  # (chains,) after warm-up
    accept_rate: np.ndarray  # (chains,) mean Metropolis probability after warm-up
    divergences: np.ndarray  # (chains,) after warm-up (energy error > 1000 or not finite)
    gradients: int  # gradient evaluations per chain, warm-up included (lockstep: the max)
    sampling_gradients: int  # of which after warm-up
    wall_seconds: float


def _value_and_grad(log_density: LogDensity, u: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        value = log_density(u)
        (grad,) = torch.autograd.grad(value.sum(), u)
    return value.detach(), grad.detach()


_DIVERGENCE = 1000.0  # energy error that marks a divergent trajectory (Stan's threshold)


def _hamiltonian(value: Tensor, p: Tensor) -> Tensor:
    """-log p(u | y) + |p|^2 / 2: the identity mass matrix of a whitened latent."""
    return -value + 0.5 * p.flatten(1).square().sum(1)


class _Integrator:
    """Leapfrog with a per-chain step size and step count, all chains in lockstep."""

    def __init__(self, log_density: LogDensity):
        self.log_density = log_density
        self.gradients = 0

    def __call__(
        self, u: Tensor, p: Tensor, value: Tensor, grad: Tensor, step: Tensor, n_steps: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(u, p, log density, grad, diverged) after n_steps[c] steps of size step[c]. Diverged:
        the energy error at the end passes _DIVERGENCE or is not finite (a trajectory that blew
        up carries its inf or NaN to the end; chains never mix, so it harms no other chain)."""
        energy0 = _hamiltonian(value, p)
        eps = append_dims(step, u.ndim)
        p = p + 0.5 * eps * grad
        shortest, longest = int(n_steps.min()), int(n_steps.max())
        for i in range(1, longest + 1):
            if i < shortest:  # every chain takes a full step: no masks needed
                u = u + eps * p
                value, grad = _value_and_grad(self.log_density, u)
                p = p + eps * grad
            else:
                moving = append_dims(n_steps >= i, u.ndim)
                u = torch.where(moving, u + eps * p, u)
                value_new, grad_new = _value_and_grad(self.log_density, u)
                kick = torch.where(n_steps > i, 1.0, 0.5) * (n_steps >= i)
                p = p + append_dims(kick, u.ndim) * eps * grad_new
                grad = torch.where(moving, grad_new, grad)
                value = torch.where(n_steps >= i, value_new, value)
            self.gradients += 1
        energy_error = _hamiltonian(value, p) - energy0
        diverged = ~torch.isfinite(energy_error) | (energy_error > _DIVERGENCE)
        return u, p, value, grad, diverged


_SCHEDULE_STREAM = 1 << 40  # the jitter's stream index, beyond any chain's


class _Streams:
    """One generator per chain (momenta, accept draws) and one shared for the jitter schedule."""

    def __init__(self, seed: int, chains: int):
        self.chains = [torch.Generator().manual_seed(member_seed(seed, c)) for c in range(chains)]
        self.schedule = torch.Generator().manual_seed(member_seed(seed, _SCHEDULE_STREAM))

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        return torch.stack(
            [torch.randn(shape, generator=g, dtype=torch.float64) for g in self.chains]
        )

    def uniform(self) -> Tensor:
        return torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.chains])


def _initial_step_size(
    integrate: _Integrator, u: Tensor, value: Tensor, grad: Tensor, streams: _Streams
) -> Tensor:
    """Hoffman & Gelman (2014) Algorithm 4, per chain: double or halve until the one-step
    acceptance probability crosses 1/2."""
    chains = u.shape[0]
    p = streams.randn(tuple(u.shape[1:]))
    one = torch.ones(chains, dtype=torch.long)
    h0 = _hamiltonian(value, p)

    def log_ratio(step: Tensor) -> Tensor:
        _, p_new, value_new, _, _ = integrate(u, p, value, grad, step, one)
        ratio = h0 - _hamiltonian(value_new, p_new)
        return torch.where(torch.isfinite(ratio), ratio, -torch.inf)

    step = torch.ones(chains, dtype=torch.float64)
    ratio = log_ratio(step)
    direction = torch.where(ratio > -math.log(2.0), 1.0, -1.0)
    active = torch.ones(chains, dtype=torch.bool)
    for _ in range(60):
        active &= direction * ratio > -direction * math.log(2.0)
        if not active.any():
            break
        step = torch.where(active, step * 2.0**direction, step)
        ratio = log_ratio(step)
    return step


def hmc(
    log_density: LogDensity,
    initial: Tensor,
    settings: HMCSettings,
    transform: Callable[[Tensor], Tensor] = lambda u: u,
) -> HMCRun:
    """Run settings.chains HMC chains from `initial` (chains, *shape) and return all kept draws.

    Warm-up: an initial step size per chain (Algorithm 4), then dual averaging towards
    target_accept, restarted from the current step sizes after 15% of warm-up (Stan's initial
    buffer), once chains that started far out have reached the typical set. After warm-up the
    step sizes are frozen. Each iteration runs L_c = ceil(lambda / step_c) leapfrog steps, with
    lambda jittered; chains done before the longest one wait.

    Args:
        log_density: u (chains, *shape) float64 -> log p(u | y) + const (chains,); differentiable.
        initial: starting points (chains, *shape).
        settings: run lengths, adaptation target and trajectory length.
        transform: latent -> field (chains, C, H, W), applied to every kept draw.
    """
    start = time.perf_counter()
    u = initial.detach().to(torch.float64).clone()
    chains = u.shape[0]
    if chains != settings.chains:
        raise ValueError(f"initial has {chains} chains but settings ask for {settings.chains}")
    streams = _Streams(settings.seed, chains)
    integrate = _Integrator(log_density)
    value, grad = _value_and_grad(log_density, u)
    step = _initial_step_size(integrate, u, value, grad, streams)
    adapt = DualAveraging(step, settings.target_accept)
    restart_at = int(0.15 * settings.warmup)

    field_shape = tuple(transform(u[:1]).shape[1:])
    fields = np.empty((chains, settings.draws, *field_shape))
    log_values = np.empty((chains, settings.draws))
    accept_sum = torch.zeros(chains, dtype=torch.float64)
    divergences = torch.zeros(chains, dtype=torch.long)
    warmup_gradients = 0
    for iteration in range(settings.warmup + settings.draws):
        if iteration == settings.warmup:
            step = adapt.final
            warmup_gradients = integrate.gradients
        elif iteration == restart_at:
            adapt.restart(step)
        p = streams.randn(tuple(u.shape[1:]))
        spread = 2 * torch.rand(1, generator=streams.schedule, dtype=torch.float64) - 1
        length = settings.trajectory_length * (1 + settings.jitter * spread)
        n_steps = torch.ceil(length / step).clamp(1, settings.max_steps).long()
        u_new, p_new, value_new, grad_new, diverged = integrate(u, p, value, grad, step, n_steps)
        log_accept = _hamiltonian(value, p) - _hamiltonian(value_new, p_new)
        log_accept = torch.where(diverged | ~torch.isfinite(log_accept), -torch.inf, log_accept)
        accept_prob = log_accept.clamp(max=0.0).exp()
        accept = torch.log(streams.uniform()) < log_accept
        u = torch.where(append_dims(accept, u.ndim), u_new, u)
        value = torch.where(accept, value_new, value)
        grad = torch.where(append_dims(accept, u.ndim), grad_new, grad)
        if iteration < settings.warmup:
            step = adapt.update(accept_prob)
            continue
        index = iteration - settings.warmup
        accept_sum += accept_prob
        divergences += diverged.long()
        fields[:, index] = transform(u).numpy()
        log_values[:, index] = value.numpy()
    return HMCRun(
        fields=fields,
        log_density=log_values,
        step_size=step.numpy(),
        accept_rate=(accept_sum / max(settings.draws, 1)).numpy(),
        divergences=divergences.numpy(),
        gradients=integrate.gradients,
        sampling_gradients=integrate.gradients - warmup_gradients,
        wall_seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------------------------
# The result.


@dataclass
class GoldStandardPosterior:
    """Posterior draws from converged HMC chains, with their diagnostics and run settings.

    `mean` and `std` use every post-warm-up draw; `samples` holds every settings["thin"]-th,
    chain by chain (chain c is samples[c * per_chain : (c + 1) * per_chain]).
    """

    samples: Tensor  # (N, C, H, W) float64, thinned draws in field space
    mean: Tensor  # (C, H, W)
    std: Tensor  # (C, H, W)
    rhat: Tensor  # (C, H, W) rank-normalised split R-hat per pixel
    ess_bulk: Tensor  # (C, H, W)
    ess_tail: Tensor  # (C, H, W)
    global_statistics: dict[str, dict[str, float]]  # name -> mean, std, rhat, ess_bulk, ess_tail
    settings: dict[str, Any]  # HMC settings, plus whatever the caller adds (problem, data)
    sampler: dict[str, Any] = field(default_factory=dict)  # step sizes, acceptance, cost, time

    @property
    def max_rhat(self) -> float:
        """The largest R-hat over every pixel and every global statistic."""
        rhats = [float(self.rhat.max())] + [s["rhat"] for s in self.global_statistics.values()]
        return max(rhats)

    @property
    def min_ess(self) -> float:
        """The smallest bulk or tail ESS over every pixel and every global statistic."""
        values = [float(self.ess_bulk.min()), float(self.ess_tail.min())]
        for s in self.global_statistics.values():
            values += [s["ess_bulk"], s["ess_tail"]]
        return min(values)

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """`num` distinct stored draws (num, C, H, W) in random order, without replacement."""
        if num > self.samples.shape[0]:
            raise ValueError(
                f"asked for {num} draws but only {self.samples.shape[0]} are stored; run longer "
                "chains or thin less"
            )
        order = torch.randperm(self.samples.shape[0], generator=generator)[:num]
        return self.samples[order]

    def chain_draws(self) -> Tensor:
        """The stored draws as (chains, per_chain, C, H, W), to diagnose any function of them."""
        return self.samples.reshape(self.settings["chains"], -1, *self.samples.shape[1:])

    def summary(self) -> dict[str, Any]:
        """The numbers worth printing: convergence, cost and time."""
        return {
            "max_rhat": self.max_rhat,
            "min_ess": self.min_ess,
            "median_ess_bulk": float(self.ess_bulk.median()),
            "global_statistics": self.global_statistics,
            **{k: v for k, v in self.sampler.items() if not isinstance(v, list)},
        }

    @classmethod
    def from_run(cls, run: HMCRun, settings: HMCSettings, **extra: Any) -> GoldStandardPosterior:
        """Diagnose a run: R-hat and ESS for every pixel, the global statistics and log p."""
        chains, draws = run.fields.shape[:2]
        field_shape = run.fields.shape[2:]
        pixels = run.fields.reshape(chains, draws, -1)
        globals_ = {"log_density": run.log_density, **global_statistics(run.fields)}
        stacked = np.concatenate([pixels, np.stack(list(globals_.values()), axis=-1)], axis=-1)
        diagnosis = convergence(stacked)
        n_pixels = pixels.shape[-1]
        summaries = {
            name: {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)),
                "rhat": float(diagnosis.rhat[n_pixels + i]),
                "ess_bulk": float(diagnosis.ess_bulk[n_pixels + i]),
                "ess_tail": float(diagnosis.ess_tail[n_pixels + i]),
            }
            for i, (name, values) in enumerate(globals_.items())
        }

        def per_pixel(values: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(values[:n_pixels])).reshape(field_shape)

        flat = run.fields.reshape(chains * draws, *field_shape)
        thinned = run.fields[:, :: settings.thin].reshape(-1, *field_shape)
        return cls(
            samples=torch.from_numpy(np.ascontiguousarray(thinned)),
            mean=torch.from_numpy(flat.mean(0)),
            std=torch.from_numpy(flat.std(0, ddof=1)),
            rhat=per_pixel(diagnosis.rhat),
            ess_bulk=per_pixel(diagnosis.ess_bulk),
            ess_tail=per_pixel(diagnosis.ess_tail),
            global_statistics=summaries,
            settings={**asdict(settings), **extra},
            sampler={
                "wall_seconds": run.wall_seconds,
                "gradients_per_chain": run.gradients,
                "sampling_gradients_per_draw": run.sampling_gradients / max(draws, 1),
                "divergences": int(run.divergences.sum()),
                "accept_rate_mean": float(run.accept_rate.mean()),
                "step_size_min": float(run.step_size.min()),
                "step_size_max": float(run.step_size.max()),
                "step_size": run.step_size.tolist(),
                "accept_rate": run.accept_rate.tolist(),
            },
        )

    def save(self, path: str | Path, arrays: dict[str, np.ndarray] | None = None) -> None:
        """An .npz file: samples as float32 (to keep it small), the rest float64, settings and
        sampler as JSON; `arrays` (truth, data, ...) are stored beside them under their names."""
        meta = {
            "settings": self.settings,
            "sampler": self.sampler,
            "global_statistics": self.global_statistics,
        }
        np.savez_compressed(
            path,
            samples=self.samples.numpy().astype(np.float32),
            mean=self.mean.numpy(),
            std=self.std.numpy(),
            rhat=self.rhat.numpy(),
            ess_bulk=self.ess_bulk.numpy(),
            ess_tail=self.ess_tail.numpy(),
            meta=np.array(json.dumps(meta)),
            **(arrays or {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> GoldStandardPosterior:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            tensors = {
                k: torch.from_numpy(data[k].astype(np.float64))
                for k in ("samples", "mean", "std", "rhat", "ess_bulk", "ess_tail")
            }
        return cls(
            **tensors,
            global_statistics=meta["global_statistics"],
            settings=meta["settings"],
            sampler=meta["sampler"],
        )
