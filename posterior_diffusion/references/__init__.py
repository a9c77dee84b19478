"""Exact and gold-standard posteriors that samplers are measured against (tests and benchmarks)."""

from .mixture import MixtureExactPosterior, mixture_exact_posterior

__all__ = ["MixtureExactPosterior", "mixture_exact_posterior"]
