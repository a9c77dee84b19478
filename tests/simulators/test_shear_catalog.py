"""Mock shear catalogues: the footprint keeps galaxies out of holes and star masks, and binned,
a mock gives back its own reduced shear within the noise that bin-catalog states."""

from __future__ import annotations

import numpy as np

from posterior_diffusion import api
from posterior_diffusion.simulators.convergence import convergence_map
from posterior_diffusion.simulators.shear_catalog import (
    Footprint,
    mock_footprint,
    mock_shear_catalog,
)
from posterior_diffusion.sky.catalog import ColumnMap
from posterior_diffusion.sky.grid import SkyGrid

SHAPE = (16, 24)


def test_the_footprint_keeps_galaxies_out_of_holes_stars_and_the_cut_corner():
    footprint = mock_footprint(SHAPE, seed=1)
    assert len(footprint.holes) == 2 and len(footprint.stars) == 8
    grid = SkyGrid.centred(35.0, -5.0, 1.0, SHAPE)
    sky = convergence_map((32, 48), 1, seed=0)[0]
    table = mock_shear_catalog(sky, grid, footprint, n_gal_per_arcmin2=50, seed=2)
    x, y = grid.wcs.all_world2pix(table["RA"], table["DEC"], 0)
    for sx, sy, radius in footprint.stars:
        assert np.all(np.hypot(x - sx, y - sy) >= radius - 1e-6)
    for x0, x1, y0, y1 in footprint.holes:
        assert not np.any((x >= x0) & (x < x1) & (y >= y0) & (y < y1))
    # The density inside the footprint is the one asked for (Poisson error).
    rng = np.random.default_rng(0)
    px, py = rng.uniform(-0.5, SHAPE[1] - 0.5, 200_000), rng.uniform(-0.5, SHAPE[0] - 0.5, 200_000)
    area = footprint.contains(px, py).mean() * SHAPE[0] * SHAPE[1]
    assert abs(len(table) / area - 50) < 4 * np.sqrt(50 / area)
    assert Footprint(SHAPE).contains(px, py).all()


def test_a_binned_mock_gives_back_its_reduced_shear_within_the_stated_noise(tmp_path):
    grid = SkyGrid.centred(35.0, -5.0, 1.0, SHAPE)
    sky = convergence_map((32, 48), 1, seed=4)[0]
    table = mock_shear_catalog(sky, grid, mock_footprint(SHAPE, seed=3), n_gal_per_arcmin2=100,
                               seed=5)  # fmt: skip
    path = tmp_path / "mock.fits"
    table.write(path)
    binned = {}
    for flip in (False, True):
        obs, _ = api.bin_catalog(path, ColumnMap("RA", "DEC", "E1", "E2", weight="W"),
                                 pixel_scale_arcmin=1.0, shape=SHAPE, centre=(35.0, -5.0),
                                 flip_e2=flip)  # fmt: skip
        binned[flip] = obs
    # The truth per pixel: the galaxies' own reduced shear, weighted as bin-catalog weighs them.
    x, y = grid.wcs.all_world2pix(table["RA"], table["DEC"], 0)
    pixel = np.rint(y).astype(int) * SHAPE[1] + np.rint(x).astype(int)
    weight = np.bincount(pixel, table["W"], SHAPE[0] * SHAPE[1])
    truth = np.stack([np.bincount(pixel, table["W"] * table[g], weight.size) for g in ("G1", "G2")])
    seen = weight > 0
    truth = truth[:, seen] / weight[seen]
    z = {}
    for flip, obs in binned.items():
        noise = np.broadcast_to(obs.noise_std, obs.y.shape).reshape(2, -1)[:, seen]
        z[flip] = (obs.y.reshape(2, -1)[:, seen] - truth) / noise
    n = z[False].size
    assert abs(z[False].mean()) < 4 / np.sqrt(n)
    assert abs(z[False].std() - 1) < 0.05, z[False].std()  # shape noise is not quite Gaussian
    assert z[True].std() > 1.15  # the control: the wrong sign convention is seen
