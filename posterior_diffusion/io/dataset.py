"""Writing result datasets (ensembles with provenance) to HDF5/netCDF or zarr, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.attrs import portable_attrs

if TYPE_CHECKING:  # xarray is imported on use: the CLI reports bad input before loading it
    import xarray as xr

OUTPUT_FORMATS = {".h5": "netcdf", ".hdf5": "netcdf", ".nc": "netcdf", ".zarr": "zarr"}


class OutputPathError(ValueError):
    """An output path that cannot be written: unknown suffix or missing directory."""


def output_format(path: str | os.PathLike) -> str:
    """'netcdf' or 'zarr' for `path`, checked before any work is done.

    Raises:
        OutputPathError: unknown suffix, or the parent directory does not exist.
    """
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(OUTPUT_FORMATS)
        shown = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise OutputPathError(f"{path}: unsupported output format ({shown}); use one of {known}")
    if not path.parent.is_dir():
        raise OutputPathError(f"{path}: output directory '{path.parent}' does not exist")
    return fmt


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write `ds` to `path` by suffix (.h5/.hdf5/.nc: netCDF-4 via h5netcdf; .zarr: zarr v2).

    The data go to a temporary sibling first and are renamed into place on success, so `path`
    never holds a partial result. Nested attribute values are stored as JSON strings.
    """
    fmt = output_format(path)
    ds = ds.copy(deep=False)
    ds.attrs = portable_attrs(ds.attrs)
    for var in ds.variables.values():
        var.attrs = portable_attrs(var.attrs)
    with atomic_path(path) as tmp:
        if fmt == "netcdf":
            ds.to_netcdf(tmp, engine="h5netcdf")
        else:
            # zarr format 2 with consolidated metadata: readable by every zarr and xarray
            # version without warnings (format 3 warns about consolidation either way).
            ds.to_zarr(tmp, mode="w-", zarr_format=2, consolidated=True)
