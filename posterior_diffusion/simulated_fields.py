"""Sets of simulated fields (training and test maps) written to a file: what goes together is
checked first, then the simulators run."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from posterior_diffusion.defaults import DEFAULT_FIELD_SHAPE
from posterior_diffusion.io import output_format
from posterior_diffusion.priors.power_spectrum import TabulatedPowerSpectrum
from posterior_diffusion.simulators import simulate_fields, write_dataset_file
from posterior_diffusion.simulators.conditional import DEFAULT_RANGES, conditional_grf

LPT_ORDERS = (1, 2)  # Zel'dovich, 2LPT


def simulate_fields_to_file(
    output: str | os.PathLike,
    kind: str,
    num: int = 1,
    shape: Sequence[int] = DEFAULT_FIELD_SHAPE,
    seed: int = 0,
    power_spectrum: str | os.PathLike | None = None,
    pixel_scale_arcmin: float | None = None,
    shift: float | None = None,
    lpt_order: int = 1,
    growth: float = 1.0,
    depth: int | None = None,
    amplitude_range: Sequence[float] | None = None,
    slope_range: Sequence[float] | None = None,
    command: str | None = None,
) -> np.ndarray:
    """`api.simulate_fields_to_file` (documented there)."""
    output_format(output)  # a bad output path fails before any simulation
    if lpt_order not in LPT_ORDERS:
        raise ValueError(f"--lpt-order must be 1 or 2, got {lpt_order}")
    spectrum = TabulatedPowerSpectrum.from_file(power_spectrum) if power_spectrum else None
    theta = None
    if amplitude_range or slope_range:
        _check_conditional(kind, spectrum, pixel_scale_arcmin, shift, lpt_order, growth, depth)
        fields, theta, attrs = conditional_grf(
            tuple(shape),
            num,
            seed,
            amplitude_range=amplitude_range or DEFAULT_RANGES["amplitude"],
            slope_range=slope_range or DEFAULT_RANGES["slope"],
        )
    else:
        fields, attrs = simulate_fields(
            kind,
            shape=tuple(shape),
            num=num,
            seed=seed,
            power_spectrum=spectrum,
            pixel_scale_arcmin=pixel_scale_arcmin,
            shift=shift,
            lpt_order=lpt_order,
            growth=growth,
            depth=depth,
        )
    attrs["command"] = command
    write_dataset_file(output, fields, attrs, theta=theta)
    return fields


def _check_conditional(kind, spectrum, pixel_scale_arcmin, shift, lpt_order, growth, depth) -> None:
    """Refuse what a set of GRFs at many cosmologies cannot take, as `simulate_fields` refuses
    flags of other kinds."""
    if kind != "grf":
        raise ValueError(f"--amplitude-range/--slope-range simulate kind grf, not {kind}")
    if spectrum is not None:
        raise ValueError("--amplitude-range/--slope-range replace --power-spectrum (a power law)")
    other_kinds = [
        flag
        for flag, given in (
            ("--pixel-scale-arcmin", pixel_scale_arcmin is not None),
            ("--shift", shift is not None),
            ("--lpt-order", lpt_order != 1),
            ("--growth", growth != 1.0),
            ("--depth", depth is not None),
        )
        if given
    ]
    if other_kinds:
        raise ValueError(f"{', '.join(other_kinds)}: not for kind grf")
