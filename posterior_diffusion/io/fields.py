"""Field files: maps (num, [C,] H, W) with attributes, and per-map theta, in HDF5 or zarr.

One suffix table and one error for every file of fields the package reads or writes:
simulations (`fields`, `theta`), training data, posteriors (`samples`, `truth`). Readers open
the file only as long as they need it; training keeps arrays lazy, reading maps as it goes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.attrs import portable_attrs, to_json

# netCDF-4 files are HDF5 files: h5py reads them, xarray writes them (posterior files).
SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".nc": "hdf5", ".zarr": "zarr"}
FIELD_DATASETS = ("fields", "samples", "truth")  # where the package's own files keep fields
SHAPE_NAMES = {2: "(H, W)", 3: "(num, H, W)", 4: "(num, C, H, W)"}


class FieldFileError(ValueError):
    """A field file that cannot be read or written; str() is one line naming the file, the
    dataset and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str, dataset: str | None = None):
        where = f"{path}: " + (f"dataset '{dataset}' " if dataset else "")
        # Messages from h5py and zarr can span lines; the CLI promises one.
        super().__init__(where + " ".join(str(problem).split()))


def _container(path: str | os.PathLike, role: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise FieldFileError(
            path, f"unsupported {role} format ({shown}); use one of {', '.join(SUFFIXES)}"
        )
    return SUFFIXES[suffix]


def file_format(path: str | os.PathLike) -> str:
    """'hdf5' or 'zarr' for an existing file to read, by suffix."""
    container = _container(path, "file")
    if not Path(path).exists():
        raise FieldFileError(path, "no such file")
    return container


def output_format(path: str | os.PathLike) -> str:
    """'hdf5' or 'zarr' for a file to write, checked before any work is done: known suffix,
    existing directory."""
    container = _container(path, "output")
    parent = Path(path).parent
    if not parent.is_dir():
        raise FieldFileError(path, f"output directory '{parent}' does not exist")
    return container


RESULT_SUFFIXES = (".fits", ".fit")  # posterior results only (io/fits_result.py)


def result_format(path: str | os.PathLike) -> str:
    """'hdf5', 'zarr' or 'fits' for a posterior result to write, checked like `output_format`."""
    if Path(path).suffix.lower() in RESULT_SUFFIXES:
        parent = Path(path).parent
        if not parent.is_dir():
            raise FieldFileError(path, f"output directory '{parent}' does not exist")
        return "fits"
    try:
        return output_format(path)
    except FieldFileError as err:
        if Path(path).parent.is_dir():  # the suffix: name the FITS option too
            suffix = Path(path).suffix.lower()
            shown = f"'{suffix}'" if suffix else "no suffix"
            formats = ", ".join([*SUFFIXES, ".fits"])
            raise FieldFileError(
                path, f"unsupported output format ({shown}); use one of {formats}"
            ) from None
        raise err


def open_store(path: str | os.PathLike) -> Any:
    """The file's root group, read-only (h5py.File or zarr.Group); the caller closes an h5py
    file. `open_file` closes it for you."""
    container = file_format(path)
    try:
        if container == "hdf5":
            import h5py

            return h5py.File(path, "r")
        import zarr

        return zarr.open_group(str(path), mode="r")
    except Exception as err:  # h5py / zarr raise many types for unreadable files
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        suffix = Path(path).suffix.lower()
        raise FieldFileError(path, f"not a readable {suffix} file ({reason})") from None


@contextmanager
def open_file(path: str | os.PathLike) -> Iterator[Any]:
    """`open_store`, closed again on leaving the block."""
    store = open_store(path)
    try:
        yield store
    finally:
        if hasattr(store, "close"):  # h5py files; zarr groups hold no open handle
            store.close()


def array_names(store: Any) -> list[str]:
    """Names of the arrays at the root of an h5py file or zarr group (not of subgroups)."""
    if hasattr(store, "array_keys"):
        return list(store.array_keys())
    import h5py

    return [name for name in store if isinstance(store[name], h5py.Dataset)]


def field_array(store: Any, path: str | os.PathLike, dataset: str, ranks=(3, 4)) -> Any:
    """The array `dataset` of an open file, checked to hold floating-point fields of one of
    the numbers of dimensions `ranks` (2: (H, W), 3: (num, H, W), 4: (num, C, H, W)); lazy:
    nothing is read yet."""
    names = array_names(store)
    if dataset not in names:
        raise FieldFileError(path, f"no dataset '{dataset}' (found: {', '.join(names) or 'none'})")
    array = store[dataset]
    if not np.issubdtype(array.dtype, np.floating) or len(array.shape) not in ranks:
        shapes = [SHAPE_NAMES[rank] for rank in ranks]
        wanted = f"{', '.join(shapes[:-1])} or {shapes[-1]}" if len(shapes) > 1 else shapes[0]
        raise FieldFileError(
            path,
            f"must hold floating-point {wanted} fields, got {array.dtype} {tuple(array.shape)}",
            dataset,
        )
    if 0 in array.shape:
        raise FieldFileError(path, f"is empty (shape {tuple(array.shape)})", dataset)
    return array


def check_finite(path: str | os.PathLike, dataset: str, maps: np.ndarray, first: int = 0) -> None:
    """Refuse NaN or inf in `maps` (num, ...), naming the first bad one; `first` is the index
    of maps[0] in the file."""
    bad = ~np.isfinite(maps.reshape(len(maps), -1)).all(axis=1)
    if bad.any():
        index = first + int(np.argmax(bad))
        raise FieldFileError(path, f"map {index} has NaN or inf values", dataset)


def read_fields(path: str | os.PathLike, dataset: str | None = None) -> tuple[np.ndarray, str]:
    """(fields (N, C, H, W) float64, dataset name) from a field file.

    `dataset` None takes the first of `FIELD_DATASETS` the file has. (H, W) is one field,
    (N, H, W) N fields of one channel, (N, C, H, W) as is.
    """
    with open_file(path) as store:
        if dataset is None:
            names = array_names(store)
            dataset = next((name for name in FIELD_DATASETS if name in names), None)
            if dataset is None:
                raise FieldFileError(
                    path,
                    f"none of the datasets {', '.join(FIELD_DATASETS)} (found: "
                    f"{', '.join(names) or 'none'}); name one with --dataset",
                )
        array = field_array(store, path, dataset, ranks=(2, 3, 4))
        fields = np.asarray(array[...], dtype=np.float64)
    fields = fields.reshape((-1, 1, *fields.shape[-2:])) if fields.ndim < 4 else fields
    check_finite(path, dataset, fields)
    return fields, dataset


def read_theta(store: Any, path: str | os.PathLike, num: int) -> np.ndarray | None:
    """The per-map parameters `theta` (num, P) float64 beside `num` fields; None without."""
    if "theta" not in array_names(store):
        return None
    theta = store["theta"]
    if len(theta.shape) != 2 or theta.shape[0] != num or theta.shape[1] < 1:
        raise FieldFileError(
            path, f"must be (num, P) with num = {num} maps, got {tuple(theta.shape)}", "theta"
        )
    values = np.asarray(theta[...], dtype=np.float64)
    if not np.isfinite(values).all():
        raise FieldFileError(path, "has NaN or inf values", "theta")
    return values


def write_fields(
    path: str | os.PathLike,
    fields: np.ndarray,
    attrs: Mapping[str, Any],
    theta: np.ndarray | None = None,
) -> Path:
    """Write `fields` (num, H, W) as dataset 'fields', one chunk per map, with attributes.

    `attrs` should hold kind, parameters (a dict, stored as JSON), seed and, where it applies,
    pixel_scale_arcmin; posterior_diffusion_version is added. The file appears complete or not
    at all (written to a temporary sibling, then renamed).

    Args:
        path: .h5 / .hdf5 / .nc (HDF5 via h5py) or .zarr (a zarr v2 directory store).
        fields: float array (num, H, W).
        attrs: file attributes; dicts and lists become JSON strings.
        theta: (num, P) per-map parameters of a conditional training set, as dataset 'theta'.
    """
    from posterior_diffusion.version import __version__

    container = output_format(path)
    fields = np.asarray(fields)
    if fields.ndim != 3:
        raise ValueError(f"fields must be (num, H, W), got shape {fields.shape}")
    if theta is not None and (np.ndim(theta) != 2 or len(theta) != len(fields)):
        raise ValueError(f"theta must be (num, P) with num = {len(fields)}, got {np.shape(theta)}")
    attrs = dict(attrs)
    if isinstance(attrs.get("parameters"), Mapping):
        attrs["parameters"] = to_json(attrs["parameters"])
    attrs["posterior_diffusion_version"] = __version__
    attrs = portable_attrs(attrs)
    chunks = (1, *fields.shape[1:])
    with atomic_path(path) as tmp:
        if container == "hdf5":
            import h5py

            with h5py.File(tmp, "w") as f:
                f.create_dataset("fields", data=fields, chunks=chunks)
                if theta is not None:
                    f.create_dataset("theta", data=np.asarray(theta, dtype=np.float64))
                f.attrs.update(attrs)
        else:
            import zarr

            root = zarr.open_group(str(tmp), mode="w-", zarr_format=2)
            array = root.create_array(
                "fields", shape=fields.shape, dtype=fields.dtype, chunks=chunks
            )
            array[...] = fields
            if theta is not None:
                theta = np.asarray(theta, dtype=np.float64)
                root.create_array("theta", shape=theta.shape, dtype=theta.dtype)[...] = theta
            root.attrs.update({k: _json_attr(v) for k, v in attrs.items()})
    return Path(path)


def _json_attr(value: Any) -> Any:
    # zarr attributes are JSON: numpy arrays and scalars go in as lists and Python numbers.
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
