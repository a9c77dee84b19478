"""Combining the tests' diagnostics into the report's numbers, with what calibration predicts.

Bands are for an exactly calibrated sampler with the same number of tests K and samples N:
binomial for coverage (with an effective number of independent pixels, since neighbouring pixels
are correlated), for TARP and for SBC rank histograms; Student-t for z-scores; Gaussian-field
sample variance for power spectra. docs/calibration.md says how to read each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from forward_models.registry import has_shear_data
from posterior_diffusion.diagnostics import (
    binomial_band,
    cross_correlation,
    ecp_curve,
    expected_coverage,
    rank_histogram,
    rank_shift,
    rank_uniformity_pvalue,
    transfer_function,
)
from posterior_diffusion.diagnostics.tarp import DEFAULT_ALPHA, expected_ecp, simultaneous_band

from .held_out import LEVELS, MAP_LEVELS, NUM_PROJECTIONS, PEAK_THRESHOLDS, Z_EDGES

SBC_FAMILIES = {
    "pixels": "every pixel",
    "projections": f"{NUM_PROJECTIONS} random projections",
    "power": "P(k) bins",
    "peaks": "peak counts (nu = " + ", ".join(f"{t:g}" for t in PEAK_THRESHOLDS) + ")",
}
COVERAGE_BAND = 0.95  # probability of the coverage and TARP bands
SBC_BAND = 0.99  # per-bin probability of the SBC histogram band
FIXED_STATISTIC_RTOL = 1e-9  # spread over truths, relative to their mean power, of a fixed bin


def _stack(tests: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return np.stack([np.asarray(t[key], dtype=np.float64) for t in tests])


def coverage(tests, num_samples: int) -> dict[str, Any]:
    """Pooled coverage curve with its binomial band, and the per-pixel coverage maps."""
    per_test = _stack(tests, "coverage").T  # (L, K)
    k, pixels = per_test.shape[1], tests[0]["covered"][0].size
    expected = expected_coverage(LEVELS, num_samples)
    empirical = per_test.mean(axis=1)
    se = per_test.std(axis=1, ddof=1) / np.sqrt(k) if k > 1 else np.full(len(LEVELS), np.nan)
    # Pixels of one map are correlated: estimate how many independent ones a map is worth from
    # the scatter between tests at interior levels (a Bernoulli(a) mean over n pixels has
    # variance a (1 - a) / n), and use it for the binomial band.
    interior = (LEVELS >= 0.1) & (LEVELS <= 0.9)
    n_eff = float(pixels)
    if k > 1:
        var = per_test[interior].var(axis=1, ddof=1)
        ok = var > 0
        if ok.any():
            e = expected[interior][ok]
            n_eff = float(np.clip(np.median(e * (1 - e) / var[ok]), 1.0, pixels))
    low, high = binomial_band(expected, round(k * n_eff), COVERAGE_BAND)
    covered = np.stack([t["covered"] for t in tests]).astype(np.float64).mean(axis=0)
    out = {
        "levels": LEVELS,
        "empirical": empirical,
        "expected": expected,
        "difference": empirical - expected,
        "standard_error": se,
        "band_low": low,
        "band_high": high,
        "effective_pixels_per_map": n_eff,
        "per_test": per_test,
        "map_levels": np.array(MAP_LEVELS),
        "map_fraction": covered,  # (M, C, H, W): fraction of tests covering each pixel
    }
    if "exact_ref_coverage" in tests[0]:
        out["exact_reference"] = _stack(tests, "exact_ref_coverage").mean(axis=0)
    return out


def tarp(tests, num_samples: int) -> dict[str, Any]:
    """ECP(alpha) with a band of K independent tests around a calibrated run's ECP, which a
    calibrated run stays inside at every alpha with probability COVERAGE_BAND."""
    f = np.array([float(t["tarp_f"]) for t in tests])
    ecp = ecp_curve(f, DEFAULT_ALPHA)
    expected = expected_ecp(DEFAULT_ALPHA, num_samples)
    low, high, pointwise = simultaneous_band(DEFAULT_ALPHA, len(f), num_samples, COVERAGE_BAND)
    exact_ecp = None
    if "exact_ref_tarp_f" in tests[0]:
        exact_ecp = ecp_curve([float(t["exact_ref_tarp_f"]) for t in tests], DEFAULT_ALPHA)
    return {
        "alpha": DEFAULT_ALPHA,
        "ecp": ecp,
        "exact_reference": exact_ecp,
        "expected": expected,
        "band_low": low,
        "band_high": high,
        "band_pointwise_level": pointwise,
        "inside_band": bool(np.all((ecp >= low - 1e-12) & (ecp <= high + 1e-12))),
        "deviation": float(np.abs(ecp - DEFAULT_ALPHA).max()),
        "f": f,
        "references": "independent prior draws, one per test",
    }


def sbc_bins(num_tests: int, num_samples: int) -> int:
    """Histogram bins: about 5 tests per bin expected (chi^2 test validity), 2 to 20."""
    return int(min(max(num_tests // 5, 2), 20, num_samples + 1))


def fixed_power_bins(tests) -> dict[str, Any] | None:
    """P(k) bins whose value is the same in every truth (the k = 0 bin of maps whose mean the
    simulations fix, such as the density contrast of a periodic box), to 1e-9 of the truths'
    mean power: a point mass under the prior, so a rank there is float noise, not calibration.
    Needs two tests or more. Returns their indices and the samples' largest departure from it
    (relative to the mean power), or None when there are none."""
    if len(tests) < 2:  # one truth shares everything with itself
        return None
    p_truth, p_samples = _stack(tests, "p_truth"), _stack(tests, "p_samples")  # (K, B), (K, N, B)
    scale = float(np.median(p_truth.mean(axis=1)))
    fixed = np.ptp(p_truth, axis=0) <= FIXED_STATISTIC_RTOL * scale
    if not fixed.any():
        return None
    departure = np.abs(p_samples - p_truth[:, None])[..., fixed].max() / scale
    return {"statistics": np.flatnonzero(fixed), "samples_max_departure": float(departure)}


def sbc(tests, num_samples: int) -> dict[str, Any]:
    """Rank histograms per family of statistics, chi^2 uniformity p-values and mean-rank shift
    tests per statistic (NaN for statistics every truth shares, which are reported apart:
    `fixed_power_bins`)."""
    bins = sbc_bins(len(tests), num_samples)
    families = {}
    for name, label in SBC_FAMILIES.items():
        ranks = np.stack([t[f"rank_{name}"] for t in tests]).astype(np.int64)  # (K, S)
        fixed = fixed_power_bins(tests) if name == "power" else None
        free = np.ones(ranks.shape[1], dtype=bool)
        if fixed is not None:
            free[fixed["statistics"]] = False
        counts, expected = rank_histogram(ranks[:, free], num_samples, bins)  # (S', bins)
        k = ranks.shape[0]
        pvalues = np.full(ranks.shape[1], np.nan)
        pvalues[free] = rank_uniformity_pvalue(ranks[:, free], num_samples, bins)
        tested = pvalues[free]
        shift_z, shift_p = np.full(ranks.shape[1], np.nan), np.full(ranks.shape[1], np.nan)
        shift_z[free], shift_p[free] = rank_shift(ranks[:, free], num_samples)
        low, high = binomial_band(expected, k, SBC_BAND)
        families[name] = {
            "label": label,
            "num_statistics": int(counts.shape[0]),
            "pooled_fraction": counts.sum(axis=0) / counts.sum(),
            "expected_fraction": expected,
            "band_low": low,
            "band_high": high,
            "pvalues": pvalues,
            "fraction_p_below_0.05": float(np.mean(tested < 0.05)),
            "fraction_p_below_0.01": float(np.mean(tested < 0.01)),
            "median_p": float(np.median(tested)),
            "shift_z": shift_z,
            "shift_pvalues": shift_p,
            "fraction_shift_p_below_0.05": float(np.mean(shift_p[free] < 0.05)),
            "min_shift_p": float(shift_p[free].min()),
            "fixed": fixed,
        }
    return {"bins": bins, "families": families}


def zscores(tests, num_samples: int) -> dict[str, Any]:
    """Histogram and moments of z = (truth - mean) / std over every pixel and test.

    With N exact samples, z = sqrt(1 + 1/N) t_{N-1}: the expected values quoted here.
    """
    counts = _stack(tests, "z_counts").sum(axis=0)
    moments = _stack(tests, "z_moments").sum(axis=0)
    count, total, squares = moments[:3]
    mean = total / count
    scale = np.sqrt(1 + 1 / num_samples)
    dof = num_samples - 1
    widths = np.diff(Z_EDGES)
    exact_std = None
    if "exact_ref_z_moments" in tests[0]:
        c, s1, s2 = _stack(tests, "exact_ref_z_moments").sum(axis=0)[:3]
        exact_std = float(np.sqrt(max(s2 / c - (s1 / c) ** 2, 0.0)))
    return {
        "exact_samples_std": exact_std,
        "edges": Z_EDGES,
        "density": counts[1:-1] / (count * widths),
        "outside_fraction": float((counts[0] + counts[-1]) / count),
        "mean": float(mean),
        "std": float(np.sqrt(max(squares / count - mean**2, 0.0))),
        "expected_std": float(scale * np.sqrt(dof / (dof - 2))) if dof > 2 else float("inf"),
        "fraction_above": {
            str(t): float(c / count) for t, c in zip((1, 2, 3), moments[3:], strict=True)
        },
        "expected_fraction_above": {
            str(t): float(2 * stats.t.sf(t / scale, dof)) for t in (1, 2, 3)
        },
        "scale": float(scale),
        "dof": dof,
    }


def chi2(tests) -> dict[str, Any]:
    """Reduced chi^2 in data space of the truth, the posterior mean and the samples."""
    truth = np.array([float(t["chi2_truth"]) for t in tests])
    mean = np.array([float(t["chi2_mean"]) for t in tests])
    samples = np.array([np.median(t["chi2_samples"]) for t in tests])
    return {
        "truth": truth,
        "mean": mean,
        "samples_median": samples,
        "median_truth": float(np.median(truth)),
        "median_mean": float(np.median(mean)),
        "median_samples": float(np.median(samples)),
    }


def spectra(tests) -> dict[str, Any]:
    """P(k) of truths, samples and means; r(k) and T(k) from spectra averaged over tests."""
    k, modes = np.asarray(tests[0]["k"]), np.asarray(tests[0]["modes"])
    p_truth = _stack(tests, "p_truth")  # (K, B)
    p_mean = _stack(tests, "p_mean")
    p_samples = np.stack([t["p_samples"].mean(axis=0) for t in tests])
    cross_mean = _stack(tests, "p_cross_mean").mean(axis=0)
    cross_samples = _stack(tests, "p_cross_samples").mean(axis=0)
    pt, pm, ps = p_truth.mean(axis=0), p_mean.mean(axis=0), p_samples.mean(axis=0)
    num = len(tests)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative_sv = np.sqrt(2.0 / (modes * num))  # of the truths' average P in each bin
        first = tests[0]["p_samples"]
        out = {
            "k": k,
            "modes": modes,
            "p_truth": pt,
            "p_samples": ps,
            "p_mean": pm,
            "samples_over_truth": ps / pt,
            "ratio_band_low": 1 - 2 * relative_sv,
            "ratio_band_high": 1 + 2 * relative_sv,
            "r_mean": cross_correlation(cross_mean, pm, pt),
            "r_samples": cross_correlation(cross_samples, ps, pt),
            "t_mean": transfer_function(pm, pt),
            "t_samples": transfer_function(ps, pt),
            "first_truth": tests[0]["p_truth"],
            "first_mean": tests[0]["p_mean"],
            "first_samples_median": np.median(first, axis=0),
            "first_samples_low": np.quantile(first, 0.16, axis=0),
            "first_samples_high": np.quantile(first, 0.84, axis=0),
        }
    return out


def one_point_pdf(tests) -> dict[str, Any]:
    """Pixel-value densities of the truths and of the samples, on test 0's bins."""
    edges = np.asarray(tests[0]["pdf_edges"])
    widths = np.diff(edges)
    out: dict[str, Any] = {"edges": edges}
    for name in ("truth", "samples"):
        counts = _stack(tests, f"pdf_{name}").sum(axis=0)
        out[f"{name}_density"] = counts[1:-1] / (counts.sum() * widths)
        out[f"{name}_outside_fraction"] = float((counts[0] + counts[-1]) / counts.sum())
    return out


