"""Priors: Tweedie denoisers behind one contract (`Prior`)."""

from __future__ import annotations

from importlib import resources

from .base import Prior, append_dims
from .gaussian import GaussianPrior
from .power_spectrum import PowerSpectrumError, TabulatedPowerSpectrum

DEFAULT_POWER_SPECTRUM = "default_power_spectrum.txt"
DEFAULT_PRIOR_FILE = "default_prior.pt"
# Priors shipped in posterior_diffusion/data/, by the short name `--prior` takes (model cards in docs/).
SHIPPED_PRIORS = {
    "default": DEFAULT_PRIOR_FILE,  # convergence, docs/default_prior.md
    "density": "density_prior.pt",  # projected dark-matter density, docs/density_prior.md
}


def default_power_spectrum() -> TabulatedPowerSpectrum:
    """The shipped convergence-like spectrum (1 arcmin pixels) behind the default prior."""
    path = resources.files("posterior_diffusion") / "data" / DEFAULT_POWER_SPECTRUM
    with resources.as_file(path) as file:
        spectrum = TabulatedPowerSpectrum.from_file(file)
    spectrum.source = f"posterior_diffusion/data/{DEFAULT_POWER_SPECTRUM}"
    return spectrum


def shipped_prior(name: str) -> Prior:
    """A prior shipped with the package, by its short name (SHIPPED_PRIORS)."""
    from .network import NetworkPrior

    file_name = SHIPPED_PRIORS[name]
    path = resources.files("posterior_diffusion") / "data" / file_name
    with resources.as_file(path) as file:
        prior = NetworkPrior.from_file(file)
    prior.source = f"posterior_diffusion/data/{file_name}"
    return prior


def default_prior(field_shape: tuple[int, ...]) -> Prior:
    """The prior `reconstruct` uses when none is given: the shipped learned convergence prior
    (docs/default_prior.md), a U-Net trained on 64 x 64 shifted-lognormal maps, 1 arcmin pixels."""
    return shipped_prior("default")


__all__ = [
    "GaussianPrior",
    "PowerSpectrumError",
    "Prior",
    "TabulatedPowerSpectrum",
    "append_dims",
    "default_power_spectrum",
    "default_prior",
    "shipped_prior",
]
