"""A shear catalogue binned onto a sky grid: the weighted mean shear per pixel, its noise, the
galaxy counts and the mask (docs/sky.md has the conventions).

Per pixel p, over its galaxies i (weights w, multiplicative bias m, additive bias c):

    g_k = sum_i w_i (e_k,i - c_k,i) / sum_i w_i (1 + m_i)
    std(g_k) = sigma_e sqrt(sum_i w_i^2) / sum_i w_i (1 + m_i)

with sigma_e the intrinsic ellipticity dispersion per component: given, or estimated from the
catalogue as sqrt(sum_i w_i^2 (|e_i - c_i|^2 / 2) / sum_i w_i^2) (the weighting that enters the
noise of a weighted mean; it includes the shear itself, a small excess).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalog import ShearCatalog
from .grid import SkyGrid


@dataclass
class BinnedShear:
    """What `bin_shear` returns: maps of shape (2, H, W) or (H, W)."""

    shear: np.ndarray  # (2, H, W): g1, g2; 0 where no galaxy fell
    noise_std: np.ndarray  # (H, W): per component; 0 where unobserved
    counts: np.ndarray  # (H, W): galaxies per pixel
    mask: np.ndarray  # (H, W) uint8: 1 where a galaxy with positive weight fell
    sigma_e: float
    sigma_e_source: str  # "given" or "estimated from the catalogue"
    galaxies_left_out: int  # catalogue rows off the grid or of zero weight


def estimate_sigma_e(catalog: ShearCatalog, rows: np.ndarray | None = None) -> float:
    """Per-component ellipticity dispersion, weighted by w^2 (see the module docstring)."""
    take = slice(None) if rows is None else rows
    w2 = catalog.weight[take] ** 2
    e2 = (catalog.e1[take] - catalog.c1[take]) ** 2 + (catalog.e2[take] - catalog.c2[take]) ** 2
    return float(np.sqrt(0.5 * np.sum(w2 * e2) / np.sum(w2)))


def bin_shear(catalog: ShearCatalog, grid: SkyGrid, sigma_e: float | None = None) -> BinnedShear:
    """Bin `catalog` onto `grid`. Raises ValueError when no galaxy with weight falls on it."""
    row, column, inside = grid.pixel_of(catalog.ra, catalog.dec)
    inside &= catalog.weight > 0
    if not inside.any():
        raise ValueError(
            f"{catalog.source}: no galaxy with positive weight falls on the {grid.shape[0]} x "
            f"{grid.shape[1]} grid; check --center, --pixel-scale and --shape"
        )
    height, width = grid.shape
    flat = row[inside] * width + column[inside]

    def per_pixel(values: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=values[inside], minlength=height * width).reshape(
            height, width
        )

    w = catalog.weight
    response = per_pixel(w * (1.0 + catalog.m))
    counts = np.bincount(flat, minlength=height * width).reshape(height, width)
    observed = response > 0
    safe = np.where(observed, response, 1.0)
    shear = np.stack([
        np.where(observed, per_pixel(w * (catalog.e1 - catalog.c1)) / safe, 0.0),
        np.where(observed, per_pixel(w * (catalog.e2 - catalog.c2)) / safe, 0.0),
    ])  # fmt: skip
    if sigma_e is None:
        sigma_e, source = estimate_sigma_e(catalog, inside), "estimated from the catalogue"
    else:
        if not (np.isfinite(sigma_e) and sigma_e > 0):
            raise ValueError(f"sigma_e must be finite and > 0, got {sigma_e}")
        source = "given"
    noise_std = np.where(observed, float(sigma_e) * np.sqrt(per_pixel(w**2)) / safe, 0.0)
    return BinnedShear(
        shear=shear,
        noise_std=noise_std,
        counts=counts.astype(np.int64),
        mask=observed.astype(np.uint8),
        sigma_e=float(sigma_e),
        sigma_e_source=source,
        galaxies_left_out=int((~inside).sum()),
    )
