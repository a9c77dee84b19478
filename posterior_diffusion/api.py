"""The Python entry points: reconstruct a field from an observation, and simulate observations."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from forward_models.base import ForwardModel
from forward_models.registry import (
    ForwardModelError,
    available_forward_models,
    build_forward_model,
    simulated_data_shape,
    simulation_defaults,
)
from posterior_diffusion.distributed import Ranks, check_layout, launch
from posterior_diffusion.io import (
    Observation,
    ObservationError,
    check_observation,
    posterior_dataset,
    read_observation,
)
from posterior_diffusion.io.journal import JournalError, SampleJournal
from posterior_diffusion.masks import survey_mask
from posterior_diffusion.prior_resolver import condition_prior, resolve_prior
from posterior_diffusion.priors import Prior
from posterior_diffusion.provenance import file_sha256, provenance
from posterior_diffusion.samplers import (
    DEFAULT_SAMPLER,
    SAMPLERS,
    available_samplers,
    get_sampler,
)
from posterior_diffusion.sampling import SamplingInterrupted, sample_posterior

# For linear-Gaussian models the default sampler; otherwise the one that needs neither.
FALLBACK_SAMPLER = "linearized"


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


def _check_run_settings(
    num_samples: int, steps: int | None, seed: int, batch_size: int | None, device: str
) -> None:
    if int(num_samples) < 1:
        raise ValueError(f"number of samples must be >= 1, got {num_samples}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"number of steps must be >= 1, got {steps}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device '{device}' (use cpu or cuda)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available here")


def _choose_sampler(sampler: str | None, model: ForwardModel) -> str:
    if sampler is None:
        return DEFAULT_SAMPLER if model.is_linear_gaussian else FALLBACK_SAMPLER
    if sampler not in SAMPLERS:
        raise ValueError(
            f"unknown sampler '{sampler}' (available: {', '.join(available_samplers())})"
        )
    if SAMPLERS[sampler].needs_linear_gaussian and not model.is_linear_gaussian:
        raise ValueError(
            f"sampler '{sampler}' needs a linear forward model with Gaussian noise; "
            f"'{model.name}' is not (use --sampler {FALLBACK_SAMPLER})"
        )
    return sampler


def _build_model(
    name: str,
    attrs: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    y_shape: tuple,
    source: str,
) -> ForwardModel:
    """The registry's model, with any error it raises prefixed by where the inputs came from."""
    tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in arrays.items()}
    try:
        return build_forward_model(name, attrs, tensors, tuple(y_shape))
    except ValueError as err:  # ForwardModelError, and plain ones from operator constructors
        raise ForwardModelError(f"{source}: {' '.join(str(err).split())}") from None


def observation_model(
    observation: Observation, forward_model: str | ForwardModel | None
) -> ForwardModel:
    """The forward model for `observation`, checked against its y and truth shapes."""
    src = observation.source
    if isinstance(forward_model, ForwardModel):
        model = forward_model
    else:
        name = forward_model or observation.forward_model
        if not name:
            raise ObservationError(
                src,
                "no root attribute 'forward_model' and no forward model given "
                f"(available: {', '.join(available_forward_models())})",
            )
        arrays = observation.forward_model_arrays()
        model = _build_model(str(name), observation.attrs, arrays, observation.y.shape, src)
    if tuple(model.data_shape) != tuple(observation.y.shape):
        raise ObservationError(
            src,
            f"has shape {tuple(observation.y.shape)} but forward model '{model.name}' predicts "
            f"data of shape {tuple(model.data_shape)}",
            "y",
        )
    truth = observation.truth
    if truth is not None and tuple(truth.shape) != tuple(model.field_shape):
        raise ObservationError(
            src,
            f"has shape {tuple(truth.shape)} but forward model '{model.name}' works on fields "
            f"of shape {tuple(model.field_shape)}",
            "truth",
        )
    return model


