"""The command line's flags: one parser per command, built from shared flag groups; forward-model
parameter flags come from the registry's parameter table."""

from __future__ import annotations

import argparse
from typing import Any

from forward_models.registry import Parameter, default_masks, parameter_table
from posterior_diffusion.defaults import DEFAULT_FIELD_SHAPE
from posterior_diffusion.simulators.conditional import DEFAULT_RANGES

from .errors import PROG

SHAPE_DEFAULT = " ".join(str(n) for n in DEFAULT_FIELD_SHAPE)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command but `train`; the command's name is `args.command`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Calibrated Bayesian reconstruction of physical fields with diffusion priors.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_reconstruct(sub)
    _add_simulate_obs(sub)
    _add_bin_catalog(sub)
    _add_simulate(sub)
    _add_log_likelihood(sub)
    # Listed for --help only: main() hands `train ...` to LightningCLI before this parser runs.
    sub.add_parser(
        "train",
        help="train a score prior on simulated fields (train --config FILE; train --help)",
        add_help=False,
    )
    _add_calibrate(sub)
    _add_report(sub)
    _add_peaks(sub)
    return parser


def forward_model_attrs(args: argparse.Namespace) -> dict[str, Any]:
    """The forward-model parameters given as flags: {attribute: value}."""
    return {
        name: getattr(args, name) for name in parameter_table() if getattr(args, name) is not None
    }


def sampler_options(args: argparse.Namespace) -> dict[str, Any]:
    """The sampler options given as flags (predictor-corrector, reverse SDE)."""
    options = {}
    if args.corrector_steps is not None:
        options["corrector_steps"] = args.corrector_steps
    if args.snr is not None:
        options["snr"] = args.snr
    if args.stochastic is not None:
        options["stochastic"] = args.stochastic
    if args.refine_moves is not None:
        options["refine_moves"] = args.refine_moves
    if args.refine_sigma is not None:
        options["refine_sigma"] = args.refine_sigma
    return options


def parse_shard_flag(text: str) -> tuple[int, int]:
    """--shard 1/4: (1, 4), with 0 <= I < N."""
    i, slash, n = text.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = None
    if not slash or shard is None or not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, e.g. 1/4, got {text!r}")
    return shard


def parse_theta_grid_flag(text: str) -> dict[str, tuple[float, float, int]]:
    """--theta-grid amplitude=0.5:2:8,slope=-1.75:-1.75:1 (NAME=LOW:HIGH:NUM per parameter)."""
    grid = {}
    for item in (item.strip() for item in text.split(",") if item.strip()):
        name, _, spec = item.partition("=")
        parts = spec.split(":")
        try:
            if not name.strip() or len(parts) != 3 or name.strip() in grid:
                raise ValueError
            grid[name.strip()] = (float(parts[0]), float(parts[1]), int(parts[2]))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not NAME=LOW:HIGH:NUM,... (every parameter once)"
            ) from None
    if not grid:
        raise argparse.ArgumentTypeError("--theta-grid needs NAME=LOW:HIGH:NUM for each parameter")
    return grid


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


def _probes(text: str) -> int | str:
    if text == "exact":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer or 'exact'") from None


# Flag groups shared by several commands.


def _add_prior_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prior",
        metavar="SPEC",
        help="default (convergence), density, gaussian, or a prior file from `train` (.pt/.ckpt) "
        "(default: default)",
    )
    parser.add_argument(
        "--power-spectrum",
        metavar="FILE",
        help="two columns: k [cycles/pixel], P; implies --prior gaussian",
    )


