"""What a calibration run is (its request, and the settings a resumed run must share), and its seeds.

Every random stream of test i derives from (seed, i), so a test's result does not depend on which
tests ran before it, in this process or in an earlier one that was killed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posterior_diffusion.rng import member_seed

# Bump when what a test file holds changes: old files are then refused instead of misread.
FORMAT_VERSION = 2  # 2: lensing tests hold E/B-mode power (eb_*)

# Streams of test i besides its observation (which uses member_seed(seed, i), so that
# `simulate-obs --seed <test seed>` reproduces it).
STREAMS = {"sampler": 1, "reference": 2, "ranks": 3, "exact": 4}


@dataclass
class CalibrationRequest:
    """A calibration run as asked for (see `api.calibrate` for the meaning of each field)."""

    output_dir: Path
    forward_model: str
    num_tests: int
    prior: Any = None  # spec string, Prior or None
    power_spectrum: str | os.PathLike | None = None
    simulations: Path | None = None
    shape: tuple[int, ...] | None = None  # (H, W) [pixels]
    attrs: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None
    mask_fraction: float | None = 0.0  # None: the forward model's default
    mask_border: int | None = 0  # [pixels]; None: the forward model's default
    noise_std: float | None = None  # [data units]
    survey: Path | None = None  # an observation file whose grid, mask and noise map are imitated
    sampler: str | None = None
    num_samples: int = 64
    steps: int | None = None
    sampler_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    batch_size: int | None = None
    progress: bool = True
    command: str | None = None
    shard: tuple[int, int] | None = None  # (i, n): only tests with index % n == i, and test 0


def observation_seed(seed: int, test: int) -> int:
    """The seed of test `test`'s truth (prior draws) and noise."""
    return member_seed(seed, test)


def stream_seed(seed: int, test: int, stream: str) -> int:
    """A 63-bit seed for one of test `test`'s other random streams (STREAMS)."""
    state = np.random.SeedSequence([int(seed), int(test), STREAMS[stream]]).generate_state(
        1, np.uint64
    )
    return int(state[0] >> 1)


def array_sha256(array: np.ndarray | None) -> str | None:
    """Hex sha256 of an array's float64 values and shape (None for None)."""
    if array is None:
        return None
    a = np.ascontiguousarray(np.asarray(array, dtype=np.float64))
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


def settings_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """'key: X there, Y now' for every setting that differs, in key order."""
    out = []
    for key in sorted(set(stored) | set(current)):
        there, now = stored.get(key), current.get(key)
        if there != now:
            out.append(f"{key}: {_short(there)} there, {_short(now)} now")
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