def reconstruct(
    observation: str | os.PathLike | Observation,
    forward_model: str | ForwardModel | None = None,
    prior: str | Prior | None = None,
    power_spectrum: str | os.PathLike | None = None,
    sampler: str | None = None,
    num_samples: int = 64,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int | None = None,
    progress: bool = True,
    command: str | None = None,
    precision: str = "fp32",
    compile: bool = False,
    journal_for: str | os.PathLike | None = None,
    resume: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    sampler_options: Mapping[str, Any] | None = None,
    theta: Mapping[str, float] | Sequence[float] | None = None,
    guidance: float = 0.0,
) -> xr.Dataset | None:
    """Posterior samples of the field behind an observation, with provenance, in memory.

    Everything is validated before sampling starts.

    Args:
        observation: an OBS.h5 path (docs/observation-format.md) or an `Observation`.
        forward_model: a registry name or a ForwardModel; None: the file's `forward_model`
            attribute.
        prior: a Prior, a prior file (.pt/.ckpt from `posterior-diffusion train`), "default" or
            "gaussian"; None: the default prior, or a Gaussian one when `power_spectrum` is given.
        power_spectrum: two-column text file, k [cycles/pixel] and P.
        sampler: a sampler name; None: the default one for linear-Gaussian models, else linearized.
        num_samples: ensemble size.
        steps: sampler steps; None: the sampler's default.
        seed: member i is drawn from the stream (seed, i), whatever the batch size (streams
            on CUDA differ from those on the CPU).
        device: "cpu" or "cuda".
        batch_size: members sampled at once; None: the sampler's choice.
        progress: show a progress bar on stderr.
        command: the command line, recorded as provenance (None for API calls).
        precision: "fp32", or "bf16" to run a trained prior's network under bfloat16 autocast
            (faster on GPUs; its effect on calibration is measured in benchmarks/README.md).
        compile: torch.compile a trained prior's network (1.9x faster sampling on 256 x 256
            maps on an H100, after about 70 s of compilation; benchmarks/README.md).
        journal_for: an output path; finished members are saved as they finish in a journal
            beside it (`io/journal.py`), which the caller removes once the output is written.
        resume: continue from that journal (same settings, checked); its members are reused.
        devices, num_nodes: shard the ensemble over devices x num_nodes processes (one per GPU
            with device "cuda"), launched by Lightning Fabric: like Lightning's Trainer, each
            rank runs the calling script from the start, or srun / torchrun starts them. Needs
            `journal_for`: each rank writes its members into the journal's zarr store. Member i
            is the same draw whatever the number of ranks.
        sampler_options: keyword options of the sampler, e.g. {"corrector_steps": 1, "snr":
            0.16} for predictor-corrector sampling with guided (docs/samplers.md).
        theta: for a parameter-conditioned prior, the parameters to reconstruct at ({name:
            value} or values in the prior's order); None: its marginal over the training theta.
        guidance: classifier-free guidance weight w (needs theta). Posteriors are calibrated at
            w = 0 only (docs/conditional_priors.md); any other w warns.

    Returns:
        Dataset with `samples` (sample, [channel,] y, x), `mean`, `std` (ddof=1), `observation`,
        and `truth` and `mask` when present; the attributes record provenance. In a sharded
        run, rank 0 returns it and the other ranks return None.

    Raises:
        ObservationError, ForwardModelError, PowerSpectrumError, ValueError: invalid input.
        ReconstructionInterrupted: Ctrl-C while sampling; carries the completed members.
    """
    _check_run_settings(num_samples, steps, seed, batch_size, device)
    check_layout(devices, num_nodes, device)
    if isinstance(observation, Observation):
        obs = check_observation(observation)
    else:
        obs = read_observation(observation)
    model = observation_model(obs, forward_model)
    resolved = resolve_prior(prior, power_spectrum, model.field_shape, _pixel_scale(obs.attrs))
    _configure_network(resolved, precision, compile)
    resolved = condition_prior(resolved, theta, guidance)
    if resolved.field_shape is not None and tuple(resolved.field_shape) != tuple(model.field_shape):
        raise ValueError(
            f"prior is for fields of shape {tuple(resolved.field_shape)}, but forward model "
            f"'{model.name}' works on fields of shape {tuple(model.field_shape)}"
        )
    sampler_name = _choose_sampler(sampler, model)
    options = dict(sampler_options or {})
    get_sampler(sampler_name).check_options(options)
    y = torch.from_numpy(obs.y)
    settings = {
        "input_sha256": file_sha256(obs.path) if obs.path else None,
        "forward_model": model.params(),
        "prior": resolved.identity(),
        "sampler": sampler_name,
        "steps": steps if steps is not None else get_sampler(sampler_name).default_steps,
        "options": options,
        "seed": int(seed),
        "device_type": torch.device(device).type,  # CPU and CUDA streams differ
    }

    def dataset(samples: np.ndarray, info: dict[str, Any], interrupted: bool, resumed: int):
        attrs = provenance(
            command=command,
            sampler_info=info,
            seed=seed,
            prior_identity=resolved.identity(),
            forward_model_params=model.params(),
            input_path=obs.path,
            extra={
                "num_samples_requested": int(num_samples),
                "num_samples_completed": int(samples.shape[0]),
                "interrupted": int(interrupted),
                "resumed_members": resumed,
                "field_shape": list(model.field_shape),
                "data_shape": list(model.data_shape),
                "observation_attrs": obs.attrs,
            },
        )
        return posterior_dataset(samples, obs, model.field_shape, attrs)

    def draw(members: list[int], on_batch, ranks: Ranks | None = None):
        return sample_posterior(
            resolved,
            model,
            y,
            int(num_samples),
            sampler=sampler_name,
            steps=steps,
            seed=int(seed),
            batch_size=batch_size,
            device=ranks.device if ranks else device,
            progress=progress and (ranks is None or ranks.is_main),
            members=members,
            on_batch=on_batch,
            options=options,
            memory_share=1.0 / ranks.local_world_size if ranks else 1.0,
        )

    if int(devices) * int(num_nodes) > 1:
        return _reconstruct_sharded(
            draw, dataset, settings, int(num_samples), model.field_shape,
            journal_for, resume, devices, num_nodes, device,
        )  # fmt: skip

    journal, earlier = None, {}
    if journal_for is not None:
        journal, _ = SampleJournal.start(journal_for, settings, resume)
        earlier = journal.completed(int(num_samples), model.field_shape)
    todo = [i for i in range(int(num_samples)) if i not in earlier]

    def save(members: list[int], batch: torch.Tensor) -> None:
        if journal is not None:
            journal.record(members, batch.numpy(), int(num_samples))

    def with_earlier(new: torch.Tensor) -> np.ndarray:
        """Earlier and new members together, in member order."""
        found = dict(earlier)
        found.update(zip(todo, new.numpy(), strict=False))
        order = sorted(found)
        return np.stack([found[i] for i in order]) if order else new.numpy()

    try:
        samples, info = draw(todo, save)
    except SamplingInterrupted as stop:
        samples = with_earlier(stop.samples)
        completed = int(samples.shape[0])
        partial = dataset(samples, stop.info, True, len(earlier)) if completed else None
        raise ReconstructionInterrupted(partial, completed, int(num_samples)) from None
    return dataset(with_earlier(samples), info, False, len(earlier))


