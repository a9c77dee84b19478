"""Posterior results as FITS (`reconstruct -o out.fits`): images with the observation's WCS,
provenance in the header and a table; read back as `read_posterior` returns them.

HDUs: PRIMARY (posterior mean), STD, one image per quantile (Q0.025, Q0.16, Q0.5, Q0.84,
Q0.975: `QUANTILES`), SAMPLES (the ensemble, one plane per member), OBSERVED (the data), MASK,
NOISESTD (a per-pixel noise map) and TRUTH when present, and PROVENANCE (a table of every
attribute, key and value as text).
Multi-channel fields add a CHANNEL axis after the two sky axes. Conventions: docs/sky.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.attrs import observation_attrs, plain_attr, portable_attrs
from posterior_diffusion.io.fields import FieldFileError
from posterior_diffusion.sky.grid import SkyGridError, grid_from_header_text

if TYPE_CHECKING:
    import xarray as xr

QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)
# Short header keywords for what a reader looks for first (the rest is in PROVENANCE).
HEADER_KEYS = {
    "posterior_diffusion_version": "PDVERSN",
    "sampler": "SAMPLER",
    "seed": "SEED",
    "num_samples_completed": "NSAMPLES",
    "forward_model": "FWDMODEL",
    "prior_name": "PRIOR",
    "prior_checksum": "PRIORSUM",
    "created_utc": "CREATED",
    "command": "COMMAND",
}


def sky_header(attrs: dict[str, Any], spatial_shape: tuple[int, int]) -> fits.Header | None:
    """The WCS header of the observation's grid (its `wcs_header` attribute, kept by reconstruct
    in `observation_attrs`) when it matches `spatial_shape`, else None."""
    text = attrs.get("wcs_header") or observation_attrs(attrs).get("wcs_header")
    if not text:
        return None
    try:
        grid = grid_from_header_text(str(text))
    except SkyGridError:
        return None
    return grid.header() if tuple(grid.shape) == tuple(spatial_shape) else None


def _add_wcs(header: fits.Header, ndim: int, sky: fits.Header | None, extra: str | None) -> None:
    """The sky WCS on the last two numpy axes (FITS axes 1 and 2), and plain index axes after."""
    if sky is None:
        return
    header["WCSAXES"] = ndim  # before the other WCS keywords, as the standard asks
    for card in sky.cards:
        if card.keyword not in ("NAXIS", "NAXIS1", "NAXIS2", "WCSAXES"):
            header[card.keyword] = (card.value, card.comment)
    # FITS numbers axes fastest first: numpy (N, [C,] H, W) is (W, H, [C,] N).
    names = {3: [extra or "CHANNEL"], 4: ["CHANNEL", "SAMPLE"]}.get(ndim, [])
    for i, name in enumerate(names, start=3):
        header[f"CTYPE{i}"] = name
        header[f"CRPIX{i}"] = 1.0
        header[f"CRVAL{i}"] = 0.0
        header[f"CDELT{i}"] = 1.0


def _image(data: np.ndarray, sky: fits.Header | None, name: str, extra: str | None = None):
    """An image HDU of (..., H, W) data with the sky WCS on its last two axes."""
    hdu = fits.ImageHDU(np.ascontiguousarray(data), name=name)
    _add_wcs(hdu.header, data.ndim, sky, extra)
    return hdu


def write_posterior_fits(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write a posterior dataset (as `posterior_dataset` makes it) to `path`, atomically."""
    attrs = portable_attrs(ds.attrs)
    samples = np.asarray(ds["samples"].values, dtype=np.float64)
    spatial = samples.shape[-2:]
    sky = sky_header(attrs, spatial)
    mean = np.ascontiguousarray(np.asarray(ds["mean"].values, dtype=np.float64))
    primary = fits.PrimaryHDU(mean)
    _add_wcs(primary.header, mean.ndim, sky, None)
    primary.header["EXTNAME"] = "MEAN"
    for key, card in HEADER_KEYS.items():
        if key in attrs:
            primary.header[card] = _card_value(attrs[key])
    primary.header["QUANTILS"] = " ".join(f"{q:g}" for q in QUANTILES)
    hdus = [primary, _image(np.asarray(ds["std"].values), sky, "STD")]
    if samples.shape[0]:
        levels = np.quantile(samples, QUANTILES, axis=0)
        hdus += [_image(level, sky, f"Q{q:g}") for q, level in zip(QUANTILES, levels, strict=True)]
    hdus.append(_image(samples, sky, "SAMPLES", "SAMPLE"))
    observed = np.asarray(ds["observation"].values, dtype=np.float64)
    hdus.append(_image(observed, sky if observed.shape[-2:] == spatial else None, "OBSERVED",
                       "DATACHAN"))  # fmt: skip
    if "mask" in ds:
        mask = np.asarray(ds["mask"].values, dtype=np.uint8)
        hdus.append(_image(mask, sky if mask.shape == spatial else None, "MASK"))
    if "noise_std" in ds:
        noise = np.asarray(ds["noise_std"].values, dtype=np.float64)
        hdus.append(_image(noise, sky if noise.shape[-2:] == spatial else None, "NOISESTD",
                           "DATACHAN"))  # fmt: skip
    if "truth" in ds:
        hdus.append(_image(np.asarray(ds["truth"].values, dtype=np.float64), sky, "TRUTH"))
    keys = sorted(attrs)
    values = [
        v if isinstance(v, str) else json.dumps(plain_attr(v)) for v in (attrs[k] for k in keys)
    ]
    table = fits.BinTableHDU.from_columns(
        [fits.Column("KEY", "A64", array=keys),
         fits.Column("VALUE", f"A{max([len(v) for v in values] + [1])}", array=values)],
        name="PROVENANCE",
    )  # fmt: skip
    with atomic_path(path) as tmp:
        fits.HDUList([*hdus, table]).writeto(tmp)


