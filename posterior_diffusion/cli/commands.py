"""One function per command: take the parsed flags, call one API function, print one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from posterior_diffusion import api
from posterior_diffusion.defaults import DEFAULT_FIELD_SHAPE
from posterior_diffusion.io.atomic import check_output_target
from posterior_diffusion.io.journal import holds_ensemble_state

from .errors import EXIT_INTERRUPTED, EXIT_OK, UsageError, say
from .parser import forward_model_attrs, sampler_options


def reconstruct(args: argparse.Namespace, command: str) -> int:
    try:
        ds = api.reconstruct_to_file(
            args.observation,
            args.output,
            resume=args.resume,
            forward_model=args.forward_model,
            prior=args.prior,
            power_spectrum=args.power_spectrum,
            sampler=args.sampler,
            num_samples=args.num_samples,
            steps=args.steps,
            seed=args.seed,
            device=args.device,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            command=command,
            precision=args.precision,
            compile=args.compile,
            devices=args.devices,
            num_nodes=args.num_nodes,
            sampler_options=sampler_options(args),
            theta=args.theta,
            guidance=args.guidance,
            theta_grid=args.theta_grid,
            overwrite=args.overwrite,
            allow_long_run=args.allow_long_run,
            pad=args.pad,
        )
    except api.ReconstructionInterrupted as stop:
        say(_interrupted(stop, args.output))
        return EXIT_INTERRUPTED
    if ds is None:
        return EXIT_OK  # a rank other than 0 of a sharded run: rank 0 writes the output
    resumed = int(ds.attrs.get("resumed_members", 0))
    note = f" ({resumed} of them from the interrupted run)" if resumed else ""
    print(f"wrote {ds.sizes['sample']} samples to {args.output}{note}")
    return EXIT_OK


def _interrupted(stop: api.ReconstructionInterrupted, output: str) -> str:
    """What an interrupted reconstruction left behind, and how to finish it."""
    if stop.journal is not None:  # a sharded run: other ranks' members are there too
        return (
            f"interrupted; {stop.completed} of {stop.requested} samples are saved in "
            f"{stop.journal}; add --resume to the same command to finish the run"
        )
    if stop.dataset is None and holds_ensemble_state(output):
        return (
            f"interrupted; the sampler's state after its last finished level is saved beside "
            f"{output}; add --resume to the same command to continue from there"
        )
    if stop.dataset is None:
        return "interrupted before any sample was completed; nothing written"
    return (
        f"interrupted after {stop.completed} of {stop.requested} samples; wrote those to "
        f"{output} (attribute interrupted=1); add --resume to the same command to finish the run"
    )


def _check_output(args: argparse.Namespace, output, directory: bool, *inputs) -> None:
    """Refuse, before any work, an output that is an input, a thing of the other kind, or an
    existing output without --overwrite (one line, exit 2)."""
    if output is not None:
        check_output_target(output, directory, args.overwrite, inputs)


def _check_survey_flags(args: argparse.Namespace) -> None:
    """--survey fixes the mask (and the rest, which the API checks): no mask flags beside it."""
    if args.survey is None:
        return
    given = [flag for flag, value in (("--mask-fraction", args.mask_fraction),
             ("--mask-border", args.mask_border), ("--mask", args.mask)) if value is not None]  # fmt: skip
    if getattr(args, "channels", 1) != 1:
        given.append("--channels")
    if args.shape is not None and tuple(args.shape) != tuple(DEFAULT_FIELD_SHAPE):
        given.append("--shape")  # simulate-obs's default shape is not a choice
    if given:
        raise UsageError(
            f"--survey fixes the grid, mask and noise; do not also give {', '.join(given)}"
        )


def simulate_obs(args: argparse.Namespace, command: str) -> int:
    if args.mask and args.mask_border is not None:
        raise UsageError("--mask-border cannot be combined with --mask (put the border in FILE)")
    _check_survey_flags(args)
    _check_output(args, args.output, False, args.mask, args.power_spectrum, args.prior, args.survey)
    if args.survey:
        api.simulate_observation_to_file(
            args.output, args.forward_model, survey=args.survey, attrs=forward_model_attrs(args),
            noise_std=args.noise_std, prior=args.prior, power_spectrum=args.power_spectrum,
            seed=args.seed, command=command,
        )  # fmt: skip
    else:
        api.simulate_observation_to_file(
            args.output,
            args.forward_model,
            shape=(args.channels, *args.shape),
            attrs=forward_model_attrs(args),
            prior=args.prior,
            power_spectrum=args.power_spectrum,
            mask=_read_mask(args.mask) if args.mask else None,
            mask_fraction=args.mask_fraction,  # None: the forward model's default
            mask_border=args.mask_border,
            noise_std=args.noise_std,
            seed=args.seed,
            command=command,
        )
    print(f"wrote a simulated '{args.forward_model}' observation to {args.output}")
    return EXIT_OK


def bin_catalog(args: argparse.Namespace, command: str) -> int:
    _check_output(args, args.output, False, args.catalog, args.header)
    obs, binned = api.bin_catalog_to_file(
        args.catalog,
        args.output,
        columns=api.ColumnMap(
            args.ra, args.dec, args.e1, args.e2, args.weight, args.m, args.c1, args.c2
        ),  # fmt: skip
        pixel_scale_arcmin=args.pixel_scale,
        shape=args.shape,
        centre=args.center,
        header=args.header,
        sigma_e=args.sigma_e,
        m_global=args.m_global,
        flip_e1=args.flip_e1,
        flip_e2=args.flip_e2,
        command=command,
    )
    h, w = obs.y.shape[-2:]
    print(
        f"wrote {args.output}: {int(binned.counts.sum())} galaxies on {h} x {w} pixels "
        f"({int(binned.mask.sum())} observed), sigma_e {binned.sigma_e:.4g} "
        f"({binned.sigma_e_source}); {binned.galaxies_left_out} off the grid or of zero weight"
    )
    return EXIT_OK


def simulate(args: argparse.Namespace, command: str) -> int:
    _check_output(args, args.output, Path(args.output).suffix == ".zarr", args.power_spectrum)
    fields = api.simulate_fields_to_file(
        args.output,
        args.kind,
        num=args.num,
        shape=args.shape,
        seed=args.seed,
        power_spectrum=args.power_spectrum,
        pixel_scale_arcmin=args.pixel_scale_arcmin,
        shift=args.shift,
        lpt_order=args.lpt_order,
        growth=args.growth,
        depth=args.depth,
        amplitude_range=args.amplitude_range,
        slope_range=args.slope_range,
        command=command,
    )
    num, height, width = fields.shape
    if args.amplitude_range or args.slope_range:
        print(
            f"wrote {num} 'grf' maps of {height} x {width}, each with its theta, to {args.output}"
        )
    else:
        print(f"wrote {num} '{args.kind}' maps of {height} x {width} to {args.output}")
    return EXIT_OK


def log_likelihood(args: argparse.Namespace, command: str) -> int:
    _check_output(args, args.output, False, args.file, args.prior, args.power_spectrum)
    check = api.check_model(
        args.file,
        dataset=args.dataset,
        prior=args.prior,
        power_spectrum=args.power_spectrum,
        theta=args.theta,
        probes=args.probes,
        reference=args.reference,
        seed=args.seed,
        device=args.device,
        output=args.output,
        progress=not args.no_progress,
        command=command,
    )
    _print_model_check(check)
    if args.output:
        print(f"wrote {args.output}")
    return EXIT_OK


def _print_model_check(check: api.FileCheck) -> None:
    """The table of log-densities, and the spread of the prior's own draws."""
    result, scored = check.result, check.result.fields
    print(
        f"log p under the prior of {check.file}:{check.dataset} ({scored.pixels} pixels per field) [nats]"
    )
    print(
        "field  log_p  std_error  per_pixel"
        + ("  fraction_of_prior_draws_below" * bool(result.percentile is not None))
    )
    for i, (value, error) in enumerate(zip(scored.log_density, scored.standard_error, strict=True)):
        rank = "" if result.percentile is None else f"  {float(result.percentile[i]):.3f}"
        print(
            f"{i}  {float(value):.3f}  {float(error):.3f}  {float(value) / scored.pixels:.5f}{rank}"
        )
    if result.reference is not None:
        reference = result.reference.log_density.double()
        low, median, high = (float(reference.quantile(q)) for q in (0.01, 0.5, 0.99))
        print(
            f"prior draws ({len(reference)}): median {median:.3f}, 1%-99% [{low:.3f}, {high:.3f}]"
        )


