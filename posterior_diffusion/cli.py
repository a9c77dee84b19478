"""The `posterior-diffusion` command line: argument parsing and error reporting only.

The work is done by posterior_diffusion.api. Invalid input is reported as one line on stderr
with exit status 2 and nothing written; Ctrl-C while sampling writes the completed members.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Sequence

PROG = "posterior-diffusion"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

# simulate-obs masks when none is asked for: (hole fraction, border width / min(H, W)).
DEFAULT_MASKS = {"lensing": (0.1, 1 / 16), "inpainting": (0.2, 0.0)}

# simulate-obs flags that become forward-model attributes (the attribute is the flag's dest):
# flag, type, metavar, help with the default in parentheses.
MODEL_FLAGS = (
    ("--psf-fwhm-pixels", float, "PIX", "blur: Gaussian PSF FWHM [pixels] (3)"),
    ("--downsample-factor", int, "F", "downsample: block side [pixels] (2)"),
    ("--smoothing-kind", str, "KIND", "smoothing: gaussian or tophat (gaussian)"),
    ("--smoothing-radius-pixels", float, "PIX", "smoothing: sigma or disk radius [pixels] (2)"),
    ("--pixel-scale-arcmin", float, "ARCMIN", "lensing: pixel side [arcmin] (1)"),
    ("--sigma-e", float, "S", "lensing: ellipticity dispersion per component (0.26)"),
    ("--n-gal-per-arcmin2", float, "N", "lensing: source galaxy density [arcmin^-2] (30)"),
    ("--n-bar", float, "N", "galaxy_counts: mean galaxies per pixel (10)"),
    ("--bias", float, "B", "galaxy_counts: linear galaxy bias (1.5)"),
)


class UsageError(ValueError):
    """Flags that are fine one by one but do not go together."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Calibrated Bayesian reconstruction of physical fields with diffusion priors.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rec = sub.add_parser(
        "reconstruct",
        help="draw posterior samples of the field behind an observation file",
        description="Draw posterior samples of the field behind OBS (docs/observation-format.md).",
    )
    rec.add_argument("observation", metavar="OBS", help="observation file (.h5)")
    rec.add_argument(
        "--forward-model", metavar="NAME", help="default: the file's forward_model attribute"
    )
    _add_prior_flags(rec)
    rec.add_argument(
        "--sampler",
        metavar="NAME",
        help="guided, split_gibbs, dps, ... (default: guided for linear-Gaussian models, else linearized)",
    )
    rec.add_argument("--num-samples", type=int, default=64, metavar="N", help="(default: 64)")
    rec.add_argument("--steps", type=int, metavar="K", help="default: the sampler's own")
    rec.add_argument("--seed", type=int, default=0, metavar="S", help="(default: 0)")
    rec.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    rec.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="members sampled at once (default: up to 64, as many as fit in memory)",
    )
    rec.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="a trained prior's network in float32 or bfloat16 autocast (default: fp32)",
    )
    rec.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed or interrupted run of the same command from the members it "
        "saved (same settings; the ensemble equals an uninterrupted one)",
    )
    rec.add_argument(
        "--corrector-steps",
        type=int,
        metavar="K",
        help="Langevin corrector steps per noise level (predictor-corrector; guided, prior_ode, "
        "prior_sde; measured effect in docs/samplers.md; default: none)",
    )
    rec.add_argument(
        "--snr",
        type=float,
        metavar="R",
        help="signal-to-noise ratio of the corrector's step size (default: 0.16)",
    )
    rec.add_argument(
        "--theta",
        type=parse_theta_flag,
        metavar="NAME=V,...",
        help="parameters of a conditional prior to reconstruct at, e.g. amplitude=1.2,slope=-2 "
        "(default: the prior's marginal over its training parameters)",
    )
    rec.add_argument(
        "--guidance",
        type=float,
        default=0.0,
        metavar="W",
        help="classifier-free guidance weight with --theta; error bars are calibrated at 0 only "
        "(default: 0; docs/conditional_priors.md)",
    )
    rec.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="processes per node that share the ensemble, one per GPU with --device cuda "
        "(default: 1); member i is the same draw whatever N",
    )
    rec.add_argument(
        "--num-nodes",
        type=int,
        default=1,
        metavar="M",
        help="nodes of a sharded run, started by srun (docs/scaling.md; default: 1)",
    )
    rec.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile a trained prior's network: faster on GPUs for large ensembles",
    )
    rec.add_argument(
        "-o",
        "--output",
        default="posterior.h5",
        metavar="OUT",
        help="result file: .h5, .hdf5, .nc (netCDF-4) or .zarr (default: posterior.h5)",
    )
    rec.add_argument("--no-progress", action="store_true", help="no progress bar")
    rec.set_defaults(run=run_reconstruct)

    sim = sub.add_parser(
        "simulate-obs",
        help="draw a field from the prior and write a simulated observation file",
        description="Draw a field from the prior, observe it through a forward model, write OUT.",
    )
    sim.add_argument("output", metavar="OUT", help="observation file to write (.h5)")
    sim.add_argument("--forward-model", metavar="NAME", required=True, help="e.g. lensing")
    _add_prior_flags(sim)
    sim.add_argument(
        "--shape",
        nargs=2,
        type=int,
        default=(64, 64),
        metavar=("H", "W"),
        help="field size [pixels] (default: 64 64)",
    )
    sim.add_argument(
        "--channels", type=int, default=1, metavar="C", help="field channels (default: 1)"
    )
    masks = sim.add_mutually_exclusive_group()
    masks.add_argument("--mask", metavar="FILE", help="0/1 mask (H, W) as a .npy file")
    masks.add_argument(
        "--mask-fraction",
        type=float,
        metavar="F",
        help="fraction of pixels lost to random rectangular holes "
        "(default: 0.1 for lensing, 0.2 for inpainting, else 0)",
    )
    sim.add_argument(
        "--mask-border",
        type=int,
        metavar="B",
        help="unobserved frame [pixels] (default: min(H, W) // 16 for lensing, else 0)",
    )
    sim.add_argument(
        "--noise-std", type=float, metavar="S", help="noise standard deviation [data units]"
    )
    for flag, kind, metavar, text in MODEL_FLAGS:
        sim.add_argument(flag, type=kind, metavar=metavar, help=text)
    sim.add_argument("--seed", type=int, default=0, metavar="S", help="(default: 0)")
    sim.set_defaults(run=run_simulate)

    fields = sub.add_parser(
        "simulate",
        help="write simulated fields (training or test sets) to an .h5 or .zarr file",
        description="Simulate NUM maps of KIND (grf, lognormal, convergence, density) into OUT.",
    )
    fields.add_argument("kind", metavar="KIND", help="grf, lognormal, convergence or density")
    fields.add_argument("output", metavar="OUT", help="file to write (.h5, .hdf5 or .zarr)")
    fields.add_argument("--num", type=int, default=1, metavar="N", help="maps (default: 1)")
    fields.add_argument(
        "--shape",
        nargs=2,
        type=int,
        default=(64, 64),
        metavar=("H", "W"),
        help="map size [pixels]; density needs H = W (default: 64 64)",
    )
    fields.add_argument("--seed", type=int, default=0, metavar="S", help="(default: 0)")
    fields.add_argument(
        "--power-spectrum",
        metavar="FILE",
        help="two columns: k [cycles/pixel, or cycles/cell for density's 3-D spectrum], P",
    )
    fields.add_argument(
        "--pixel-scale-arcmin", type=float, metavar="A", help="convergence: pixel side (1)"
    )
    fields.add_argument(
        "--shift", type=float, metavar="S", help="lognormal (1) and convergence (0.02) shift"
    )
    fields.add_argument(
        "--lpt-order", type=int, default=1, metavar="1|2", help="density: 1 Zel'dovich, 2 2LPT"
    )
    fields.add_argument(
        "--growth", type=float, default=1.0, metavar="D", help="density: growth amplitude (1)"
    )
    for name, (low, high) in (("amplitude", (0.5, 2.0)), ("slope", (-2.5, -1.0))):
        fields.add_argument(
            f"--{name}-range",
            nargs=2,
            type=float,
            metavar=("LO", "HI"),
            help=f"grf at many cosmologies: each map draws its power-law {name} uniformly in "
            f"[LO, HI] and the file gets a 'theta' dataset, for a conditional prior "
            f"(default box: {low:g} {high:g}; docs/conditional_priors.md)",
        )
    fields.set_defaults(run=run_simulate_fields)
    _add_log_likelihood_command(sub)
    # Listed for --help only: main() hands `train ...` to LightningCLI before this parser runs.
    sub.add_parser(
        "train",
        help="train a score prior on simulated fields (train --config FILE; train --help)",
        add_help=False,
    )
    _add_calibration_commands(sub)
    return parser


