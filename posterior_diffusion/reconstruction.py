"""One posterior ensemble: its inputs checked, the sampler run over its members (in this process or
sharded over several), finished members journaled so that a killed run resumes, and the dataset
with provenance."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from forward_models.base import ForwardModel
from posterior_diffusion.distributed import Ranks, check_layout, launch
from posterior_diffusion.io import (
    Observation,
    ObservationError,
    check_observation,
    posterior_dataset,
    read_observation,
    result_format,
    write_dataset,
)
from posterior_diffusion.io.atomic import check_output_target
from posterior_diffusion.io.journal import (
    JournalError,
    SampleJournal,
    holds_ensemble_state,
    journal_path,
    remove_journal,
)
from posterior_diffusion.observing import observation_model, pixel_scale
from posterior_diffusion.padding import (
    correlation_length,
    pad_observation,
    padded_shape,
    prior_spectrum,
)
from posterior_diffusion.priors import Prior
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.resolve import condition_prior, resolve_prior
from posterior_diffusion.provenance import file_sha256, provenance
from posterior_diffusion.samplers import get_sampler
from posterior_diffusion.samplers.refine import EVALUATIONS_PER_MOVE
from posterior_diffusion.samplers.run import (
    SamplingInterrupted,
    check_run_settings,
    choose_sampler,
    default_batch_size,
    sample_posterior,
)

# Per-sample costs in a sampler's info, averaged over the ranks of a sharded run.
PER_SAMPLE_COSTS = ("denoiser_calls_per_sample", "covariance_products_per_sample", "nfe_per_sample")


class ReconstructionInterrupted(KeyboardInterrupt):
    """Ctrl-C during sampling. `dataset` holds the completed members (None if there are none,
    or if the run was sharded: then `journal` names the store that holds them)."""

    def __init__(
        self,
        dataset: xr.Dataset | None,
        completed: int,
        requested: int,
        journal: Path | None = None,
    ):
        super().__init__(f"interrupted after {completed} of {requested} samples")
        self.dataset, self.completed, self.requested = dataset, completed, requested
        self.journal = journal


@dataclass(frozen=True)
class ReconstructionRequest:
    """A reconstruction as asked for (`api.reconstruct` gives the meaning of each field)."""

    observation: str | os.PathLike | Observation
    forward_model: str | ForwardModel | None = None
    prior: str | Prior | None = None
    power_spectrum: str | os.PathLike | None = None
    sampler: str | None = None
    num_samples: int = 64
    steps: int | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int | None = None
    progress: bool = True
    command: str | None = None
    precision: str = "fp32"
    compile: bool = False
    journal_for: str | os.PathLike | None = None
    resume: bool = False
    devices: int = 1
    num_nodes: int = 1
    sampler_options: Mapping[str, Any] | None = None
    theta: Mapping[str, float] | Sequence[float] | None = None
    guidance: float = 0.0
    theta_grid: Mapping[str, tuple[float, float, int]] | None = None
    overwrite: bool = False  # replace an existing output (reconstruct_to_file)
    pad: int | None = None  # survey-edge padding [pixels]; None: automatic (sky inputs only)
    allow_long_run: bool = False  # start a run estimated to take longer than LONG_RUN_SECONDS

    @property
    def sharded(self) -> bool:
        return int(self.devices) * int(self.num_nodes) > 1


@dataclass(frozen=True)
class Draws:
    """Members drawn so far, in member order, and the sampler's cost record."""

    samples: np.ndarray  # (members, C, H, W) float64
    info: dict[str, Any]  # sampler, steps, options, seed, costs, ...
    resumed: int  # members taken from the journal of an earlier run
    interrupted: bool = False