def _reconstruct_sharded(
    draw, dataset, settings, num_samples, field_shape, journal_for, resume, devices, num_nodes,
    device,
) -> xr.Dataset | None:  # fmt: skip
    """`reconstruct` over several ranks: each draws its share of the missing members into the
    journal's zarr store; rank 0 then reads them all back and returns the dataset (others: None).

    Rank 0 alone opens (or creates) the journal and says which members it already holds; the
    others learn that from it, so a resumed run shares out what is missing among however many
    ranks it has now.
    """
    if journal_for is None:
        raise ValueError(
            "a sharded run (devices x num_nodes > 1) needs journal_for: the output path beside "
            "which its ranks write their members"
        )
    with launch(devices, num_nodes, device) as ranks:
        opened = None
        if ranks.is_main:
            try:
                journal, _ = SampleJournal.start(journal_for, settings, resume)
                earlier = sorted(journal.completed(num_samples, field_shape))
                opened = (None, earlier)
            except ValueError as err:
                opened = (str(err), [])
        error, earlier = ranks.broadcast(opened)
        if error is not None:
            raise JournalError(error)
        if not ranks.is_main:
            journal = SampleJournal.join(journal_for, settings)
        done = set(earlier)
        todo = ranks.share([i for i in range(num_samples) if i not in done])

        def save(members: list[int], batch: torch.Tensor) -> None:
            journal.record(members, batch.numpy(), num_samples)

        try:
            _, info = draw(todo, save, ranks)
            status = {"info": info, "members": len(todo)}
        except SamplingInterrupted:
            # Every rank got the Ctrl-C (one process group); what they finished is saved.
            raise ReconstructionInterrupted(
                None, journal.count(), num_samples, journal=journal.path
            ) from None
        except Exception as err:  # reported to every rank, so none waits for the others
            status = {"error": f"rank {ranks.rank} of {ranks.world_size}: {err}",
                      "usage": isinstance(err, ValueError)}  # fmt: skip
        statuses = ranks.gather(status)
        failed = [s for s in statuses if "error" in s]
        if failed:
            raise (ValueError if failed[0]["usage"] else RuntimeError)(failed[0]["error"])
        if not ranks.is_main:
            return None
        found = journal.completed(num_samples, field_shape)
        if len(found) != num_samples:
            missing = sorted(set(range(num_samples)) - set(found))
            raise RuntimeError(f"{journal.path}: members {missing[:10]} were not written")
        samples = np.stack([found[i] for i in range(num_samples)])
        return dataset(samples, _merged_info(statuses, ranks.world_size), False, len(earlier))


