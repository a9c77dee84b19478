"""The R1 calibration checks, shared by the reference tests (exact draws pass, wrong ones fail)
and the sampler tests (the default sampler passes, a control fails). Tolerances come from N."""

from __future__ import annotations

import math

import numpy as np
import torch

from posterior_diffusion.diagnostics.coverage import coverage_curve
from posterior_diffusion.references.compare import LEVELS, ReferenceComparison


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
