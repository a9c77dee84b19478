"""Observation files (OBS.h5): reading and validating them, and writing them atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.attrs import plain_attr, portable_attrs
from posterior_diffusion.io.fits_observation import is_fits_observation, read_fits_observation

OBSERVATION_SUFFIXES = (".h5", ".hdf5")


class ObservationError(ValueError):
    """A bad observation; str() is one line naming the file, the dataset and the problem."""

    def __init__(self, source: str | os.PathLike, problem: str, dataset: str | None = None):
        where = f"{source}: " + (f"dataset '{dataset}': " if dataset else "")
        # Messages from h5py can span lines; the CLI promises one.
        super().__init__(where + " ".join(str(problem).split()))
        self.source, self.dataset, self.problem = str(source), dataset, problem


@dataclass
class Observation:
    """Data y of shape (C, H, W) and what is known about how it was taken.

    `check_observation` normalises and validates one; `read_observation` returns checked ones.
    """

    y: np.ndarray  # (C, H, W) float64; a 2-D y is stored as (1, H, W)
    mask: np.ndarray | None = None  # (H, W) float64 of 0/1, 1 = observed
    noise_std: np.ndarray | None = None  # per-entry noise standard deviation, broadcastable to y
    truth: np.ndarray | None = None  # the field (C_field, H_field, W_field), when simulated
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # psf, n_gal_per_arcmin2, ...
    attrs: dict[str, Any] = field(default_factory=dict)  # root attributes as plain Python
    path: Path | None = None

    @property
    def source(self) -> str:
        """How error messages name this observation."""
        return str(self.path) if self.path is not None else "<observation>"

    @property
    def forward_model(self) -> str | None:
        """The `forward_model` root attribute, if any."""
        name = self.attrs.get("forward_model")
        return str(name) if name is not None else None

    def forward_model_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a forward model is built from: mask, noise_std and the extra ones."""
        out = dict(self.arrays)
        if self.mask is not None:
            out["mask"] = self.mask
        if self.noise_std is not None:
            out["noise_std"] = self.noise_std
        return out

    def write(self, path: str | os.PathLike) -> None:
        """Write this observation as an OBS.h5 file (see `write_observation`)."""
        write_observation(
            path,
            self.y,
            mask=self.mask,
            noise_std=self.noise_std,
            truth=self.truth,
            attrs=self.attrs,
            **self.arrays,
        )


