"""Dark matter from galaxies: a projected density map reconstructed from Poisson galaxy counts with
the shipped density prior, and the calibration of that reconstruction (docs/density_prior.md).

The truth is a fresh dark-matter map from the package's simulator (Zel'dovich LPT on a 64^3
periodic box, projected to 64 x 64; seeds the prior never saw in training). Galaxies are a
Poisson, linearly biased tracer of it: counts ~ Poisson(n_bar max(1 + bias delta, 0)). Then, as a
user would:

    posterior-diffusion reconstruct counts.h5 --prior density -o dark_matter.h5 --num-samples 32
    posterior-diffusion report dark_matter.h5
    posterior-diffusion simulate density held_out.h5 --num N --shape 64 64 --seed 777
    posterior-diffusion calibrate --forward-model galaxy_counts --prior density \\
        --simulations held_out.h5 --num-tests N --num-samples 32 -o calibration

The sampler is `linearized` (the default for galaxy counts): guided diffusion on the Gauss-Newton
linearisation of the Poisson likelihood at the iterated posterior mean.
The report of that calibration on N = 100 held-out maps ships in docs/density_prior_calibration/
(index.html; its numbers in docs/density_prior.md).

Run: python examples/galaxies_to_dark_matter.py [--out DIR] [--calibration-tests N]
(about 3 minutes on one CPU thread without the calibration; each calibration test adds 5-8: 300-480 s
per test measured on one thread of a 2-core Xeon beside a second calibrate process).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import h5py
import numpy as np

from posterior_diffusion.api import observe_field
from posterior_diffusion.calibration.held_out import spectrum_terms
from posterior_diffusion.cli import main as cli
from posterior_diffusion.diagnostics.spectra import cross_correlation
from posterior_diffusion.io import read_posterior
from posterior_diffusion.simulators import simulate_fields

SIZE = 64  # pixels (LPT cells) per side, the prior's training size
N_BAR, BIAS = 10.0, 1.5  # mean galaxies per pixel, linear bias (the registry's defaults)
TRUTH_SEED = 4242  # the training set used seed 2, the prior checks seed 99


def run(*args: str) -> None:
    print("$ posterior-diffusion " + shlex.join(args), flush=True)
    code = cli(list(args))
    if code != 0:
        raise SystemExit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="galaxies_example", help="work folder (created)")
    parser.add_argument("--prior", default="density", help="density, or a prior file")
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--calibration-tests", type=int, default=0, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)

    truth = simulate_fields("density", (SIZE, SIZE), 1, seed=TRUTH_SEED + args.seed)[0][0]
    counts = out / "counts.h5"
    observe_field(
        truth,
        "galaxy_counts",
        attrs={"n_bar": N_BAR, "bias": BIAS},
        seed=args.seed,
        command=f"examples/galaxies_to_dark_matter.py (truth: LPT density, seed {TRUTH_SEED})",
    ).write(counts)
    with h5py.File(counts, "r") as f:
        y = f["y"][()]
    print(f"{int(y.sum())} galaxies on {SIZE} x {SIZE} pixels, {y.mean():.2f} per pixel")

    posterior = out / "dark_matter.h5"
    run(
        "reconstruct", str(counts), "--prior", args.prior, "-o", str(posterior), "--overwrite",
        "--num-samples", str(args.num_samples), "--seed", str(args.seed),
    )  # fmt: skip
    run("report", str(posterior), "-o", str(out / "report"), "--overwrite")
    summarise(read_posterior(posterior), truth)

    if args.calibration_tests:
        held_out = out / "held_out.h5"
        n = str(args.calibration_tests)
        run(
            "simulate", "density", str(held_out), "--num", n, "--shape", str(SIZE), str(SIZE),
            "--seed", "777", "--overwrite",
        )  # fmt: skip
        run(
            "calibrate", "--forward-model", "galaxy_counts", "--prior", args.prior,
            "--simulations", str(held_out), "--num-tests", n,
            "--num-samples", str(args.num_samples), "--n-bar", str(N_BAR), "--bias", str(BIAS),
            "-o", str(out / "calibration"),
        )  # fmt: skip


def summarise(ds, truth: np.ndarray) -> None:
    """Coverage of the central 68% intervals and r(k) of the posterior mean with the truth."""
    samples = ds["samples"][:, 0]
    low, high = np.percentile(samples, [16, 84], axis=0)
    inside = float(np.mean((truth >= low) & (truth <= high)))
    terms = spectrum_terms(ds["samples"], truth[None])  # the calibration report's spectra
    k = terms["k"]
    r = cross_correlation(terms["p_cross_mean"], terms["p_mean"], terms["p_truth"])
    print(f"68% intervals hold the truth in {inside:.1%} of pixels")
    print("r(k) of the posterior mean with the truth:")
    keep = np.flatnonzero(k > 0)[::2]  # the k = 0 bin (the map mean, 0 for LPT maps) has no r
    for kk, rr in zip(k[keep], r[keep], strict=True):
        print(f"  k = {kk:.3f} cycles/pixel: r = {rr:.2f}")


if __name__ == "__main__":
    main()