def _add_sampler_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sampler",
        metavar="NAME",
        help="guided, split_gibbs, dps, ... (default: guided for linear-Gaussian models, else linearized)",
    )
    parser.add_argument("--steps", type=int, metavar="K", help="default: the sampler's own")
    parser.add_argument(
        "--corrector-steps",
        type=int,
        metavar="K",
        help="Langevin corrector steps per noise level (predictor-corrector; guided, prior_ode, "
        "prior_sde; measured effect in docs/samplers.md; default: none)",
    )
    parser.add_argument(
        "--snr",
        type=float,
        metavar="R",
        help="signal-to-noise ratio of the corrector's step size (default: 0.16)",
    )
    parser.add_argument(
        "--stochastic",
        action=argparse.BooleanOptionalAction,
        help="guided, linearized: integrate the reverse SDE (default steps 96) or, with "
        "--no-stochastic, the probability-flow ODE (48) (default: the SDE for trained priors, "
        "the ODE for analytic ones; measured in docs/samplers.md)",
    )
    parser.add_argument(
        "--refine-moves",
        type=int,
        metavar="K",
        help="guided, linearized: Metropolis-adjusted Langevin moves at one noise level (8 prior "
        "evaluations each; default for a learned non-Gaussian prior behind shear data, where "
        "plain guided was measured too faint: 100 on maps up to 32 x 32, rising to 200 at "
        "64 x 64 and kept there on larger maps; else 0; docs/samplers.md)",
    )
    parser.add_argument(
        "--refine-sigma",
        type=float,
        metavar="S",
        help="guided, linearized: the refinement's noise level in data std (default: 1.0)",
    )


def _add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def _add_mask_flags(parser: argparse.ArgumentParser, shared_by: str | None = None) -> None:
    """--mask or --mask-fraction, and --mask-border; `shared_by`: what shares the one mask."""
    holes, borders = _default_mask_texts()
    masks = parser.add_mutually_exclusive_group()
    masks.add_argument(
        "--mask",
        metavar="FILE",
        help="0/1 mask (H, W) as a .npy file" + (f", {shared_by}" if shared_by else ""),
    )
    masks.add_argument(
        "--mask-fraction",
        type=float,
        metavar="F",
        help="fraction of pixels lost to random rectangular holes"
        + (f", one mask for {shared_by}" if shared_by else "")
        + f" (default: {holes})",
    )
    parser.add_argument(
        "--mask-border",
        type=int,
        metavar="B",
        help=f"unobserved frame [pixels] (default: {borders})",
    )


def _default_mask_texts() -> tuple[str, str]:
    """The registry's default masks in words: hole fractions, and border widths."""
    masks = default_masks()
    holes = [f"{fraction:g} for {name}" for name, (fraction, _) in masks.items() if fraction]
    borders = [
        f"min(H, W) // {1 / share:g} for {name}" for name, (_, share) in masks.items() if share
    ]
    return ", ".join([*holes, "else 0"]), ", ".join([*borders, "else 0"])


def _add_forward_model_flags(parser: argparse.ArgumentParser) -> None:
    """--noise-std, and one flag per forward-model parameter of the registry (its attribute)."""
    parser.add_argument(
        "--noise-std", type=float, metavar="S", help="noise standard deviation [data units]"
    )
    for name, used_by in parameter_table().items():
        models = ", ".join(model for model, _ in used_by)
        parameter = used_by[0][1]
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=parameter.type,
            metavar=parameter.metavar,
            help=f"{models}: {_parameter_text(parameter)}",
        )


def _parameter_text(parameter: Parameter) -> str:
    """e.g. 'source galaxy density [arcmin^-2] (30)': meaning, unit, default."""
    text = parameter.help + (f" [{parameter.unit}]" if parameter.unit else "")
    if parameter.default is None:
        return text
    default = parameter.default
    return f"{text} ({default:g})" if isinstance(default, int | float) else f"{text} ({default})"


def _add_shape_flag(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--shape",
        nargs=2,
        type=int,
        default=DEFAULT_FIELD_SHAPE,
        metavar=("H", "W"),
        help=f"{help} (default: {SHAPE_DEFAULT})",
    )


def _add_seed_flag(parser: argparse.ArgumentParser, help: str = "") -> None:
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help=f"{help and help + ' '}(default: 0)"
    )


# One parser per command.


