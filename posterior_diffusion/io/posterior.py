"""Posterior files: the ensemble as an xarray Dataset (samples, their mean and spread, the data)
and, read back, as arrays."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from posterior_diffusion.io.attrs import plain_attr
from posterior_diffusion.io.fields import RESULT_SUFFIXES, FieldFileError, file_format
from posterior_diffusion.io.fits_result import read_posterior_fits
from posterior_diffusion.io.observation import Observation
from posterior_diffusion.sky.grid import SkyGridError, grid_from_header_text

if TYPE_CHECKING:
    import xarray as xr


def field_dims(field_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Dims of one field: (channel, y, x), without channel when there is a single one."""
    return ("y", "x") if field_shape[0] == 1 else ("channel", "y", "x")


def data_dims(data_shape: tuple[int, ...], field_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Dims of the data: shared with the field where the sizes agree, data_* where they differ.

    Lensing shear (2, H, W) of a (1, H, W) convergence thus gets (data_channel, y, x), and
    downsampled data get (data_y, data_x).
    """
    c, h, w = data_shape
    fc, fh, fw = field_shape
    if c == fc:
        channel = () if c == 1 else ("channel",)
    else:
        channel = () if c == 1 else ("data_channel",)
    spatial = ("y", "x") if (h, w) == (fh, fw) else ("data_y", "data_x")
    return channel + spatial


def _squeeze(array: np.ndarray, dims: tuple[str, ...]) -> np.ndarray:
    """Drop a size-1 channel axis when `dims` has none."""
    return (
        array.reshape(array.shape[: array.ndim - 3] + array.shape[-2:]) if len(dims) == 2 else array
    )


def posterior_dataset(
    samples: np.ndarray,
    observation: Observation,
    field_shape: tuple[int, int, int],
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Samples (N, C, H, W) with mean, std (ddof=1; NaN for N < 2), the observation, mask and truth.

    The observation is stored as `observation` (not `y`, which names a dimension).
    """
    import xarray as xr

    samples = np.asarray(samples, dtype=np.float64)
    fdims = field_dims(field_shape)
    ddims = data_dims(observation.y.shape, field_shape)
    n = samples.shape[0]
    mean = samples.mean(axis=0) if n else np.full(field_shape, np.nan)
    std = samples.std(axis=0, ddof=1) if n > 1 else np.full(field_shape, np.nan)
    variables: dict[str, Any] = {
        "samples": (
            ("sample", *fdims),
            _squeeze(samples, fdims),
            {"long_name": "posterior samples of the field"},
        ),
        "mean": (fdims, _squeeze(mean, fdims), {"long_name": "posterior mean"}),
        "std": (
            fdims,
            _squeeze(std, fdims),
            {"long_name": "posterior standard deviation (ddof=1)"},
        ),
        "observation": (ddims, _squeeze(observation.y, ddims), {"long_name": "observed data y"}),
    }
    if observation.truth is not None:
        variables["truth"] = (
            fdims,
            _squeeze(observation.truth, fdims),
            {"long_name": "true field (simulated data)"},
        )
    if observation.mask is not None:
        variables["mask"] = (
            ddims[-2:],
            observation.mask.astype(np.uint8),
            {"long_name": "1 = observed"},
        )
    noise = observation.noise_std
    if noise is not None and np.ndim(noise) >= 2:  # a map; a scalar stays in the provenance
        variables["noise_std"] = (
            ddims,
            _squeeze(np.broadcast_to(noise, observation.y.shape).astype(np.float64), ddims),
            {"long_name": "noise standard deviation of the observed data"},
        )
    return xr.Dataset(variables, coords=sky_coordinates(observation, field_shape),
                      attrs=dict(attrs or {}))  # fmt: skip


def sky_coordinates(observation: Observation, field_shape: tuple[int, int, int]) -> dict[str, Any]:
    """2-D RA/Dec coordinates (y, x) of the pixel centres when the observation carries a sky grid
    (`wcs_header`, as `bin-catalog` writes it) of the field's size; else none."""
    text = observation.attrs.get("wcs_header")
    if not text:
        return {}
    try:
        grid = grid_from_header_text(str(text), f"{observation.source}: attribute 'wcs_header'")
    except SkyGridError:
        return {}  # kept as provenance; a result without coordinates is still a result
    if tuple(grid.shape) != tuple(field_shape[-2:]):
        return {}
    ra, dec = grid.radec()
    return {
        "ra": (("y", "x"), ra, {"units": "deg", "long_name": "right ascension (ICRS)"}),
        "dec": (("y", "x"), dec, {"units": "deg", "long_name": "declination (ICRS)"}),
    }


def _field(ds: xr.Dataset, name: str) -> np.ndarray:
    """A field variable as (..., C, H, W): a channel axis is added when there is none."""
    var = ds[name]
    lead = [d for d in var.dims if d == "sample"]
    channel = [d for d in var.dims if "channel" in d]
    spatial = [d for d in var.dims if d not in lead and d not in channel]
    values = np.asarray(var.transpose(*lead, *channel, *spatial).values, dtype=np.float64)
    return values if channel else np.expand_dims(values, axis=len(lead))


def read_posterior(path: str | os.PathLike) -> dict[str, Any]:
    """samples (N, C, H, W), y (C', H', W'), optional truth (C, H, W), mask and noise_std (as y),
    and attributes.

    Raises:
        FieldFileError: not a posterior file as `reconstruct` writes them, or NaN/inf samples.
    """
    path = Path(path)
    if path.suffix.lower() in RESULT_SUFFIXES:
        if not path.is_file():
            raise FieldFileError(path, "no such file")
        return read_posterior_fits(path)
    container = file_format(path)
    import xarray as xr

    try:
        # phony_dims: read plain HDF5 files too (and refuse them below) without a warning.
        if container == "hdf5":
            ds = xr.load_dataset(path, engine="h5netcdf", phony_dims="access")
        else:
            ds = xr.load_dataset(path, engine="zarr")
    except Exception as err:  # engines raise OSError, ValueError, KeyError, ...
        reason = " ".join(str(err).split()) or type(err).__name__
        raise FieldFileError(path, f"cannot read as a posterior file ({reason})") from None
    if "samples" not in ds:
        raise FieldFileError(
            path,
            "no variable 'samples' (not a posterior file written by "
            "`posterior-diffusion reconstruct`)",
        )
    if "sample" not in ds["samples"].dims or ds["samples"].ndim not in (3, 4):
        raise FieldFileError(
            path,
            f"variable 'samples' has dims {ds['samples'].dims}; expected (sample, [channel,] y, x)",
        )
    samples = _field(ds, "samples")
    if not np.isfinite(samples).all():
        raise FieldFileError(path, "variable 'samples' contains NaN/inf values")
    out: dict[str, Any] = {
        "path": path,
        "samples": samples,
        "attrs": {str(k): plain_attr(v) for k, v in ds.attrs.items()},
    }
    if "observation" in ds:
        y = np.asarray(ds["observation"].values, dtype=np.float64)
        out["y"] = y if y.ndim == 3 else y[None]
    if "truth" in ds:
        out["truth"] = _field(ds, "truth")
        if out["truth"].shape != samples.shape[1:]:
            raise FieldFileError(
                path,
                f"variable 'truth' has shape {out['truth'].shape}, the samples {samples.shape[1:]}",
            )
    if "mask" in ds:
        out["mask"] = np.asarray(ds["mask"].values, dtype=np.float64)
    if "noise_std" in ds:
        noise = np.asarray(ds["noise_std"].values, dtype=np.float64)
        out["noise_std"] = noise if noise.ndim == 3 else noise[None]
    return out
