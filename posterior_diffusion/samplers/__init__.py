"""Posterior samplers. All share one signature:

    sampler(prior, model, y, rng, steps, callback=None, **options) -> Tensor (members, C, H, W)

with one ensemble member per generator of `rng`. `sampling.sample_posterior` runs them in batches.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

from .dps import dps
from .guided import guided, guided_defaults, prepare_guided
from .linearized import linearized, prepare_linearized
from .smc import smc
from .split_gibbs import split_gibbs
from .twisted import twisted
from .unconditional import prior_ode, prior_sde


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _count(minimum: int) -> tuple[str, Callable]:
    return (
        f"an integer >= {minimum}",
        lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum,
    )


def _interval(low: float, high: float, closed_high: bool) -> tuple[str, Callable]:
    bracket = "]" if closed_high else ")"
    return (
        f"a number in ({low:g}, {high:g}{bracket}",
        lambda v: _number(v) and low < v and (v <= high if closed_high else v < high),
    )


_POSITIVE = ("a number > 0", lambda v: _number(v) and v > 0)
# What each sampler option's value must be, checked with its name before any work or file
# (a bad value used to surface only inside the sampler, after the run's journal existed).
OPTION_RULES: dict[str, tuple[str, Callable]] = {
    **{name: _POSITIVE for name in ("sigma_min", "sigma_max", "cg_rtol", "snr", "rho_max",
                                     "restart_factor", "zeta", "beta_min", "beta_max", "rho")},
    "cg_max_iter": _count(1),
    "corrector_steps": _count(0),
    "refine_moves": _count(0),
    "moves": _count(0),
    "refine_sigma": _POSITIVE,
    "wiener_twist_above": _POSITIVE,
    "prior_steps": _count(1),
    "restart_steps_per_decade": _count(1),
    "prior_steps_per_decade": _count(1),
    "max_levels": _count(1),
    "iterations": _count(0),
    "pilot_members": _count(1),
    "cess_target": _interval(0, 1, closed_high=False),
    "resample_below": _interval(0, 1, closed_high=True),
    "site": ("averaged or point", lambda v: v in ("averaged", "point")),
    "stochastic": ("true or false", lambda v: isinstance(v, bool)),
    "twist": ("ensemble or stationary", lambda v: v in ("ensemble", "stationary")),
}  # fmt: skip


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
    # An ensemble-level sampler that takes checkpoint= and resume= (its whole state after each
    # level), so that a killed run continues where it stopped.
    checkpoints: bool = False
    # Option defaults that depend on the problem: problem_defaults(prior, model) -> {name: value}
    problem_defaults: Callable | None = None

    def check_options(self, options: dict) -> None:
        """Refuse options the sampler function does not take, naming those it does."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"sampler '{self.function.__name__}' has no option {', '.join(unknown)} "
                f"(its options: {', '.join(self.options) or 'none'})"
            )
        for name, value in options.items():
            if name in OPTION_RULES and not OPTION_RULES[name][1](value):
                raise ValueError(
                    f"sampler option {name} must be {OPTION_RULES[name][0]}, got {value!r}"
                )

    def with_defaults(self, options: dict | None, prior, model) -> dict:
        """`options` plus the defaults that depend on the problem, each unless the caller set it:
        with a trained network's denoiser (`prior.learned`), `stochastic`: against HMC the
        reverse SDE spreads trained priors' band powers 0.87-1.35x, the ODE 0.83-1.48x, and it
        keeps their intervals as exact (docs/samplers.md, "Which integrator by default");
        analytic priors keep the ODE, exact there at half the cost. Then the sampler's own
        `problem_defaults(prior, model)` (guided: refinement behind shear, `guided_defaults`)."""
        options = dict(options or {})
        if "stochastic" in self.options and getattr(prior, "learned", False):
            options.setdefault("stochastic", True)
        if self.problem_defaults is not None:
            for name, value in self.problem_defaults(prior, model).items():
                options.setdefault(name, value)
        return options

    def steps_for(self, options: dict | None) -> int:
        """The default number of steps with these options: the reverse SDE (`stochastic`) needs
        twice the ODE's for the same Gaussian-posterior error (std ratio 1.010-1.021 at 48 steps,
        1.003-1.009 at 96; docs/samplers.md)."""
        return self.default_steps * (2 if (options or {}).get("stochastic") else 1)


SAMPLERS: dict[str, SamplerSpec] = {
    "guided": SamplerSpec(
        guided,
        "Tweedie-covariance guidance on the PF-ODE (exact for Gaussian priors)",
        default_steps=48,
        options=(
            "sigma_min",
            "sigma_max",
            "cg_rtol",
            "cg_max_iter",
            "corrector_steps",
            "snr",
            "stochastic",
            "refine_moves",
            "refine_sigma",
        ),
        needs_linear_gaussian=True,
        prepare=prepare_guided,
        prepared=("component_weights",),
        problem_defaults=guided_defaults,
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
        checkpoints=True,
        needs_linear_gaussian=True,
        ensemble=True,
    ),
    "twisted": SamplerSpec(
        twisted,
        "(experimental) twisted SMC along the noise levels: guided proposals, importance weights "
        "with a twist shared by all members; for non-Gaussian priors without named components",
        default_steps=96,
        options=(
            "moves",
            "resample_below",
            "cg_rtol",
            "cg_max_iter",
            "twist",
            "wiener_twist_above",
        ),
        needs_linear_gaussian=True,
        ensemble=True,
        checkpoints=True,
    ),
    "linearized": SamplerSpec(
        linearized,
        "guided on the model linearised at the posterior mean (Gauss-Newton) for nonlinear or "
        "non-Gaussian observations such as galaxy counts; approximate (docs/samplers.md)",
        default_steps=48,
        options=(
            "iterations",
            "pilot_members",
            "cg_rtol",
            "cg_max_iter",
            "site",
            "corrector_steps",
            "snr",
            "stochastic",
            "refine_moves",
            "refine_sigma",
        ),  # fmt: skip
        prepare=prepare_linearized,
        prepared=("point", "members"),
        problem_defaults=guided_defaults,  # its final run is `guided`
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