def _add_prior_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prior",
        metavar="SPEC",
        help="default, gaussian, or a prior file from `train` (.pt/.ckpt) (default: default)",
    )
    parser.add_argument(
        "--power-spectrum",
        metavar="FILE",
        help="two columns: k [cycles/pixel], P; implies --prior gaussian",
    )


def _add_log_likelihood_command(sub) -> None:
    check = sub.add_parser(
        "log-likelihood",
        help="model checking: log p of fields under the prior, ranked among the prior's draws",
        description="log p(x) of each field in FILE under the prior (probability-flow ODE), and "
        "the fraction of the prior's own draws that score lower (docs/log_likelihood.md).",
    )
    check.add_argument("file", metavar="FILE", help=".h5, .hdf5, .nc or .zarr file of fields")
    check.add_argument(
        "--dataset",
        metavar="NAME",
        help="dataset of fields (default: the first of fields, samples, truth)",
    )
    _add_prior_flags(check)
    check.add_argument(
        "--theta", type=parse_theta_flag, metavar="NAME=V,...", help="a conditional prior's theta"
    )
    check.add_argument(
        "--probes",
        type=_probes,
        default=4,
        metavar="K|exact",
        help="Hutchinson probes (error bar from their spread), or exact (small maps) (default: 4)",
    )
    check.add_argument(
        "--reference",
        type=int,
        default=32,
        metavar="N",
        help="prior draws scored alike, to rank the fields among (0: none) (default: 32)",
    )
    check.add_argument("--seed", type=int, default=0, metavar="S", help="(default: 0)")
    check.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    check.add_argument("-o", "--output", metavar="OUT.json", help="also write the result as JSON")
    check.add_argument("--no-progress", action="store_true", help="no progress bars")
    check.set_defaults(run=run_log_likelihood)


