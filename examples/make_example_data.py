"""Regenerate the example observations in examples/data/ with the `simulate-obs` command line.

Run from anywhere: `python examples/make_example_data.py`. It works from the repository root so
that the recorded provenance holds relative paths. Seeds are fixed, so the files are reproducible
(up to the provenance timestamp).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posterior_diffusion.cli import main as cli
from posterior_diffusion.priors import TabulatedPowerSpectrum
from posterior_diffusion.priors.power_spectrum import power_on_grid

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("examples/data")  # relative to ROOT
SIZE = 64  # pixels per side
# Correlation scale of the masked field: P falls off as k^-4 beyond K0 (about 3 pixels).
K0 = 0.05  # cycles per pixel

HEADER = f"""\
Power spectrum of a unit-variance Gaussian random field on a {SIZE} x {SIZE} pixel grid.
P(k) = A / (1 + (k / {K0})^2)^2, A chosen so that the pixel variance is 1 on that grid.
Convention: with unit pixels and x_hat = fft2(x) unnormalised, <|x_hat(k)|^2> = H W P(|k|),
so the pixel variance is the mean of P over the H x W frequency grid.
k runs from 0 to 0.75, beyond the grid's Nyquist corner |k| = sqrt(2) / 2 = 0.7071.
Columns: k [cycles/pixel], P [pixel^2 (field units)^2]"""


def write_power_spectrum(path: Path) -> None:
    k = np.concatenate([[0.0], np.geomspace(1e-3, 0.75, 120)])
    power = 1.0 / (1.0 + (k / K0) ** 2) ** 2
    # Normalise with the interpolated table itself, as the prior will see it: log-log
    # interpolation commutes with scaling, so the grid variance becomes exactly 1.
    grid_power = power_on_grid(TabulatedPowerSpectrum(k, power), SIZE, SIZE)
    power /= grid_power.mean()
    np.savetxt(path, np.column_stack([k, power]), fmt="%.8e", header=HEADER)


def run(*args: str) -> None:
    code = cli([str(a) for a in args])
    if code != 0:
        raise SystemExit(code)


def main() -> None:
    os.chdir(ROOT)
    DATA.mkdir(exist_ok=True)
    spectrum = DATA / "field_power_spectrum.txt"
    write_power_spectrum(spectrum)
    # Weak lensing: shear from a convergence map drawn from the default (learned) prior, 1 arcmin
    # pixels, sigma_e = 0.26 and 30 galaxies per arcmin^2 (the defaults), a border and holes.
    run(
        *("simulate-obs", DATA / "lensing_obs.h5", "--forward-model", "lensing"),
        *("--shape", SIZE, SIZE, "--mask-fraction", 0.1, "--mask-border", 4, "--seed", 2024),
    )
    # Inpainting: a unit-variance field, 20% of pixels masked, white noise of std 0.1.
    run(
        *("simulate-obs", DATA / "masked_field_obs.h5", "--forward-model", "inpainting"),
        *("--prior", "gaussian", "--power-spectrum", spectrum, "--shape", SIZE, SIZE),
        *("--mask-fraction", 0.2, "--noise-std", 0.1, "--seed", 7),
    )


if __name__ == "__main__":
    main()
