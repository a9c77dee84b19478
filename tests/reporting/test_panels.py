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
