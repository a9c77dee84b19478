"""One look for every report figure: readable fonts (>= 9 pt), labelled image axes, colour bars.

Figures are `matplotlib.figure.Figure` objects with constrained layout, made without pyplot, so
no global backend is switched and nothing is clipped.
"""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.figure import Figure

RC = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
    "savefig.dpi": 110,
    "image.origin": "lower",
    "image.interpolation": "nearest",
}
PIXELS = "[pixels]"
K_LABEL = "k [cycles/pixel]"
FIELD_CMAP, STD_CMAP, DIVERGING_CMAP = "viridis", "magma", "RdBu_r"
BAD_COLOUR = "0.75"  # unobserved data pixels


@contextmanager
def plot_style():
    """The report's rcParams, for building and saving figures (fonts are fixed at creation)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure of width x height inches with constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def show_image(
    fig: Figure,
    ax,
    array: np.ndarray,
    title: str,
    label: str,
    cmap: str = FIELD_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    hidden: np.ndarray | None = None,
    pixel_scale_arcmin: float | None = None,
    footprint: np.ndarray | None = None,
) -> None:
    """imshow with axes in RA/Dec (`ax` a WCSAxes), arcmin (the pixel scale known) or pixels, and
    a labelled colour bar; `hidden` pixels (True) grey; the edge of `footprint` (1 = observed)
    drawn as a line."""
    values = np.ma.masked_where(hidden, array) if hidden is not None else array
    colours = matplotlib.colormaps[cmap].with_extremes(bad=BAD_COLOUR)
    height, width = np.shape(array)[-2:]
    extent, unit = None, PIXELS
    if hasattr(ax, "coords"):  # astropy WCSAxes: the axes are the sky's
        ax.coords[0].set_axislabel("RA [deg]")
        ax.coords[1].set_axislabel("Dec [deg]")
        for coord in ax.coords:
            coord.set_major_formatter("d.dd")
            coord.set_ticks(number=3)  # a few labels that do not run into each other
    elif pixel_scale_arcmin:
        extent = (0.0, width * pixel_scale_arcmin, 0.0, height * pixel_scale_arcmin)
        unit = "[arcmin]"
    image = ax.imshow(values, cmap=colours, vmin=vmin, vmax=vmax, extent=extent)
    if footprint is not None and np.shape(footprint) == (height, width):
        if not np.all(np.asarray(footprint) > 0):
            ax.contour(np.asarray(footprint, dtype=float), levels=[0.5], colors="white",
                       linewidths=0.8, extent=extent, origin="lower")  # fmt: skip
    ax.set_title(title)
    if extent is not None or not hasattr(ax, "coords"):
        ax.set_xlabel(f"x {unit}")
        ax.set_ylabel(f"y {unit}")
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)


def symmetric_limit(*arrays: np.ndarray, quantile: float = 0.995) -> float:
    """A colour limit L for a diverging map on [-L, L]."""
    values = np.concatenate([np.abs(np.ravel(a)) for a in arrays])
    values = values[np.isfinite(values)]
    return float(np.quantile(values, quantile)) if values.size and values.any() else 1.0


def field_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """Shared colour limits for maps of the same field (0.5% and 99.5% quantiles)."""
    values = np.concatenate([np.ravel(a) for a in arrays])
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 1.0
    low, high = np.quantile(values, [0.005, 0.995])
    return (float(low), float(high)) if high > low else (float(low) - 1, float(high) + 1)
