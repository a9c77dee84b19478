"""Writing simulated maps (num, H, W) with their settings to HDF5 or zarr, atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.attrs import portable_attrs, to_json

DATASET_FORMATS = {".h5": "hdf5", ".hdf5": "hdf5", ".zarr": "zarr"}


def dataset_format(path: str | os.PathLike) -> str:
    """'hdf5' or 'zarr' by suffix, checked before any work is done (one-line ValueError)."""
    suffix = Path(path).suffix.lower()
    if suffix not in DATASET_FORMATS:
        raise ValueError(
            f"{path}: output must end in {', '.join(DATASET_FORMATS)} (got '{suffix or 'none'}')"
        )
    if not Path(path).resolve().parent.is_dir():
        raise ValueError(f"{path}: directory {Path(path).parent} does not exist")
    return DATASET_FORMATS[suffix]


def write_dataset_file(
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
        path: .h5 / .hdf5 (HDF5 via h5py) or .zarr (a zarr v2 directory store).
        fields: float array (num, H, W).
        attrs: file attributes; dicts and lists become JSON strings.
        theta: (num, P) per-map parameters of a conditional training set, as dataset 'theta'.
    """
    from posterior_diffusion import __version__

    fmt = dataset_format(path)
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
        if fmt == "hdf5":
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
