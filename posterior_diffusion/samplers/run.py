"""Run a sampler over an ensemble in batches: run checks, sampler choice, progress, divergence
checks, interrupts, cost counts."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from forward_models.base import ForwardModel
from posterior_diffusion.memory import MEMORY_FRACTION, fitting_batch_size
from posterior_diffusion.priors.base import CovarianceProduct, Prior
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers import DEFAULT_SAMPLER, FALLBACK_SAMPLER, SAMPLERS, get_sampler
from posterior_diffusion.samplers.refine import (
    EVALUATIONS_PER_MOVE,
    MoveStatistics,
    check_acceptance,
)

DIVERGENCE_FACTOR = 1e6


class SamplerDivergence(RuntimeError):
    """A member's sampler state became NaN, infinite, or absurdly large (named in the message)."""


class SamplingInterrupted(Exception):
    """Ctrl-C during sampling; `samples` holds the members completed before it."""

    def __init__(self, samples: Tensor, info: dict[str, Any]):
        super().__init__(f"interrupted after {samples.shape[0]} completed samples")
        self.samples, self.info = samples, info


# Progress-bar steps per refinement move of guided (`sample_posterior`'s bar): a step of guided
# costs about 4 prior evaluations.
REFINE_MOVE_STEPS = EVALUATIONS_PER_MOVE // 4


