"""The `calibrate` report: from a finished CalibrationRun to figures, tables, summary and pages."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np

from forward_models.registry import has_shear_data
from posterior_diffusion.calibration.aggregate import aggregate
from posterior_diffusion.calibration.held_out import LEVELS
from posterior_diffusion.calibration.runner import CalibrationRun
from posterior_diffusion.io.attrs import to_json
from posterior_diffusion.io.fits_result import sky_header
from posterior_diffusion.observing import pixel_scale

from . import figures
from .eb import EB_CAPTION, eb_highlights, eb_table
from .tables import columns
from .writer import FigureSpec, Table, write_report

KEY_LEVELS = (0.5, 0.68, 0.9, 0.95)


def _level_index(level: float) -> int:
    return int(np.argmin(np.abs(LEVELS - level)))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _figures(
    results: dict[str, Any],
    first: dict[str, np.ndarray],
    model: str,
    sky_pixel: float | None,
    sky=None,
) -> list:
    k, n = results["num_tests"], results["num_samples"]
    cov = results["coverage"]
    specs = [
        FigureSpec(
            "panels",
            "First test: truth, data and posterior",
            "Truth, observation (grey: unobserved), posterior mean and standard deviation, two "
            "posterior samples, the residual truth - mean and the z-score map. Samples should "
            "look like the truth (same texture and amplitude); z should look like white noise "
            "of unit variance, without structure that follows the mask or the field.",
            lambda: figures.panels(first, model, "First test", sky_pixel, sky),
        ),
        FigureSpec(
            "coverage",
            "Coverage of central credible intervals",
            "Left: fraction of pixels (over all tests) whose truth lies in the central interval "
            "of the samples, against the nominal level; a calibrated sampler follows the grey "
            "curve a (N - 1) / (N + 1) within the band. Right: the difference, with 2 standard "
            "errors from the scatter between tests. Below zero: error bars too small "
            "(over-confident); above: too large.",
            lambda: figures.coverage_curve(cov, n, k),
        ),
        FigureSpec(
            "coverage_map",
            "Coverage per pixel",
            "For each pixel, the fraction of tests whose truth lies in its 68% (95%) interval. "
            "Calibrated: the value a (N - 1) / (N + 1) in the title everywhere, within the "
            "binomial range given there; "
            "regions that are consistently low (e.g. inside mask holes, white contours) are "
            "where the error bars are too small.",
            lambda: figures.coverage_maps(cov, first.get("mask"), k, n, sky, sky_pixel),
        ),
        FigureSpec(
            "tarp",
            "TARP expected coverage probability",
            "Joint calibration of whole maps (Lemos et al. 2023): for each test, the fraction "
            "of samples closer than the truth to a reference point (an independent prior "
            "draw). Calibrated: on the diagonal within the band. Below it: over-confident; "
            "above: under-confident; an S shape: biased.",
            lambda: figures.tarp(results["tarp"], k),
        ),
        FigureSpec(
            "sbc",
            "Simulation-based calibration ranks",
            "Rank of the truth among the samples for each statistic, pooled over the "
            "statistics of a family. Calibrated: flat. A U shape: over-confident; a hump: "
            "under-confident; a slope: biased. The band is for one statistic's K ranks per "
            "bin; pooled correlated statistics scatter less, so outside the band is a real "
            "failure.",
            lambda: figures.sbc(results["sbc"], n, k),
        ),
        FigureSpec(
            "spectra",
            "Power spectra, cross-correlation and transfer function",
            "Top left: P(k) of the first truth (grey: its sample variance), of the samples "
            "(16-84% over samples) and of the posterior mean. Top right: samples' power over "
            "the truths', averaged over tests; calibrated: 1 within the band. Bottom: r(k) and "
            "T(k) of the posterior mean (which loses power where the data are poor: T < 1, and "
            "r ~ T for a calibrated posterior mean) and of the samples (T ~ 1).",
            lambda: figures.spectra(results["spectra"], k, sky_pixel),
        ),
        FigureSpec(
            "one_point",
            "One-point PDF and z-scores",
            "Left: distribution of pixel values of the truths and of the samples; they should "
            "agree. Right: z = (truth - mean) / std over all pixels and tests, against the "
            "calibrated sqrt(1 + 1/N) Student-t(N - 1). Too wide: over-confident.",
            lambda: figures.one_point(results["one_point_pdf"], results["zscores"]),
        ),
    ]
    if "peaks" in results:
        specs.append(
            FigureSpec(
                "peaks",
                "Lensing peak counts",
                "Number of local maxima above nu sigma in each true map against the samples' "
                "(mean +- std over samples); calibrated: scattered about the line, mostly "
                "within the error bars.",
                lambda: figures.peak_counts(results["peaks"]),
            )
        )
    if "eb_modes" in results:
        specs.append(
            FigureSpec(
                "eb_modes",
                "Lensing E/B-mode power of the data residuals",
                EB_CAPTION,
                lambda: figures.eb_modes(results["eb_modes"], k),
            )
        )
    return specs


def _tables(results: dict[str, Any], meta: list[dict[str, Any]]) -> list[Table]:
    cov, tarp, spec = results["coverage"], results["tarp"], results["spectra"]
    exact_ref = cov.get("exact_reference")
    tables = [
        Table(
            "coverage",
            "coverage curve: calibrated expectation, empirical, band",
            *columns(
                level=cov["levels"],
                calibrated=cov["expected"],
                empirical=cov["empirical"],
                difference=cov["difference"],
                standard_error=cov["standard_error"],
                band_low=cov["band_low"],
                band_high=cov["band_high"],
                exact_samples=exact_ref if exact_ref is not None else [np.nan] * len(LEVELS),
            ),
        ),
        Table(
            "tarp",
            "TARP ECP curve and its binomial band",
            *columns(
                alpha=tarp["alpha"],
                ecp=tarp["ecp"],
                band_low=tarp["band_low"],
                band_high=tarp["band_high"],
            ),
        ),
    ]
    bins = results["sbc"]["bins"]
    hist_rows, p_rows = [], []
    for name, fam in results["sbc"]["families"].items():
        for j in range(bins):
            hist_rows.append(
                [
                    name,
                    j,
                    j / bins,
                    (j + 1) / bins,
                    fam["pooled_fraction"][j],
                    fam["expected_fraction"][j],
                    fam["band_low"][j],
                    fam["band_high"][j],
                ]
            )
        columns_per_statistic = (fam["pvalues"], fam["shift_z"], fam["shift_pvalues"])
        p_rows += [
            [name, s, *values] for s, values in enumerate(zip(*columns_per_statistic, strict=True))
        ]
    tables += [
        Table(
            "sbc_histograms",
            "pooled SBC rank histograms (rank / N bins)",
            [
                "family",
                "bin",
                "rank_low",
                "rank_high",
                "fraction",
                "uniform",
                "band_low",
                "band_high",
            ],
            hist_rows,
        ),
        Table(
            "sbc_pvalues",
            "chi^2 uniformity p-value of each statistic's ranks, and its mean-rank shift test",
            ["family", "statistic", "p_value", "mean_rank_z", "shift_p_value"],
            p_rows,
        ),
        Table(
            "spectra",
            "P(k) averaged over tests, r(k), T(k) (k in cycles/pixel)",
            *columns(
                k=spec["k"],
                modes=spec["modes"],
                p_truth=spec["p_truth"],
                p_samples=spec["p_samples"],
                p_mean=spec["p_mean"],
                samples_over_truth=spec["samples_over_truth"],
                r_mean=spec["r_mean"],
                r_samples=spec["r_samples"],
                t_mean=spec["t_mean"],
                t_samples=spec["t_samples"],
            ),
        ),
    ]
    pdf, z = results["one_point_pdf"], results["zscores"]
    tables.append(
        Table(
            "one_point_pdf",
            "pixel-value densities of truths and samples",
            *columns(
                bin_low=pdf["edges"][:-1],
                bin_high=pdf["edges"][1:],
                truth_density=pdf["truth_density"],
                samples_density=pdf["samples_density"],
            ),
        )
    )
    tables.append(
        Table(
            "zscores",
            "z-score density over all pixels and tests",
            *columns(bin_low=z["edges"][:-1], bin_high=z["edges"][1:], density=z["density"]),
        )
    )
    tables.append(Table("tests", "per-test numbers and seeds", *_per_test(results, meta)))
    if "peaks" in results:
        pk = results["peaks"]
        rows = [
            [i, nu, pk["truth"][i, j], pk["samples_mean"][i, j], pk["samples_std"][i, j]]
            for i in range(len(pk["truth"]))
            for j, nu in enumerate(pk["thresholds"])
        ]
        tables.append(
            Table(
                "peaks",
                "peak counts per test and threshold",
                ["test", "nu", "truth", "samples_mean", "samples_std"],
                rows,
            )
        )
    if "eb_modes" in results:
        tables.append(eb_table(results["eb_modes"]))
    return tables


def _per_test(results: dict[str, Any], meta: list[dict[str, Any]]):
    cov, chi2, exact = results["coverage"], results["chi2"], results["exact"]
    named: dict[str, Any] = {
        "test": [m["index"] for m in meta],
        "observation_seed": [m["observation_seed"] for m in meta],
        "sampler_seed": [m["sampler_seed"] for m in meta],
        "seconds": [m.get("seconds") for m in meta],
        "nfe_per_sample": [m.get("nfe_per_sample") for m in meta],
    }
    for level in KEY_LEVELS:
        named[f"coverage_{round(level * 100)}"] = cov["per_test"][_level_index(level)]
    named["tarp_f"] = results["tarp"]["f"]
    named["chi2_truth"] = chi2["truth"]
    named["chi2_mean"] = chi2["mean"]
    named["chi2_samples_median"] = chi2["samples_median"]
    if exact is not None:
        for key in ("z_mean", "std_ratio", "w2"):
            named[f"exact_{key}"] = exact[key]["per_test"]
            named[f"exact_samples_{key}"] = exact[key]["exact_samples_per_test"]
    if "eb_modes" in results:  # residual power over the noise's, all modes at k > 0
        for key in ("samples_e", "samples_b", "mean_e", "mean_b", "data_b"):
            named[f"eb_{key}_over_noise"] = results["eb_modes"][f"{key}_over_noise_per_test"]
    return columns(**named)


def _highlights(results: dict[str, Any], prov: dict[str, Any]) -> list[tuple[str, str]]:
    cov, z, chi2 = results["coverage"], results["zscores"], results["chi2"]
    settings = prov.get("sampler_settings", {})
    nfe = results["timing"]["nfe_per_sample"]
    rows = [
        ("tests x samples", f"{results['num_tests']} x {results['num_samples']}"),
        (
            "sampler",
            f"{prov.get('sampler')}, {settings.get('steps')} steps, "
            f"{_fmt(nfe, 0)} prior evaluations per sample",
        ),
        ("forward model, prior", f"{prov.get('forward_model')}, {prov.get('prior_name')}"),
    ]
    for level in KEY_LEVELS:
        i = _level_index(level)
        half = (cov["band_high"][i] - cov["band_low"][i]) / 2
        rows.append(
            (
                f"coverage - calibrated at {level:.0%}",
                f"{cov['difference'][i]:+.3f} (95% band +-{half:.3f})",
            )
        )
    tarp = results["tarp"]
    exact_tarp = ""
    if tarp.get("exact_reference") is not None:
        exact_tarp = f", exact samples {np.abs(tarp['exact_reference'] - tarp['alpha']).max():.3f}"
    rows.append(
        (
            "TARP max |ECP - alpha|",
            f"{tarp['deviation']:.3f} ({'inside' if tarp['inside_band'] else 'outside'} the "
            f"simultaneous 95% band, half-width up to "
            f"{np.max(tarp['band_high'] - tarp['expected']):.3f}{exact_tarp})",
        )
    )
    for fam in results["sbc"]["families"].values():
        fixed = fam.get("fixed")
        fixed_note = ""
        if fixed is not None:
            fixed_note = (
                f"; not ranked: bin(s) {', '.join(str(i) for i in fixed['statistics'])}, the same "
                f"in every truth; samples depart from it by up to "
                f"{fixed['samples_max_departure']:.1e} of the mean power"
            )
        rows.append(
            (
                f"SBC {fam['label']}",
                f"median p {fam['median_p']:.2f}, p < 0.01 for "
                f"{fam['fraction_p_below_0.01']:.1%} of {fam['num_statistics']}; mean-rank "
                f"shift p < 0.05 for {fam['fraction_shift_p_below_0.05']:.1%}, smallest "
                f"{fam['min_shift_p']:.2g}{fixed_note}",
            )
        )
    exact_z = z.get("exact_samples_std")
    exact_note = f", exact samples {exact_z:.3f}" if exact_z is not None else ""
    rows.append(
        (
            "z-scores: std, |z| > 2",
            f"{z['std']:.3f} (calibrated {z['expected_std']:.3f}{exact_note}), "
            f"{z['fraction_above']['2']:.4f} (calibrated {z['expected_fraction_above']['2']:.4f})",
        )
    )
    rows.append(
        (
            "reduced chi^2 (median): truth, mean, samples",
            f"{_fmt(chi2['median_truth'])}, {_fmt(chi2['median_mean'])}, "
            f"{_fmt(chi2['median_samples'])}",
        )
    )
    exact = results["exact"]
    if exact is not None:
        for key, label in (("z_mean", "z_mean"), ("std_ratio", "std ratio"), ("w2", "W2")):
            if not np.isfinite(exact[key]["mean"]):
                rows.append((f"exact posterior: {label}", "not computed (more than 1024 pixels)"))
                continue
            rows.append(
                (
                    f"exact posterior: {label}",
                    f"{_fmt(exact[key]['mean'])} (exact samples {_fmt(exact[key]['exact_samples_mean'])})",
                )
            )
    if "eb_modes" in results:
        rows += eb_highlights(results["eb_modes"])
    rows.append(("wall time", f"{results['timing']['total_seconds']:.1f} s over all tests"))
    return rows


PER_STATISTIC = ("pvalues", "shift_z", "shift_pvalues")  # in sbc_pvalues.csv, not summary.json


def _summary(run: CalibrationRun, results: dict[str, Any]) -> dict[str, Any]:
    """summary.json: every aggregate number (large per-pixel arrays are in the CSV files)."""
    cov = {k: v for k, v in results["coverage"].items() if k not in ("per_test", "map_fraction")}
    sbc = {
        "bins": results["sbc"]["bins"],
        "families": {
            name: {k: v for k, v in fam.items() if k not in PER_STATISTIC}
            for name, fam in results["sbc"]["families"].items()
        },
    }
    spec = {k: v for k, v in results["spectra"].items() if not k.startswith("first_")}
    out = {
        "provenance": run.provenance,
        "settings": run.settings,
        "num_tests": results["num_tests"],
        "num_samples": results["num_samples"],
        "tests_computed_by_this_run": run.computed,
        "padded_shape": results["padded_shape"],
        "coverage": cov,
        "tarp": results["tarp"],
        "sbc": sbc,
        "zscores": results["zscores"],
        "chi2": results["chi2"],
        "spectra": spec,
        "one_point_pdf": results["one_point_pdf"],
        "exact_posterior": results["exact"],
        "timing": results["timing"],
        "tests": run.meta,
        "notes": run.notes,
    }
    if "peaks" in results:
        out["peaks"] = results["peaks"]
    if "eb_modes" in results:
        out["eb_modes"] = results["eb_modes"]
    return out


def _provenance_rows(prov: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "posterior_diffusion_version",
        "command",
        "created_utc",
        "sampler",
        "sampler_settings",
        "seed",
        "prior",
        "forward_model_params",
        "truths",
        "num_tests",
        "field_shape",
        "mask_observed_fraction",
        "device",
        "torch_version",
    )
    return {
        k: to_json(prov[k]) if isinstance(prov[k], (dict, list)) else prov[k]
        for k in keys
        if k in prov
    }


def _sky_pixel(model: str, settings: dict[str, Any]) -> float | None:
    """The pixel side [arcmin] of a lensing run (its spectra then in ell and C_ell), else None."""
    if not has_shear_data(model):
        return None
    return pixel_scale(settings.get("forward_model_attrs") or {})


def write_calibration_report(run: CalibrationRun, keep_tests: bool = True) -> dict[str, Any]:
    """Write the report of `run` into its output directory; returns the summary."""
    model = run.settings["forward_model"]["name"]
    results = aggregate(run.tests, run.meta, run.request.num_samples, model)
    summary = _summary(run, results)
    title = (
        f"Calibration report: {run.provenance.get('sampler')} on '{model}', "
        f"{results['num_tests']} tests x {results['num_samples']} samples"
    )
    notes = list(run.notes)
    if not keep_tests:
        notes.append("per-test files were not kept (--no-keep-tests): this run cannot be resumed")
    write_report(
        run.request.output_dir,
        title,
        _figures(
            results,
            run.tests[0],
            model,
            _sky_pixel(model, run.settings),
            sky_header(
                run.settings.get("forward_model_attrs") or {},
                tuple(run.settings["field_shape"][-2:]),
            ),
        ),
        summary,
        _tables(results, run.meta),
        _highlights(results, run.provenance),
        _provenance_rows(run.provenance),
        notes,
    )
    if not keep_tests:
        shutil.rmtree(run.store.folder, ignore_errors=True)
    return summary
