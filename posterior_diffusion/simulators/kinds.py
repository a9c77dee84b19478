"""One entry point over the simulator kinds: maps plus the attributes that describe them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from posterior_diffusion.priors.power_spectrum import power_on_grid

from .convergence import DEFAULT_SHIFT, convergence_power_spectrum
from .grf import check_shape, gaussian_random_field
from .lognormal import lognormal_from_power_grid, lognormal_spectrum
from .lpt import linear_power_3d, lpt_density_maps

KINDS = ("grf", "lognormal", "convergence", "density")


def simulate_fields(
    kind: str,
    shape: tuple[int, int],
    num: int,
    seed: int,
    power_spectrum: Callable[[np.ndarray], np.ndarray] | None = None,
    pixel_scale_arcmin: float | None = None,
    shift: float | None = None,
    lpt_order: int = 1,
    growth: float = 1.0,
    depth: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(fields (num, H, W), attrs for `write_dataset_file`) for one simulator kind.

    Args:
        kind: grf, lognormal, convergence or density.
        shape: (H, W) [pixels]; density needs H == W (the LPT box side in cells).
        num: number of maps.
        seed: random seed.
        power_spectrum: P(k), k in cycles per pixel (per cell for density's 3-D P3). Default:
            the shipped prior spectrum (grf, lognormal), the analytic C_ell (convergence),
            `linear_power_3d` (density).
        pixel_scale_arcmin: convergence only: pixel side [arcmin] (default 1).
        shift: lognormal and convergence: the lognormal shift (default 1 and 0.02).
        lpt_order: density only: 1 (Zel'dovich) or 2 (2LPT).
        growth: density only: growth amplitude D.
        depth: density only: the box's cells along the line of sight (default H, a cubic box);
            maps larger than a training set's keep its depth to be the same field.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown simulator kind '{kind}' (choose from {', '.join(KINDS)})")
    height, width = check_shape(shape, num)
    if pixel_scale_arcmin is not None and kind != "convergence":
        raise ValueError(f"a pixel scale only applies to kind convergence, not {kind}")
    if shift is not None and kind not in ("lognormal", "convergence"):
        raise ValueError(f"a shift only applies to kinds lognormal and convergence, not {kind}")
    if kind != "density" and (lpt_order != 1 or growth != 1.0):
        raise ValueError(f"LPT order and growth only apply to kind density, not {kind}")
    if kind != "density" and depth is not None:
        raise ValueError(f"a projection depth only applies to kind density, not {kind}")
    source = getattr(power_spectrum, "source", None)
    parameters: dict[str, Any] = {"shape": [height, width], "num": int(num)}
    attrs: dict[str, Any] = {"kind": kind, "seed": int(seed)}
    if kind in ("grf", "lognormal"):
        if power_spectrum is None:
            from posterior_diffusion.priors import default_power_spectrum

            power_spectrum = default_power_spectrum()
            source = power_spectrum.source
        parameters["power_spectrum"] = source or repr(power_spectrum)
    if kind == "grf":
        fields = gaussian_random_field(power_spectrum, (height, width), num, seed)
    elif kind in ("lognormal", "convergence"):
        if kind == "convergence":
            pixel_scale_arcmin = 1.0 if pixel_scale_arcmin is None else pixel_scale_arcmin
            shift = DEFAULT_SHIFT if shift is None else shift
            attrs["pixel_scale_arcmin"] = float(pixel_scale_arcmin)
            parameters["pixel_scale_arcmin"] = float(pixel_scale_arcmin)
            parameters["power_spectrum"] = source or "analytic convergence_cl"
            if power_spectrum is None:
                power_spectrum = convergence_power_spectrum(pixel_scale_arcmin)
        shift = 1.0 if shift is None else shift
        power = power_on_grid(power_spectrum, height, width)
        parameters["shift"] = float(shift)
        parameters["clipped_fraction"] = lognormal_spectrum(power, shift).clipped_fraction
        fields = lognormal_from_power_grid(power, num, seed, shift)
    else:
        if height != width:
            raise ValueError(f"density maps come from an N^3 box: shape must be N N, got {shape}")
        depth = height if depth is None else int(depth)
        parameters.update(
            power_spectrum=source or "linear_power_3d",
            lpt_order=int(lpt_order),
            growth=growth,
            depth=depth,
        )
        fields = lpt_density_maps(
            height, num, seed, lpt_order, growth, power_spectrum or linear_power_3d, depth=depth
        )
    attrs["parameters"] = parameters
    return fields, attrs