def check_run_settings(
    num_samples: int = 1,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
) -> None:
    """Refuse run settings no sampler can use, one line each (ValueError)."""
    if int(num_samples) < 1:
        raise ValueError(f"number of samples must be >= 1, got {num_samples}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"number of steps must be >= 1, got {steps}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not 0 <= int(seed) < 2**63:  # the output records it as a 64-bit integer
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device '{device}' (use cpu or cuda)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available here")


def choose_sampler(sampler: str | None, model: ForwardModel) -> str:
    """The sampler to run on `model`: `sampler`, checked against the model, or by default
    DEFAULT_SAMPLER for a linear model with Gaussian noise and FALLBACK_SAMPLER otherwise."""
    if sampler is None:
        return DEFAULT_SAMPLER if model.is_linear_gaussian else FALLBACK_SAMPLER
    if get_sampler(sampler).needs_linear_gaussian and not model.is_linear_gaussian:
        raise ValueError(
            f"sampler '{sampler}' needs a linear forward model with Gaussian noise; "
            f"'{model.name}' is not (use --sampler {FALLBACK_SAMPLER})"
        )
    return sampler


class CountingPrior(Prior):
    """Counts denoiser calls and covariance products (each costs about one network pass).

    `fields_evaluated` counts them per field, for samplers whose calls do not all take the whole
    batch (an ensemble sampler's moves, one latent component at a time); components count into
    their parent's.
    """

    def __init__(self, prior: Prior, parent: CountingPrior | None = None):
        super().__init__()
        self.inner = prior
        self.parent = parent
        self.field_shape = prior.field_shape
        self.fields_evaluated = {"denoiser_calls": 0, "covariance_products": 0}

    def _count(self, kind: str, x: Tensor) -> None:
        self.fields_evaluated[kind] += x.reshape(-1, *x.shape[-3:]).shape[0]
        if self.parent is not None:
            self.parent._count(kind, x)

    def denoise(self, x: Tensor, sigma) -> Tensor:
        self._count("denoiser_calls", x)
        return self.inner.denoise(x, sigma)

    def linearize(self, x: Tensor, sigma) -> tuple[Tensor, CovarianceProduct]:
        self._count("denoiser_calls", x)
        x0_hat, cov = self.inner.linearize(x, sigma)

        def counted(v: Tensor) -> Tensor:
            self._count("covariance_products", v)
            return cov(v)

        return x0_hat, counted

    @property
    def learned(self) -> bool:
        return self.inner.learned

    def second_moment_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        return self.inner.second_moment_power(field_shape)

    def stationary_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        return self.inner.stationary_power(field_shape)

    def latent_components(self) -> tuple[Tensor, list[Prior]] | None:
        latent = self.inner.latent_components()
        if latent is None:
            return None
        weights, components = latent
        return weights, [CountingPrior(c, parent=self) for c in components]

    def sigma_max(self) -> float:
        return self.inner.sigma_max()

    def sigma_min(self) -> float:
        return self.inner.sigma_min()

    def data_std(self) -> float:
        return self.inner.data_std()

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()


# Most members per batch by default. On the CPU, large batches gain nothing (the README's main
# job, 64 x 64 default prior: one thread, 16 samples in 21.7 s at batch 16, 20.4 s at 8, 24.9 s
# at 4; two threads, all 64 samples in 88.9 s at batch 64 and 55.5 s at 8), so there an ensemble
# goes in about 8 batches of at least 8, each saved to the resume journal as it finishes: a kill
# loses at most an eighth of it. A GPU is only busy with full batches: up to 64 at once.
MAX_DEFAULT_BATCH = 64


def default_batch_size(num_samples: int, device: str | torch.device) -> int:
    if torch.device(device).type == "cpu":
        return min(num_samples, MAX_DEFAULT_BATCH, max(8, math.ceil(num_samples / 8)))
    return min(num_samples, MAX_DEFAULT_BATCH)


def sample_posterior(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    num_samples: int,
    sampler: str | None = DEFAULT_SAMPLER,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
    options: dict[str, Any] | None = None,
    members: Sequence[int] | None = None,
    on_batch: Callable[[list[int], Tensor], None] | None = None,
    memory_share: float = 1.0,
    ensemble_state: EnsembleStateStore | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Draw `num_samples` posterior samples of the field given data `y` (shape model.data_shape).

    `sampler` None chooses by the model (`choose_sampler`). Member i is always drawn from the
    random stream (seed, i), so results do not depend on `batch_size` (on one kind of device).
    The batch size (default: `default_batch_size`) is capped at what the memory estimate says
    fits on `device`, and halved if a batch still runs out of memory.
    Returns samples (num_samples, C, H, W) in float64 on the CPU and an info dict
    (sampler, steps, options, seed, nfe_per_sample, seconds, ...).

    `members` draws only those member indices (a resumed run: the rest are done), in that
    order; `on_batch(indices, samples)` receives each finished batch (to save it at once).
    `memory_share` is the fraction of the device's free memory this process may plan for
    (ranks of a sharded run on one CPU host share its memory). `ensemble_state` keeps an
    ensemble-level sampler's state between levels (`SamplerSpec.checkpoints`): a run killed
    mid-way continues from its last level instead of starting again.
    """
    check_run_settings(num_samples, steps, seed, batch_size, device)
    sampler = choose_sampler(sampler, model)
    spec = SAMPLERS[sampler]
    todo = list(range(num_samples)) if members is None else [int(m) for m in members]
    if any(not 0 <= m < num_samples for m in todo):
        raise ValueError(f"members must lie in [0, {num_samples}), got {todo}")
    options = spec.with_defaults(options, prior, model)
    spec.check_options(options)
    steps = int(spec.steps_for(options) if steps is None else steps)
    y = torch.as_tensor(y)
    if tuple(y.shape) != tuple(model.data_shape):
        raise ValueError(
            f"y has shape {tuple(y.shape)}, the forward model expects {model.data_shape}"
        )
    device = torch.device(device)
    counting = CountingPrior(prior).to(device)
    model = copy.deepcopy(model).to(device)  # the caller's model stays where it was
    y = y.to(device=device, dtype=dtype)
    fits, per_member = fitting_batch_size(
        counting.inner, model.field_shape, device, dtype, MEMORY_FRACTION * memory_share
    )
    if batch_size is not None and int(batch_size) > fits:
        warnings.warn(
            f"batch size {batch_size} does not fit in memory on {device} (about "
            f"{per_member / 2**20:.0f} MiB per member); using {fits}",
            stacklevel=2,
        )
    batch_size = min(int(batch_size or default_batch_size(num_samples, device)), fits)
    if spec.ensemble:
        return _sample_ensemble(spec, counting, model, y, num_samples, todo, steps, seed, device,
                                progress, options, on_batch, fits, per_member,
                                ensemble_state)  # fmt: skip
    info: dict[str, Any] = {"sampler": sampler, "steps": steps, "options": options, "seed": seed}
    done: list[Tensor] = []
    start = time.perf_counter()
    prepared: dict[str, Any] = {}
    if spec.prepare is not None:
        prepared, diagnostics = spec.prepare(counting, model, y, seed, steps, options)
        if diagnostics:
            info["sampler_diagnostics"] = diagnostics
    costs = _costs(counting, 0, start)
    # the bar counts each of guided's refinement moves as REFINE_MOVE_STEPS member-steps, so its
    # rate and ETA hold across that level
    bar_steps = steps + REFINE_MOVE_STEPS * int(options.get("refine_moves", 0))
    bar = tqdm(total=len(todo) * bar_steps, unit="member-step", disable=not progress, desc=sampler)

    # No sampler state legitimately exceeds the largest noise level by orders of magnitude.
    limit = DIVERGENCE_FACTOR * float(counting.sigma_max())

    def check_finite(x: Tensor, where: str) -> None:
        size = x.detach().flatten(1).abs().amax(1)
        bad = ~(size <= limit)  # NaN compares False, so it counts as bad
        if bool(bad.any()):
            names = [str(batch[i]) for i in bad.nonzero().flatten().tolist()]
            what = "NaN/inf" if not bool(torch.isfinite(size[bad]).all()) else f"|x| > {limit:.3g}"
            raise SamplerDivergence(
                f"sampler '{sampler}' diverged ({what}) {where}, in member(s) "
                f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''} "
                f"({len(names)} of {len(batch)} in the batch)"
            )

    refinement, batch_refinement = MoveStatistics(), {}

    def on_step(state: dict[str, Any]) -> None:
        if state.get("refine_move"):  # one refinement move of the batch (`samplers/refine.py`)
            bar.update(state["x"].shape[0] * REFINE_MOVE_STEPS)
            return
        check_finite(state["x"], f"at step {state['i']}, sigma = {state['sigma']:.4g}")
        bar.update(state["x"].shape[0])
        if "refinement" in state:  # the batch's refinement statistics
            batch_refinement["latest"] = state["refinement"]

    try:
        first = 0
        while first < len(todo):
            batch = todo[first : first + batch_size]
            fields = dict(counting.fields_evaluated)
            try:
                rng = EnsembleRNG(seed, batch, device)
                x = spec.function(counting, model, y, rng, steps, on_step, **options, **prepared)
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if batch_size == 1 or not _out_of_memory(err):
                    raise
                # Members have their own random streams, so a smaller batch gives the same draws.
                batch_size = max(1, len(batch) // 2)
                counting.fields_evaluated = fields
                batch_refinement.clear()
                bar.n = first * bar_steps
                bar.refresh()
                _release_cached_memory(device)
                continue
            check_finite(x, "in its final output")
            done.append(x.detach().to("cpu", torch.float64))
            if "latest" in batch_refinement:
                refinement.add(batch_refinement.pop("latest"))
            if on_batch is not None:
                on_batch(batch, done[-1])
            first += len(batch)
            costs = _costs(counting, first, start)  # only completed batches count
    except KeyboardInterrupt:
        info.update(costs)
        raise SamplingInterrupted(_stack(done, model.field_shape), info) from None
    finally:
        bar.close()
    info.update(costs)
    info["batch_size"] = batch_size
    if refinement.moves:
        info.setdefault("sampler_diagnostics", {})["refinement"] = refinement.as_dict()
        check_acceptance(refinement)
    return _stack(done, model.field_shape), info


def _sample_ensemble(
    spec, counting: CountingPrior, model: ForwardModel, y: Tensor, num_samples: int,
    todo: list[int], steps: int, seed: int, device: torch.device, progress: bool,
    options: dict[str, Any], on_batch, fits: int, per_member: float,
    store: EnsembleStateStore | None = None,
) -> tuple[Tensor, dict[str, Any]]:  # fmt: skip
    """An ensemble-level sampler: all `num_samples` members in one call, `todo` kept.

    The members' values depend only on the seed and the ensemble size, so a resumed or sharded
    run that asks for some members gets those of the uninterrupted run (it redraws the rest).
    """
    name = spec.function.__name__
    if num_samples > fits:
        warnings.warn(
            f"sampler '{name}' draws its {num_samples} members together; the memory estimate "
            f"fits {fits} (about {per_member / 2**20:.0f} MiB per member)",
            stacklevel=3,
        )
    info: dict[str, Any] = {"sampler": name, "steps": steps, "options": options, "seed": seed}
    start = time.perf_counter()
    bar = tqdm(total=None, unit="level", disable=not progress, desc=name)
    limit = DIVERGENCE_FACTOR * float(counting.sigma_max())

    def on_step(state: dict[str, Any]) -> None:
        size = state["x"].detach().flatten(1).abs().amax(1)
        if not bool((size <= limit).all()):
            raise SamplerDivergence(
                f"sampler '{name}' diverged at level {state['i']} ({state['sigma']:.4g})"
            )
        if "diagnostics" in state:
            info["sampler_diagnostics"] = state["diagnostics"]
        bar.set_postfix(level=f"{state['sigma']:.3g}")
        bar.update(1)

    saving: dict[str, Any] = {}
    if store is not None and spec.checkpoints:
        resume = store.load_ensemble_state()
        saving = {"checkpoint": store.save_ensemble_state, "resume": resume}
        if resume is not None:
            info["resumed_after_level"] = int(resume["level"])
    try:
        rng = EnsembleRNG(seed, range(num_samples), device)
        x = spec.function(counting, model, y, rng, steps, on_step, **options, **saving)
    except KeyboardInterrupt:
        info["seconds"] = time.perf_counter() - start
        raise SamplingInterrupted(_stack([], model.field_shape), info) from None
    finally:
        bar.close()
    kept = x.detach().to("cpu", torch.float64)[torch.tensor(todo, dtype=torch.long)]
    if on_batch is not None and todo:
        on_batch(list(todo), kept)
    info.update(_costs(counting, num_samples, start))
    info["batch_size"] = num_samples
    return kept, info


class EnsembleStateStore(Protocol):
    """Where an ensemble-level sampler's state is kept between levels (a run's journal)."""

    def load_ensemble_state(self) -> dict[str, Any] | None: ...

    def save_ensemble_state(self, state: dict[str, Any]) -> None: ...


def _stack(done: list[Tensor], field_shape) -> Tensor:
    return torch.cat(done) if done else torch.empty((0, *field_shape), dtype=torch.float64)


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err)


def _release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _costs(counting: CountingPrior, members_done: int, start: float) -> dict[str, Any]:
    """Prior evaluations per sample, counted per field evaluated: a sampler's calls on fewer
    fields than its batch (pilot ensembles, one latent component) cost that much less."""
    per = max(members_done, 1)
    calls, products = (counting.fields_evaluated[k] / per for k in counting.fields_evaluated)
    return {
        "denoiser_calls_per_sample": calls,
        "covariance_products_per_sample": products,
        "nfe_per_sample": calls + products,
        "seconds": time.perf_counter() - start,
    }
