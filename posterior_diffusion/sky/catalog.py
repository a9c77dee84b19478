"""Reading a shear catalogue (FITS binary table, CSV or ECSV, through astropy.table) into checked
arrays, with the user's column names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table

FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".csv": "ascii.csv",
    ".ecsv": "ascii.ecsv",
}
# Galaxies read at once; a larger catalogue is refused before its columns are loaded.
MAX_ROWS = 500_000_000


class CatalogError(ValueError):
    """A catalogue that cannot be used; str() is one line naming the file (and column)."""


@dataclass(frozen=True)
class ColumnMap:
    """Which catalogue columns hold what. Optional ones are None when absent."""

    ra: str = "ra"
    dec: str = "dec"
    e1: str = "e1"
    e2: str = "e2"
    weight: str | None = None
    m: str | None = None  # per-galaxy multiplicative bias
    c1: str | None = None  # per-galaxy additive bias, per component
    c2: str | None = None

    def named(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v is not None}


DEFAULT_COLUMNS = ColumnMap()


@dataclass
class ShearCatalog:
    """Positions in degrees and ellipticities (biases removed by `binning`), one row per galaxy."""

    ra: np.ndarray
    dec: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    weight: np.ndarray
    m: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    source: str = "catalogue"
    columns: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ra.size)


def catalog_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise CatalogError(f"{path}: unknown catalogue format (suffixes: {', '.join(FORMATS)})")


def read_catalog(
    path: str | os.PathLike,
    columns: ColumnMap = DEFAULT_COLUMNS,
    m_global: float | None = None,
    flip_e1: bool = False,
    flip_e2: bool = False,
) -> ShearCatalog:
    """The catalogue at `path`, checked: named columns exist, are numeric and finite; RA/Dec in
    degrees (or any angle unit the column declares); weights >= 0 with a positive sum;
    Dec in [-90, 90]; m > -1. `m_global` is a multiplicative bias for every galaxy (added to a
    per-galaxy `m` column when both are given); `flip_e1`/`flip_e2` negate a component for
    catalogues whose convention is mirrored with respect to the map's (docs/sky.md).

    Raises:
        CatalogError: one line naming the file, and the column where one is at fault.
    """
    path = Path(path)
    fmt = catalog_format(path)
    if not path.is_file():
        raise CatalogError(f"{path}: no such file")
    try:
        table = Table.read(path, format=fmt)
    except Exception as err:  # astropy's readers raise many kinds for a damaged file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CatalogError(f"{path}: cannot read as {fmt}: {reason}") from None
    if len(table) == 0:
        raise CatalogError(f"{path}: the catalogue has no rows")
    if len(table) > MAX_ROWS:
        raise CatalogError(f"{path}: {len(table)} rows, more than {MAX_ROWS} at once")
    named = columns.named()
    missing = [v for v in named.values() if v not in table.colnames]
    if missing:
        raise CatalogError(
            f"{path}: no column {', '.join(repr(c) for c in missing)} "
            f"(columns: {', '.join(table.colnames[:20])}{', ...' if len(table.colnames) > 20 else ''})"
        )
    values = {
        key: _numeric(table, name, path, angle=key in ("ra", "dec")) for key, name in named.items()
    }
    n = len(table)
    weight = values.get("weight", np.ones(n))
    if np.any(weight < 0) or not weight.sum() > 0:
        raise CatalogError(
            f"{path}: column {named['weight']!r}: weights must be >= 0 with a positive sum"
        )
    if np.any(np.abs(values["dec"]) > 90):
        raise CatalogError(f"{path}: column {named['dec']!r}: Dec outside [-90, 90] degrees")
    m = values.get("m", np.zeros(n)) + (0.0 if m_global is None else float(m_global))
    if not np.all(m > -1):
        raise CatalogError(f"{path}: multiplicative bias m must be > -1 for every galaxy")
    e1, e2 = values["e1"], values["e2"]
    return ShearCatalog(
        ra=values["ra"] % 360.0,
        dec=values["dec"],
        e1=-e1 if flip_e1 else e1,
        e2=-e2 if flip_e2 else e2,
        weight=weight,
        m=m,
        c1=values.get("c1", np.zeros(n)),
        c2=values.get("c2", np.zeros(n)),
        source=str(path),
        columns=named,
    )


def _numeric(table: Table, name: str, path: Path, angle: bool) -> np.ndarray:
    column = table[name]
    if np.ma.is_masked(column) and np.ma.count_masked(column):
        raise CatalogError(
            f"{path}: column {name!r}: {np.ma.count_masked(column)} missing or NaN values"
        )
    if column.ndim != 1 or column.dtype.kind not in "iuf":
        raise CatalogError(f"{path}: column {name!r}: not a column of numbers ({column.dtype})")
    if angle and column.unit is not None:
        try:
            data = (np.asarray(column, dtype=np.float64) * column.unit).to_value(u.deg)
        except u.UnitConversionError:
            raise CatalogError(
                f"{path}: column {name!r}: unit {column.unit} is not an angle"
            ) from None
    else:
        data = np.asarray(column, dtype=np.float64)
    bad = ~np.isfinite(data)
    if bad.any():
        raise CatalogError(f"{path}: column {name!r}: {int(bad.sum())} NaN/inf values")
    return data
