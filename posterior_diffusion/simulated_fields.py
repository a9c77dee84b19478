"""Sets of simulated fields (training and test maps) written to a file: what goes together is
checked first, then the simulators run."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from posterior_diffusion.defaults import DEFAULT_FIELD_SHAPE
from posterior_diffusion.io import output_format
from posterior_diffusion.memory import available_bytes
from posterior_diffusion.priors.power_spectrum import TabulatedPowerSpectrum
from posterior_diffusion.simulators import simulate_fields, write_dataset_file
from posterior_diffusion.simulators.conditional import DEFAULT_RANGES, conditional_grf

LPT_ORDERS = (1, 2)  # Zel'dovich, 2LPT
# Peak bytes, measured with /usr/bin/time (maximum resident size less the imports'): about 56 per
# map pixel for 4 convergence or GRF maps of 1024^2 (working set plus the maps kept), 280-305
# per LPT box cell (Zel'dovich and 2LPT, 128^3). Rounded up, so a refusal is never a near miss.
BYTES_PER_PIXEL = 64
BYTES_PER_BOX_CELL = 320


def check_memory(kind: str, height: int, width: int, num: int, depth: int | None) -> None:
    """Refuse, before allocating, a simulation that cannot fit in the host's free memory (a typo
    in --shape or --depth used to run until the machine ran out of it)."""
    need = BYTES_PER_PIXEL * num * height * width
    if kind == "density":
        need += BYTES_PER_BOX_CELL * height * width * (height if depth is None else depth)
    free = available_bytes("cpu")
    if need > free:
        cells = f"{height} x {width} x {height if depth is None else depth}"
        box = f" (LPT boxes of {cells} cells)" if kind == "density" else ""
        raise ValueError(
            f"{num} '{kind}' maps of {height} x {width}{box} need about {need / 2**30:.1f} GiB, "
            f"more than the {free / 2**30:.1f} GiB free; simulate fewer or smaller maps"
        )


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
    if len(shape) == 2:  # else `simulate_fields` says what is wrong with it
        check_memory(kind, int(shape[0]), int(shape[1]), int(num), depth)
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
