"""How far a sampler's ensemble is from reference samples of the same posterior (exact draws).

Per-pixel statistics (coverage, std, mean) are not enough on a non-Gaussian posterior, so the
comparison adds global ones (the spread of each sample's log total power and log band powers)
and, for a mixture posterior, the fraction of samples in each component against the exact
weights omega(y), with the tolerance that exact sampling noise allows at the same N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..diagnostics._arrays import as_numpy
from ..diagnostics.coverage import coverage_curve
from ..diagnostics.global_stats import log_band_powers, log_total_power
from .mixture import MixtureExactPosterior

LEVELS = (0.5, 0.68, 0.9, 0.95)


@dataclass
class ReferenceComparison:
    std_ratio: float  # median over pixels of sample std / reference std (exact std if known)
    z_mean: float  # RMS over pixels of (sample mean - reference mean) / reference std
    levels: tuple[float, ...]  # credible levels of the coverage entries
    # Per level: fraction of pixels whose truth is in the sampler's central interval, minus the
    # same for the reference samples (both from the same number of draws).
    coverage_minus_reference: tuple[float, ...]
    log_power_spread_ratio: float  # std over samples of log total power, sampler / reference
    log_power_spread_se: float  # standard error of log(log_power_spread_ratio) (`spread_se`)
    log_power_shift: float  # (sampler mean - reference mean) of log total power / reference std
    band_spread_ratios: tuple[float, ...]  # as log_power_spread_ratio, per k band (large first)
    band_shifts: tuple[float, ...]  # as log_power_shift, per k band
    # Mixture references only (None otherwise): TV between the sampler's mean p(k | x) and
    # omega(y), the same for the reference samples, and `component_tv_tolerance` at the
    # sampler's N.
    component_tv: float | None = None
    reference_component_tv: float | None = None
    component_tv_tolerance: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def spread_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of log(std(a) / std(b)) for independent 1-D samples a and b.

    Var(s^2) ~ sigma^4 (kappa - 1) / N for a sample variance (kappa the kurtosis, 3 for a
    Gaussian), so Var(log s) ~ (kappa - 1) / (4 N); each sample's own kurtosis is used, since
    the log power of a mixture is bimodal (kappa < 3) or skewed (kappa > 3).
    """

    def var_log_std(x: np.ndarray) -> float:
        x = np.asarray(x, dtype=np.float64)
        d = x - x.mean()
        kurtosis = np.mean(d**4) / np.mean(d**2) ** 2
        return (kurtosis - 1) / (4 * len(x))

    return float(np.sqrt(var_log_std(a) + var_log_std(b)))


def component_tv_tolerance(
    omega, num_samples: int, quantile: float = 0.999, draws: int = 20000, seed: int = 0
) -> float:
    """The TV to omega that `num_samples` exact posterior draws stay below with prob. `quantile`.

    Simulated: the component counts of N exact draws are Multinomial(N, omega), and the TV of
    their frequencies to omega is taken over `draws` such ensembles (fixed seed: deterministic).
    `component_tv` averages soft p(k | x) instead of indicators; those are the indicators'
    conditional expectations, so by Jensen's inequality they only shrink the TV (equal when
    components do not overlap), and the tolerance is conservative. It is floored at 0.5 / N
    (half a sample), which keeps it meaningful when omega is ~0 or 1 and every simulated
    ensemble lands on one component.

    Args:
        omega: exact component weights (K,), numpy or torch; normalised here.
        num_samples: N, the size of the ensemble being checked.
        quantile: the probability of passing for an exact sampler (0.999: one false failure in
            a thousand observations).
        draws: simulated ensembles (20000 put the 0.999 quantile within a few % of itself).
        seed: seed of the simulation.
    """
    omega = as_numpy(omega).ravel()
    omega = omega / omega.sum()
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(int(num_samples), omega, size=int(draws))
    tv = 0.5 * np.abs(counts / num_samples - omega).sum(axis=1)
    return max(float(np.quantile(tv, quantile)), 0.5 / num_samples)


