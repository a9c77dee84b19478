"""Simulations like a real survey (`--survey OBS`): its grid, mask, per-pixel noise and WCS, truths
cut from a larger periodic sky, and calibrate running on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.table import Table

from forward_models.lensing import Shear
from posterior_diffusion import api
from posterior_diffusion.sky.catalog import ColumnMap
from posterior_diffusion.sky.grid import SkyGrid
from posterior_diffusion.survey import read_survey, simulate_like, truth_prior

SHAPE = (16, 24)


@pytest.fixture()
def survey_file(tmp_path):
    """A binned catalogue with a bright-star hole and galaxy density rising left to right, so
    the noise map varies by a factor ~2."""
    rng = np.random.default_rng(0)
    grid = SkyGrid.centred(150.0, 2.0, 1.0, SHAPE)
    x = SHAPE[1] * np.sqrt(rng.uniform(0, 1, 6000)) - 0.5  # density grows with x
    y = rng.uniform(-0.5, SHAPE[0] - 0.5, x.size)
    keep = (x - 6) ** 2 + (y - 8) ** 2 > 2.5**2
    ra, dec = grid.wcs.all_pix2world(x[keep], y[keep], 0)
    e = rng.normal(0, 0.26, (2, keep.sum()))
    Table({"RA": ra * u.deg, "DEC": dec * u.deg, "e1": e[0], "e2": e[1]}).write(
        tmp_path / "cat.fits"
    )
    api.bin_catalog_to_file(
        tmp_path / "cat.fits", tmp_path / "obs.h5", columns=ColumnMap("RA", "DEC", "e1", "e2"),
        pixel_scale_arcmin=1.0, shape=SHAPE, centre=(150.0, 2.0),
    )  # fmt: skip
    return tmp_path / "obs.h5"


def test_a_simulation_keeps_the_surveys_grid_mask_noise_and_draws_its_truth_from_a_larger_sky(
    survey_file,
):
    survey = read_survey(survey_file)
    real = survey.observation
    assert survey.domain_shape == (32, 48)
    prior = truth_prior(survey, "gaussian")
    sims = []
    for seed in range(40):
        sim = simulate_like(survey, prior, seed=seed)
        assert sim.y.shape == real.y.shape and sim.truth.shape == (1, *SHAPE)
        np.testing.assert_array_equal(sim.mask, real.mask)
        np.testing.assert_array_equal(sim.noise_std, real.noise_std)
        assert sim.attrs["wcs_header"] == real.attrs["wcs_header"]
        assert sim.attrs["survey_sha256"] == survey.sha256
        sims.append(sim)
    # Noise: (y - signal) / noise_std on observed pixels is unit normal, whatever the pixel's
    # noise, with the signal the shear of the whole sky (the truth domain), cut to the patch.
    observed = real.mask > 0
    z = []
    for seed in range(40):
        generator = torch.Generator().manual_seed(seed)
        sky = prior.sample(1, generator, field_shape=(1, *survey.domain_shape))[0].double()
        signal = Shear(survey.domain_shape).A(sky).numpy()[:, : SHAPE[0], : SHAPE[1]]
        sim = sims[seed]
        np.testing.assert_allclose(sim.truth, sky.numpy()[:, : SHAPE[0], : SHAPE[1]])
        z.append((sim.y - signal)[:, observed] / real.noise_std[observed])
    z = np.concatenate(z, axis=None)
    assert abs(z.std() - 1) < 4 * np.sqrt(0.5 / z.size)
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    # The control: the cut truth's own periodic shear is not the shear the survey saw.
    periodic = Shear(SHAPE).A(torch.from_numpy(sim.truth)).numpy()[:, observed]
    sky_shear = signal[:, observed]
    assert np.sqrt(np.mean((periodic - sky_shear) ** 2)) > 0.2 * sky_shear.std()


def test_simulate_obs_and_calibrate_take_a_survey_and_refuse_what_it_fixes(survey_file, tmp_path):
    import json

    from posterior_diffusion.cli import main
    from posterior_diffusion.io import read_observation

    sim = tmp_path / "sim.h5"
    code = main(["simulate-obs", str(sim), "--forward-model", "lensing", "--survey",
                 str(survey_file), "--prior", "gaussian", "--seed", "4"])  # fmt: skip
    assert code == 0
    obs = read_observation(sim)
    assert obs.attrs["truth_domain"] == [32, 48] and obs.noise_std.shape == SHAPE
    for extra in (["--noise-std", "0.1"], ["--mask-fraction", "0.1"], ["--shape", "8", "8"]):
        code = main(["simulate-obs", str(tmp_path / "no.h5"), "--forward-model", "lensing",
                     "--survey", str(survey_file), *extra])  # fmt: skip
        assert code == 2 and not (tmp_path / "no.h5").exists(), extra
    code = main(["simulate-obs", str(tmp_path / "no.h5"), "--forward-model", "noise",
                 "--survey", str(survey_file)])  # fmt: skip
    assert code == 2
    out = tmp_path / "cal"
    code = main(["calibrate", "--forward-model", "lensing", "--survey", str(survey_file),
                 "--prior", "gaussian", "--from-prior", "--num-tests", "2", "--num-samples", "4",
                 "--steps", "8", "--no-progress", "-o", str(out)])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["survey_sha256"] == read_survey(survey_file).sha256
    assert summary["provenance"]["truth_domain"] == [32, 48]
    # Calibrated as `reconstruct` runs a sky patch: padded (a 16 x 24 patch to a larger torus).
    padded = summary["padded_shape"]
    assert padded is not None and padded[0] > SHAPE[0] and padded[1] > SHAPE[1], padded
