"""Posterior samplers. All share one signature:

    sampler(prior, model, y, rng, steps, callback=None, **options) -> Tensor (members, C, H, W)

with one ensemble member per generator of `rng`. `sampling.sample_posterior` runs them in batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .dps import dps
from .guided import guided, prepare_guided
from .linearized import linearized, prepare_linearized
from .smc import smc
from .split_gibbs import split_gibbs
from .unconditional import prior_ode, prior_sde


@dataclass(frozen=True)
class SamplerSpec:
    function: Callable
    summary: str
    default_steps: int  # the function's own `steps` default
    options: tuple[str, ...]  # the function's keyword-only options, in its order
    needs_linear_gaussian: bool = False
    # Members depend on each other (importance weights, resampling): the sampler draws the whole
    # ensemble in one call, and a run that needs some members draws all and keeps those.
    ensemble: bool = False
    # Ensemble-level work done once per run, before any batch: prepare(prior, model, y, seed,
    # steps, options) returns (keyword arguments for every batch's call, diagnostics for the
    # output's provenance); it may draw only from streams of `seed`, never of members.
    prepare: Callable | None = None
    prepared: tuple[str, ...] = ()  # the keyword arguments `prepare` supplies (not user options)

    def check_options(self, options: dict) -> None:
        """Refuse options the sampler function does not take, naming those it does."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"sampler '{self.function.__name__}' has no option {', '.join(unknown)} "
                f"(its options: {', '.join(self.options) or 'none'})"
            )


SAMPLERS: dict[str, SamplerSpec] = {
    "guided": SamplerSpec(
        guided,
        "Tweedie-covariance guidance on the PF-ODE (exact for Gaussian priors)",
        default_steps=48,
        options=("sigma_min", "sigma_max", "cg_rtol", "cg_max_iter", "corrector_steps", "snr"),
        needs_linear_gaussian=True,
        prepare=prepare_guided,
        prepared=("component_weights",),
    ),
    "split_gibbs": SamplerSpec(
        split_gibbs,
        "annealed split Gibbs (PnP-DM); exact only in the limit of many sweeps, and at its defaults "
        "not on non-Gaussian priors (docs/samplers.md)",
        default_steps=50,
        options=(
            "prior_steps",
            "rho_max",
            "rho_min_factor",
            "hold_fraction",
            "cg_rtol",
            "cg_max_iter",
        ),
        needs_linear_gaussian=True,
    ),
    "smc": SamplerSpec(
        smc,
        "(experimental) SMC from prior to posterior along noised data, guided-restart moves; "
        "not calibrated on mixture priors yet (docs/samplers.md)",
        default_steps=2,
        options=(
            "cess_target",
            "resample_below",
            "restart_factor",
            "restart_steps_per_decade",
            "prior_steps_per_decade",
            "max_levels",
        ),
        needs_linear_gaussian=True,
        ensemble=True,
    ),
    "linearized": SamplerSpec(
        linearized,
        "guided on the model linearised at the posterior mean (Gauss-Newton) for nonlinear or "
        "non-Gaussian observations such as galaxy counts; approximate (docs/samplers.md)",
        default_steps=48,
        options=("iterations", "pilot_members", "cg_rtol", "cg_max_iter"),
        prepare=prepare_linearized,
        prepared=("point",),
    ),
    "dps": SamplerSpec(
        dps,
        "Diffusion Posterior Sampling (Chung et al. 2023), baseline",
        default_steps=1000,
        options=("zeta", "beta_min", "beta_max"),
    ),
    "prior_ode": SamplerSpec(
        prior_ode,
        "unconditional PF-ODE (ignores the data)",
        default_steps=40,
        options=("field_shape", "sigma_min", "sigma_max", "rho", "corrector_steps", "snr"),
    ),
    "prior_sde": SamplerSpec(
        prior_sde,
        "unconditional reverse SDE (ignores the data)",
        default_steps=200,
        options=("field_shape", "sigma_min", "sigma_max", "corrector_steps", "snr"),
    ),
}

DEFAULT_SAMPLER = "guided"
# For models that are not linear-Gaussian: the default sampler that needs neither.
FALLBACK_SAMPLER = "linearized"


def available_samplers() -> list[str]:
    return list(SAMPLERS)


def get_sampler(name: str) -> SamplerSpec:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown sampler '{name}' (available: {', '.join(available_samplers())})"
        ) from None


__all__ = [
    "DEFAULT_SAMPLER",
    "FALLBACK_SAMPLER",
    "SAMPLERS",
    "SamplerSpec",
    "available_samplers",
    "get_sampler",
]
