"""Priors: Tweedie denoisers behind one contract (`Prior`)."""

from __future__ import annotations

from importlib import resources

from .base import Prior, append_dims
from .gaussian import GaussianPrior
from .power_spectrum import PowerSpectrumError, TabulatedPowerSpectrum

DEFAULT_POWER_SPECTRUM = "default_power_spectrum.txt"


def default_power_spectrum() -> TabulatedPowerSpectrum:
    """The shipped convergence-like spectrum (1 arcmin pixels) behind the default prior."""
    path = resources.files("posterior_diffusion") / "data" / DEFAULT_POWER_SPECTRUM
    with resources.as_file(path) as file:
        spectrum = TabulatedPowerSpectrum.from_file(file)
    spectrum.source = f"posterior_diffusion/data/{DEFAULT_POWER_SPECTRUM}"
    return spectrum


def default_prior(field_shape: tuple[int, ...]) -> Prior:
    """The prior `reconstruct` uses when none is given (for now the analytic Gaussian one)."""
    return GaussianPrior(default_power_spectrum(), field_shape)


__all__ = [
    "GaussianPrior",
    "PowerSpectrumError",
    "Prior",
    "TabulatedPowerSpectrum",
    "append_dims",
    "default_power_spectrum",
    "default_prior",
]
