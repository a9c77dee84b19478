"""From what the user names (a prior file, a spec string, a power-spectrum file, or nothing) to a Prior."""

from __future__ import annotations

import os
from pathlib import Path

from posterior_diffusion.priors import (
    SHIPPED_PRIORS,
    GaussianPrior,
    Prior,
    default_power_spectrum,
    default_prior,
    shipped_prior,
)
from posterior_diffusion.priors.conditioned import ConditionedPrior
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.parameter_grid import ParameterGridPrior
from posterior_diffusion.priors.prior_file import PriorFileError

PRIOR_SPECS = ("default", "density", "gaussian", "PATH.pt / PATH.ckpt")
PRIOR_FILE_SUFFIXES = (".pt", ".ckpt")


def resolve_prior(
    spec: str | os.PathLike | Prior | None,
    power_spectrum: str | os.PathLike | None,
    field_shape: tuple[int, int, int],
    pixel_scale_arcmin: float | None = None,
) -> Prior:
    """The prior for fields of shape (C, H, W), checked against them.

    Args:
        spec: a Prior (used as is); a prior file from `posterior-diffusion train` (.pt or .ckpt);
            None or "default": the shipped default prior, or a Gaussian prior from
            `power_spectrum` when one is given; "gaussian": the analytic Gaussian prior with
            `power_spectrum`, or with the default spectrum when none is given; "density": the
            shipped dark-matter density prior (docs/density_prior.md).
        power_spectrum: two-column text file (k [cycles/pixel], P), see priors/power_spectrum.py.
        field_shape: (C, H, W) of the fields the prior describes.
        pixel_scale_arcmin: the observation's pixel side, checked against a trained prior's.

    Raises:
        ValueError: unknown spec, or a spec and a power spectrum together (PowerSpectrumError for
            a bad table, PriorFileError for a bad or mismatched prior file).
    """
    if isinstance(spec, Prior):
        if power_spectrum is not None:
            raise ValueError("give either a Prior object or a power spectrum file, not both")
        return _checked(spec, field_shape, pixel_scale_arcmin)
    name = "default" if spec is None else str(spec).strip()
    if name.lower() == "default" and power_spectrum is None:
        prior = default_prior(tuple(field_shape))
        try:
            return _checked(prior, field_shape, pixel_scale_arcmin)
        except PriorFileError as err:
            raise PriorFileError(
                f"the default prior cannot describe these fields: {err}; use --prior gaussian "
                "(with --power-spectrum FILE for your own spectrum) or a prior file"
            ) from None
    if name.lower() in ("default", "gaussian"):
        if power_spectrum is None:
            return GaussianPrior(default_power_spectrum(), tuple(field_shape))
        return GaussianPrior.from_file(Path(power_spectrum), tuple(field_shape))
    if name.lower() in SHIPPED_PRIORS:
        if power_spectrum is not None:
            raise ValueError(f"the shipped prior '{name}' and a power spectrum cannot be combined")
        return _checked(shipped_prior(name.lower()), field_shape, pixel_scale_arcmin)
    if Path(name).suffix.lower() in PRIOR_FILE_SUFFIXES or Path(name).is_file():
        if power_spectrum is not None:
            raise ValueError("a prior file and a power spectrum cannot be combined")
        prior = NetworkPrior.from_file(name)
        return _checked(prior, field_shape, pixel_scale_arcmin)
    raise ValueError(f"unknown prior '{spec}' (available: {', '.join(PRIOR_SPECS)})")


def _checked(prior: Prior, field_shape, pixel_scale_arcmin) -> Prior:
    prior.check_fields(tuple(field_shape), pixel_scale_arcmin)
    return prior


def condition_prior(prior: Prior, theta, guidance: float = 0.0, theta_grid=None) -> Prior:
    """`prior` at fixed theta with guidance weight w (a `ConditionedPrior`) when theta is given,
    or marginalised over `theta_grid` ({name: (low, high, num)}, a `ParameterGridPrior`).

    Without either a conditional prior is its marginal over the training set's theta, and w must
    stay 0. Raises PriorFileError (theta for an unconditional prior) or ValueError.
    """
    if theta_grid is not None:
        if theta is not None or guidance:
            raise ValueError("a theta grid cannot be combined with theta or a guidance weight")
        if not isinstance(prior, NetworkPrior):
            raise ValueError(
                f"a theta grid is for parameter-conditioned trained priors; "
                f"{type(prior).__name__} is not one"
            )
        return ParameterGridPrior.from_ranges(prior, theta_grid)
    if theta is None:
        if guidance:
            raise ValueError("a guidance weight needs theta (the parameters to condition on)")
        return prior
    if not isinstance(prior, NetworkPrior):
        raise ValueError(
            f"theta is for parameter-conditioned trained priors; {type(prior).__name__} is not one"
        )
    return ConditionedPrior(prior, theta, guidance)
