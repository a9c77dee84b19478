"""What the periodic padded domain does to a survey patch's error bars (docs/sky.md, "The mass
sheet"): a mock binned catalogue (24 x 32 pixels, a star hole, noise varying ~2x), truths from the
`gaussian` prior drawn on (a) the very domain `reconstruct` pads the patch to and (b) the 2x sky
that `--survey` draws from, reconstructed with `gaussian`; prints pixel coverage with its standard
error, and the patch mean's posterior variance against its squared error.

    OMP_NUM_THREADS=1 python benchmarks/survey_domain.py --tests 24 --members 16
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from astropy import units as u
from astropy.table import Table

from posterior_diffusion import api
from posterior_diffusion.diagnostics import coverage_per_test, expected_coverage
from posterior_diffusion.priors.resolve import resolve_prior
from posterior_diffusion.sky.catalog import ColumnMap
from posterior_diffusion.sky.grid import SkyGrid
from posterior_diffusion.survey import noise_seed, observe_like, read_survey

SHAPE = (24, 32)
LEVELS = np.array([0.5, 0.68, 0.9, 0.95])


def survey_file(folder: Path) -> Path:
    """A binned catalogue: density rising left to right (noise varies ~2x), one star hole."""
    rng = np.random.default_rng(0)
    grid = SkyGrid.centred(150.0, 2.0, 1.0, SHAPE)
    x = SHAPE[1] * np.sqrt(rng.uniform(0, 1, 16 * SHAPE[0] * SHAPE[1])) - 0.5
    y = rng.uniform(-0.5, SHAPE[0] - 0.5, x.size)
    keep = (x - 10) ** 2 + (y - 12) ** 2 > 3**2
    ra, dec = grid.wcs.all_pix2world(x[keep], y[keep], 0)
    e = rng.normal(0, 0.26, (2, keep.sum()))
    Table({"RA": ra * u.deg, "DEC": dec * u.deg, "e1": e[0], "e2": e[1]}).write(folder / "cat.fits")
    api.bin_catalog_to_file(folder / "cat.fits", folder / "obs.h5",
                            columns=ColumnMap("RA", "DEC", "e1", "e2"), pixel_scale_arcmin=1.0,
                            shape=SHAPE, centre=(150.0, 2.0))  # fmt: skip
    return folder / "obs.h5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=24)
    parser.add_argument("--members", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        survey = read_survey(survey_file(Path(folder)))
        probe = api.reconstruct(survey.observation, prior="gaussian", num_samples=2, steps=2,
                                progress=False)  # fmt: skip
        padded = tuple(int(n + p) for n, p in zip(SHAPE, probe.attrs["padding"], strict=True))
        for label, domain in (("padded domain", padded), ("2x sky", survey.domain_shape)):
            prior = resolve_prior("gaussian", None, (1, *domain), 1.0)
            coverage, mean_var, mean_err = [], [], []
            for i in range(args.tests):
                generator = torch.Generator().manual_seed(300 + i)
                truth = prior.sample(1, generator, field_shape=(1, *domain))[0].double().numpy()
                obs = observe_like(survey, truth, noise_seed(300 + i))
                result = api.reconstruct(obs, prior="gaussian", num_samples=args.members, seed=i,
                                         progress=False)  # fmt: skip
                samples = np.asarray(result["samples"].values)[:, None]
                coverage.append(
                    coverage_per_test(samples, obs.truth, LEVELS, batched=False)[1][:, 0]
                )
                means = samples.mean(axis=(-2, -1))
                mean_var.append(means.var(ddof=1))
                mean_err.append((obs.truth.mean() - means.mean()) ** 2)
            coverage = np.array(coverage)
            print(f"truths on the {label} {domain}: coverage at {LEVELS.tolist()} = "
                  f"{np.round(coverage.mean(0), 3).tolist()} +- "
                  f"{np.round(coverage.std(0) / np.sqrt(len(coverage)), 3).tolist()} "
                  f"(calibrated {np.round(expected_coverage(LEVELS, args.members), 3).tolist()}); "
                  f"patch mean: posterior variance {np.mean(mean_var):.3g}, squared error "
                  f"{np.mean(mean_err):.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