def _probes(text: str) -> int | str:
    if text == "exact":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer or 'exact'") from None


def run_log_likelihood(args: argparse.Namespace, command: str) -> int:
    from posterior_diffusion.model_check import read_fields

    if args.output and not args.output.endswith(".json"):
        raise UsageError(f"{args.output}: the result is written as JSON (.json)")
    fields, dataset = read_fields(args.file, args.dataset)  # bad input fails before torch work
    if args.reference < 0:
        raise UsageError(f"--reference must be >= 0, got {args.reference}")
    import torch

    from posterior_diffusion.api import _check_run_settings
    from posterior_diffusion.model_check import model_check
    from posterior_diffusion.prior_resolver import condition_prior, resolve_prior

    _check_run_settings(1, None, args.seed, None, args.device)
    prior = resolve_prior(args.prior, args.power_spectrum, tuple(fields.shape[1:]))
    prior = condition_prior(prior, args.theta).to(args.device)
    x = torch.from_numpy(fields).to(args.device)
    result = model_check(
        prior, x, args.probes, args.reference, args.seed, progress=not args.no_progress
    )
    _print_model_check(result, f"{args.file}:{dataset}")
    if args.output:
        _write_model_check(result, args, command, prior.identity(), dataset)
    return EXIT_OK


def _print_model_check(result, source: str) -> None:
    scored = result.fields
    print(f"log p under the prior of {source} ({scored.pixels} pixels per field) [nats]")
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


