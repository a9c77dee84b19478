"""Posterior samplers. All share one signature:

    sampler(prior, model, y, rng, steps, callback=None, **options) -> Tensor (members, C, H, W)

with one ensemble member per generator of `rng`. `sampling.sample_posterior` runs them in batches.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from .dps import dps
from .guided import guided
from .linearized import linearized
from .smc import smc
from .split_gibbs import split_gibbs
from .unconditional import prior_ode, prior_sde


@dataclass(frozen=True)
class SamplerSpec:
    function: Callable
    summary: str
    needs_linear_gaussian: bool = False
    # Members depend on each other (importance weights, resampling): the sampler draws the whole
    # ensemble in one call, and a run that needs some members draws all and keeps those.
    ensemble: bool = False

    def check_options(self, options: dict) -> None:
        """Refuse options the sampler function does not take, naming those it does."""
        parameters = inspect.signature(self.function).parameters
        known = [n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"sampler '{self.function.__name__}' has no option {', '.join(unknown)} "
                f"(its options: {', '.join(known) or 'none'})"
            )

    @property
    def default_steps(self) -> int:
        """The `steps` default of the sampler function itself (one source of truth)."""
        return inspect.signature(self.function).parameters["steps"].default


SAMPLERS: dict[str, SamplerSpec] = {
    "guided": SamplerSpec(
        guided,
        "Tweedie-covariance guidance on the PF-ODE (exact for Gaussian priors)",
        needs_linear_gaussian=True,
    ),
    "split_gibbs": SamplerSpec(
        split_gibbs,
        "annealed split Gibbs (PnP-DM); exact only in the limit of many sweeps, and at its defaults "
        "not on non-Gaussian priors (docs/samplers.md)",
        needs_linear_gaussian=True,
    ),
    "smc": SamplerSpec(
        smc,
        "(experimental) SMC from prior to posterior along noised data, guided-restart moves; "
        "not calibrated on mixture priors yet (docs/samplers.md)",
        needs_linear_gaussian=True,
        ensemble=True,
    ),
    "linearized": SamplerSpec(
        linearized,
        "guided on the model linearised at the posterior mean (Gauss-Newton) for nonlinear or "
        "non-Gaussian observations such as galaxy counts; approximate (docs/samplers.md)",
    ),
    "dps": SamplerSpec(dps, "Diffusion Posterior Sampling (Chung et al. 2023), baseline"),
    "prior_ode": SamplerSpec(prior_ode, "unconditional PF-ODE (ignores the data)"),
    "prior_sde": SamplerSpec(prior_sde, "unconditional reverse SDE (ignores the data)"),
}

DEFAULT_SAMPLER = "guided"


def available_samplers() -> list[str]:
    return list(SAMPLERS)


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown sampler '{name}'; known: {', '.join(available_samplers())}"
        ) from None


__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "SamplerSpec", "available_samplers", "get_sampler"]