def _count_nonfinite(array: np.ndarray) -> int:
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def _as_real_array(source: str, name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "c":
        raise ObservationError(source, "has a complex dtype; expected real numbers", name)
    if array.dtype.kind not in "biuf":
        raise ObservationError(source, f"has non-numeric dtype {array.dtype}", name)
    if array.dtype.kind == "b" and name != "mask":  # true/false is a mask, not a measurement
        raise ObservationError(source, "has a boolean dtype; expected real numbers", name)
    array = array.astype(np.float64)
    bad = _count_nonfinite(array)
    if bad:
        raise ObservationError(source, f"contains {bad} NaN/inf values", name)
    return array


def _as_field(source: str, name: str, array: np.ndarray) -> np.ndarray:
    """A 2-D or 3-D array as (C, H, W)."""
    if array.ndim not in (2, 3):
        raise ObservationError(
            source, f"has shape {tuple(array.shape)}; expected (H, W) or (C, H, W)", name
        )
    if array.size == 0:
        raise ObservationError(source, f"is empty (shape {tuple(array.shape)})", name)
    return array if array.ndim == 3 else array[None]


# Further inputs of the forward models that hold one non-negative number per pixel (or one in
# all), checked here so that a wrong one names the file and dataset before any work.
PER_PIXEL_ARRAYS = ("n_gal_per_arcmin2",)


def _check_per_pixel(src, name: str, value: np.ndarray, map_shape, kind: str) -> None:
    """A dataset (kind "dataset") or root attribute holding one number or one per pixel."""
    dataset, prefix = (name, "") if kind == "dataset" else (None, f"attribute '{name}' ")
    if value.shape not in ((), tuple(map_shape)):
        raise ObservationError(
            src,
            f"{prefix}has shape {tuple(value.shape)}; expected one number or (H, W) = "
            f"{tuple(map_shape)} of 'y'",
            dataset,
        )
    bad = int(np.count_nonzero(value < 0))
    if bad:
        raise ObservationError(src, f"{prefix}has {bad} negative values", dataset)


def check_observation(obs: Observation) -> Observation:
    """A normalised copy of `obs` (float64 arrays, 3-D y and truth), or ObservationError."""
    src = obs.source
    if obs.y is None:
        raise ObservationError(src, "missing (every observation needs the data 'y')", "y")
    y = _as_field(src, "y", _as_real_array(src, "y", obs.y))
    observed = np.ones(y.shape[-2:], dtype=bool)

    mask = None
    if obs.mask is not None:
        mask = _as_real_array(src, "mask", obs.mask)
        if mask.shape != y.shape[-2:]:
            raise ObservationError(
                src,
                f"has shape {tuple(mask.shape)}; expected (H, W) = {tuple(y.shape[-2:])} of 'y'",
                "mask",
            )
        odd = mask[(mask != 0) & (mask != 1)]
        if odd.size:
            raise ObservationError(
                src, f"has {odd.size} values other than 0 and 1 (e.g. {odd[0]:g})", "mask"
            )
        if not mask.any():
            raise ObservationError(src, "has no observed pixels (all 0)", "mask")
        observed = mask.astype(bool)

    noise_std = None
    if obs.noise_std is not None:
        noise_std = _as_real_array(src, "noise_std", obs.noise_std)
        try:
            fits = np.broadcast_shapes(noise_std.shape, y.shape) == y.shape
        except ValueError:
            fits = False
        if not fits:
            raise ObservationError(
                src,
                f"has shape {tuple(noise_std.shape)}, not broadcastable to the shape "
                f"{tuple(y.shape)} of 'y'",
                "noise_std",
            )
        negative = int(np.count_nonzero(noise_std < 0))
        if negative:
            raise ObservationError(src, f"contains {negative} negative values", "noise_std")
        zero = int(np.count_nonzero(np.broadcast_to(noise_std, y.shape)[:, observed] == 0))
        if zero:
            raise ObservationError(
                src, f"is 0 on {zero} observed entries (noise must be > 0 there)", "noise_std"
            )

    truth = None
    if obs.truth is not None:
        # Its shape is checked against the forward model's field shape once that is built.
        truth = _as_field(src, "truth", _as_real_array(src, "truth", obs.truth))

    arrays = {name: _as_real_array(src, name, a) for name, a in obs.arrays.items()}
    for name in PER_PIXEL_ARRAYS:
        if name in arrays:
            _check_per_pixel(src, name, arrays[name], y.shape[-2:], "dataset")
        elif name in obs.attrs:
            try:
                value = _as_real_array(src, name, np.asarray(plain_attr(obs.attrs[name])))
            except ObservationError as err:
                raise ObservationError(src, f"attribute '{name}' {err.problem}") from None
            _check_per_pixel(src, name, value, y.shape[-2:], "attribute")
    return Observation(
        y=y,
        mask=mask,
        noise_std=noise_std,
        truth=truth,
        arrays=arrays,
        attrs={str(k): plain_attr(v) for k, v in obs.attrs.items()},
        path=obs.path,
    )


def _open_error(path: Path) -> str | None:
    """Why `path` cannot be opened as HDF5, or None if it can."""
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a directory, not an HDF5 file"
    if not os.access(path, os.R_OK):
        return "cannot read (permission denied)"
    try:
        if not h5py.is_hdf5(path):
            return "not an HDF5 file"
    except OSError as error:
        return f"cannot read ({error})"
    return None


# A dataset's declared size is checked before it is read: a damaged or hostile header could
# otherwise ask for terabytes. 4 GiB holds a 16384 x 16384 map in float64 twice over.
MAX_DATASET_BYTES = 4 * 2**30


def read_observation(path: str | os.PathLike) -> Observation:
    """Read and validate an observation file (format: docs/observation-format.md).

    Args:
        path: an HDF5 file with dataset `y` and optional `mask`, `noise_std`, `truth` and
            further arrays (e.g. `psf`, `n_gal_per_arcmin2`) at its root.

    Raises:
        ObservationError: with a one-line message naming the file, the dataset and the problem.
    """
    path = Path(path)
    if is_fits_observation(path):
        return _read_fits(path)
    problem = _open_error(path)
    if problem:
        raise ObservationError(path, problem)
    datasets: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (None if isinstance(v, h5py.Empty) else v) for k, v in f.attrs.items()}
            for name, item in f.items():
                if not isinstance(item, h5py.Dataset):
                    continue  # groups are for other tools
                if item.attrs.get("CLASS") == b"DIMENSION_SCALE":
                    continue  # netCDF dimensions written by xarray, not data
                declared = int(item.size or 0) * item.dtype.itemsize
                if declared > MAX_DATASET_BYTES:
                    raise ObservationError(
                        path,
                        f"declares {item.shape} values of {item.dtype} ({declared / 2**30:.3g} GiB),"
                        f" more than the {MAX_DATASET_BYTES / 2**30:.0f} GiB this reader accepts",
                        name,
                    )
                try:
                    datasets[name] = item[()]
                except (OSError, TypeError, ValueError, MemoryError) as error:
                    raise ObservationError(path, f"cannot read ({error})", name) from None
    except OSError as error:
        raise ObservationError(path, f"cannot read ({error})") from None
    return _checked(path, datasets, attrs)


