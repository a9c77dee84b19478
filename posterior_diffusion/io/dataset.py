"""Writing result datasets (ensembles with provenance) to HDF5/netCDF or zarr, atomically."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.attrs import portable_attrs
from posterior_diffusion.io.fields import result_format
from posterior_diffusion.io.fits_result import write_posterior_fits

if TYPE_CHECKING:  # xarray is imported on use: the CLI reports bad input before loading it
    import xarray as xr


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write `ds` to `path` by suffix (.h5/.hdf5/.nc: netCDF-4 via h5netcdf; .zarr: zarr v2;
    .fits: images with the observation's WCS, io/fits_result.py).

    The data go to a temporary sibling first and are renamed into place on success, so `path`
    never holds a partial result. Nested attribute values are stored as JSON strings.

    Raises:
        FieldFileError: unknown suffix, or the parent directory does not exist.
    """
    container = result_format(path)
    if container == "fits":
        write_posterior_fits(ds, path)
        return
    ds = ds.copy(deep=False)
    ds.attrs = portable_attrs(ds.attrs)
    for var in ds.variables.values():
        var.attrs = portable_attrs(var.attrs)
    with atomic_path(path) as tmp:
        if container == "hdf5":
            ds.to_netcdf(tmp, engine="h5netcdf")
        else:
            # zarr format 2 with consolidated metadata: readable by every zarr and xarray
            # version without warnings (format 3 warns about consolidation either way).
            ds.to_zarr(tmp, mode="w-", zarr_format=2, consolidated=True)
