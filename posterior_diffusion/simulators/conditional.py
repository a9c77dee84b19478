"""Gaussian random fields at many cosmologies: the training set of a parameter-conditioned prior.

Map i gets its own theta_i = (amplitude, slope) of `PowerLawSpectrum`, drawn uniformly in a box,
and is a GRF with that spectrum. The file holds `fields` (num, H, W) and `theta` (num, 2), with
the parameter names in the attribute `theta_names`; training a prior whose network has
`condition_dim: 2` on it gives p(x | theta) (docs/conditional_priors.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posterior_diffusion.priors.power_spectrum import PowerLawSpectrum, power_on_grid
from posterior_diffusion.rng import member_seed

from .grf import check_shape, gaussian_field_from_power_grid

THETA_DATASET = "theta"
DEFAULT_RANGES = {"amplitude": (0.5, 2.0), "slope": (-2.5, -1.0)}


def check_range(name: str, bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(b) for b in bounds)
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"{name} range must be two finite numbers LO <= HI, got {low} {high}")
    if name == "amplitude" and low <= 0:
        raise ValueError(f"amplitude range must be > 0, got {low} {high}")
    return low, high


def draw_theta(num: int, seed: int, ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    """(num, 2) parameters, uniform in the box; map i's from its own stream, so map i's theta
    does not depend on `num`."""
    low = np.array([ranges[n][0] for n in PowerLawSpectrum.names])
    high = np.array([ranges[n][1] for n in PowerLawSpectrum.names])
    # Streams (seed, 2^31 + i) are not the maps' (seed, i): theta and field noise stay independent.
    unit = np.stack(
        [np.random.default_rng(member_seed(seed, 2**31 + i)).random(2) for i in range(num)]
    )
    return low + (high - low) * unit


def conditional_grf(
    shape: tuple[int, int],
    num: int,
    seed: int,
    amplitude_range: tuple[float, float] = DEFAULT_RANGES["amplitude"],
    slope_range: tuple[float, float] = DEFAULT_RANGES["slope"],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(fields (num, H, W), theta (num, 2), attrs): map i is a GRF with `PowerLawSpectrum(*theta_i)`.

    Args:
        shape: (H, W) [pixels].
        num: number of maps.
        seed: random seed (theta and fields).
        amplitude_range: (low, high) of the amplitude, P at k = 0.1 cycles/pixel.
        slope_range: (low, high) of the logarithmic slope.
    """
    height, width = check_shape(shape, num)
    ranges = {
        "amplitude": check_range("amplitude", amplitude_range),
        "slope": check_range("slope", slope_range),
    }
    theta = draw_theta(int(num), seed, ranges)
    fields = np.empty((int(num), height, width))
    for i, (amplitude, slope) in enumerate(theta):
        power = power_on_grid(PowerLawSpectrum(amplitude, slope), height, width)
        fields[i] = gaussian_field_from_power_grid(power, 1, member_seed(seed, i))[0]
    probe = PowerLawSpectrum(1.0, 0.0)
    attrs = {
        "kind": "grf",
        "seed": int(seed),
        "theta_names": list(PowerLawSpectrum.names),
        "parameters": {
            "shape": [height, width],
            "num": int(num),
            "power_spectrum": "power_law(amplitude, slope)",
            "pivot": probe.pivot,
            "core": probe.core,
            "theta_ranges": {name: list(bounds) for name, bounds in ranges.items()},
        },
    }
    return fields, theta, attrs