def _write_model_check(result, args, command: str, identity: dict, dataset: str) -> None:
    import json

    from posterior_diffusion.io.atomic import atomic_path
    from posterior_diffusion.provenance import provenance

    def floats(values) -> list[float] | None:
        return None if values is None else [float(v) for v in values]

    content = {
        "file": args.file,
        "dataset": dataset,
        "pixels": result.fields.pixels,
        "log_density": floats(result.fields.log_density),
        "standard_error": floats(result.fields.standard_error),
        "fraction_of_prior_draws_below": floats(result.percentile),
        "reference_log_density": floats(
            None if result.reference is None else result.reference.log_density
        ),
        "probes": args.probes,
        "provenance": provenance(
            command=command, seed=args.seed, prior_identity=identity, input_path=args.file
        ),
    }
    with atomic_path(args.output) as tmp:
        tmp.write_text(json.dumps(content, indent=1, default=str))
    print(f"wrote {args.output}")


def _add_calibration_commands(sub) -> None:
    """The `calibrate` and `report` subcommands (docs/calibration.md)."""
    cal = sub.add_parser(
        "calibrate",
        help="run held-out reconstructions with known truths and write a calibration report",
        description="Draw NUM_TESTS (truth, observation) pairs, sample each posterior, and write "
        "a calibration report (coverage, TARP, SBC, spectra, ...) to OUT. Finished tests are "
        "saved in OUT/tests/: rerunning the same command resumes a killed run.",
    )
    cal.add_argument("--forward-model", metavar="NAME", required=True, help="e.g. inpainting")
    _add_prior_flags(cal)
    truths = cal.add_mutually_exclusive_group(required=True)
    truths.add_argument(
        "--simulations",
        metavar="FILE",
        help="truths: maps in order from a `simulate` file (.h5/.zarr, dataset 'fields')",
    )
    truths.add_argument("--from-prior", action="store_true", help="truths: draws from the prior")
    cal.add_argument("--num-tests", type=int, required=True, metavar="N", help="held-out tests")
    cal.add_argument(
        "--num-samples", type=int, default=64, metavar="M", help="samples per test (default: 64)"
    )
    cal.add_argument(
        "--sampler",
        metavar="NAME",
        help="guided, split_gibbs, dps, ... (default: guided for linear-Gaussian models, else linearized)",
    )
    cal.add_argument("--steps", type=int, metavar="K", help="default: the sampler's own")
    cal.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="test i uses streams of (S, i) (default: 0)",
    )
    cal.add_argument(
        "--shape",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="field size [pixels] (default: the simulations' maps, or 64 64)",
    )
    masks = cal.add_mutually_exclusive_group()
    masks.add_argument("--mask", metavar="FILE", help="0/1 mask (H, W) as a .npy file, all tests")
    masks.add_argument(
        "--mask-fraction",
        type=float,
        metavar="F",
        help="fraction of pixels lost to random rectangular holes, one mask for all tests "
        "(default: 0.1 for lensing, 0.2 for inpainting, else 0)",
    )
    cal.add_argument(
        "--mask-border",
        type=int,
        metavar="B",
        help="unobserved frame [pixels] (default: min(H, W) // 16 for lensing, else 0)",
    )
    cal.add_argument(
        "--noise-std", type=float, metavar="S", help="noise standard deviation [data units]"
    )
    for flag, kind, metavar, text in MODEL_FLAGS:
        cal.add_argument(flag, type=kind, metavar=metavar, help=text)
    cal.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    cal.add_argument("--batch-size", type=int, metavar="B", help="members sampled at once")
    cal.add_argument(
        "-o",
        "--output",
        default="calibration_report",
        metavar="DIR",
        help="report directory (default: calibration_report)",
    )
    cal.add_argument(
        "--no-keep-tests",
        action="store_true",
        help="delete DIR/tests/ (per-test results) once the report is written; no resuming",
    )
    cal.add_argument("--no-progress", action="store_true", help="no progress bar")
    cal.set_defaults(run=run_calibrate)

    rep = sub.add_parser(
        "report",
        help="figures and summary statistics of a posterior file from `reconstruct`",
        description="Write panels, summary statistics and, when the file holds the truth, "
        "truth diagnostics (coverage, P(k), r(k), T(k)) of POSTERIOR to DIR.",
    )
    rep.add_argument("posterior", metavar="POSTERIOR", help="posterior file (.h5, .nc, .zarr)")
    rep.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="report directory (default: <POSTERIOR stem>_report next to the file)",
    )
    rep.set_defaults(run=run_report)