def calibrate(args: argparse.Namespace, command: str) -> int:
    if args.mask and args.mask_border is not None:
        raise UsageError("--mask-border cannot be combined with --mask (put the border in FILE)")
    _check_survey_flags(args)
    try:
        summary = api.calibrate(
            args.output,
            args.forward_model,
            args.num_tests,
            prior=args.prior,
            power_spectrum=args.power_spectrum,
            simulations=args.simulations,
            shape=args.shape,
            attrs=forward_model_attrs(args),
            mask=_read_mask(args.mask) if args.mask else None,
            mask_fraction=args.mask_fraction,  # None: the forward model's default
            mask_border=args.mask_border,
            noise_std=args.noise_std,
            survey=args.survey,
            sampler=args.sampler,
            num_samples=args.num_samples,
            steps=args.steps,
            sampler_options=sampler_options(args),
            seed=args.seed,
            device=args.device,
            batch_size=args.batch_size,
            keep_tests=not args.no_keep_tests,
            progress=not args.no_progress,
            command=command,
            shard=args.shard,
        )
    except api.CalibrationInterrupted as stop:
        say(
            f"interrupted with {stop.finished} of {stop.requested} tests finished "
            f"(kept in {stop.folder}); rerun the same command to resume"
        )
        return EXIT_INTERRUPTED
    if "finished" in summary:  # a shard that ended before the others
        print(
            f"shard {args.shard[0]}/{args.shard[1]}: computed {summary['tests_computed_by_this_run']}"
            f" tests; {summary['finished']} of {summary['num_tests']} finished in "
            f"{args.output}/tests; the shard that finishes last writes the report (or rerun "
            "without --shard)"
        )
        return EXIT_OK
    print(
        f"wrote a calibration report of {summary['num_tests']} tests "
        f"({summary['tests_computed_by_this_run']} computed now) to {args.output} "
        "(index.html, report.pdf, summary.json)"
    )
    return EXIT_OK


def report(args: argparse.Namespace, command: str) -> int:
    from posterior_diffusion.reporting.posterior_report import default_report_dir

    _check_output(args, args.output or default_report_dir(args.posterior), True, args.posterior)
    summary = api.report_posterior(args.posterior, args.output, command=command)
    print(f"wrote a report of {args.posterior} to {summary['report_directory']}")
    return EXIT_OK


def train(argv: list[str]) -> None:
    from posterior_diffusion.training.cli import run_training

    run_training(argv)


def _read_mask(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{path}: cannot read mask as a .npy array ({reason})") from None


def peaks(args: argparse.Namespace, command: str) -> int:
    _check_output(args, args.output, False, args.posterior)
    table = api.peak_catalog(
        args.posterior, args.output, smoothing=args.smoothing, radius=args.radius,
        min_snr=args.min_snr, command=command,
    )  # fmt: skip
    print(f"wrote {len(table)} peaks to {args.output}")
    return EXIT_OK


COMMANDS = {
    "reconstruct": reconstruct,
    "simulate-obs": simulate_obs,
    "bin-catalog": bin_catalog,
    "simulate": simulate,
    "log-likelihood": log_likelihood,
    "calibrate": calibrate,
    "report": report,
    "peaks": peaks,
}