def _add_reconstruct(sub) -> None:
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
    _add_sampler_flags(rec)
    rec.add_argument("--num-samples", type=int, default=64, metavar="N", help="(default: 64)")
    _add_seed_flag(rec)
    _add_device_flag(rec)
    rec.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="members sampled at once (default: an eighth of the ensemble, 8 to 64, on the CPU; up "
        "to 64 on a GPU; as many as fit in memory)",
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
        "--theta",
        type=parse_theta_flag,
        metavar="NAME=V,...",
        help="parameters of a conditional prior to reconstruct at, e.g. amplitude=1.2,slope=-2 "
        "(default: the prior's marginal over its training parameters)",
    )
    rec.add_argument(
        "--theta-grid",
        type=parse_theta_grid_flag,
        metavar="NAME=LOW:HIGH:NUM,...",
        help="marginalise a conditional prior over this grid of its parameters (equal weights); "
        "the output records each point's posterior weight (docs/conditional_priors.md)",
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
        help="result file: .h5, .hdf5, .nc (netCDF-4), .zarr, or .fits (images with the sky WCS) "
        "(default: posterior.h5)",
    )
    _add_overwrite_flag(rec)
    rec.add_argument(
        "--pad",
        type=int,
        metavar="PIXELS",
        help="survey edges: sample on a periodic grid this much larger, unobserved there, and "
        "crop back (default: by the prior's correlation length for sky inputs, else 0)",
    )
    rec.add_argument(
        "--allow-long-run",
        action="store_true",
        help="start even if the run is estimated to take more than a week (estimated from one "
        "timed batch of prior evaluations when it needs over a million)",
    )
    rec.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_simulate_obs(sub) -> None:
    sim = sub.add_parser(
        "simulate-obs",
        help="draw a field from the prior and write a simulated observation file",
        description="Draw a field from the prior, observe it through a forward model, write OUT.",
    )
    sim.add_argument("output", metavar="OUT", help="observation file to write (.h5)")
    sim.add_argument("--forward-model", metavar="NAME", required=True, help="e.g. lensing")
    _add_prior_flags(sim)
    _add_shape_flag(sim, "field size [pixels]")
    sim.add_argument(
        "--channels", type=int, default=1, metavar="C", help="field channels (default: 1)"
    )
    _add_mask_flags(sim)
    _add_forward_model_flags(sim)
    _add_survey_flag(sim)
    _add_seed_flag(sim)
    _add_overwrite_flag(sim)


def _add_survey_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--survey",
        metavar="OBS",
        help="imitate this observation file (e.g. from bin-catalog): its grid, mask, per-pixel "
        "noise, forward-model parameters and WCS; truths are cut from a periodic domain twice "
        "its size (replaces --shape, --mask*, --noise-std and the forward-model flags)",
    )


def _add_bin_catalog(sub) -> None:
    cat = sub.add_parser(
        "bin-catalog",
        help="bin a shear catalogue on the sky into a lensing observation file",
        description="Bin a shear catalogue (FITS table, CSV or ECSV) onto a TAN sky grid: "
        "weighted mean shear, per-pixel noise, galaxy counts, mask and WCS (docs/sky.md).",
    )
    cat.add_argument("catalog", metavar="CAT", help="shear catalogue (.fits, .csv, .ecsv)")
    cat.add_argument("-o", "--output", metavar="OBS", required=True, help="observation file (.h5)")
    for name, default, what in (
        ("ra", "ra", "right ascension [deg, or the column's angle unit]"),
        ("dec", "dec", "declination [deg, or the column's angle unit]"),
        ("e1", "e1", "ellipticity component 1"),
        ("e2", "e2", "ellipticity component 2"),
    ):
        cat.add_argument(
            f"--{name}", default=default, metavar="COL", help=f"{what} (default: {default})"
        )
    cat.add_argument("--weight", metavar="COL", help="per-galaxy weight (default: all 1)")
    cat.add_argument("--m", metavar="COL", help="per-galaxy multiplicative bias m")
    cat.add_argument("--c1", metavar="COL", help="per-galaxy additive bias of e1")
    cat.add_argument("--c2", metavar="COL", help="per-galaxy additive bias of e2")
    cat.add_argument("--m-global", type=float, metavar="M", help="one multiplicative bias for all")
    cat.add_argument("--flip-e1", action="store_true", help="negate e1 (a mirrored convention)")
    cat.add_argument("--flip-e2", action="store_true", help="negate e2 (a mirrored convention)")
    cat.add_argument("--pixel-scale", type=float, metavar="ARCMIN", help="pixel side (default: 1)")
    cat.add_argument(
        "--shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="pixels (default: the smallest multiple of 8 holding every galaxy)",
    )
    cat.add_argument(
        "--center",
        type=float,
        nargs=2,
        metavar=("RA", "DEC"),
        help="grid centre [deg] (default: the galaxies' mean direction)",
    )
    cat.add_argument("--header", metavar="FITS", help="take the whole grid from this image's WCS")
    cat.add_argument(
        "--sigma-e",
        type=float,
        metavar="S",
        help="shape noise per component (default: estimated from the catalogue)",
    )
    _add_overwrite_flag(cat)


