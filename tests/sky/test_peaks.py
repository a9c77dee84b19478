"""The peak catalogue of a posterior: a peak in every sample is certain, one in half of them has
probability one half, a peak nobody draws is not listed; heights and sky positions come out."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from astropy.table import Table

from posterior_diffusion import api
from posterior_diffusion.cli import main
from posterior_diffusion.diagnostics.peaks import peak_catalogue
from posterior_diffusion.io import Observation, posterior_dataset, write_dataset
from posterior_diffusion.sky.grid import SkyGrid

SHAPE = (32, 40)


def bump(row, column, height, width=1.5):
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return height * np.exp(-((y - row) ** 2 + (x - column) ** 2) / (2 * width**2))


def ensemble(n=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = 0.002 * rng.standard_normal((n, *SHAPE))
    samples += bump(8, 10, 0.3)  # in every sample: certain
    samples[: n // 2] += bump(22, 30, 0.4)  # in half of them: probability 1/2
    for i in range(n):  # each sample's peak moves by up to one pixel
        samples[i] += bump(8 + rng.integers(-1, 2), 10 + rng.integers(-1, 2), 0.05)
    return samples


def test_probabilities_and_heights_of_known_peaks():
    # A peak in half the samples has a posterior signal-to-noise of about 1: it needs a low cut.
    peaks = peak_catalogue(ensemble(), sigma_pixels=0.0, radius_pixels=2.0, min_snr=0.5)
    by_place = {(p.row, p.column): p for p in peaks}
    certain = by_place[(8, 10)]
    assert certain.probability == 1.0
    assert 0.3 < np.median(certain.heights) < 0.36
    half = by_place[(22, 30)]
    assert half.probability == pytest.approx(0.5, abs=0.05)
    assert np.median(half.heights) == pytest.approx(0.4, abs=0.01)
    assert peaks[0].mean_height >= peaks[-1].mean_height  # highest first


def test_the_command_writes_a_table_with_sky_positions(tmp_path):
    grid = SkyGrid.centred(150.0, 2.0, 0.5, SHAPE)
    obs = Observation(y=np.zeros((1, *SHAPE)), noise_std=np.asarray(1.0),
                      attrs={"forward_model": "noise", "pixel_scale_arcmin": 0.5,
                             "wcs_header": grid.header_text()})  # fmt: skip
    samples = ensemble()[:, None]
    attrs = {"observation_attrs": json.dumps(obs.attrs)}
    write_dataset(posterior_dataset(samples, obs, (1, *SHAPE), attrs), tmp_path / "post.h5")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["peaks", str(tmp_path / "post.h5"), "-o", str(tmp_path / "peaks.ecsv"),
                     "--smoothing", "0", "--radius", "1", "--min-snr", "1"])  # fmt: skip
    assert code == 0, err.getvalue()
    table = Table.read(tmp_path / "peaks.ecsv")
    first = table[(table["row"] == 8) & (table["column"] == 10)][0]
    ra, dec = grid.wcs.all_pix2world(10, 8, 0)
    assert abs(first["ra"] - ra) < 1e-9 and abs(first["dec"] - dec) < 1e-9
    assert first["probability"] == 1.0 and table.meta["SCALEUNI"] == "arcmin"
    fits_table = api.peak_catalog(tmp_path / "post.h5", tmp_path / "peaks.fits", smoothing=0,
                                  radius=1, min_snr=1)  # fmt: skip
    assert len(Table.read(tmp_path / "peaks.fits")) == len(fits_table) == len(table)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["peaks", str(tmp_path / "post.h5"), "-o", str(tmp_path / "p.txt")]) == 2
