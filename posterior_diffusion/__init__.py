"""Calibrated Bayesian reconstruction of physical fields with diffusion priors."""

from __future__ import annotations

from typing import Any

from posterior_diffusion.version import __version__

__all__ = ["__version__", "reconstruct", "simulate_observation"]


def __getattr__(name: str) -> Any:
    # The API pulls in torch; load it on first use so `import posterior_diffusion` stays cheap.
    if name in ("reconstruct", "simulate_observation"):
        from posterior_diffusion import api

        return getattr(api, name)
    raise AttributeError(f"module 'posterior_diffusion' has no attribute {name!r}")