def _merged_info(statuses: list[dict[str, Any]], world_size: int) -> dict[str, Any]:
    """One run's cost record from its ranks': per-sample costs weighted by members drawn, the
    wall time of the slowest rank."""
    infos = [s["info"] for s in statuses]
    weights = np.array([s["members"] for s in statuses], dtype=float)
    merged = dict(infos[0])
    if weights.sum() > 0:
        for key in ("denoiser_calls_per_sample", "covariance_products_per_sample",
                    "nfe_per_sample"):  # fmt: skip
            merged[key] = float(np.average([i[key] for i in infos], weights=weights))
    merged["seconds"] = max(i["seconds"] for i in infos)
    merged["world_size"] = world_size
    merged["members_per_rank"] = [int(w) for w in weights]
    return merged


def _configure_network(prior: Prior, precision: str, compile: bool) -> None:
    from posterior_diffusion.priors.network import NetworkPrior

    if isinstance(prior, NetworkPrior):
        prior.configure(precision=precision, compile=compile)
    elif precision != "fp32" or compile:
        raise ValueError(
            f"--precision bf16 and --compile are for trained priors; {type(prior).__name__} is "
            "analytic and runs in float64"
        )


def _simulation_params(forward_model: str, attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The registry's defaults for `forward_model`, overridden by `attrs`."""
    try:
        defaults = simulation_defaults(forward_model)
    except ForwardModelError as err:
        raise ForwardModelError(f"simulation: {err}") from None
    return {**defaults, **dict(attrs or {})}


def simulate_observation(
    forward_model: str,
    shape: Sequence[int] = (64, 64),
    attrs: Mapping[str, Any] | None = None,
    prior: str | Prior | None = None,
    power_spectrum: str | os.PathLike | None = None,
    mask: np.ndarray | None = None,
    mask_fraction: float = 0.0,
    mask_border: int = 0,
    noise_std: float | np.ndarray | None = None,
    seed: int = 0,
    command: str | None = None,
    **arrays: np.ndarray,
) -> Observation:
    """Draw a field from the prior and simulate its observation; `.write(path)` saves it.

    Args:
        forward_model: a registry name (noise, inpainting, blur, downsample, smoothing, lensing,
            galaxy_counts).
        shape: field shape (H, W) or (C, H, W) in pixels.
        attrs: forward-model parameters, stored as root attributes, over the registry's defaults
            (e.g. sigma_e, n_gal_per_arcmin2 [arcmin^-2], pixel_scale_arcmin [arcmin]).
        prior: as in `reconstruct`.
        power_spectrum: as in `reconstruct`.
        mask: (H, W) 0/1 on the data grid, 1 = observed; None: made from mask_fraction/border.
        mask_fraction: approximate fraction of pixels lost to random rectangular holes.
        mask_border: width in pixels of an unobserved frame.
        noise_std: noise standard deviation in data units (not needed for lensing, whose shape
            noise follows from sigma_e, n_gal_per_arcmin2 and pixel_scale_arcmin).
        seed: seeds the field, the noise and the mask.
        command: the command line, recorded as provenance.
        **arrays: further datasets for the forward model (psf, n_gal_per_arcmin2).

    Returns:
        A checked Observation with y, truth, mask, noise_std and attributes (forward_model, its
        parameters, provenance).
    """
    _check_run_settings(1, None, seed, None, "cpu")
    dims = tuple(int(n) for n in shape)
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise ValueError(f"field shape must be (H, W) or (C, H, W) of positive sizes, got {dims}")
    field_shape = dims if len(dims) == 3 else (1, *dims)
    params = _simulation_params(forward_model, attrs)
    data_shape = simulated_data_shape(forward_model, params, field_shape)
    if mask is None and (mask_fraction > 0 or mask_border > 0):
        mask = survey_mask(data_shape[-2:], mask_fraction, int(mask_border), seed=seed)
    inputs = _simulation_inputs(arrays, mask, noise_std)
    # Validate the inputs as an observation would be, before drawing anything.
    draft = Observation(y=np.zeros(data_shape), path=Path("simulation"), **_split(inputs))
    check_observation(draft)
    model = _simulation_model(forward_model, params, inputs, data_shape, field_shape)
    resolved = resolve_prior(prior, power_spectrum, field_shape, _pixel_scale(params))
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        truth = resolved.sample(1, generator, field_shape=field_shape)[0].to(torch.float64)
        y = model.simulate(truth, generator)
    record = provenance(
        command=command,
        seed=seed,
        prior_identity=resolved.identity(),
        forward_model_params=model.params(),
    )
    obs = Observation(
        y=y.numpy(),
        truth=truth.numpy(),
        attrs={**record, **params, "forward_model": forward_model},
        **_split(inputs),
    )
    return check_observation(obs)


def _simulation_inputs(arrays: Mapping[str, Any], mask, noise_std) -> dict[str, np.ndarray]:
    """The arrays a simulated observation hands its forward model, as float64."""
    inputs = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    if mask is not None:
        inputs["mask"] = np.asarray(mask, dtype=np.float64)
    if noise_std is not None:
        inputs["noise_std"] = np.asarray(noise_std, dtype=np.float64)
    return inputs


def _simulation_model(
    forward_model: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    data_shape: tuple,
    field_shape: tuple,
) -> ForwardModel:
    """The forward model of a simulation, checked against the field shape."""
    try:
        model = _build_model(forward_model, params, inputs, data_shape, "simulation")
    except ForwardModelError as err:
        if "noise_std" not in inputs and "'noise_std'" in str(err):
            raise ForwardModelError(f"{err} (give noise_std; CLI: --noise-std S)") from None
        raise
    if tuple(model.field_shape) != field_shape:
        raise ForwardModelError(
            f"forward model '{forward_model}' works on fields of shape {tuple(model.field_shape)}, "
            f"not {field_shape}"
        )
    return model


def _pixel_scale(attrs: Mapping[str, Any]) -> float | None:
    """The pixel side [arcmin] an observation declares, if any."""
    value = attrs.get("pixel_scale_arcmin")
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _split(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Observation keyword arguments from a flat dict of arrays."""
    rest = {k: v for k, v in inputs.items() if k not in ("mask", "noise_std")}
    return {"mask": inputs.get("mask"), "noise_std": inputs.get("noise_std"), "arrays": rest}


def observe_field(
    truth: np.ndarray,
    forward_model: str,
    attrs: Mapping[str, Any] | None = None,
    mask: np.ndarray | None = None,
    noise_std: float | np.ndarray | None = None,
    seed: int = 0,
    command: str | None = None,
    prior_identity: Mapping[str, Any] | None = None,
    **arrays: np.ndarray,
) -> Observation:
    """Simulate the observation of a given field, e.g. a map from `posterior-diffusion simulate`.

    The counterpart of `simulate_observation` for truths that do not come from the prior: the same
    parameter defaults, validation and attributes; the noise is drawn from `seed`.

    Args:
        truth: the field, (H, W) or (C, H, W).
        forward_model: a registry name, as in `simulate_observation`.
        attrs: forward-model parameters over the registry's defaults.
        mask: (H, W) 0/1 on the data grid, 1 = observed.
        noise_std: noise standard deviation in data units.
        seed: seeds the noise.
        command: the command line, recorded as provenance.
        prior_identity: what the truth was drawn from, recorded as provenance.
        **arrays: further datasets for the forward model (psf, n_gal_per_arcmin2).

    Returns:
        A checked Observation with y, truth, mask, noise_std and attributes.
    """
    _check_run_settings(1, None, seed, None, "cpu")
    field = np.asarray(truth, dtype=np.float64)
    if field.ndim == 2:
        field = field[None]
    if field.ndim != 3 or min(field.shape) < 1:
        raise ValueError(f"a field must be (H, W) or (C, H, W), got shape {np.shape(truth)}")
    field_shape = tuple(field.shape)
    params = _simulation_params(forward_model, attrs)
    data_shape = simulated_data_shape(forward_model, params, field_shape)
    inputs = _simulation_inputs(arrays, mask, noise_std)
    draft = Observation(
        y=np.zeros(data_shape), truth=field, path=Path("simulation"), **_split(inputs)
    )
    check_observation(draft)  # also refuses NaN/inf in the field
    model = _simulation_model(forward_model, params, inputs, data_shape, field_shape)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        y = model.simulate(torch.from_numpy(field), generator)
    record = provenance(
        command=command,
        seed=seed,
        prior_identity=prior_identity,
        forward_model_params=model.params(),
    )
    obs = Observation(
        y=y.numpy(),
        truth=field,
        attrs={**record, **params, "forward_model": forward_model},
        **_split(inputs),
    )
    return check_observation(obs)


def calibrate(
    output_dir: str | os.PathLike,
    forward_model: str,
    num_tests: int,
    prior: str | Prior | None = None,
    power_spectrum: str | os.PathLike | None = None,
    simulations: str | os.PathLike | None = None,
    shape: Sequence[int] | None = None,
    attrs: Mapping[str, Any] | None = None,
    mask: np.ndarray | None = None,
    mask_fraction: float = 0.0,
    mask_border: int = 0,
    noise_std: float | None = None,
    sampler: str | None = None,
    num_samples: int = 64,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int | None = None,
    keep_tests: bool = True,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run `num_tests` held-out reconstructions with known truths and write a calibration report.

    Test i draws its truth from the prior (or takes map i of `simulations`), observes it through
    the forward model with seed (seed, i), samples the posterior and saves its diagnostics to
    OUTPUT_DIR/tests/test_{i:04d}.npz at once; a rerun loads finished tests instead of redoing
    them. The report (report.pdf, index.html, figures/, summary.json, CSV tables) is written when
    all tests are done. Details: docs/calibration.md.

    Args:
        output_dir: report directory (created; its parent must exist).
        forward_model: a registry name, as in `simulate_observation`.
        num_tests: number of (truth, observation) pairs.
        prior: as in `reconstruct`; also the source of truths when `simulations` is None, and of
            the TARP reference points.
        power_spectrum: as in `reconstruct`.
        simulations: an .h5/.zarr file from `posterior-diffusion simulate` (dataset `fields`,
            (num, H, W)); None: truths are prior draws.
        shape: field (H, W) in pixels; None: the simulations' maps, or 64 x 64.
        attrs: forward-model parameters, as in `simulate_observation`.
        mask: (H, W) 0/1, 1 = observed, shared by all tests; None: made from mask_fraction and
            mask_border with `seed` (as `simulate-obs --seed` would make it).
        mask_fraction: fraction of pixels lost to random rectangular holes.
        mask_border: unobserved frame [pixels].
        noise_std: noise standard deviation [data units].
        sampler: a sampler name; None: as in `reconstruct`.
        num_samples: posterior samples per test (>= 2).
        steps: sampler steps; None: the sampler's default.
        seed: the run's seed; every random stream of test i derives from (seed, i).
        device: "cpu" or "cuda".
        batch_size: members sampled at once.
        keep_tests: keep OUTPUT_DIR/tests/ (needed to resume or extend the run).
        progress: a progress bar over tests on stderr.
        command: the command line, recorded as provenance.

    Returns:
        The report's summary (what summary.json holds).

    Raises:
        ValueError (and subclasses): invalid input, or finished tests made with other settings.
        CalibrationInterrupted: Ctrl-C; finished tests are kept for a rerun to resume.
    """
    from posterior_diffusion.calibration import CalibrationRequest, run_calibration
    from posterior_diffusion.reporting.calibration_report import write_calibration_report

    request = CalibrationRequest(
        output_dir=Path(output_dir),
        forward_model=str(forward_model),
        num_tests=int(num_tests),
        prior=prior,
        power_spectrum=power_spectrum,
        simulations=None if simulations is None else Path(simulations),
        shape=None if shape is None else tuple(int(n) for n in shape),
        attrs=dict(attrs or {}),
        mask=mask,
        mask_fraction=float(mask_fraction),
        mask_border=int(mask_border),
        noise_std=noise_std,
        sampler=sampler,
        num_samples=int(num_samples),
        steps=steps,
        seed=int(seed),
        device=device,
        batch_size=batch_size,
        progress=progress,
        command=command,
    )
    run = run_calibration(request)
    return write_calibration_report(run, keep_tests=keep_tests)


def report_posterior(
    posterior: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Figures and summary statistics of a posterior file written by `reconstruct`.

    Args:
        posterior: a .h5/.nc/.zarr file with `samples` (and `mean`, `std`, `observation`,
            optionally `truth` and `mask`).
        output_dir: report directory; None: `<posterior stem>_report` next to the file.
        command: the command line, recorded in the summary.

    Returns:
        The report's summary (what summary.json holds); truth diagnostics when the file has one.
    """
    from posterior_diffusion.reporting.posterior_report import write_posterior_report

    return write_posterior_report(posterior, output_dir, command=command)


__all__ = [
    "ReconstructionInterrupted",
    "calibrate",
    "observation_model",
    "observe_field",
    "reconstruct",
    "report_posterior",
    "simulate_observation",
]
