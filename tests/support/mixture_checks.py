"""The R1 calibration checks, shared by the reference tests (exact draws pass, wrong ones fail)
and the sampler tests (the default sampler passes, a control fails). Tolerances come from N."""

from __future__ import annotations

import math

import numpy as np
import torch

from posterior_diffusion.diagnostics.coverage import coverage_curve
from posterior_diffusion.references.compare import LEVELS, ReferenceComparison
from posterior_diffusion.references.mixture import mixture_exact_posterior
from posterior_diffusion.references.problems import draw_observations, mixture_problem

# The two-component test problem: the amplitude mixture behind a mask on 12 x 16 pixels. The R1
# noise levels were chosen on 24 x 32; on 12 x 16 the same noise leaves omega near the prior's
# 50/50, so this one has less noise (2.5 prior std instead of 5). Observation 6 of
# draw_observations(seed=0): omega = (0.118, 0.882), the truth in the second component, and
# every prior draw decisive about its component (p(k | x) < 1e-100 or > 1 - 1e-100), so the only
# uncertainty about k is the data's.
SHAPE = (12, 16)
NOISE = 2.5
OBSERVATION = 6


def amplitude_posterior():
    """(prior, model, truth, y, exact posterior) of the two-component test problem."""
    prior, model = mixture_problem("amplitude", "mask", SHAPE, noise=NOISE)
    truth, y = draw_observations(prior, model, OBSERVATION + 1, seed=0)[OBSERVATION]
    return prior, model, truth, y, mixture_exact_posterior(prior, model, y)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spread_ok(comparison: ReferenceComparison, nsigma: float = 5.0) -> bool:
    """Spread ratio within nsigma standard errors of 1 (in log: the SE is of log(ratio))."""
    return (
        abs(math.log(comparison.log_power_spread_ratio)) <= nsigma * comparison.log_power_spread_se
    )


def std_ratio_tolerance(reference: torch.Tensor, exact) -> float:
    """5 SE of the log of the median over pixels of the std ratio: each pixel's log std has SE
    sqrt((kappa - 1) / 4N) (kappa its kurtosis; the largest over pixels is taken), the median
    only less."""
    d = (reference - exact.mean).flatten(1)
    kurtosis = float((d.pow(4).mean(0) / d.square().mean(0).square()).max())
    return 5 * math.sqrt((kurtosis - 1) / (4 * len(reference)))


def coverage_tolerance(exact, truth: torch.Tensor, num: int) -> np.ndarray:
    """Per level: the spread of one exact ensemble's coverage (the truth held fixed), measured
    over 20 ensembles; two ensembles differ with sqrt(2) times it, and with 19 degrees of freedom
    the true spread is below 1.6 times the measured one (99%). 4 x that."""
    repeats = []
    for r in range(20):
        more = exact.sample(num, seeded(100 + r))
        repeats.append(coverage_curve(more, truth, LEVELS, batched=False)[1])
    return 4 * math.sqrt(2) * 1.6 * np.std(repeats, axis=0, ddof=1)


def assert_calibrated(comparison: ReferenceComparison, reference, truth, exact) -> None:
    """Components, log-power spread, median std ratio and coverage all within tolerance."""
    assert comparison.component_tv <= comparison.component_tv_tolerance, comparison
    assert spread_ok(comparison), comparison
    assert abs(math.log(comparison.std_ratio)) <= std_ratio_tolerance(reference, exact), comparison
    tolerance = coverage_tolerance(exact, truth, len(reference))
    assert np.all(np.abs(comparison.coverage_minus_reference) <= tolerance), (comparison, tolerance)
