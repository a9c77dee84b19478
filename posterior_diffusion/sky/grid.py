"""A map's pixels on the sky: a gnomonic (TAN) grid through astropy.wcs.

Standard orientation: north up, east to the left (RA grows towards smaller column index, CDELT1
< 0), as FITS viewers (ds9) and astropy's WCSAxes expect. Pixel (row i, column j) of an (H, W)
map is FITS pixel (j + 1, i + 1): astropy's 0-based `world_to_pixel` returns (x = j, y = i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

# A gnomonic projection stretches distances by 1 / cos(theta) at angle theta from its centre;
# beyond ~10 degrees (a 1.5% stretch) one flat periodic map stops being a good model of the sky.
MAX_HALF_WIDTH_DEG = 10.0


class SkyGridError(ValueError):
    """A sky grid that cannot be built; str() is one line."""


@dataclass(frozen=True)
class SkyGrid:
    """An (H, W) map of square pixels of `pixel_scale_arcmin` on a TAN projection."""

    wcs: WCS
    shape: tuple[int, int]
    pixel_scale_arcmin: float

    @classmethod
    def centred(
        cls, ra_deg: float, dec_deg: float, pixel_scale_arcmin: float, shape: tuple[int, int]
    ) -> SkyGrid:
        """The grid of `shape` centred on (RA, Dec) in degrees, in standard orientation."""
        height, width = (int(n) for n in shape)
        if height < 2 or width < 2:
            raise SkyGridError(f"grid shape must be at least 2 x 2 pixels, got {shape}")
        if not (math.isfinite(pixel_scale_arcmin) and pixel_scale_arcmin > 0):
            raise SkyGridError(
                f"pixel scale must be finite and > 0 arcmin, got {pixel_scale_arcmin}"
            )
        if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90 <= dec_deg <= 90):
            raise SkyGridError(
                f"centre must be finite, with Dec in [-90, 90]; got ({ra_deg}, {dec_deg})"
            )
        half = 0.5 * max(height, width) * pixel_scale_arcmin / 60
        if half > MAX_HALF_WIDTH_DEG:
            raise SkyGridError(
                f"a {height} x {width} grid of {pixel_scale_arcmin:g} arcmin pixels spans "
                f"{2 * half:.3g} degrees; at most {2 * MAX_HALF_WIDTH_DEG:g} on one flat map"
            )
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.cunit = ["deg", "deg"]
        wcs.wcs.crval = [ra_deg % 360.0, dec_deg]
        wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]  # FITS pixels are 1-based
        scale = pixel_scale_arcmin / 60
        wcs.wcs.cdelt = [-scale, scale]
        wcs.wcs.radesys = "ICRS"
        return cls(wcs, (height, width), float(pixel_scale_arcmin))

    @classmethod
    def from_header(cls, header: fits.Header, source: str = "header") -> SkyGrid:
        """The grid of a FITS image header: its celestial WCS and NAXIS2 x NAXIS1 pixels, which
        must be square (equal scales along both axes, to 0.1%)."""
        try:
            wcs = WCS(header).celestial
            shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        except Exception as err:  # astropy raises many kinds for a bad header
            raise SkyGridError(f"{source}: not a celestial image header ({err})") from None
        if wcs.naxis != 2:
            raise SkyGridError(f"{source}: needs a 2-D celestial WCS (RA, Dec)")
        scales = _arcmin_per_pixel(wcs)
        if not np.isclose(scales[0], scales[1], rtol=1e-3):
            raise SkyGridError(
                f"{source}: pixels are not square ({scales[0]:.4g} x {scales[1]:.4g} arcmin)"
            )
        return cls(wcs, shape, float(scales.mean()))

    def pixel_of(
        self, ra_deg: np.ndarray, dec_deg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, inside) of each position: the pixel whose centre is nearest, and
        whether it lies on the grid (positions behind the projection count as outside)."""
        x, y = self.wcs.all_world2pix(np.asarray(ra_deg, float), np.asarray(dec_deg, float), 0)
        finite = np.isfinite(x) & np.isfinite(y)
        column = np.floor(np.where(finite, x, -1) + 0.5).astype(np.int64)
        row = np.floor(np.where(finite, y, -1) + 0.5).astype(np.int64)
        height, width = self.shape
        inside = finite & (row >= 0) & (row < height) & (column >= 0) & (column < width)
        return row, column, inside

    def radec(self) -> tuple[np.ndarray, np.ndarray]:
        """RA and Dec in degrees of every pixel centre, each (H, W)."""
        height, width = self.shape
        rows, columns = np.mgrid[0:height, 0:width]
        ra, dec = self.wcs.all_pix2world(columns, rows, 0)
        return np.asarray(ra), np.asarray(dec)

    def header(self) -> fits.Header:
        """The FITS header of this grid (WCS keywords and NAXIS1/2)."""
        header = self.wcs.to_header()
        header["NAXIS"] = 2
        header["NAXIS1"] = self.shape[1]
        header["NAXIS2"] = self.shape[0]
        return header

    def header_text(self) -> str:
        """`header()` as one string of 80-character cards, for an HDF5 attribute."""
        return self.header().tostring()


def _arcmin_per_pixel(wcs: WCS) -> np.ndarray:
    """Pixel sides along x and y in arcmin (astropy gives Quantities, older versions degrees)."""
    sides = wcs.proj_plane_pixel_scales()
    return np.array(
        [s.to_value(u.arcmin) if hasattr(s, "to_value") else 60.0 * float(s) for s in sides]
    )


def grid_from_header_text(text: str, source: str = "wcs_header") -> SkyGrid:
    """The grid stored by `SkyGrid.header_text` (e.g. an observation file's attribute)."""
    try:
        header = fits.Header.fromstring(text)
    except Exception as err:
        raise SkyGridError(f"{source}: not a FITS header ({err})") from None
    return SkyGrid.from_header(header, source)
