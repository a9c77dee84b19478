"""From a shear catalogue on the sky to a mass map in FITS, a report on RA/Dec and a peak
catalogue, and the calibration of that pipeline on mock skies (docs/sky.md).

The catalogue is a mock made by the package's simulators: a shifted-lognormal convergence sky
(128 x 128 arcmin, periodic) whose bottom-left 64 x 64 arcmin patch, centred on the sky's most
massive peak, is surveyed, galaxies at
random positions inside a footprint with a cut edge, holes and bright-star masks, lensed exactly
(reduced shear), with shape noise, measurement noise and weights. Then, as a user would:

    posterior-diffusion bin-catalog catalogue.fits -o obs.h5 --ra RA --dec DEC --e1 E1 --e2 E2 \\
        --weight W --pixel-scale 1 --shape 64 64 --center 150.1 2.2
    posterior-diffusion reconstruct obs.h5 -o mass_map.fits --num-samples 32
    posterior-diffusion report mass_map.fits
    posterior-diffusion peaks mass_map.fits -o peaks.ecsv
    posterior-diffusion simulate convergence skies.h5 --num N --shape 128 128 --seed 11
    posterior-diffusion calibrate --forward-model lensing --survey obs.h5 --simulations skies.h5 \\
        --num-tests N --num-samples 32 -o calibration

Run: python examples/catalog_to_mass_map.py [--out DIR] [--calibration-tests N]
(about 5 minutes on one CPU thread without the calibration; each calibration test adds ~3).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np

from posterior_diffusion.cli import main as cli
from posterior_diffusion.io import read_posterior
from posterior_diffusion.simulators.convergence import convergence_map
from posterior_diffusion.simulators.shear_catalog import mock_footprint, mock_shear_catalog
from posterior_diffusion.sky.grid import SkyGrid

CENTRE = (150.1, 2.2)  # deg
PATCH, SKY = (64, 64), (128, 128)  # pixels of 1 arcmin


def run(*args: str) -> None:
    print("$ posterior-diffusion " + shlex.join(args), flush=True)
    code = cli(list(args))
    if code != 0:
        raise SystemExit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="catalog_example", help="work folder (created)")
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--calibration-tests", type=int, default=0, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)

    sky = convergence_map(SKY, 1, seed=1000 + args.seed)[0]
    # A cluster field: the periodic sky is shifted so that its most massive peak lies at the
    # patch's centre (the calibration below uses unshifted skies).
    peak = np.unravel_index(np.argmax(sky), sky.shape)
    sky = np.roll(sky, (PATCH[0] // 2 - peak[0], PATCH[1] // 2 - peak[1]), axis=(0, 1))
    grid = SkyGrid.centred(*CENTRE, 1.0, PATCH)
    footprint = mock_footprint(PATCH, seed=args.seed)
    catalogue = mock_shear_catalog(sky, grid, footprint, n_gal_per_arcmin2=20, seed=args.seed)
    catalogue.write(out / "catalogue.fits", overwrite=True)
    print(f"mock catalogue: {len(catalogue)} galaxies -> {out / 'catalogue.fits'}")

    run("bin-catalog", str(out / "catalogue.fits"), "-o", str(out / "obs.h5"), "--overwrite",
        "--ra", "RA", "--dec", "DEC", "--e1", "E1", "--e2", "E2", "--weight", "W",
        "--pixel-scale", "1", "--shape", *map(str, PATCH), "--center", *map(str, CENTRE))  # fmt: skip
    run("reconstruct", str(out / "obs.h5"), "-o", str(out / "mass_map.fits"), "--overwrite",
        "--num-samples", str(args.num_samples), "--seed", str(args.seed))  # fmt: skip
    run("report", str(out / "mass_map.fits"), "-o", str(out / "mass_map_report"))
    run("peaks", str(out / "mass_map.fits"), "-o", str(out / "peaks.ecsv"), "--overwrite")

    # The truth is known here: how the map compares with it (one map; calibrate says more).
    samples = read_posterior(out / "mass_map.fits")["samples"][:, 0]
    truth = sky[: PATCH[0], : PATCH[1]]
    low, high = np.quantile(samples, [0.16, 0.84], axis=0)
    calibrated = 0.68 * (len(samples) - 1) / (len(samples) + 1)
    print(f"68% intervals hold the true kappa in {np.mean((truth >= low) & (truth <= high)):.3f} "
          f"of pixels (calibrated: {calibrated:.3f})")  # fmt: skip

    if args.calibration_tests:
        n = str(args.calibration_tests)
        run("simulate", "convergence", str(out / "skies.h5"), "--num", n, "--shape",
            *map(str, SKY), "--seed", "11", "--overwrite")  # fmt: skip
        run("calibrate", "--forward-model", "lensing", "--survey", str(out / "obs.h5"),
            "--simulations", str(out / "skies.h5"), "--num-tests", n, "--num-samples",
            str(args.num_samples), "-o", str(out / "calibration"))  # fmt: skip


if __name__ == "__main__":
    main()