def run_calibrate(args: argparse.Namespace, command: str) -> int:
    if args.mask and args.mask_border is not None:
        raise UsageError("--mask-border cannot be combined with --mask (put the border in FILE)")
    mask = _read_mask(args.mask) if args.mask else None
    shape = tuple(args.shape) if args.shape else None
    if args.simulations and shape is None:
        from posterior_diffusion.calibration import SimulationsFile

        shape = SimulationsFile(args.simulations).shape[1:]
    h, w = shape or (64, 64)
    fraction, border_share = DEFAULT_MASKS.get(args.forward_model, (0.0, 0.0))
    if args.mask_fraction is not None:
        fraction = args.mask_fraction
    border = args.mask_border if args.mask_border is not None else int(border_share * min(h, w))
    attrs = {}
    for flag, *_ in MODEL_FLAGS:
        name = flag.lstrip("-").replace("-", "_")
        if getattr(args, name) is not None:
            attrs[name] = getattr(args, name)
    from posterior_diffusion.api import calibrate
    from posterior_diffusion.calibration import CalibrationInterrupted

    try:
        summary = calibrate(
            args.output,
            args.forward_model,
            args.num_tests,
            prior=args.prior,
            power_spectrum=args.power_spectrum,
            simulations=args.simulations,
            shape=shape,
            attrs=attrs,
            mask=mask,
            mask_fraction=0.0 if mask is not None else fraction,
            mask_border=0 if mask is not None else border,
            noise_std=args.noise_std,
            sampler=args.sampler,
            num_samples=args.num_samples,
            steps=args.steps,
            seed=args.seed,
            device=args.device,
            batch_size=args.batch_size,
            keep_tests=not args.no_keep_tests,
            progress=not args.no_progress,
            command=command,
        )
    except CalibrationInterrupted as stop:
        print(
            f"{PROG}: interrupted with {stop.finished} of {stop.requested} tests finished "
            f"(kept in {stop.folder}); rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(
        f"wrote a calibration report of {summary['num_tests']} tests "
        f"({summary['tests_computed_by_this_run']} computed now) to {args.output} "
        "(index.html, report.pdf, summary.json)"
    )
    return EXIT_OK


def run_report(args: argparse.Namespace, command: str) -> int:
    from posterior_diffusion.api import report_posterior

    summary = report_posterior(args.posterior, args.output, command=command)
    print(f"wrote a report of {args.posterior} to {summary['report_directory']}")
    return EXIT_OK


