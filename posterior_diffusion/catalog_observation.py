"""From a shear catalogue on the sky to an observation file (`posterior-diffusion bin-catalog`):
read and check the catalogue, choose the sky grid, bin, write OBS.h5 with the WCS and the
binning settings as provenance. Conventions: docs/sky.md."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from posterior_diffusion.defaults import MAP_SIDE_MULTIPLE
from posterior_diffusion.io import Observation
from posterior_diffusion.provenance import file_sha256, provenance
from posterior_diffusion.sky.binning import BinnedShear, bin_shear
from posterior_diffusion.sky.catalog import DEFAULT_COLUMNS, ColumnMap, ShearCatalog, read_catalog
from posterior_diffusion.sky.grid import SkyGrid, SkyGridError

DEFAULT_PIXEL_SCALE_ARCMIN = 1.0


def catalog_centre(catalog: ShearCatalog) -> tuple[float, float]:
    """(RA, Dec) in degrees of the weighted mean direction of the galaxies (safe across RA = 0)."""
    ra, dec, w = np.radians(catalog.ra), np.radians(catalog.dec), catalog.weight
    vector = np.array([
        np.sum(w * np.cos(dec) * np.cos(ra)),
        np.sum(w * np.cos(dec) * np.sin(ra)),
        np.sum(w * np.sin(dec)),
    ])  # fmt: skip
    norm = np.linalg.norm(vector)
    if norm < 1e-9 * np.sum(w):
        raise SkyGridError(f"{catalog.source}: the galaxies have no mean direction; give --center")
    x, y, z = vector / norm
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.asin(z))


def fitting_shape(
    catalog: ShearCatalog, centre: tuple[float, float], scale: float
) -> tuple[int, int]:
    """The smallest (H, W), sides multiples of MAP_SIDE_MULTIPLE, centred on `centre`, that holds every
    galaxy with positive weight."""
    probe = SkyGrid.centred(centre[0], centre[1], scale, (2, 2))
    keep = catalog.weight > 0
    x, y = probe.wcs.all_world2pix(catalog.ra[keep], catalog.dec[keep], 0)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise SkyGridError(f"{catalog.source}: galaxies lie too far from the centre to project")
    # The probe's centre is at pixel 0.5 along both axes; a side of n pixels reaches n / 2 each way.
    half_x, half_y = np.abs(x - 0.5).max() + 0.5, np.abs(y - 0.5).max() + 0.5

    def side(half: float) -> int:
        return max(MAP_SIDE_MULTIPLE, MAP_SIDE_MULTIPLE * math.ceil(2 * half / MAP_SIDE_MULTIPLE))

    return side(half_y), side(half_x)


def sky_grid(
    catalog: ShearCatalog,
    pixel_scale_arcmin: float | None = None,
    shape: tuple[int, int] | None = None,
    centre: tuple[float, float] | None = None,
    header: str | os.PathLike | None = None,
) -> SkyGrid:
    """The grid asked for: a FITS file's header (then nothing else may be given), or a TAN grid
    of the pixel scale (default 1 arcmin), centred on `centre` (default: the galaxies' mean
    direction), of `shape` (default: the smallest that holds every galaxy)."""
    if header is not None:
        if pixel_scale_arcmin is not None or shape is not None or centre is not None:
            raise SkyGridError(
                "--header sets the whole grid: give no --pixel-scale, --shape or --center"
            )
        return SkyGrid.from_header(_image_header(Path(header)), str(header))
    scale = DEFAULT_PIXEL_SCALE_ARCMIN if pixel_scale_arcmin is None else float(pixel_scale_arcmin)
    centre = catalog_centre(catalog) if centre is None else (float(centre[0]), float(centre[1]))
    shape = fitting_shape(catalog, centre, scale) if shape is None else tuple(shape)
    return SkyGrid.centred(centre[0], centre[1], scale, shape)


def _image_header(path: Path) -> fits.Header:
    """The first header of a FITS file that describes a 2-D image."""
    try:
        with fits.open(path) as hdus:
            for hdu in hdus:
                if hdu.header.get("NAXIS") == 2 and "CTYPE1" in hdu.header:
                    return hdu.header.copy()
    except (OSError, ValueError) as err:
        raise SkyGridError(f"{path}: cannot read as FITS ({err})") from None
    raise SkyGridError(f"{path}: no 2-D image header with a WCS")


def binned_observation(
    catalog_path: str | os.PathLike,
    columns: ColumnMap = DEFAULT_COLUMNS,
    *,
    pixel_scale_arcmin: float | None = None,
    shape: tuple[int, int] | None = None,
    centre: tuple[float, float] | None = None,
    header: str | os.PathLike | None = None,
    sigma_e: float | None = None,
    m_global: float | None = None,
    flip_e1: bool = False,
    flip_e2: bool = False,
    command: str | None = None,
) -> tuple[Observation, BinnedShear]:
    """The lensing observation binned from the catalogue, and the binning's maps and numbers."""
    catalog = read_catalog(catalog_path, columns, m_global, flip_e1, flip_e2)
    grid = sky_grid(catalog, pixel_scale_arcmin, shape, centre, header)
    binned = bin_shear(catalog, grid, sigma_e)
    settings: dict[str, Any] = {
        "catalog": str(catalog_path),
        "catalog_sha256": file_sha256(catalog_path),
        "columns": catalog.columns,
        "m_global": m_global,
        "flip_e1": bool(flip_e1),
        "flip_e2": bool(flip_e2),
        "sigma_e": binned.sigma_e,
        "sigma_e_source": binned.sigma_e_source,
        "galaxies": len(catalog),
        "galaxies_binned": int(binned.counts.sum()),
        "galaxies_left_out": binned.galaxies_left_out,
        "grid_shape": list(grid.shape),
        "pixel_scale_arcmin": grid.pixel_scale_arcmin,
        "header_file": None if header is None else str(header),
    }
    attrs = {
        **provenance(command=command, extra={}),
        "forward_model": "lensing",
        "pixel_scale_arcmin": grid.pixel_scale_arcmin,
        "wcs_header": grid.header_text(),
        "binning": json.dumps(settings),
    }
    obs = Observation(
        y=binned.shear,
        mask=binned.mask,
        noise_std=binned.noise_std,
        arrays={"n_galaxies": binned.counts.astype(np.float64)},
        attrs=attrs,
    )
    return obs, binned