def _card_value(value: Any) -> Any:
    value = plain_attr(value)
    return value if isinstance(value, (int, float, str, bool)) else json.dumps(value)


def read_posterior_fits(path: Path) -> dict[str, Any]:
    """What `read_posterior` returns, from a FITS result: samples (N, C, H, W), y, truth, mask,
    noise_std, attrs (from PROVENANCE)."""
    try:
        with fits.open(path) as hdus:
            names = {hdu.name for hdu in hdus}
            if "SAMPLES" not in names:
                raise FieldFileError(path, "no SAMPLES image (not a posterior file of reconstruct)")
            samples = np.asarray(hdus["SAMPLES"].data, dtype=np.float64)
            out: dict[str, Any] = {"path": path}
            out["samples"] = samples[:, None] if samples.ndim == 3 else samples
            if "OBSERVED" in names:
                y = np.asarray(hdus["OBSERVED"].data, dtype=np.float64)
                out["y"] = y if y.ndim == 3 else y[None]
            if "TRUTH" in names:
                truth = np.asarray(hdus["TRUTH"].data, dtype=np.float64)
                out["truth"] = truth[None] if truth.ndim == 2 else truth
            if "MASK" in names:
                out["mask"] = np.asarray(hdus["MASK"].data, dtype=np.float64)
            if "NOISESTD" in names:
                noise = np.asarray(hdus["NOISESTD"].data, dtype=np.float64)
                out["noise_std"] = noise if noise.ndim == 3 else noise[None]
            attrs = {}
            if "PROVENANCE" in names:
                table = hdus["PROVENANCE"].data
                for key, value in zip(table["KEY"], table["VALUE"], strict=True):
                    attrs[str(key)] = str(value)
            out["attrs"] = attrs
    except FieldFileError:
        raise
    except Exception as err:  # astropy raises many kinds for a damaged file
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise FieldFileError(path, f"cannot read as a FITS posterior file ({reason})") from None
    if not np.isfinite(out["samples"]).all():
        raise FieldFileError(path, "image 'SAMPLES' contains NaN/inf values")
    return out
