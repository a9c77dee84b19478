"""The Python entry points: reconstruct a field from an observation, simulate observations and
field sets, check a prior against fields, and calibrate.

Each function states the public contract and hands the work to the module that does it:
`reconstruction` (one ensemble), `observing` (observation models and simulated observations),
`simulated_fields`, `model_check_file`, `calibration` and `reporting`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from forward_models.base import ForwardModel
from posterior_diffusion import (
    catalog_observation,
    model_check_file,
    observing,
    reconstruction,
    simulated_fields,
)
from posterior_diffusion import peak_catalog as peak_tables
from posterior_diffusion.calibration import (
    CalibrationInterrupted,
    CalibrationRequest,
    run_calibration,
)
from posterior_diffusion.defaults import DEFAULT_FIELD_SHAPE
from posterior_diffusion.io import Observation, check_observation_path
from posterior_diffusion.model_check_file import FileCheck
from posterior_diffusion.priors import Prior
from posterior_diffusion.reconstruction import ReconstructionInterrupted, ReconstructionRequest
from posterior_diffusion.samplers.run import check_run_settings
from posterior_diffusion.sky.binning import BinnedShear
from posterior_diffusion.sky.catalog import DEFAULT_COLUMNS, ColumnMap
from posterior_diffusion.survey import simulate_like, survey_for, truth_prior


def observation_model(
    observation: Observation, forward_model: str | ForwardModel | None
) -> ForwardModel:
    """The forward model for `observation`, checked against its y and truth shapes."""
    return observing.observation_model(observation, forward_model)


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
    theta_grid: Mapping[str, tuple[float, float, int]] | None = None,
    allow_long_run: bool = False,
    pad: int | None = None,
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
        theta_grid: for a parameter-conditioned prior, {name: (low, high, num)} per parameter:
            marginalise over that product grid with equal weights (a `ParameterGridPrior`);
            `guided` weighs each point by its evidence, and the output's provenance holds the
            weights, a posterior over the grid (docs/conditional_priors.md).
        allow_long_run: start a run estimated (from one timed batch of prior evaluations) to
            take longer than a week; without it such a run is refused before it starts.
        pad: survey edges: sample on a periodic grid this many pixels larger (bottom and right,
            rounded up to multiples of 8; unobserved there) and crop back. None: on for sky
            inputs (an observation with a `wcs_header`), by the prior's correlation length;
            off otherwise. 0: off (docs/sky.md).

    Returns:
        Dataset with `samples` (sample, [channel,] y, x), `mean`, `std` (ddof=1), `observation`,
        and `truth` and `mask` when present; the attributes record provenance. In a sharded
        run, rank 0 returns it and the other ranks return None.

    Raises:
        ObservationError, ForwardModelError, PowerSpectrumError, ValueError: invalid input.
        ReconstructionInterrupted: Ctrl-C while sampling; carries the completed members.
    """
    request = ReconstructionRequest(
        observation=observation,
        forward_model=forward_model,
        prior=prior,
        power_spectrum=power_spectrum,
        sampler=sampler,
        num_samples=num_samples,
        steps=steps,
        seed=seed,
        device=device,
        batch_size=batch_size,
        progress=progress,
        command=command,
        precision=precision,
        compile=compile,
        journal_for=journal_for,
        resume=resume,
        devices=devices,
        num_nodes=num_nodes,
        sampler_options=sampler_options,
        theta=theta,
        guidance=guidance,
        theta_grid=theta_grid,
        allow_long_run=allow_long_run,
        pad=pad,
    )
    return reconstruction.reconstruct(request)


def reconstruct_to_file(
    observation: str | os.PathLike | Observation,
    output: str | os.PathLike,
    resume: bool = False,
    **options: Any,
) -> xr.Dataset | None:
    """`reconstruct` into a result file, as `posterior-diffusion reconstruct` runs it.

    The output path, then the observation, are checked before anything else. Finished members
    are saved in a journal beside `output` as they finish; once the dataset is written
    (atomically) the journal is removed.

    Args:
        observation: as in `reconstruct`.
        output: result file: .h5, .hdf5, .nc (netCDF-4), .zarr or .fits.
        resume: continue from the journal a killed or interrupted run left beside `output`.
        **options: the other arguments of `reconstruct` (not journal_for: it is `output`), and
            `overwrite=True` to replace an existing output. The output is never the
            observation file, nor an existing thing of the other kind (a directory for an .h5
            file, a file for a .zarr store): those are refused, as is an existing output
            without `overwrite` (unless `resume` continues the run that wrote it).

    Returns:
        The dataset written; None on the ranks other than 0 of a sharded run.

    Raises:
        As `reconstruct`. On ReconstructionInterrupted the completed members have been written
        to `output` (attribute interrupted=1) and the journal kept for `resume`; when none had
        completed nothing is written and the journal is removed; a sharded run keeps its
        members in the journal.
    """
    request = ReconstructionRequest(observation, journal_for=output, resume=resume, **options)
    return reconstruction.reconstruct_to_file(request)


