"""Every number of a report as JSON (summary.json) and CSV tables, written atomically.

NaN and infinity become JSON null (strict JSON has neither) and empty CSV cells.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posterior_diffusion.io.atomic import atomic_path


def jsonable(value: Any) -> Any:
    """Nested dicts/lists/arrays/numpy scalars as plain JSON values; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """`value` as indented, strict JSON."""
    text = json.dumps(jsonable(value), indent=1, sort_keys=False, allow_nan=False)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text + "\n")


def _cell(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(value) else f"{float(value):.6g}"
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_csv(
    path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """A CSV file with a header line; floats to 6 significant digits."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row])


def columns(**named: Sequence[Any]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) from equal-length columns given by name."""
    header = list(named)
    values = [
        list(np.asarray(v).tolist()) if isinstance(v, np.ndarray) else list(v)
        for v in named.values()
    ]
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        raise ValueError(
            f"columns of unequal length: {dict(zip(header, map(len, values), strict=True))}"
        )
    return header, [list(row) for row in zip(*values, strict=True)]
