"""Held-out truths from a simulations file (dataset `fields`, (num, H, W), from `simulate`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posterior_diffusion.simulators.io import DATASET_FORMATS


class SimulationsError(ValueError):
    """A simulations file that cannot serve as truths; one line naming the file."""


class SimulationsFile:
    """Maps read one at a time, in order, from an HDF5 or zarr file written by `simulate`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = DATASET_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise SimulationsError(
                f"{self.path}: simulations must be {', '.join(DATASET_FORMATS)} files "
                "written by `posterior-diffusion simulate`"
            )
        if not self.path.exists():
            raise SimulationsError(f"{self.path}: no such file")
        self.shape = self._read_shape()

    def _open(self):
        try:
            if self.format == "hdf5":
                import h5py

                return h5py.File(self.path, "r")
            import zarr

            return zarr.open_group(str(self.path), mode="r")
        except Exception as err:  # h5py/zarr raise OSError, KeyError, FileNotFoundError, ...
            reason = " ".join(str(err).split()) or type(err).__name__
            raise SimulationsError(f"{self.path}: cannot read ({reason})") from None

    def _read_shape(self) -> tuple[int, int, int]:
        store = self._open()
        try:
            if "fields" not in store:
                raise SimulationsError(
                    f"{self.path}: no dataset 'fields' (expected (num, H, W) maps written by "
                    "`posterior-diffusion simulate`)"
                )
            shape = tuple(int(n) for n in store["fields"].shape)
        finally:
            if self.format == "hdf5":
                store.close()
        if len(shape) != 3 or min(shape) < 1:
            raise SimulationsError(
                f"{self.path}: dataset 'fields' has shape {shape}; expected (num, H, W)"
            )
        return shape

    def __len__(self) -> int:
        return self.shape[0]

    def field(self, index: int) -> np.ndarray:
        """Map `index` as a float64 (1, H, W) array, refusing NaN/inf."""
        store = self._open()
        try:
            values = np.asarray(store["fields"][index], dtype=np.float64)
        finally:
            if self.format == "hdf5":
                store.close()
        bad = values.size - int(np.count_nonzero(np.isfinite(values)))
        if bad:
            raise SimulationsError(
                f"{self.path}: dataset 'fields': map {index} contains {bad} NaN/inf values"
            )
        return values[None]
