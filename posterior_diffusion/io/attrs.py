"""Attribute values that HDF5, netCDF and zarr all accept: str, numbers, 1-D arrays; else JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    # json.dumps calls this for anything it cannot encode itself.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "tolist"):  # torch tensors, without importing torch here
        return value.tolist()
    if isinstance(value, (Path, bytes)):
        return value.decode() if isinstance(value, bytes) else str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def to_json(value: Any) -> str:
    """Compact, key-sorted JSON of nested dicts/lists holding numpy or torch values."""
    return json.dumps(value, default=_jsonable, sort_keys=True, separators=(",", ":"))


def portable_attr(value: Any) -> Any:
    """`value` as a str, int, float or 1-D numeric array; None when it should be left out."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)  # netCDF has no boolean attribute type
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return str(value)  # str subclasses (torch's TorchVersion) confuse h5py
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple, np.ndarray)):
        array = np.asarray(value)
        if array.ndim == 1 and array.size > 0 and array.dtype.kind in "biuf":
            return array.astype(np.float64 if array.dtype.kind == "f" else np.int64)
    return to_json(value)


def portable_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Every entry of `attrs` through `portable_attr`, dropping the None ones."""
    out = {str(key): portable_attr(value) for key, value in attrs.items()}
    return {key: value for key, value in out.items() if value is not None}


def plain_attr(value: Any) -> Any:
    """An attribute as read from HDF5 (numpy scalars, bytes, arrays) as plain Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return plain_attr(value.item())
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return plain_attr(value.reshape(()).item())
        return [plain_attr(v) for v in value.tolist()]
    if isinstance(value, list):
        return [plain_attr(v) for v in value]
    return value


def observation_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The observation's root attributes that `reconstruct` keeps in a result's
    `observation_attrs` (a JSON string in files, a dict in memory); {} when absent or unreadable."""
    nested = attrs.get("observation_attrs")
    if isinstance(nested, Mapping):
        return dict(nested)
    try:
        parsed = json.loads(nested) if isinstance(nested, (str, bytes)) else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
