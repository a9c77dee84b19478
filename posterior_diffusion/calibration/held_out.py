"""The diagnostics of one held-out test, from its samples: what a test file keeps.

Only per-test numbers and a few maps are kept (not the N samples), so a run's storage and the
report's memory grow with the number of tests, not with tests x samples. Everything here is
additive over tests (counts, ranks, spectra before ratios), so `aggregate` can combine tests
exactly as if they had been processed together.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from forward_models.base import ForwardModel
from forward_models.registry import has_shear_data
from posterior_diffusion.diagnostics import (
    coverage_map,
    coverage_per_test,
    eb_noise_power,
    eb_power,
    gaussian_w2,
    peak_counts,
    pixel_values,
    power_spectrum,
    power_spectrum_bins,
    random_projections,
    reduced_chi2,
    residual_eb_power,
    sbc_ranks,
    std_ratio,
    tarp_fractions,
    z_mean,
    zscore_map,
)
from posterior_diffusion.diagnostics.coverage import DEFAULT_LEVELS
from posterior_diffusion.priors import GaussianPrior, Prior
from posterior_diffusion.references.gaussian import exact_posterior

# Coverage-curve levels: every 5%, plus the 68% of "1 sigma".
LEVELS = np.unique(np.concatenate([DEFAULT_LEVELS, [0.68]]))
MAP_LEVELS = (0.5, 0.68, 0.9, 0.95)  # levels of the per-pixel coverage maps
NUM_PROJECTIONS = 16  # random projections ranked for SBC
PEAK_THRESHOLDS = (0.0, 1.0, 2.0)  # peak heights nu [map std]
Z_EDGES = np.linspace(-5.0, 5.0, 51)  # z-score histogram bins
PDF_BINS = 50  # one-point PDF bins between the edges fixed by test 0
EXACT_MAX_PIXELS = 4096  # exact posterior (dense n x n algebra, ~10 s at 64 x 64)
W2_MAX_PIXELS = 1024  # Gaussian W2 (two dense matrix square roots, ~4 s at 32 x 32)

# Maps kept in every test file; the report reads them for the first test only.
MAP_KEYS = ("truth", "y", "mask", "mean", "std", "samples_head", "z_map")


def binned_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in [under, bin_0, ..., bin_{B-1}, over] of all values, so nothing is dropped."""
    values = np.ravel(values)
    inside, _ = np.histogram(values, bins=edges)
    return np.concatenate([[np.sum(values < edges[0])], inside, [np.sum(values > edges[-1])]])