def run_reconstruct(args: argparse.Namespace, command: str) -> int:
    from posterior_diffusion.io import output_format, read_observation, write_dataset

    # Input and output are checked before torch is even imported: bad input fails fast.
    output_format(args.output)
    observation = read_observation(args.observation)
    from posterior_diffusion.api import ReconstructionInterrupted, reconstruct

    try:
        ds = reconstruct(
            observation,
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
            journal_for=args.output,
            resume=args.resume,
            devices=args.devices,
            num_nodes=args.num_nodes,
            sampler_options=_corrector_options(args),
            theta=args.theta,
            guidance=args.guidance,
        )
    except ReconstructionInterrupted as stop:
        if not is_main_process():
            return EXIT_INTERRUPTED  # rank 0 speaks for the run
        if stop.journal is not None:  # a sharded run: other ranks' members are there too
            print(
                f"{PROG}: interrupted; {stop.completed} of {stop.requested} samples are saved in "
                f"{stop.journal}; add --resume to the same command to finish the run",
                file=sys.stderr,
            )
        elif stop.dataset is None:
            _remove_journal(args.output)  # it holds no member: nothing to resume
            print(
                f"{PROG}: interrupted before any sample was completed; nothing written",
                file=sys.stderr,
            )
        else:
            write_dataset(stop.dataset, args.output)
            print(
                f"{PROG}: interrupted after {stop.completed} of {stop.requested} samples; "
                f"wrote those to {args.output} (attribute interrupted=1); add --resume to "
                "the same command to finish the run",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    if ds is None:
        return EXIT_OK  # a rank other than 0 of a sharded run: rank 0 writes the output
    write_dataset(ds, args.output)
    _remove_journal(args.output)  # the output holds every member now
    resumed = int(ds.attrs.get("resumed_members", 0))
    note = f" ({resumed} of them from the interrupted run)" if resumed else ""
    print(f"wrote {ds.sizes['sample']} samples to {args.output}{note}")
    return EXIT_OK


def parse_theta_flag(text: str) -> dict[str, float] | list[float]:
    """--theta amplitude=1.2,slope=-2 (by name) or 1.2,-2 (in the prior's order)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    named = [item.partition("=") for item in items]
    try:
        if all(sep for _, sep, _ in named):
            theta = {name.strip(): float(value) for name, _, value in named}
            if len(theta) != len(items):
                raise ValueError
            return theta
        if not any(sep for _, sep, _ in named):
            return [float(item) for item in items]
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"'{text}' is not NAME=VALUE,... (every parameter once) or VALUE,VALUE,..."
    )


def _corrector_options(args: argparse.Namespace) -> dict:
    options = {}
    if args.corrector_steps is not None:
        options["corrector_steps"] = args.corrector_steps
    if args.snr is not None:
        options["snr"] = args.snr
    return options


def _remove_journal(output: str) -> None:
    from posterior_diffusion.io.atomic import remove_path
    from posterior_diffusion.io.journal import journal_path

    remove_path(journal_path(output))


def _read_mask(path: str):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{path}: cannot read mask as a .npy array ({reason})") from None


def run_simulate(args: argparse.Namespace, command: str) -> int:
    from posterior_diffusion.io import check_observation_path

    check_observation_path(args.output)
    if args.mask and args.mask_border is not None:
        raise UsageError("--mask-border cannot be combined with --mask (put the border in FILE)")
    mask = _read_mask(args.mask) if args.mask else None
    from posterior_diffusion.api import simulate_observation

    h, w = args.shape
    fraction, border_share = DEFAULT_MASKS.get(args.forward_model, (0.0, 0.0))
    if args.mask_fraction is not None:
        fraction = args.mask_fraction
    border = args.mask_border if args.mask_border is not None else int(border_share * min(h, w))
    attrs = {}
    for flag, *_ in MODEL_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            attrs[flag.lstrip("-").replace("-", "_")] = value
    obs = simulate_observation(
        args.forward_model,
        shape=(args.channels, h, w),
        attrs=attrs,
        prior=args.prior,
        power_spectrum=args.power_spectrum,
        mask=mask,
        mask_fraction=0.0 if mask is not None else fraction,
        mask_border=0 if mask is not None else border,
        noise_std=args.noise_std,
        seed=args.seed,
        command=command,
    )
    obs.write(args.output)
    print(f"wrote a simulated '{args.forward_model}' observation to {args.output}")
    return EXIT_OK


def run_simulate_fields(args: argparse.Namespace, command: str) -> int:
    from posterior_diffusion.simulators.io import dataset_format

    dataset_format(args.output)  # a bad output path fails before any simulation
    if args.lpt_order not in (1, 2):
        raise UsageError(f"--lpt-order must be 1 or 2, got {args.lpt_order}")
    spectrum = None
    if args.power_spectrum:
        from posterior_diffusion.priors.power_spectrum import TabulatedPowerSpectrum

        spectrum = TabulatedPowerSpectrum.from_file(args.power_spectrum)
    from posterior_diffusion.simulators import simulate_fields, write_dataset_file

    if args.amplitude_range or args.slope_range:
        return _simulate_conditional(args, command, spectrum)
    fields, attrs = simulate_fields(
        args.kind,
        shape=tuple(args.shape),
        num=args.num,
        seed=args.seed,
        power_spectrum=spectrum,
        pixel_scale_arcmin=args.pixel_scale_arcmin,
        shift=args.shift,
        lpt_order=args.lpt_order,
        growth=args.growth,
    )
    attrs["command"] = command
    write_dataset_file(args.output, fields, attrs)
    num, height, width = fields.shape
    print(f"wrote {num} '{args.kind}' maps of {height} x {width} to {args.output}")
    return EXIT_OK


def _simulate_conditional(args: argparse.Namespace, command: str, spectrum) -> int:
    from posterior_diffusion.simulators import write_dataset_file
    from posterior_diffusion.simulators.conditional import DEFAULT_RANGES, conditional_grf

    if args.kind != "grf":
        raise UsageError(f"--amplitude-range/--slope-range simulate kind grf, not {args.kind}")
    if spectrum is not None:
        raise UsageError("--amplitude-range/--slope-range replace --power-spectrum (a power law)")
    other_kinds = [
        flag
        for flag, given in (
            ("--pixel-scale-arcmin", args.pixel_scale_arcmin is not None),
            ("--shift", args.shift is not None),
            ("--lpt-order", args.lpt_order != 1),
            ("--growth", args.growth != 1.0),
        )
        if given
    ]
    if other_kinds:  # as simulate_fields refuses them for grf without the ranges
        raise UsageError(f"{', '.join(other_kinds)}: not for kind grf")
    fields, theta, attrs = conditional_grf(
        tuple(args.shape),
        args.num,
        args.seed,
        amplitude_range=args.amplitude_range or DEFAULT_RANGES["amplitude"],
        slope_range=args.slope_range or DEFAULT_RANGES["slope"],
    )
    attrs["command"] = command
    write_dataset_file(args.output, fields, attrs, theta=theta)
    num, height, width = fields.shape
    print(f"wrote {num} 'grf' maps of {height} x {width}, each with its theta, to {args.output}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # LightningCLI parses its own flags
        return run_train(argv[1:])
    args = build_parser().parse_args(argv)  # exits with status 2 on malformed flags
    command = shlex.join([PROG, *argv])
    with warnings.catch_warnings():  # restores the caller's warning display afterwards
        warnings.showwarning = _one_line_warning
        return _run(args, command)


def _run(args: argparse.Namespace, command: str) -> int:
    try:
        return args.run(args, command)
    except ValueError as err:
        # ObservationError, ForwardModelError, PowerSpectrumError, OutputPathError and the
        # other checks of user input all derive from ValueError and carry one-line messages.
        _error(err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if is_main_process():
            print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, RuntimeError) as err:  # unwritable output, sampler divergence, ...
        _error(err)
        return EXIT_FAILED


def run_train(argv: list[str]) -> int:
    try:
        from posterior_diffusion.training.cli import run_training

        run_training(argv)
    except ValueError as err:  # TrainingDataError, PriorFileError: one line, no traceback
        _error(err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: training interrupted; resume with --ckpt_path last", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def is_main_process() -> bool:
    """False on ranks other than 0 of a sharded run (no launch has happened if the module is
    not loaded: then this is the only process)."""
    distributed = sys.modules.get("posterior_diffusion.distributed")
    return distributed is None or distributed.is_main_process()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if is_main_process():  # every rank of a sharded run warns alike
        print(f"{PROG}: warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def _error(err: BaseException) -> None:
    if not is_main_process():
        return  # every rank of a sharded run fails alike; rank 0 says why, once
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"{PROG}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