def _add_peaks(sub) -> None:
    peaks = sub.add_parser(
        "peaks",
        help="peak catalogue of a posterior: positions, probability, height distribution",
        description="Peaks of the smoothed posterior mean of POSTERIOR, each with the fraction of "
        "samples that have a peak within --radius and the distribution of its height (docs/sky.md).",
    )
    peaks.add_argument("posterior", metavar="POSTERIOR", help="result of reconstruct")
    peaks.add_argument("-o", "--output", metavar="OUT", required=True, help=".ecsv or .fits table")
    for flag, default, what in (
        ("--smoothing", 2.0, "Gaussian smoothing std"),
        ("--radius", 2.0, "match radius in each sample"),
    ):
        peaks.add_argument(flag, type=float, default=default, metavar="ARCMIN",
                           help=f"{what}, arcmin; pixels without a pixel scale "
                           f"(default: {default:g})")  # fmt: skip
    peaks.add_argument("--min-snr", type=float, default=3.0, metavar="NU",
                       help="candidates: smoothed mean / smoothed std above NU (default: 3)")  # fmt: skip
    _add_overwrite_flag(peaks)


def _add_overwrite_flag(parser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (never an input of the command, nor a thing of the "
        "other kind: a directory where a file goes)",
    )


def _add_simulate(sub) -> None:
    fields = sub.add_parser(
        "simulate",
        help="write simulated fields (training or test sets) to an .h5 or .zarr file",
        description="Simulate NUM maps of KIND (grf, lognormal, convergence, density) into OUT.",
    )
    fields.add_argument("kind", metavar="KIND", help="grf, lognormal, convergence or density")
    fields.add_argument("output", metavar="OUT", help="file to write (.h5, .hdf5 or .zarr)")
    fields.add_argument("--num", type=int, default=1, metavar="N", help="maps (default: 1)")
    _add_overwrite_flag(fields)
    _add_shape_flag(fields, "map size [pixels]; density needs H = W")
    _add_seed_flag(fields)
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
    fields.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="density: box cells along the line of sight (default: H); larger maps of a "
        "training set's field keep its depth (e.g. --shape 128 128 --depth 64)",
    )
    for name, (low, high) in DEFAULT_RANGES.items():
        fields.add_argument(
            f"--{name}-range",
            nargs=2,
            type=float,
            metavar=("LO", "HI"),
            help=f"grf at many cosmologies: each map draws its power-law {name} uniformly in "
            f"[LO, HI] and the file gets a 'theta' dataset, for a conditional prior "
            f"(default box: {low:g} {high:g}; docs/conditional_priors.md)",
        )


def _add_log_likelihood(sub) -> None:
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
    _add_seed_flag(check)
    _add_device_flag(check)
    check.add_argument("-o", "--output", metavar="OUT.json", help="also write the result as JSON")
    _add_overwrite_flag(check)
    check.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_calibrate(sub) -> None:
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
    _add_sampler_flags(cal)
    _add_seed_flag(cal, "test i uses streams of (S, i)")
    cal.add_argument(
        "--shape",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help=f"field size [pixels] (default: the simulations' maps, or {SHAPE_DEFAULT})",
    )
    _add_mask_flags(cal, shared_by="all tests")
    _add_forward_model_flags(cal)
    _add_survey_flag(cal)
    _add_device_flag(cal)
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
    cal.add_argument(
        "--shard",
        type=parse_shard_flag,
        metavar="I/N",
        help="compute only tests with index %% N == I (and test 0), e.g. one of N jobs writing "
        "the same DIR; the last to finish writes the report (docs/calibration.md)",
    )


def _add_report(sub) -> None:
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
    _add_overwrite_flag(rep)
