"""The map panels a referee reads: colour bars named by the field, colour ranges that a few
extreme pixels cannot take over."""

from __future__ import annotations

import numpy as np

from posterior_diffusion.reporting import figures


def maps_with_a_hot_spot(shape=(32, 32)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    samples = 0.01 * rng.standard_normal((4, 1, *shape))
    samples[:, 0, 3, 3] += rng.normal(0, 5.0, 4)  # one pixel whose posterior is 500x wider
    return {"mean": samples.mean(0), "std": samples.std(0, ddof=1), "samples_head": samples[:2],
            "y": rng.standard_normal((2, *shape))}  # fmt: skip


def colour_bar(fig, title: str):
    (ax,) = [a for a in fig.axes if a.get_title() == title]
    (image,) = ax.get_images()
    return image.colorbar.ax.get_ylabel(), image.get_clim()


def test_lensing_maps_are_labelled_kappa_and_the_std_range_ignores_a_hot_pixel():
    maps = maps_with_a_hot_spot()
    fig = figures.panels(maps, "lensing", "test")
    label, (low, high) = colour_bar(fig, "posterior mean")
    assert label == "convergence kappa"
    label, (low, high) = colour_bar(fig, "posterior std")
    assert label == "std of convergence kappa"
    assert high < 0.1 * maps["std"].max()  # the hot pixel saturates; the rest is visible
    assert high >= np.quantile(maps["std"], 0.99)
    label, _ = colour_bar(figures.panels(maps, "noise", "test"), "posterior mean")
    assert label == "field value"


def test_map_axes_are_in_arcmin_when_the_pixel_scale_is_known():
    from posterior_diffusion.reporting.posterior_report import pixel_scale_of

    maps = maps_with_a_hot_spot((16, 24))
    fig = figures.panels(maps, "lensing", "test", pixel_scale_arcmin=0.5)
    (ax,) = [a for a in fig.axes if a.get_title() == "posterior mean"]
    assert ax.get_xlabel() == "x [arcmin]" and ax.get_xlim() == (0.0, 12.0)
    assert pixel_scale_of({"observation_attrs": '{"pixel_scale_arcmin": 0.5}'}) == 0.5
    assert pixel_scale_of({"observation_attrs": "{}"}) is None
    (ax,) = [
        a for a in figures.panels(maps, "noise", "t").axes if a.get_title() == "posterior mean"
    ]
    assert ax.get_xlabel() == "x [pixels]"


def test_sky_maps_have_ra_dec_axes_the_footprint_and_the_noise_map():
    from posterior_diffusion.sky.grid import SkyGrid

    maps = maps_with_a_hot_spot((16, 24))
    mask = np.ones((16, 24))
    mask[4:8, 5:9] = 0  # a bright-star hole
    noise = np.full((2, 16, 24), 0.3)
    noise[:, :, 12:] = 0.6
    maps.update(mask=mask, noise_std=noise)
    grid = SkyGrid.centred(150.0, 2.0, 0.5, (16, 24))
    fig = figures.panels(maps, "lensing", "t", pixel_scale_arcmin=0.5, sky=grid.header())
    (ax,) = [a for a in fig.axes if a.get_title() == "posterior mean"]
    assert ax.coords[0].get_axislabel() == "RA [deg]"
    assert ax.coords[1].get_axislabel() == "Dec [deg]"
    # The world coordinates of a pixel are the grid's own.
    ra, dec = grid.radec()
    world = ax.wcs.pixel_to_world_values(5, 3)
    assert np.allclose(world, (ra[3, 5], dec[3, 5]), atol=1e-9)
    assert ax.collections, "the footprint's edge is drawn on the field maps"
    label, (low, high) = colour_bar(fig, "noise std of the data")
    assert label == "data value" and high == 0.6
    # Without a hole there is no edge to draw.
    maps["mask"] = np.ones((16, 24))
    fig = figures.panels(maps, "lensing", "t", sky=grid.header())
    (ax,) = [a for a in fig.axes if a.get_title() == "posterior mean"]
    assert not ax.collections


def test_lensing_spectra_are_in_ell_and_c_ell_and_match_the_simulated_c_ell():
    """The unit change (ell = 2 pi k / theta, C_ell = P theta^2) checked on maps simulated from a
    known C_ell: the binned C_ell of the maps must follow it."""
    from posterior_diffusion.calibration import aggregate as agg
    from posterior_diffusion.calibration.held_out import spectrum_terms
    from posterior_diffusion.simulators.convergence import convergence_cl, convergence_map

    maps = convergence_map((32, 32), 9, seed=1, pixel_scale_arcmin=2.0)[:, None]
    terms = spectrum_terms(maps[1:], maps[0])
    spec = agg.spectra([terms])
    to_ell, to_power = figures.sky_spectrum_units(2.0)
    keep = (terms["k"] > 0.05) & (terms["k"] < 0.4)
    ell = terms["k"][keep] * to_ell
    c_ell = terms["p_samples"].mean(axis=0)[keep] * to_power
    ratio = c_ell / convergence_cl(ell)
    assert np.all(np.abs(ratio - 1) < 0.35), ratio  # 8 maps' sample variance, bin averaging
    fig = figures.spectra(spec, 1, sky_pixel_arcmin=2.0)
    power_axis = fig.axes[0]
    assert power_axis.get_xlabel() == "multipole $\\ell$"
    assert power_axis.get_ylabel() == "$C_\\ell$ [sr]"
    low, high = power_axis.get_xlim()
    assert low < ell.min() and high > ell.max()
    assert figures.spectra(spec, 1).axes[0].get_xlabel() == "k [cycles/pixel]"
