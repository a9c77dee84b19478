"""From what the user names (a spec string, a power-spectrum file, or nothing) to a Prior."""

from __future__ import annotations

import os
from pathlib import Path

from posterior_diffusion.priors import GaussianPrior, Prior, default_prior

PRIOR_SPECS = ("default", "gaussian")


def resolve_prior(
    spec: str | Prior | None,
    power_spectrum: str | os.PathLike | None,
    field_shape: tuple[int, int, int],
) -> Prior:
    """The prior for fields of shape (C, H, W).

    Args:
        spec: a Prior (used as is); None or "default": the shipped default prior, or a Gaussian
            prior from `power_spectrum` when one is given; "gaussian": a Gaussian prior from
            `power_spectrum` (required).
        power_spectrum: two-column text file (k [cycles/pixel], P), see priors/power_spectrum.py.
        field_shape: (C, H, W) of the fields the prior describes.

    Raises:
        ValueError: unknown spec or missing power spectrum (PowerSpectrumError for a bad table).
    """
    if isinstance(spec, Prior):
        if power_spectrum is not None:
            raise ValueError("give either a Prior object or a power spectrum file, not both")
        return spec
    name = "default" if spec is None else str(spec).strip().lower()
    if name == "default" and power_spectrum is None:
        return default_prior(tuple(field_shape))
    if name in ("default", "gaussian"):
        if power_spectrum is None:
            raise ValueError("prior 'gaussian' needs a power spectrum file (--power-spectrum)")
        return GaussianPrior.from_file(Path(power_spectrum), tuple(field_shape))
    # Trained priors (checkpoints) will resolve here.
    raise ValueError(f"unknown prior '{spec}' (available: {', '.join(PRIOR_SPECS)})")
