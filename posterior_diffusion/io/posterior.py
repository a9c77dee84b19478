"""The posterior ensemble as an xarray Dataset: samples, their mean and spread, and the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from posterior_diffusion.io.observation import Observation

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
    return xr.Dataset(variables, attrs=dict(attrs or {}))
