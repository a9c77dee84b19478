"""Survey-like masks for simulated observations: a border and random rectangular holes."""

from __future__ import annotations

import numpy as np


def survey_mask(
    shape: tuple[int, int],
    hole_fraction: float = 0.1,
    border: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """A 0/1 (H, W) float64 mask, 1 = observed.

    Args:
        shape: (H, W) in pixels.
        hole_fraction: approximate fraction of the pixels inside the border lost to holes,
            in [0, 0.9].
        border: width in pixels of the unobserved frame around the map.
        seed: seed of the hole positions and sizes.
    """
    h, w = (int(n) for n in shape)
    if not 0.0 <= hole_fraction <= 0.9:
        raise ValueError(f"mask hole fraction must be in [0, 0.9], got {hole_fraction}")
    if border < 0 or 2 * border >= min(h, w):
        raise ValueError(f"mask border of {border} pixels leaves nothing of a {h} x {w} map")
    mask = np.zeros((h, w))
    mask[border : h - border, border : w - border] = 1.0
    inside = mask.sum()
    rng = np.random.default_rng(seed)
    # Holes up to an eighth of the map's side (at least 1 pixel): many small ones, like stars.
    largest = max(1, min(h, w) // 8)
    while 1.0 - mask.sum() / inside < hole_fraction:
        dy, dx = rng.integers(1, largest + 1, size=2)
        top, left = rng.integers(0, h - dy + 1), rng.integers(0, w - dx + 1)
        mask[top : top + dy, left : left + dx] = 0.0
    return mask