@dataclass(frozen=True)
class Ensemble:
    """A checked reconstruction: observation, forward model, prior, sampler and its options."""

    request: ReconstructionRequest
    observation: Observation
    model: ForwardModel
    prior: Prior
    sampler: str
    options: dict[str, Any]
    padded: Observation | None = None  # the observation on the padded grid, when padded

    @property
    def num_samples(self) -> int:
        return int(self.request.num_samples)

    @property
    def field_shape(self) -> tuple[int, int, int]:
        """The shape of the fields written out: the model's, cropped back to the observation's
        grid when the model runs on a padded one."""
        c, h, w = self.model.field_shape
        if self.padded is None:
            return (c, h, w)
        return (c, *self.observation.y.shape[-2:])

    def padding_pixels(self) -> list[int] | None:
        """Pixels added below and to the right, or None."""
        if self.padded is None:
            return None
        (h, w), (ph, pw) = self.observation.y.shape[-2:], self.padded.y.shape[-2:]
        return [ph - h, pw - w]

    def journal_settings(self) -> dict[str, Any]:
        """What decides every member's draw: a resumed run must share it."""
        r, obs = self.request, self.observation
        steps = (
            r.steps if r.steps is not None else get_sampler(self.sampler).steps_for(self.options)
        )
        return {
            "input_sha256": file_sha256(obs.path) if obs.path else None,
            "forward_model": self.model.params(),
            "prior": self.prior.identity(),
            "sampler": self.sampler,
            "steps": steps,
            "options": self.options,
            "seed": int(r.seed),
            "device_type": torch.device(r.device).type,  # CPU and CUDA streams differ
            "padding": self.padding_pixels(),
        }

    def draw(
        self,
        members: list[int],
        on_batch: Callable[[list[int], torch.Tensor], None] | None = None,
        ranks: Ranks | None = None,
        state_store: SampleJournal | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Samples of `members` and the sampler's info; `on_batch` gets each finished batch;
        an ensemble-level sampler keeps its state between levels in `state_store`."""
        r = self.request
        observed = self.observation if self.padded is None else self.padded
        _, h, w = self.field_shape
        crop = None if self.padded is None else (lambda t: t[..., :h, :w].contiguous())
        if crop is not None and on_batch is not None:
            save = on_batch
            on_batch = lambda members, batch: save(members, crop(batch))  # noqa: E731
        samples, info = sample_posterior(
            self.prior,
            self.model,
            torch.from_numpy(observed.y),
            self.num_samples,
            sampler=self.sampler,
            steps=r.steps,
            seed=int(r.seed),
            batch_size=r.batch_size,
            device=ranks.device if ranks else r.device,
            progress=r.progress and (ranks is None or ranks.is_main),
            members=members,
            on_batch=on_batch,
            options=self.options,
            memory_share=1.0 / ranks.local_world_size if ranks else 1.0,
            ensemble_state=state_store,
        )
        return (samples if crop is None else crop(samples)), info

    def dataset(self, draws: Draws) -> xr.Dataset:
        """The posterior dataset of `draws`, with provenance."""
        r, obs = self.request, self.observation
        attrs = provenance(
            command=r.command,
            sampler_info=draws.info,
            seed=r.seed,
            prior_identity=self.prior.identity(),
            forward_model_params=self.model.params(),
            input_path=obs.path,
            extra={
                "num_samples_requested": self.num_samples,
                "num_samples_completed": int(draws.samples.shape[0]),
                "interrupted": int(draws.interrupted),
                "resumed_members": draws.resumed,
                "field_shape": list(self.field_shape),
                "data_shape": list(self.model.data_shape),
                "padding": self.padding_pixels(),
                "observation_attrs": obs.attrs,
            },
        )
        return posterior_dataset(draws.samples, obs, self.field_shape, attrs)


def prepare(request: ReconstructionRequest) -> Ensemble:
    """Check everything about `request` before anything is drawn or written."""
    r = request
    check_run_settings(r.num_samples, r.steps, r.seed, r.batch_size, r.device)
    check_layout(r.devices, r.num_nodes, r.device)
    if isinstance(r.observation, Observation):
        obs = check_observation(r.observation)
    else:
        obs = read_observation(r.observation)
    model = observation_model(obs, r.forward_model)
    problem = model.noise.data_problem(torch.as_tensor(obs.y, dtype=torch.float64))
    if problem is not None:
        raise ObservationError(obs.source, problem, "y")
    _check_noise_scale(obs, model)
    padded = _padded(r, obs, model)
    if padded is not None:
        model = observation_model(padded, r.forward_model)
    _check_output_size(r.num_samples, model.field_shape)
    prior = _prior(r, model, obs)
    sampler = choose_sampler(r.sampler, model)
    options = get_sampler(sampler).with_defaults(r.sampler_options, prior, model)
    get_sampler(sampler).check_options(options)
    if not r.allow_long_run:
        _check_run_time(r, model, prior, sampler, options)
    return Ensemble(r, obs, model, prior, sampler, options, padded)


def _padded(r: ReconstructionRequest, obs: Observation, model: ForwardModel) -> Observation | None:
    """The observation on a padded periodic grid (docs/sky.md, "Survey edges"), or None: padding
    is on by default for sky inputs (a `wcs_header`), `r.pad` pixels when given (0: off)."""
    if r.pad is not None and (int(r.pad) != r.pad or r.pad < 0):
        raise ValueError(f"--pad must be a whole number of pixels >= 0, got {r.pad}")
    if r.pad == 0 or (r.pad is None and not obs.attrs.get("wcs_header")):
        return None
    if tuple(model.data_shape[-2:]) != tuple(model.field_shape[-2:]):
        if r.pad is None:
            return None
        raise ValueError(f"--pad needs data on the field's grid; '{model.name}' changes it")
    if isinstance(r.prior, Prior) or isinstance(r.forward_model, ForwardModel):
        if r.pad is None:
            return None
        raise ValueError("--pad needs the prior and forward model by name (they are rebuilt "
                         "on the padded grid)")  # fmt: skip
    shape = tuple(obs.y.shape[-2:])
    pad = r.pad
    if pad is None:
        spectrum = prior_spectrum(r.prior, r.power_spectrum)
        pad = correlation_length(spectrum, shape) if spectrum else max(shape) // 2
    return pad_observation(obs, padded_shape(shape, int(pad)))


# A run estimated to take longer than this is refused unless allowed, so that a slip in
# --num-samples does not start weeks of sampling. Runs under TIMED_ABOVE_EVALUATIONS member
# evaluations (minutes to hours) are not timed at all.
LONG_RUN_SECONDS = 7 * 24 * 3600
TIMED_ABOVE_EVALUATIONS = 10**6
# Prior evaluations per member and step: guided measured 2-4 (one denoiser call plus covariance
# products), so this errs long for the others.
EVALUATIONS_PER_STEP = 4


def _check_run_time(
    r: ReconstructionRequest, model: ForwardModel, prior: Prior, sampler: str, options: dict
):
    steps = r.steps if r.steps is not None else get_sampler(sampler).steps_for(options)
    per_sample = int(steps) * EVALUATIONS_PER_STEP
    per_sample += int(options.get("refine_moves", 0)) * EVALUATIONS_PER_MOVE
    evaluations = int(r.num_samples) * per_sample
    if evaluations < TIMED_ABOVE_EVALUATIONS:
        return
    batch = min(int(r.batch_size or 64), int(r.num_samples))
    seconds = _seconds_per_member_evaluation(prior, model.field_shape, r.device, batch)
    estimate = evaluations * seconds
    if estimate > LONG_RUN_SECONDS:
        raise ValueError(
            f"{r.num_samples} samples would take about {estimate / 86400:.3g} days here "
            f"({seconds * 1e3:.3g} ms per member and prior evaluation, timed on one batch of "
            f"{batch}; about {per_sample} evaluations per sample): add --allow-long-run to "
            "start anyway, or ask for fewer samples"
        )


def _seconds_per_member_evaluation(prior: Prior, field_shape, device: str, batch: int) -> float:
    """Wall time of one denoiser call on `batch` members, per member (after a warm-up call)."""
    x = torch.zeros((batch, *field_shape), dtype=torch.float64, device=device)
    prior = prior.to(device)
    with torch.no_grad():
        prior.denoise(x, prior.sigma_min())  # warm-up: lazy initialisation, kernel selection
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        prior.denoise(x, prior.sigma_min())
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / batch


# Gaussian noise below this fraction of the observed data's RMS is refused. Measured (16 x 16,
# mask + noise, guided): down to 1e-50 the posterior mean fits the observed pixels to 6e-10 of
# the field's std (the float64 floor, reached at 1e-10); at 1e-80 the whitened products overflow
# and the data are silently ignored (error 4 std). 1e-30 leaves a margin.
MIN_NOISE_TO_DATA = 1e-30


def _check_output_size(num_samples: int, field_shape: tuple[int, ...]) -> None:
    """Refuse an ensemble whose samples cannot be held in this machine's memory: the dataset is
    assembled in memory before it is written, so such a run would sample for nothing."""
    needed = int(num_samples) * math.prod(field_shape) * 8 * 2  # float64 samples, and a copy
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no bound
        return
    if needed > total:
        raise ValueError(
            f"{num_samples} samples of shape {tuple(field_shape)} need about "
            f"{needed / 2**30:.3g} GiB of memory for the output; this machine has "
            f"{total / 2**30:.3g} GiB: ask for fewer samples"
        )


def _check_noise_scale(obs: Observation, model: ForwardModel) -> None:
    std = model.noise.independent_std()
    if std is None:
        return
    std = torch.broadcast_to(std.detach().cpu().double(), tuple(obs.y.shape))
    y = torch.as_tensor(obs.y, dtype=torch.float64)
    observed = (std > 0) & torch.isfinite(y)
    if not bool(observed.any()):
        return
    scale = float(y[observed].square().mean().sqrt())
    smallest = float(std[observed].min())
    if scale > 0 and smallest < MIN_NOISE_TO_DATA * scale:
        raise ObservationError(
            obs.source,
            f"noise std {smallest:.3g} is below {MIN_NOISE_TO_DATA:g} of the data's RMS "
            f"({scale:.3g}): float64 cannot carry data that exact (the run would ignore them); "
            f"noise down to 1e-10 of the data's scale already fits them to float64 precision",
            "noise_std",
        )


def _prior(request: ReconstructionRequest, model: ForwardModel, obs: Observation) -> Prior:
    """The requested prior, configured, conditioned and checked against the model's fields."""
    prior = resolve_prior(
        request.prior, request.power_spectrum, model.field_shape, pixel_scale(obs.attrs)
    )
    _configure_network(prior, request.precision, request.compile)
    return condition_prior(prior, request.theta, request.guidance, request.theta_grid)


def _configure_network(prior: Prior, precision: str, compile: bool) -> None:
    """A trained prior's network precision and compilation; analytic priors take neither."""
    if isinstance(prior, NetworkPrior):
        prior.configure(precision=precision, compile=compile)
    elif precision != "fp32" or compile:
        raise ValueError(
            f"--precision bf16 and --compile are for trained priors; {type(prior).__name__} is "
            "analytic and runs in float64"
        )


def reconstruct(request: ReconstructionRequest) -> xr.Dataset | None:
    """`api.reconstruct`: the posterior dataset (None on ranks other than 0 of a sharded run)."""
    ensemble = prepare(request)
    if request.sharded:
        return _reconstruct_sharded(ensemble)
    if request.journal_for is None:
        return ensemble.dataset(draw_members(ensemble))
    journal, resumed = SampleJournal.start(
        request.journal_for, ensemble.journal_settings(), request.resume
    )
    try:
        _note_batch_size(journal, ensemble)
        return ensemble.dataset(draw_members(ensemble, journal))
    except Exception:
        # A run refused or failed before it saved any member leaves nothing to resume: its
        # journal would only make the next, corrected command ask for --resume.
        if not resumed and not journal.holds_work():
            remove_journal(request.journal_for)
        raise
    finally:
        journal.release()


def reconstruct_to_file(request: ReconstructionRequest) -> xr.Dataset | None:
    """`reconstruct` into the output `request.journal_for`, as the command line runs it.

    The output's format, then the observation, are checked first. Once the output is written,
    the journal goes. On Ctrl-C the completed members are written (attribute interrupted=1) and
    the journal stays for a resumed run, or goes when it holds none.
    """
    output = request.journal_for
    container = result_format(output)
    # A resumed run replaces what its interrupted run wrote; an interrupted run's journal beside
    # an existing output is left to the journal's own check (it asks for --resume).
    replaceable = request.overwrite or request.resume or journal_path(output).exists()
    source = None if isinstance(request.observation, Observation) else request.observation
    check_output_target(output, container == "zarr", replaceable, (source,))
    if not isinstance(request.observation, Observation):
        request = replace(request, observation=read_observation(request.observation))
    try:
        ds = reconstruct(request)
    except ReconstructionInterrupted as stop:
        if stop.journal is None:  # else a sharded run: its members stay in the journal
            if stop.dataset is not None:
                write_dataset(stop.dataset, output)
            elif not holds_ensemble_state(output):
                remove_journal(output)  # it holds nothing to resume
        raise
    if ds is not None:  # rank 0 writes for a sharded run
        write_dataset(ds, output)
        remove_journal(output)  # the output holds every member now
    return ds


def draw_members(ensemble: Ensemble, journal: SampleJournal | None = None) -> Draws:
    """Every member not already in `journal`, drawn in this process and saved there as batches
    finish.

    Raises:
        ReconstructionInterrupted: Ctrl-C; carries the completed members, earlier ones included.
    """
    n = ensemble.num_samples
    earlier = {} if journal is None else journal.completed(n, ensemble.field_shape)
    todo = [i for i in range(n) if i not in earlier]
    try:
        samples, info = ensemble.draw(todo, _saver(journal, n), state_store=journal)
    except SamplingInterrupted as stop:
        draws = Draws(
            _member_order(earlier, todo, stop.samples), stop.info, len(earlier), interrupted=True
        )
        completed = int(draws.samples.shape[0])
        partial = ensemble.dataset(draws) if completed else None
        raise ReconstructionInterrupted(partial, completed, n) from None
    return Draws(_member_order(earlier, todo, samples), info, len(earlier))


class BatchSizeWarning(UserWarning):
    """A resumed run draws its members in batches of another size than the interrupted run."""


# docs/reliability.md: measured at most 1.3e-5 of the posterior std on the README's main job.
NETWORK_BATCH_TOLERANCE = "1e-4 of the posterior std"


def _note_batch_size(journal: SampleJournal, ensemble: Ensemble) -> None:
    """Record the run's batch size in its journal; warn when a resumed run changed it and a
    trained network, whose float32 rounding depends on the batch, draws the members."""
    r = ensemble.request
    batch = int(r.batch_size or default_batch_size(ensemble.num_samples, r.device))
    earlier = journal.batch_size_change(batch)
    if earlier is not None and journal.count() and _uses_network(ensemble.prior):
        warnings.warn(
            f"the interrupted run drew batches of {earlier}, this one of {batch}: with a trained "
            f"prior the new members agree with an uninterrupted run's to float32 rounding "
            f"(within {NETWORK_BATCH_TOLERANCE}), not bit for bit; resume with --batch-size "
            f"{earlier} for identical members",
            BatchSizeWarning,
            stacklevel=2,
        )


def _uses_network(prior: Prior) -> bool:
    while not isinstance(prior, NetworkPrior) and hasattr(prior, "prior"):
        prior = prior.prior  # a conditioned, marginalised or counting wrapper
    return isinstance(prior, NetworkPrior)


def _saver(journal: SampleJournal | None, num_samples: int):
    """What the sampler hands each finished batch to: the journal's record (None: no journal)."""
    if journal is None:
        return None
    return lambda members, batch: journal.record(members, batch.numpy(), num_samples)


def _member_order(earlier: dict[int, np.ndarray], todo: list[int], new: torch.Tensor) -> np.ndarray:
    """Earlier and new members together, in member order."""
    found = dict(earlier)
    found.update(zip(todo, new.numpy(), strict=False))
    order = sorted(found)
    return np.stack([found[i] for i in order]) if order else new.numpy()


def _reconstruct_sharded(ensemble: Ensemble) -> xr.Dataset | None:
    """`reconstruct` over several ranks: each draws its share of the missing members into the
    journal's zarr store; rank 0 then reads them all back and returns the dataset (others: None).

    Rank 0 alone opens (or creates) the journal and says which members it already holds; the
    others learn that from it, so a resumed run shares out what is missing among however many
    ranks it has now.
    """
    r = ensemble.request
    if r.journal_for is None:
        raise ValueError(
            "a sharded run (devices x num_nodes > 1) needs journal_for: the output path beside "
            "which its ranks write their members"
        )
    with launch(r.devices, r.num_nodes, r.device) as ranks:
        journal, earlier = _open_shared_journal(ensemble, ranks)
        done = set(earlier)
        todo = ranks.share([i for i in range(ensemble.num_samples) if i not in done])
        statuses = ranks.gather(_draw_share(ensemble, journal, todo, ranks))
        failed = [s for s in statuses if "error" in s]
        if failed:
            raise (ValueError if failed[0]["usage"] else RuntimeError)(failed[0]["error"])
        if not ranks.is_main:
            return None
        samples = _every_member(journal, ensemble)
        info = _merged_info(statuses, ranks.world_size)
        return ensemble.dataset(Draws(samples, info, len(earlier)))


def _open_shared_journal(ensemble: Ensemble, ranks: Ranks) -> tuple[SampleJournal, list[int]]:
    """The run's journal on every rank, and the members it already holds (rank 0 checks it and
    tells the others, so that an unusable journal stops every rank with one message)."""
    r, settings = ensemble.request, ensemble.journal_settings()
    opened = None
    if ranks.is_main:
        try:
            journal, _ = SampleJournal.start(r.journal_for, settings, r.resume)
            _note_batch_size(journal, ensemble)
            held = journal.completed(ensemble.num_samples, ensemble.field_shape)
            opened = (None, sorted(held))
        except ValueError as err:
            opened = (str(err), [])
    error, earlier = ranks.broadcast(opened)
    if error is not None:
        raise JournalError(error)
    if not ranks.is_main:
        journal = SampleJournal.join(r.journal_for, settings)
    return journal, earlier


def _draw_share(
    ensemble: Ensemble, journal: SampleJournal, todo: list[int], ranks: Ranks
) -> dict[str, Any]:
    """This rank's members drawn into the journal; its status for the others: the sampler's
    info, or why it failed (so that no rank waits for one that stopped)."""
    try:
        _, info = ensemble.draw(todo, _saver(journal, ensemble.num_samples), ranks)
        return {"info": info, "members": len(todo)}
    except SamplingInterrupted:
        # Every rank got the Ctrl-C (one process group); what they finished is saved.
        raise ReconstructionInterrupted(
            None, journal.count(), ensemble.num_samples, journal=journal.path
        ) from None
    except Exception as err:
        return {"error": f"rank {ranks.rank} of {ranks.world_size}: {err}",
                "usage": isinstance(err, ValueError)}  # fmt: skip


def _every_member(journal: SampleJournal, ensemble: Ensemble) -> np.ndarray:
    """All members of the run, read back from the journal in member order."""
    n = ensemble.num_samples
    found = journal.completed(n, ensemble.field_shape)
    if len(found) != n:
        missing = sorted(set(range(n)) - set(found))
        raise RuntimeError(f"{journal.path}: members {missing[:10]} were not written")
    return np.stack([found[i] for i in range(n)])


def _merged_info(statuses: list[dict[str, Any]], world_size: int) -> dict[str, Any]:
    """One run's cost record from its ranks': per-sample costs weighted by members drawn, the
    wall time of the slowest rank."""
    infos = [s["info"] for s in statuses]
    weights = np.array([s["members"] for s in statuses], dtype=float)
    merged = dict(infos[0])
    if weights.sum() > 0:
        for key in PER_SAMPLE_COSTS:
            merged[key] = float(np.average([i[key] for i in infos], weights=weights))
    merged["seconds"] = max(i["seconds"] for i in infos)
    merged["world_size"] = world_size
    merged["members_per_rank"] = [int(w) for w in weights]
    return merged
