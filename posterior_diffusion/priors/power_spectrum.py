"""Isotropic power spectra P(k), k in cycles per pixel, and their values on an FFT grid.

Convention (unit pixels, unnormalised x_hat = fft2(x)): <|x_hat(k)|^2> = H * W * P(|k|), so the
pixel variance of a field is the mean of P over the H x W frequency grid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from forward_models.fourier import frequency_magnitude


class PowerSpectrumError(ValueError):
    """A power-spectrum table or callable that cannot be used; the message is one line."""


class TabulatedPowerSpectrum:
    """P(k) from a two-column table (k, P), interpolated log-log between rows.

    A row at k = 0 gives P(0) directly; between it and the first positive k, P is interpolated
    linearly (log-log is undefined there). Asking for a k outside the table is an error.
    """

    def __init__(self, k: np.ndarray, power: np.ndarray, source: str = "table"):
        k, power = np.asarray(k, dtype=np.float64), np.asarray(power, dtype=np.float64)
        where = f"{source}:"
        if k.ndim != 1 or k.shape != power.shape or k.size < 2:
            raise PowerSpectrumError(f"{where} need at least two rows of two columns (k, P)")
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(power))):
            raise PowerSpectrumError(f"{where} contains NaN or inf")
        if np.any(np.diff(k) <= 0) or k[0] < 0:
            raise PowerSpectrumError(f"{where} k must be >= 0 and strictly increasing")
        positive = k > 0
        if np.any(power[positive] <= 0) or np.any(power < 0):
            raise PowerSpectrumError(f"{where} P must be > 0 at k > 0 (and >= 0 at k = 0)")
        self.k, self.power, self.source = k, power, source

    @classmethod
    def from_file(cls, path: str | Path) -> TabulatedPowerSpectrum:
        path = Path(path)
        try:
            table = np.loadtxt(path, comments="#", ndmin=2)
        except (OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise PowerSpectrumError(f"{path}: cannot read power spectrum: {reason}") from None
        if table.shape[1] != 2:
            raise PowerSpectrumError(f"{path}: expected two columns (k, P), got {table.shape[1]}")
        return cls(table[:, 0], table[:, 1], source=str(path))

    def __call__(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=np.float64)
        lo, hi = self.k[0], self.k[-1]
        if np.any(k < lo) or np.any(k > hi * (1 + 1e-12)):
            raise PowerSpectrumError(
                f"{self.source}: table covers k in [{lo:g}, {hi:g}] cycles/pixel but "
                f"[{k.min():g}, {k.max():g}] is needed"
            )
        k = np.clip(k, lo, hi)
        pos_k, pos_p = self.k[self.k > 0], self.power[self.k > 0]
        out = np.empty_like(k)
        upper = k >= pos_k[0]
        out[upper] = np.exp(np.interp(np.log(k[upper]), np.log(pos_k), np.log(pos_p)))
        if np.any(~upper):  # only reachable with a k = 0 row
            out[~upper] = np.interp(k[~upper], [0.0, pos_k[0]], [self.power[0], pos_p[0]])
        return out


def power_on_grid(
    power_spectrum: Callable[[np.ndarray], np.ndarray], height: int, width: int
) -> np.ndarray:
    """P(|k|) on the fft2 grid, validated: finite and non-negative."""
    k = frequency_magnitude(height, width)
    power = np.asarray(power_spectrum(k), dtype=np.float64)
    if power.shape != k.shape:
        power = np.broadcast_to(power, k.shape).copy()
    if not np.all(np.isfinite(power)) or np.any(power < 0):
        raise PowerSpectrumError("power spectrum must be finite and >= 0 on the whole grid")
    return power


def grid_checksum(power: np.ndarray, extra: str = "") -> str:
    return hashlib.sha256(np.ascontiguousarray(power).tobytes() + extra.encode()).hexdigest()


class PowerLawSpectrum:
    """P(k) = amplitude * ((k^2 + core^2) / pivot^2)^(slope / 2): the two-parameter family of the
    parameter-conditioned priors (theta = (amplitude, slope)). amplitude is P at k = pivot (for
    core << pivot); below k ~ core the spectrum flattens, so the largest scales of a 32 x 32 map
    (k = 1/32) do not hold most of the variance, and P(0) stays within 21 P(pivot) over the
    default box (a sampler's starting noise must swamp it). k in cycles per pixel.
    """

    names = ("amplitude", "slope")

    def __init__(self, amplitude: float, slope: float, pivot: float = 0.1, core: float = 0.03):
        if not (np.isfinite(amplitude) and amplitude > 0):
            raise PowerSpectrumError(f"power-law amplitude must be > 0, got {amplitude}")
        if not np.isfinite(slope):
            raise PowerSpectrumError(f"power-law slope must be finite, got {slope}")
        if not (pivot > 0 and core > 0):
            raise PowerSpectrumError(f"pivot and core must be > 0, got {pivot} and {core}")
        self.amplitude, self.slope = float(amplitude), float(slope)
        self.pivot, self.core = float(pivot), float(core)
        self.source = (
            f"power_law(amplitude={self.amplitude:g}, slope={self.slope:g}, pivot={self.pivot:g}, "
            f"core={self.core:g})"
        )

    def __call__(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=np.float64)
        return self.amplitude * ((k**2 + self.core**2) / self.pivot**2) ** (self.slope / 2)


def radial_table(power_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An fft-grid P (..., H, W) as rows (k, P(k)) that `TabulatedPowerSpectrum` reads on any
    grid: P(0), then P averaged over |k| bins one fundamental wide (mean |k| per bin), then the
    last bin's P again at the grid's corner |k| = sqrt(1/2), so every grid's corner is covered.

    Returns:
        k (B,) and P (..., B), P floored at 1e-12 of its maximum at k > 0 (a table's rows must
        be positive there).
    """
    power_grid = np.asarray(power_grid, dtype=np.float64)
    height, width = power_grid.shape[-2:]
    k = frequency_magnitude(height, width)
    step = 1.0 / max(height, width)
    which = np.floor(k / step + 0.5).astype(int)  # bin b holds |k| in [(b - 1/2), (b + 1/2)) step
    which[0, 0] = 0
    bins = [b for b in np.unique(which) if b > 0]
    rows_k = [0.0] + [float(k[which == b].mean()) for b in bins]
    rows_p = [power_grid[..., 0, 0]] + [power_grid[..., which == b].mean(-1) for b in bins]
    corner = 0.5**0.5
    if rows_k[-1] < corner:
        rows_k.append(corner)
        rows_p.append(rows_p[-1])
    power = np.stack(rows_p, axis=-1)
    floor = 1e-12 * power[..., 1:].max()
    power[..., 1:] = np.maximum(power[..., 1:], floor)
    return np.asarray(rows_k), power
