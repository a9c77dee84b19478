"""`posterior-diffusion peaks`: the peak catalogue of a posterior file as an ECSV or FITS table,
with sky positions when the observation had a sky grid (docs/sky.md, "Peak catalogue")."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from posterior_diffusion.diagnostics.peaks import peak_catalogue
from posterior_diffusion.io import read_posterior
from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.attrs import observation_attrs
from posterior_diffusion.provenance import file_sha256, package_version
from posterior_diffusion.sky.grid import SkyGridError, grid_from_header_text

TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits"}


def peak_table(
    posterior: str | os.PathLike,
    smoothing: float = 2.0,
    radius: float = 2.0,
    min_snr: float = 3.0,
    command: str | None = None,
) -> Table:
    """The catalogue of `posterior` (a result of `reconstruct`): smoothing (Gaussian std) and
    radius in arcmin when the observation gives `pixel_scale_arcmin`, else in pixels."""
    for name, value in (("smoothing", smoothing), ("radius", radius), ("min_snr", min_snr)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    post = read_posterior(posterior)
    samples = post["samples"]
    if samples.shape[1] != 1 or samples.shape[0] < 2:
        raise ValueError(
            f"{posterior}: peaks need one-channel fields and at least 2 samples, got "
            f"{samples.shape[0]} samples of {samples.shape[1]} channel(s)"
        )
    obs_attrs = observation_attrs(post["attrs"])
    scale = obs_attrs.get("pixel_scale_arcmin")
    scale = float(scale) if scale else None
    unit = "arcmin" if scale else "pixel"
    per_pixel = scale or 1.0
    peaks = peak_catalogue(samples[:, 0], smoothing / per_pixel, radius / per_pixel, min_snr)
    table = Table()
    table["id"] = np.arange(1, len(peaks) + 1)
    table["row"] = [p.row for p in peaks]
    table["column"] = [p.column for p in peaks]
    grid = None
    if obs_attrs.get("wcs_header"):
        try:
            grid = grid_from_header_text(str(obs_attrs["wcs_header"]))
        except SkyGridError:
            grid = None
    if grid is not None and grid.shape == samples.shape[-2:]:
        ra, dec = grid.wcs.all_pix2world(table["column"], table["row"], 0)
        table["ra"], table["dec"] = ra, dec
        table["ra"].unit = table["dec"].unit = "deg"
    table["probability"] = [p.probability for p in peaks]
    table["height_of_mean"] = [p.mean_height for p in peaks]
    for name, q in (("height_p16", 16), ("height_median", 50), ("height_p84", 84)):
        table[name] = [
            float(np.percentile(p.heights, q)) if p.heights.size else np.nan for p in peaks
        ]
    table["position_scatter"] = [
        float(np.sqrt((p.offsets**2).sum(axis=1).mean())) * per_pixel if p.heights.size else np.nan
        for p in peaks
    ]
    table["position_scatter"].unit = unit
    table.meta.update({
        "SOURCE": str(posterior),
        "SRCSHA": file_sha256(posterior),
        "SMOOTH": float(smoothing),
        "RADIUS": float(radius),
        "SCALEUNI": unit,
        "MINSNR": float(min_snr),
        "NSAMPLES": int(samples.shape[0]),
        "PDVERSN": package_version(),
        "COMMAND": command or "(Python API)",
    })  # fmt: skip
    return table


def check_table_path(output: str | os.PathLike) -> str:
    """The table format for `output`, checked before any work (suffix, existing folder)."""
    suffix = Path(output).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"{output}: use a .ecsv or .fits suffix for the peak catalogue")
    if not Path(output).parent.is_dir():
        raise ValueError(f"{output}: output directory '{Path(output).parent}' does not exist")
    return TABLE_FORMATS[suffix]


def write_peak_table(table: Table, output: str | os.PathLike) -> None:
    """Write the table atomically; the suffix picks ECSV or FITS."""
    table_format = check_table_path(output)
    with atomic_path(output) as tmp:
        table.write(tmp, format=table_format)