def simulate_observation(
    forward_model: str,
    shape: Sequence[int] = DEFAULT_FIELD_SHAPE,
    attrs: Mapping[str, Any] | None = None,
    prior: str | Prior | None = None,
    power_spectrum: str | os.PathLike | None = None,
    mask: np.ndarray | None = None,
    mask_fraction: float | None = 0.0,
    mask_border: int | None = 0,
    noise_std: float | np.ndarray | None = None,
    seed: int = 0,
    command: str | None = None,
    survey: str | os.PathLike | None = None,
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
        mask_fraction: approximate fraction of pixels lost to random rectangular holes; None:
            the forward model's default (registry `default_mask`).
        mask_border: width in pixels of an unobserved frame; None: the forward model's default.
        noise_std: noise standard deviation in data units (not needed for lensing, whose shape
            noise follows from sigma_e, n_gal_per_arcmin2 and pixel_scale_arcmin).
        seed: seeds the field, the noise and the mask.
        command: the command line, recorded as provenance.
        survey: an observation file (e.g. from `bin_catalog`) to imitate: its grid, mask,
            per-pixel noise, forward-model parameters and WCS. The truth is drawn on a periodic
            domain twice the patch's side and cut back, as a real patch is cut from the sky
            (`posterior_diffusion.survey`). Then shape, attrs, mask and noise_std must not be
            given, and mask_fraction and mask_border are not used.
        **arrays: further datasets for the forward model (psf, n_gal_per_arcmin2).

    Returns:
        A checked Observation with y, truth, mask, noise_std and attributes (forward_model, its
        parameters, provenance).
    """
    if survey is not None:
        check_run_settings(seed=seed)
        fixed = {"shape": None if tuple(shape) == DEFAULT_FIELD_SHAPE else shape,
                 "attrs": attrs or None, "mask": mask, "noise_std": noise_std,
                 "arrays": arrays or None}  # fmt: skip
        like = survey_for(survey, forward_model, fixed)
        truths = truth_prior(like, prior, power_spectrum)
        return simulate_like(like, truths, seed=seed, command=command)
    return observing.simulate_observation(
        forward_model,
        shape=shape,
        attrs=attrs,
        prior=prior,
        power_spectrum=power_spectrum,
        mask=mask,
        mask_fraction=mask_fraction,
        mask_border=mask_border,
        noise_std=noise_std,
        seed=seed,
        command=command,
        **arrays,
    )


def simulate_observation_to_file(
    output: str | os.PathLike, forward_model: str, **options: Any
) -> Observation:
    """`simulate_observation` written to an OBS.h5 file, as `posterior-diffusion simulate-obs`
    runs it: the output path is checked before anything is drawn.

    Args:
        output: observation file to write (.h5 or .hdf5) in an existing directory.
        forward_model: as in `simulate_observation`.
        **options: the other arguments of `simulate_observation`.

    Returns:
        The Observation written.
    """
    check_observation_path(output)
    obs = simulate_observation(forward_model, **options)
    obs.write(output)
    return obs


def bin_catalog(
    catalog: str | os.PathLike, columns: ColumnMap = DEFAULT_COLUMNS, **options: Any
) -> tuple[Observation, BinnedShear]:
    """A lensing observation binned from a shear catalogue on the sky (docs/sky.md).

    Args:
        catalog: FITS binary table, CSV or ECSV file (read by astropy.table).
        columns: which columns hold ra, dec, e1, e2 and, optionally, weight, m, c1, c2.
        **options: `pixel_scale_arcmin`, `shape` (H, W), `centre` (RA, Dec) [deg] or `header`
            (a FITS image whose WCS sets the grid); `sigma_e` (default: estimated),
            `m_global`, `flip_e1`, `flip_e2`, `command` (provenance).

    Returns:
        The observation (y: weighted mean shear (2, H, W); mask; per-pixel noise_std; dataset
        n_galaxies; attributes forward_model='lensing', pixel_scale_arcmin, wcs_header and the
        binning settings as JSON) and the binning's maps and numbers.
    """
    return catalog_observation.binned_observation(catalog, columns, **options)


def bin_catalog_to_file(
    catalog: str | os.PathLike, output: str | os.PathLike, **options: Any
) -> tuple[Observation, BinnedShear]:
    """`bin_catalog` written to an OBS.h5 file (validated, atomic), as `posterior-diffusion
    bin-catalog` runs it: the output path is checked before the catalogue is read."""
    check_observation_path(output)
    obs, binned = bin_catalog(catalog, **options)
    obs.write(output)
    return obs, binned


def peak_catalog(
    posterior: str | os.PathLike,
    output: str | os.PathLike | None = None,
    smoothing: float = 2.0,
    radius: float = 2.0,
    min_snr: float = 3.0,
    command: str | None = None,
):
    """The peak catalogue of a posterior file (an astropy Table), written to `output` (.ecsv or
    .fits, atomically) when given.

    Peaks are the local maxima of the posterior mean smoothed by a Gaussian of std `smoothing`
    whose smoothed mean / std exceeds `min_snr`; for each, `probability` is the fraction of
    smoothed samples with a local maximum within `radius`, and `height_p16/median/p84` the
    distribution of those maxima's heights. Lengths are in arcmin when the observation gives
    `pixel_scale_arcmin`, else in pixels; `ra`/`dec` columns when it has a sky grid.
    """
    if output is not None:
        peak_tables.check_table_path(output)
    table = peak_tables.peak_table(posterior, smoothing, radius, min_snr, command)
    if output is not None:
        peak_tables.write_peak_table(table, output)
    return table


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
    return observing.observe_field(
        truth,
        forward_model,
        attrs=attrs,
        mask=mask,
        noise_std=noise_std,
        seed=seed,
        command=command,
        prior_identity=prior_identity,
        **arrays,
    )


def simulate_fields_to_file(
    output: str | os.PathLike,
    kind: str,
    num: int = 1,
    shape: Sequence[int] = DEFAULT_FIELD_SHAPE,
    seed: int = 0,
    power_spectrum: str | os.PathLike | None = None,
    pixel_scale_arcmin: float | None = None,
    shift: float | None = None,
    lpt_order: int = 1,
    growth: float = 1.0,
    depth: int | None = None,
    amplitude_range: Sequence[float] | None = None,
    slope_range: Sequence[float] | None = None,
    command: str | None = None,
) -> np.ndarray:
    """Simulate `num` maps of `kind` (training or test sets) and write them to `output`.

    Args:
        output: .h5, .hdf5 or .zarr file (dataset `fields`, (num, H, W); `theta` (num, 2) for
            GRFs at many cosmologies), checked before anything is simulated.
        kind: grf, lognormal, convergence or density.
        num: number of maps.
        shape: (H, W) [pixels]; density needs H = W.
        seed: random seed.
        power_spectrum: two-column text file, k [cycles/pixel, or cycles/cell for density's 3-D
            spectrum] and P; None: the kind's default.
        pixel_scale_arcmin: convergence: pixel side [arcmin] (1).
        shift: lognormal (1) and convergence (0.02): the lognormal shift.
        lpt_order: density: 1 (Zel'dovich) or 2 (2LPT).
        growth: density: growth amplitude D.
        depth: density: cells along the line of sight (default H). Maps larger than a training
            set's are the same field only with the training maps' depth.
        amplitude_range, slope_range: grf at many cosmologies: each map draws its power-law
            amplitude and slope uniformly in these (LO, HI); either one given makes such a set
            (the other takes its default box; docs/conditional_priors.md).
        command: the command line, recorded in the file.

    Returns:
        The maps written, (num, H, W).
    """
    return simulated_fields.simulate_fields_to_file(
        output,
        kind,
        num=num,
        shape=shape,
        seed=seed,
        power_spectrum=power_spectrum,
        pixel_scale_arcmin=pixel_scale_arcmin,
        shift=shift,
        lpt_order=lpt_order,
        growth=growth,
        depth=depth,
        amplitude_range=amplitude_range,
        slope_range=slope_range,
        command=command,
    )


def check_model(
    file: str | os.PathLike,
    dataset: str | None = None,
    prior: str | Prior | None = None,
    power_spectrum: str | os.PathLike | None = None,
    theta: Mapping[str, float] | Sequence[float] | None = None,
    probes: int | str = 4,
    reference: int = 32,
    seed: int = 0,
    device: str = "cpu",
    output: str | os.PathLike | None = None,
    progress: bool = True,
    command: str | None = None,
) -> FileCheck:
    """Model checking: log p(x) of each field in a file under the prior (probability-flow ODE),
    and the fraction of the prior's own draws that score lower (docs/log_likelihood.md).

    Args:
        file: .h5, .hdf5, .nc or .zarr file of fields.
        dataset: dataset of fields; None: the first of fields, samples, truth.
        prior: as in `reconstruct`.
        power_spectrum: as in `reconstruct`.
        theta: a conditional prior's parameters, as in `reconstruct`.
        probes: Hutchinson probes (error bar from their spread), or "exact" (small maps).
        reference: prior draws scored alike, to rank the fields among (0: none).
        seed: seeds the reference draws and the probes.
        device: "cpu" or "cuda".
        output: also write the result, with provenance, to this .json file.
        progress: progress bars on stderr.
        command: the command line, recorded as provenance.

    Returns:
        The file, the dataset checked and the result (per-field log-density, its standard
        error and rank among the reference draws).
    """
    return model_check_file.check_field_file(
        file,
        dataset=dataset,
        prior=prior,
        power_spectrum=power_spectrum,
        theta=theta,
        probes=probes,
        reference=reference,
        seed=seed,
        device=device,
        output=output,
        progress=progress,
        command=command,
    )


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
    mask_fraction: float | None = 0.0,
    mask_border: int | None = 0,
    noise_std: float | None = None,
    survey: str | os.PathLike | None = None,
    sampler: str | None = None,
    num_samples: int = 64,
    steps: int | None = None,
    sampler_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int | None = None,
    keep_tests: bool = True,
    progress: bool = True,
    command: str | None = None,
    shard: tuple[int, int] | None = None,
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
        mask_fraction: fraction of pixels lost to random rectangular holes; None: the forward
            model's default (registry `default_mask`).
        mask_border: unobserved frame [pixels]; None: the forward model's default.
        noise_std: noise standard deviation [data units].
        survey: an observation file (e.g. from `bin_catalog`) whose grid, mask, per-pixel noise,
            forward-model parameters and WCS every test imitates, as `simulate_observation`'s
            `survey` does: truths are cut from a periodic domain twice the patch's side (prior
            draws, or `simulations` maps of at least the patch's size), and the reconstruction
            pads the patch as `reconstruct` pads the survey's own data. Excludes shape, attrs,
            mask and noise_std.
        sampler: a sampler name; None: as in `reconstruct`.
        num_samples: posterior samples per test (>= 2).
        steps: sampler steps; None: the sampler's default.
        sampler_options: keyword options of the sampler, as in `reconstruct`.
        seed: the run's seed; every random stream of test i derives from (seed, i).
        device: "cpu" or "cuda".
        batch_size: members sampled at once.
        keep_tests: keep OUTPUT_DIR/tests/ (needed to resume or extend the run).
        progress: a progress bar over tests on stderr.
        command: the command line, recorded as provenance.
        shard: (i, n): compute only tests with index % n == i (and test 0), e.g. one job of n
            sharing OUTPUT_DIR; the report is written by the run that finds every test finished.

    Returns:
        The report's summary (what summary.json holds); while other shards' tests are missing,
        {"num_tests", "finished", "tests_computed_by_this_run", "report": None}.

    Raises:
        ValueError (and subclasses): invalid input, or finished tests made with other settings.
        CalibrationInterrupted: Ctrl-C; finished tests are kept for a rerun to resume.
    """
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
        mask_fraction=None if mask_fraction is None else float(mask_fraction),
        mask_border=None if mask_border is None else int(mask_border),
        noise_std=noise_std,
        survey=None if survey is None else Path(survey),
        sampler=sampler,
        num_samples=int(num_samples),
        steps=steps,
        sampler_options=dict(sampler_options or {}),
        seed=int(seed),
        device=device,
        batch_size=batch_size,
        progress=progress,
        command=command,
        shard=None if shard is None else (int(shard[0]), int(shard[1])),
    )
    run = run_calibration(request)
    if not run.complete:
        return {"num_tests": run.request.num_tests, "report": None,
                "finished": run.store.count_finished(run.request.num_tests),
                "tests_computed_by_this_run": run.computed}  # fmt: skip
    # The report modules load matplotlib: imported when a report is made.
    from posterior_diffusion.reporting.calibration_report import write_calibration_report

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
    "CalibrationInterrupted",
    "FileCheck",
    "ReconstructionInterrupted",
    "calibrate",
    "check_model",
    "observation_model",
    "observe_field",
    "reconstruct",
    "reconstruct_to_file",
    "report_posterior",
    "simulate_fields_to_file",
    "simulate_observation",
    "simulate_observation_to_file",
]