def _spread_and_shift(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (N, ...) statistics: std ratio, and mean difference in reference stds."""
    ours, theirs = ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1)
    ref_std = theirs.std(axis=0, ddof=1)
    return ours.std(axis=0, ddof=1) / ref_std, (ours.mean(axis=0) - theirs.mean(axis=0)) / ref_std


def compare_to_reference(
    samples,
    reference_samples,
    truth,
    exact=None,
    levels=LEVELS,
    num_bands: int = 3,
) -> ReferenceComparison:
    """A sampler's ensemble against reference samples of the same posterior, and the truth.

    Args:
        samples: the sampler's ensemble (N, C, H, W), numpy or torch.
        reference_samples: reference posterior draws (M, C, H, W), e.g. exact ones. The coverage
            uses the first min(N, M) of each, so both intervals come from as many draws (the
            finite-N shrinkage of an interval depends on N).
        truth: the field the data were simulated from (C, H, W).
        exact: optional exact posterior with `.mean` and `.std` (C, H, W), used instead of the
            reference samples' mean and std; for a `MixtureExactPosterior` the component checks
            are filled in against its `weights`.
        levels: credible levels of the coverage comparison.
        num_bands: broad k bands of the band-power statistics (`log_band_powers`).

    Without `exact`, z_mean and std_ratio carry the reference's own noise too: exact samples
    then give z_mean ~ sqrt(2 / N) rather than sqrt(1 / N).
    """
    ours, theirs = as_numpy(samples), as_numpy(reference_samples)
    truth = as_numpy(truth)
    if ours.shape[1:] != theirs.shape[1:] or ours.shape[1:] != truth.shape:
        raise ValueError(
            f"samples {ours.shape}, reference {theirs.shape} and truth {truth.shape} do not match"
        )
    n = ours.shape[0]
    flat = ours.reshape(n, -1)
    if exact is not None:
        mean, std = as_numpy(exact.mean).ravel(), as_numpy(exact.std).ravel()
    else:
        ref_flat = theirs.reshape(theirs.shape[0], -1)
        mean, std = ref_flat.mean(axis=0), ref_flat.std(axis=0, ddof=1)
    z = (flat.mean(axis=0) - mean) / std
    ratio = flat.std(axis=0, ddof=1) / std

    common = min(n, theirs.shape[0])
    levels = tuple(float(a) for a in levels)
    _, covered = coverage_curve(ours[:common], truth, levels, batched=False)
    _, covered_ref = coverage_curve(theirs[:common], truth, levels, batched=False)

    power, power_ref = log_total_power(ours), log_total_power(theirs)
    power_ratio, power_shift = _spread_and_shift(power, power_ref)
    bands, bands_ref = log_band_powers(ours, num_bands), log_band_powers(theirs, num_bands)
    band_ratios, band_shifts = _spread_and_shift(bands, bands_ref)

    out = ReferenceComparison(
        std_ratio=float(np.median(ratio)),
        z_mean=float(np.sqrt(np.mean(z**2))),
        levels=levels,
        coverage_minus_reference=tuple(
            float(a - b) for a, b in zip(covered, covered_ref, strict=True)
        ),
        log_power_spread_ratio=float(power_ratio[0]),
        log_power_spread_se=spread_se(power, power_ref),
        log_power_shift=float(power_shift[0]),
        band_spread_ratios=tuple(float(r) for r in band_ratios),
        band_shifts=tuple(float(s) for s in band_shifts),
    )
    if isinstance(exact, MixtureExactPosterior):
        omega = as_numpy(exact.weights)
        out.component_tv = _component_tv(exact, ours, omega)
        out.reference_component_tv = _component_tv(exact, theirs, omega)
        out.component_tv_tolerance = component_tv_tolerance(omega, n)
    return out


def _component_tv(exact, samples: np.ndarray, omega: np.ndarray) -> float:
    found = as_numpy(exact.component_probabilities(torch.from_numpy(samples))).mean(axis=0)
    return 0.5 * float(np.abs(found - omega).sum())
