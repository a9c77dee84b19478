"""Held-out truths from a simulations file (dataset `fields`, (num, H, W), from `simulate`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posterior_diffusion.io.fields import FieldFileError, check_finite, field_array, open_file

SimulationsError = FieldFileError  # the name the calibration package exports


class SimulationsFile:
    """Maps read one at a time, in order, from a field file written by `simulate`; the file is
    open only while a map is read."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open_file(self.path) as store:
            fields = field_array(store, self.path, "fields", ranks=(3,))
            self.shape: tuple[int, int, int] = tuple(int(n) for n in fields.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def field(self, index: int) -> np.ndarray:
        """Map `index` as a float64 (1, H, W) array, refusing NaN/inf."""
        with open_file(self.path) as store:
            values = np.asarray(store["fields"][index], dtype=np.float64)
        check_finite(self.path, "fields", values[None], first=index)
        return values[None]