def peaks(tests) -> dict[str, Any]:
    """Peak counts of each truth against its samples' (mean and std over samples)."""
    return {
        "thresholds": np.array(PEAK_THRESHOLDS),
        "truth": _stack(tests, "peaks_truth"),
        "samples_mean": np.stack([t["peaks_samples"].mean(axis=0) for t in tests]),
        "samples_std": np.stack([t["peaks_samples"].std(axis=0, ddof=1) for t in tests]),
    }


EB_SOURCES = ("noise", "data", "mean", "samples")  # held_out.eb_terms' eb_<source>, rows E, B


def _mean_and_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first (test) axis and its standard error from the scatter (NaN for K = 1)."""
    num = values.shape[0]
    if num < 2:
        return values.mean(axis=0), np.full(values.shape[1:], np.nan)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(num)


def eb_modes(tests) -> dict[str, Any]:
    """Lensing E/B power of the data and of the residuals y - A(x) against the noise power.

    Per bin (k in cycles/pixel): each source's E and B power averaged over tests, with the
    standard error from their scatter between tests. Overall: each test's power summed over the
    modes at k > 0 over the noise's (1 when consistent with the noise), mean and SE over tests.
    """
    k, modes = np.asarray(tests[0]["eb_k"]), np.asarray(tests[0]["eb_modes"])
    used = (k > 0) & (modes > 0)  # empty bins have k = NaN, which compares False

    def total(values: np.ndarray) -> np.ndarray:  # (K, 2, B) -> (K, 2), over the used modes
        return np.sum(np.where(used, values, 0.0) * np.where(used, modes, 0.0), axis=-1)

    per_test = {name: _stack(tests, f"eb_{name}") for name in EB_SOURCES}  # (K, 2, B)
    noise_total = total(per_test["noise"])
    out: dict[str, Any] = {"k": k, "modes": modes}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, values in per_test.items():
            mean, se = _mean_and_se(values)
            ratio = total(values) / noise_total  # (K, 2)
            ratio_mean, ratio_se = _mean_and_se(ratio)
            for c, mode in enumerate("eb"):
                out[f"{name}_{mode}"] = mean[c]
                out[f"{name}_{mode}_se"] = se[c]
                if name != "noise":
                    out[f"{name}_{mode}_over_noise"] = float(ratio_mean[c])
                    out[f"{name}_{mode}_over_noise_se"] = float(ratio_se[c])
                    out[f"{name}_{mode}_over_noise_per_test"] = ratio[:, c]
    return out


def exact(tests) -> dict[str, Any] | None:
    """Distances from the exact posterior (Gaussian prior, linear-Gaussian model), if computed."""
    if "exact_z_mean" not in tests[0]:
        return None
    out: dict[str, Any] = {}
    for key in ("z_mean", "std_ratio", "w2"):
        sampler = np.array([float(t[f"exact_{key}"]) for t in tests])
        reference = np.array([float(t[f"exact_ref_{key}"]) for t in tests])
        out[key] = {
            "per_test": sampler,
            "mean": float(np.mean(sampler)),
            "exact_samples_per_test": reference,
            "exact_samples_mean": float(np.mean(reference)),
        }
    return out


def aggregate(tests, meta, num_samples: int, forward_model: str) -> dict[str, Any]:
    """Every number of the report, by section."""
    lensing = has_shear_data(forward_model)
    seconds = np.array([m.get("seconds") or np.nan for m in meta], dtype=np.float64)
    nfe = np.array([m.get("nfe_per_sample") or np.nan for m in meta], dtype=np.float64)
    results = {
        "num_tests": len(tests),
        "num_samples": num_samples,
        # The grid the sampler ran on when it padded a sky patch (docs/sky.md), else None.
        "padded_shape": meta[0].get("padded_shape") if meta else None,
        "coverage": coverage(tests, num_samples),
        "tarp": tarp(tests, num_samples),
        "sbc": sbc(tests, num_samples),
        "zscores": zscores(tests, num_samples),
        "chi2": chi2(tests),
        "spectra": spectra(tests),
        "one_point_pdf": one_point_pdf(tests),
        "exact": exact(tests),
        "timing": {
            "seconds_per_test": seconds,
            "total_seconds": float(np.nansum(seconds)),
            "nfe_per_sample": float(np.nanmean(nfe)) if np.isfinite(nfe).any() else None,
        },
    }
    # Peak counts are a field statistic (issue 17 holds the density prior to them too); E/B
    # modes need shear data.
    results["peaks"] = peaks(tests)
    if lensing:
        results["eb_modes"] = eb_modes(tests)
    return results
