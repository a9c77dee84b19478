"""Observation files in FITS: one image HDU per dataset, named by EXTNAME (`Y` required; `MASK`,
`NOISE_STD`, `TRUTH`, `PSF`, `N_GAL_PER_ARCMIN2`, ... as in the HDF5 format), attributes from
the `Y` header (`FWDMODEL` is `forward_model`; other keywords lower-cased, long names as
HIERARCH cards), and the sky grid from its celestial WCS (docs/observation-format.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from posterior_diffusion.sky.grid import SkyGrid, SkyGridError

OBSERVATION_FITS_SUFFIXES = (".fits", ".fit", ".fits.gz")
# Header keywords that describe the file or the WCS, not the observation.
STRUCTURAL = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "EXTVER",
              "BSCALE", "BZERO", "COMMENT", "HISTORY", "", "CHECKSUM", "DATASUM", "WCSAXES",
              "LONPOLE", "LATPOLE", "RADESYS", "EQUINOX", "MJDREF", "DATEREF", "WCSNAME"}  # fmt: skip
WCS_PREFIXES = ("NAXIS", "CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT", "CROTA", "PC", "CD", "PV")


def is_fits_observation(path: Path) -> bool:
    return any(path.name.lower().endswith(s) for s in OBSERVATION_FITS_SUFFIXES)


def read_fits_observation(
    path: Path, max_bytes: int
) -> tuple[dict[str, np.ndarray], dict[str, Any], str | None]:
    """(datasets by lower-case name, attributes, problem): `problem` is one line (and the
    datasets and attributes empty) when the file cannot be used."""
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
            datasets: dict[str, np.ndarray] = {}
            attrs: dict[str, Any] = {}
            for hdu in hdus:
                name = str(hdu.name).strip().lower()
                if (
                    not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU))
                    or hdu.header.get("NAXIS", 0) == 0
                ):
                    continue  # tables and empty primaries are for other tools
                declared = _declared_bytes(hdu.header)
                if declared > max_bytes:
                    return (
                        {},
                        {},
                        (
                            f"HDU '{name}' declares {declared / 2**30:.3g} GiB, more than the "
                            f"{max_bytes / 2**30:.0f} GiB this reader accepts"
                        ),
                    )
                datasets[name] = np.asarray(hdu.data, dtype=np.float64)
                if name == "y":
                    attrs = _attributes(hdu.header)
    except (OSError, ValueError, TypeError) as error:
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        return {}, {}, f"cannot read as FITS ({reason})"
    return datasets, attrs, None


def _declared_bytes(header: fits.Header) -> int:
    size = 1
    for i in range(1, int(header.get("NAXIS", 0)) + 1):
        size *= int(header.get(f"NAXIS{i}", 0))
    return size * abs(int(header.get("BITPIX", 8))) // 8


def _attributes(header: fits.Header) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for card in header.cards:
        key = str(card.keyword)
        if key in STRUCTURAL or key.startswith(WCS_PREFIXES):
            continue
        attrs["forward_model" if key == "FWDMODEL" else key.lower()] = card.value
    try:
        grid = SkyGrid.from_header(header, "HDU 'Y'")
    except SkyGridError:
        return attrs  # no celestial WCS: a map without sky coordinates
    attrs["wcs_header"] = grid.header_text()
    attrs.setdefault("pixel_scale_arcmin", grid.pixel_scale_arcmin)
    return attrs