def pdf_edges(truth: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """One-point-PDF bin edges for the whole run: the first test's range, widened by 10%."""
    low = min(float(truth.min()), float(samples.min()))
    high = max(float(truth.max()), float(samples.max()))
    pad = 0.1 * (high - low) or 1.0
    return np.linspace(low - pad, high + pad, PDF_BINS + 1)


def _spectrum(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k, P averaged over the channel axis ((..., C, H, W) -> (..., B)) and modes per bin."""
    k, power, modes = power_spectrum(maps)
    return k, power.mean(axis=-2), modes


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Binned cross spectrum P_ab = (P_{a+b} - P_a - P_b) / 2 (a and b broadcast)."""
    a, b = np.broadcast_arrays(a, b)
    return (_spectrum(a + b)[1] - _spectrum(a)[1] - _spectrum(b)[1]) / 2


def spectrum_terms(samples: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Binned auto and cross spectra of truth, samples (N, B) and their mean, kept separate so
    that ratios (r, T) can be taken after summing over tests."""
    mean = samples.mean(axis=0)
    k, p_truth, modes = _spectrum(truth)
    return {
        "k": k,
        "modes": modes,
        "p_truth": p_truth,
        "p_mean": _spectrum(mean)[1],
        "p_samples": _spectrum(samples)[1],
        "p_cross_mean": _cross(mean, truth),
        "p_cross_samples": _cross(samples, truth[None]).mean(axis=0),
    }


def zscore_terms(samples: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """The z-score map, its histogram on Z_EDGES and its moments (count, sum, sum of squares,
    counts of |z| > 1, 2, 3)."""
    z = zscore_map(samples, truth, batched=False)
    absz = np.abs(z)
    moments = [z.size, z.sum(), np.square(z).sum(), *(np.sum(absz > t) for t in (1, 2, 3))]
    return {
        "z_map": z,
        "z_counts": binned_counts(z, Z_EDGES),
        "z_moments": np.array(moments, dtype=np.float64),
    }


def _chi2(model: ForwardModel, y: np.ndarray, fields: np.ndarray, batch_dims: int) -> np.ndarray:
    """Reduced chi^2 of data y given fields; NaN for non-Gaussian noise (no whitening)."""
    if not model.noise.is_gaussian:
        return np.full(fields.shape[:batch_dims], np.nan)
    with torch.no_grad():
        prediction = model.A(torch.from_numpy(fields))
        return reduced_chi2(torch.from_numpy(y), prediction, model.noise.whiten, batch_dims)


def noise_variance(model: ForwardModel, data_shape: tuple[int, ...]) -> np.ndarray | None:
    """Per-entry noise variance of the data (0 where unobserved); None without a sigma."""
    sigma = model.noise.independent_std()
    if sigma is None:
        return None
    return np.broadcast_to(np.square(sigma.numpy()), data_shape).astype(np.float64)


def eb_terms(
    samples: np.ndarray,
    y: np.ndarray,
    forward: Callable[[np.ndarray], np.ndarray],
    observed: np.ndarray | None,
    variance: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Lensing E/B power (rows E, B; (2, B) each) of the data, of the residuals y - A(x) on the
    observed entries for x the posterior mean and the samples (averaged over samples), and of
    the noise (what calibrated samples give).

    Args:
        samples: (N, 1, H, W); y: shear data (2, H, W).
        forward: fields (..., 1, H, W) -> A(fields) (..., 2, H, W), numpy to numpy.
        observed: 1 on observed data entries, broadcastable to (2, H, W); None: all.
        variance: noise variance per data entry, 0 where unobserved; None: unknown (NaN).
    """
    data = eb_power(y if observed is None else y * observed)
    mean = residual_eb_power(y, forward(samples.mean(axis=0)), observed)
    drawn = residual_eb_power(y, forward(samples), observed)
    if variance is None:
        noise = np.full((2, len(data.k)), np.nan)
    else:
        expected = eb_noise_power(variance)
        noise = np.stack([expected.e, expected.b])
    return {
        "eb_k": data.k,
        "eb_modes": data.modes,
        "eb_noise": noise,
        "eb_data": np.stack([data.e, data.b]),
        "eb_mean": np.stack([mean.e, mean.b]),
        "eb_samples": np.stack([drawn.e.mean(axis=0), drawn.b.mean(axis=0)]),
    }


def _model_eb_terms(samples: np.ndarray, y: np.ndarray, model: ForwardModel) -> dict:
    """`eb_terms` with the model's A and noise; observed entries are those with sigma > 0."""

    def forward(fields: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.A(torch.from_numpy(fields)).numpy()

    variance = noise_variance(model, y.shape)
    return eb_terms(samples, y, forward, None if variance is None else variance > 0, variance)


def diagnose(
    samples: np.ndarray,
    truth: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None,
    model: ForwardModel,
    prior: Prior,
    reference: np.ndarray,
    edges: np.ndarray,
    projection_seed: int,
    rank_seed: int,
    exact_seed: int,
) -> dict[str, np.ndarray]:
    """Every per-test diagnostic of `samples` (N, C, H, W) given the `truth` (C, H, W).

    Args:
        samples: posterior samples (N, C, H, W), float64.
        truth: the field the data were simulated from, (C, H, W).
        y: the data, model.data_shape.
        mask: (H', W') 1 = observed, or None.
        model: the forward model (data-space chi^2, lensing E/B residuals, exact posterior).
        prior: the prior (exact posterior when it is Gaussian and the model linear-Gaussian).
        reference: the TARP reference point of this test, an independent prior draw (C, H, W).
        edges: one-point-PDF bin edges shared by all tests.
        projection_seed: fixes the random projection directions; the same for every test.
        rank_seed, exact_seed: this test's streams for SBC tie-breaking and exact draws.

    Returns:
        Arrays by name (see docs/calibration.md); scalars as 0-d arrays.
    """
    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    out: dict[str, Any] = {
        "truth": truth,
        "y": y,
        "mean": mean,
        "std": std,
        "samples_head": samples[:2],
        "coverage": coverage_per_test(samples, truth, LEVELS, batched=False)[1][:, 0],
        "covered": np.stack(
            [coverage_map(samples, truth, a, batched=False) for a in MAP_LEVELS]
        ).astype(np.uint8),
        "tarp_f": tarp_fractions(samples[None], truth[None], reference[None])[0],
        "pdf_edges": edges,
        "pdf_truth": binned_counts(truth, edges),
        "pdf_samples": binned_counts(samples, edges),
    }
    if mask is not None:
        out["mask"] = mask
    statistics = {
        "pixels": pixel_values,
        "projections": partial(random_projections, num=NUM_PROJECTIONS, seed=projection_seed),
        "power": power_spectrum_bins,
        "peaks": partial(peak_counts, thresholds=PEAK_THRESHOLDS),
    }
    for name, statistic in statistics.items():
        out[f"rank_{name}"] = sbc_ranks(samples, truth, statistic, seed=rank_seed, batched=False)

    out.update(zscore_terms(samples, truth))

    out["chi2_truth"] = _chi2(model, y, truth, 0)
    out["chi2_mean"] = _chi2(model, y, mean, 0)
    out["chi2_samples"] = _chi2(model, y, samples, 1)

    out.update(spectrum_terms(samples, truth))
    out["peaks_truth"] = peak_counts(truth[None], PEAK_THRESHOLDS)[0]
    out["peaks_samples"] = peak_counts(samples, PEAK_THRESHOLDS)
    if has_shear_data(model.name):
        out.update(_model_eb_terms(samples, y, model))
    out.update(_exact(samples, truth, y, model, prior, reference, exact_seed))
    return {key: np.asarray(value) for key, value in out.items()}


def _exact(
    samples: np.ndarray,
    truth: np.ndarray,
    y: np.ndarray,
    model: ForwardModel,
    prior: Prior,
    reference: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """Distances from the exact posterior, and the same for N exact draws (the reference a
    perfect sampler with this N would reach); empty when there is no exact posterior here."""
    pixels = int(np.prod(truth.shape))
    if not (
        isinstance(prior, GaussianPrior) and model.is_linear_gaussian and pixels <= EXACT_MAX_PIXELS
    ):
        return {}
    exact = exact_posterior(prior, model, torch.from_numpy(y))
    draws = exact.sample(samples.shape[0], torch.Generator().manual_seed(seed)).numpy()
    mean, std = exact.mean.numpy(), exact.std.numpy()
    out = {
        "exact_z_mean": z_mean(samples, mean, std),
        "exact_std_ratio": std_ratio(samples, std),
        "exact_ref_z_mean": z_mean(draws, mean, std),
        "exact_ref_std_ratio": std_ratio(draws, std),
        "exact_ref_coverage": coverage_per_test(draws, truth, LEVELS, batched=False)[1][:, 0],
        "exact_ref_tarp_f": tarp_fractions(draws[None], truth[None], reference[None])[0],
        "exact_ref_z_moments": zscore_terms(draws, truth)["z_moments"],
        "exact_w2": np.nan,
        "exact_ref_w2": np.nan,
    }
    if pixels <= W2_MAX_PIXELS:
        covariance = exact.covariance.numpy()
        out["exact_w2"] = gaussian_w2(samples, mean, covariance)
        out["exact_ref_w2"] = gaussian_w2(draws, mean, covariance)
    return out
