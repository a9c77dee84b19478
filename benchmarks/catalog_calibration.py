"""Calibration of the sky pipeline on mock catalogues, galaxy by galaxy: each test draws a fresh
shifted-lognormal sky (128 x 128 arcmin), makes a mock shear catalogue of its bottom-left 64 x 64
patch (the footprint of examples/catalog_to_mass_map.py, new galaxies), bins it with
`bin-catalog`'s code, reconstructs with the default prior and sampler, and scores the samples
against the patch's truth. `calibrate --survey` simulates binned data with Gaussian pixel noise
instead; this checks that shortcut and the whole path (reduced shear, non-Gaussian shape noise,
sigma_e estimated per catalogue, per-galaxy weights).

    OMP_NUM_THREADS=1 python benchmarks/catalog_calibration.py --tests 20 --members 32 \\
        --json benchmarks/results_catalog_calibration_cpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from posterior_diffusion import api
from posterior_diffusion.calibration import aggregate as agg
from posterior_diffusion.calibration.held_out import spectrum_terms, zscore_terms
from posterior_diffusion.diagnostics import coverage_per_test, expected_coverage
from posterior_diffusion.simulators.convergence import convergence_map
from posterior_diffusion.simulators.shear_catalog import mock_footprint, mock_shear_catalog
from posterior_diffusion.sky.catalog import ColumnMap
from posterior_diffusion.sky.grid import SkyGrid
from posterior_diffusion.survey import Survey, noise_seed, observe_like, read_survey

CENTRE, PATCH, SKY = (150.1, 2.2), (64, 64), (128, 128)
LEVELS = np.array([0.5, 0.68, 0.9, 0.95])
COLUMNS = ColumnMap("RA", "DEC", "E1", "E2", weight="W")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=20)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--n-gal", type=float, default=20.0, help="galaxies per arcmin^2")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--linear-shear", action="store_true",
                        help="lens the mocks with gamma, not g = gamma / (1 - kappa)")  # fmt: skip
    parser.add_argument("--skies", help="truths from this simulate-convergence file (128 x 128)")
    parser.add_argument("--survey", help="with --control: this observation as the survey")
    parser.add_argument("--control", action="store_true",
                        help="replace each binned catalogue by calibrate --survey's simulation of "
                             "the same truth with its noise map (Gaussian pixel noise)")  # fmt: skip
    parser.add_argument("--json")
    args = parser.parse_args()
    grid = SkyGrid.centred(*CENTRE, 1.0, PATCH)
    footprint = mock_footprint(PATCH, seed=0)
    coverage, terms, start = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mock.fits"
        for i in range(args.tests):
            if args.skies:
                with h5py.File(args.skies) as file:
                    sky = np.asarray(file["fields"][i], dtype=np.float64).reshape(SKY)
            else:
                sky = convergence_map(SKY, 1, seed=args.seed * 1000 + i)[0]
            table = mock_shear_catalog(
                sky, grid, footprint, args.n_gal, seed=args.seed + i, reduced=not args.linear_shear
            )
            table.write(path, overwrite=True)
            obs, _ = api.bin_catalog(path, COLUMNS, pixel_scale_arcmin=1.0, shape=PATCH,
                                     centre=CENTRE)  # fmt: skip
            if args.control:
                survey = read_survey(args.survey) if args.survey else Survey(obs, "")
                obs = observe_like(survey, sky[None], noise_seed(i))
            result = api.reconstruct(obs, num_samples=args.members, seed=i, progress=False)
            samples = np.asarray(result["samples"].values)[:, None]
            truth = sky[None, : PATCH[0], : PATCH[1]]
            coverage.append(coverage_per_test(samples, truth, LEVELS, batched=False)[1][:, 0])
            terms.append({**spectrum_terms(samples, truth), **zscore_terms(samples, truth)})
            print(f"test {i + 1}/{args.tests}: coverage {np.round(coverage[-1], 3).tolist()} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    coverage = np.array(coverage)
    spectra = agg.spectra(terms)
    z = agg.zscores(terms, args.members)
    out = {
        "tests": args.tests,
        "members": args.members,
        "n_gal_per_arcmin2": args.n_gal,
        "shear": "linear" if args.linear_shear else "reduced",
        "data": "calibrate --survey's simulation" if args.control else "binned galaxies",
        "skies": args.skies or "convergence_map, seeds 1000 * seed + test",
        "survey": args.survey,
        "levels": LEVELS.tolist(),
        "coverage": coverage.mean(0).tolist(),
        "coverage_se": (coverage.std(0, ddof=1) / np.sqrt(len(coverage))).tolist(),
        "calibrated": expected_coverage(LEVELS, args.members).tolist(),
        "z_std": z["std"],
        "z_expected_std": z["expected_std"],
        "k": spectra["k"].tolist(),
        "samples_over_truth_power": spectra["samples_over_truth"].tolist(),
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps({k: (np.round(v, 3).tolist() if isinstance(v, list) else v)
                      for k, v in out.items()}))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