def _read_fits(path: Path) -> Observation:
    """A FITS observation (io/fits_observation.py), checked like an HDF5 one."""
    if not path.is_file():
        raise ObservationError(path, "no such file" if not path.exists() else "is not a file")
    datasets, attrs, problem = read_fits_observation(path, MAX_DATASET_BYTES)
    if problem:
        raise ObservationError(path, problem)
    return _checked(path, datasets, attrs)


def _checked(path: Path, datasets: dict[str, np.ndarray], attrs: dict[str, Any]) -> Observation:
    if "y" not in datasets:
        raise ObservationError(path, "missing (every observation needs the data 'y')", "y")
    known = ("y", "mask", "noise_std", "truth")
    return check_observation(
        Observation(
            y=datasets["y"],
            mask=datasets.get("mask"),
            noise_std=datasets.get("noise_std"),
            truth=datasets.get("truth"),
            arrays={k: v for k, v in datasets.items() if k not in known},
            attrs=attrs,
            path=path,
        )
    )


def check_observation_path(path: str | os.PathLike) -> Path:
    """`path` if an observation can be written there (.h5/.hdf5 in an existing directory)."""
    path = Path(path)
    if path.suffix.lower() not in OBSERVATION_SUFFIXES:
        raise ValueError(f"{path}: observation files are HDF5: use a .h5 or .hdf5 suffix")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: output directory '{path.parent}' does not exist")
    return path


def write_observation(
    path: str | os.PathLike,
    y: np.ndarray,
    mask: np.ndarray | None = None,
    noise_std: np.ndarray | float | None = None,
    truth: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
    **arrays: np.ndarray,
) -> None:
    """Validate and write an observation file atomically (nothing is written if it is invalid).

    Args:
        path: output file, suffix .h5 or .hdf5.
        y: data, (H, W) or (C, H, W).
        mask: (H, W), 1 = observed.
        noise_std: noise standard deviation, a scalar or an array broadcastable to y.
        truth: the field the data were simulated from.
        attrs: root attributes (forward_model and its parameters); dicts are stored as JSON.
        **arrays: further root datasets, e.g. psf or n_gal_per_arcmin2.
    """
    path = check_observation_path(path)
    obs = check_observation(
        Observation(
            y=np.asarray(y),
            mask=None if mask is None else np.asarray(mask),
            noise_std=None if noise_std is None else np.asarray(noise_std),
            truth=None if truth is None else np.asarray(truth),
            arrays={k: np.asarray(v) for k, v in arrays.items()},
            attrs=dict(attrs or {}),
            path=path,
        )
    )
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("y", data=obs.y)
        for name, array in obs.forward_model_arrays().items():
            f.create_dataset(name, data=array.astype(np.uint8) if name == "mask" else array)
        if obs.truth is not None:
            f.create_dataset("truth", data=obs.truth)
        f.attrs.update(portable_attrs(obs.attrs))
