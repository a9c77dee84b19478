"""Mock shear catalogues: galaxies on the sky behind a convergence map, as a survey measures them.

Galaxies fall at uniformly random positions (a Poisson number for the density) inside a footprint
with an irregular edge, rectangular holes (lost fields, chip gaps) and circular bright-star masks.
Each carries the reduced shear g = gamma / (1 - kappa) of its pixel, computed on the whole
periodic sky the patch is cut from, lensing a random intrinsic ellipticity exactly,
e = (e_s + g) / (1 + g* e_s) (complex, |g| < 1; Seitz & Schneider 1997), plus a measurement noise
that differs from galaxy to galaxy and an inverse-variance weight. Where kappa >= 1 or |g| >= 1
(strong-lensing cores of the lognormal tail) no galaxy is kept, as no shape is measured there.
Positions go to RA/Dec through the grid's WCS, so `bin-catalog` reads the table as it reads a
survey's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from astropy import units as u
from astropy.table import Table

from forward_models.lensing import Shear
from posterior_diffusion.sky.grid import SkyGrid

MAX_INTRINSIC = 0.9  # |e_s| above this is redrawn (real catalogues cut such galaxies)


@dataclass(frozen=True)
class Footprint:
    """Where a survey sees galaxies, in pixel coordinates (x along a row, y along a column;
    pixel centres at integers): inside the shape, outside every hole and star."""

    shape: tuple[int, int]
    corner_cut: float = 0.0  # share of the diagonal cut off the top-right corner
    holes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0 x1 y0 y1
    stars: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, radius

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        height, width = self.shape
        inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)
        if self.corner_cut > 0:  # an irregular survey edge
            inside &= (x / width + y / height) < 2 - 2 * self.corner_cut
        for x0, x1, y0, y1 in self.holes:
            inside &= ~((x >= x0) & (x < x1) & (y >= y0) & (y < y1))
        for sx, sy, radius in self.stars:
            inside &= (x - sx) ** 2 + (y - sy) ** 2 >= radius**2
        return inside


def mock_footprint(
    shape: tuple[int, int], seed: int, num_holes: int = 2, num_stars: int = 8
) -> Footprint:
    """A footprint with a cut corner, `num_holes` rectangular holes of 4-10% of each side and
    `num_stars` bright-star masks of 1-3 pixels radius, at random places."""
    rng = np.random.default_rng(seed)
    height, width = shape
    holes = []
    for _ in range(num_holes):
        w, h = rng.uniform(0.04, 0.10) * width, rng.uniform(0.04, 0.10) * height
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        holes.append((x0, x0 + w, y0, y0 + h))
    stars = [
        (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(1.0, 3.0))
        for _ in range(num_stars)
    ]
    return Footprint(tuple(shape), corner_cut=0.15, holes=holes, stars=stars)


def mock_shear_catalog(
    sky: np.ndarray,
    grid: SkyGrid,
    footprint: Footprint,
    n_gal_per_arcmin2: float = 20.0,
    sigma_e: float = 0.26,
    measurement_noise: tuple[float, float] = (0.02, 0.2),
    seed: int = 0,
    reduced: bool = True,
) -> Table:
    """Galaxies in the bottom-left grid.shape corner of the periodic convergence map `sky`.

    Args:
        sky: convergence (H', W') on a periodic domain at least the grid's size, same pixels.
        grid: the patch's sky grid (its pixel scale is the map's).
        footprint: where galaxies are seen, on the grid's pixels.
        n_gal_per_arcmin2: mean galaxy density inside the footprint [arcmin^-2].
        sigma_e: intrinsic ellipticity dispersion per component.
        measurement_noise: range of the per-galaxy measurement noise std (uniform).
        seed: seeds positions, ellipticities and noise.
        reduced: lens with the reduced shear (as the sky does); False lenses with the shear
            gamma itself, the package's linear model, to isolate what reduced shear does.

    Returns:
        Table RA, DEC [deg], E1, E2, W (inverse-variance weight), and the truth per galaxy:
        G1, G2 (reduced shear) and KAPPA.
    """
    sky = np.asarray(sky, dtype=np.float64)
    height, width = grid.shape
    if sky.ndim != 2 or sky.shape[0] < height or sky.shape[1] < width:
        raise ValueError(f"sky map of shape {sky.shape} cannot hold the {height} x {width} grid")
    rng = np.random.default_rng(seed)
    gamma = Shear(sky.shape).A(torch.from_numpy(sky)[None]).numpy()[:, :height, :width]
    kappa = sky[:height, :width]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (gamma[0] + 1j * gamma[1]) / ((1 - kappa) if reduced else 1.0)
    weak = (kappa < 1) & (np.abs(g) < 1)  # strong-lensing cores: no shape is measured there
    area = height * width * grid.pixel_scale_arcmin**2
    drawn = rng.poisson(n_gal_per_arcmin2 * area)
    x = rng.uniform(-0.5, width - 0.5, drawn)
    y = rng.uniform(-0.5, height - 0.5, drawn)
    column, row = np.rint(x).astype(int), np.rint(y).astype(int)
    keep = footprint.contains(x, y) & weak[row, column]
    x, y, column, row = x[keep], y[keep], column[keep], row[keep]
    g_here = g[row, column]
    intrinsic = _intrinsic_ellipticities(rng, x.size, sigma_e)
    lensed = (intrinsic + g_here) / (1 + np.conj(g_here) * intrinsic)
    noise_std = rng.uniform(*measurement_noise, x.size)
    observed = lensed + noise_std * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))
    ra, dec = grid.wcs.all_pix2world(x, y, 0)
    return Table(
        {
            "RA": ra * u.deg,
            "DEC": dec * u.deg,
            "E1": observed.real,
            "E2": observed.imag,
            "W": 1.0 / (sigma_e**2 + noise_std**2),
            "G1": g_here.real,
            "G2": g_here.imag,
            "KAPPA": kappa[row, column],
        }
    )


def _intrinsic_ellipticities(rng: np.random.Generator, num: int, sigma_e: float) -> np.ndarray:
    """Complex e_s with N(0, sigma_e) components, |e_s| < MAX_INTRINSIC (others redrawn)."""
    out = sigma_e * (rng.standard_normal(num) + 1j * rng.standard_normal(num))
    bad = np.abs(out) >= MAX_INTRINSIC
    while bad.any():
        out[bad] = sigma_e * (rng.standard_normal(bad.sum()) + 1j * rng.standard_normal(bad.sum()))
        bad = np.abs(out) >= MAX_INTRINSIC
    return out
