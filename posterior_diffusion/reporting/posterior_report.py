"""The `report` command: figures and numbers of one posterior file written by `reconstruct`.

With a `truth` in the file (simulated data) it adds the single-test truth diagnostics: coverage,
z-scores, P(k), r(k) and T(k). For lensing, truth or not, it adds the E/B power of the data
residuals. One test says little about calibration; `calibrate` runs many.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forward_models.lensing import Shear
from forward_models.registry import has_shear_data
from posterior_diffusion.calibration import aggregate as agg
from posterior_diffusion.calibration.held_out import (
    LEVELS,
    binned_counts,
    eb_terms,
    pdf_edges,
    spectrum_terms,
    zscore_terms,
)
from posterior_diffusion.diagnostics import (
    coverage_per_test,
    expected_coverage,
    single_test_band,
)
from posterior_diffusion.io.attrs import observation_attrs
from posterior_diffusion.io.fields import FieldFileError
from posterior_diffusion.io.fits_result import sky_header
from posterior_diffusion.io.posterior import read_posterior

from . import figures
from .eb import EB_CAPTION, eb_highlights, eb_table
from .tables import columns
from .writer import FigureSpec, Table, write_report


def _statistics(samples: np.ndarray) -> dict[str, Any]:
    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    return {
        "num_samples": int(samples.shape[0]),
        "field_shape": list(samples.shape[1:]),
        "mean_of_posterior_mean": float(mean.mean()),
        "pixel_std_of_posterior_mean": float(mean.std()),
        "posterior_mean_range": [float(mean.min()), float(mean.max())],
        "mean_posterior_std": float(std.mean()),
        "median_posterior_std": float(np.median(std)),
        "posterior_std_range": [float(std.min()), float(std.max())],
        "sample_pixel_std": float(samples.std()),
    }


def _truth_diagnostics(samples: np.ndarray, truth: np.ndarray) -> tuple[dict, dict, dict, dict]:
    """Coverage, z-scores, spectra and one-point PDF of one test, in `aggregate`'s layout."""
    n = samples.shape[0]
    _, per_test = coverage_per_test(samples, truth, LEVELS, batched=False)
    expected = expected_coverage(LEVELS, n)
    cov = {
        "levels": LEVELS,
        "empirical": per_test[:, 0],
        "expected": expected,
        "difference": per_test[:, 0] - expected,
    }
    if n >= 3:
        cov["band_low"], cov["band_high"], chance = single_test_band(samples, LEVELS)
        cov["band_label"] = f"{chance:.0%} band of one calibrated test"
    edges = pdf_edges(truth, samples)
    test = {
        **spectrum_terms(samples, truth),
        **zscore_terms(samples, truth),
        "pdf_edges": edges,
        "pdf_truth": binned_counts(truth, edges),
        "pdf_samples": binned_counts(samples, edges),
    }
    return (
        cov,
        agg.zscores([test], n),
        agg.spectra([test]),
        agg.one_point_pdf([test]) | {"z_map": test["z_map"]},
    )


def _scalar_sigma(attrs: dict[str, Any]) -> float | None:
    """The noise sigma [data units] recorded in the forward model's provenance, if one number."""
    params = attrs.get("forward_model_params")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            return None
    sigma = params.get("sigma") if isinstance(params, dict) else None
    return float(sigma) if isinstance(sigma, (int, float)) and sigma > 0 else None


def _lensing_eb(
    samples: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None,
    attrs: dict[str, Any],
    noise_std: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """E/B power of the data and of the residuals of one lensing posterior (`agg.eb_modes`).

    Observed pixels: the file's mask, less pixels where both shear components are exactly 0
    (unobserved data are stored as 0). Noise level: the file's per-pixel `noise_std` map, else the
    scalar sigma of the forward model's provenance, else unknown (NaN).
    None when the shapes are not those of a lensing posterior.
    """
    if y.ndim != 3 or y.shape[0] != 2 or samples.shape[1:] != (1, *y.shape[1:]):
        return None
    observed = np.any(y != 0, axis=0)
    if mask is not None and np.shape(mask) == observed.shape:
        observed &= np.asarray(mask) > 0
    observed = np.broadcast_to(observed, y.shape)
    shear = Shear(y.shape[1:])

    def forward(fields: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return shear.A(torch.from_numpy(fields)).numpy()

    variance = None
    if noise_std is not None and np.broadcast_shapes(np.shape(noise_std), y.shape) == y.shape:
        variance = np.where(observed, np.broadcast_to(noise_std, y.shape) ** 2, 0.0)
    elif (sigma := _scalar_sigma(attrs)) is not None:
        variance = sigma**2 * observed
    return agg.eb_modes([eb_terms(samples, y, forward, observed, variance)])


def pixel_scale_of(attrs: dict[str, Any]) -> float | None:
    """The observation's pixel side in arcmin, from a result's attributes, or None."""
    try:
        scale = float(observation_attrs(attrs).get("pixel_scale_arcmin"))
    except (TypeError, ValueError):
        return None
    return scale if np.isfinite(scale) and scale > 0 else None


def default_report_dir(posterior: str | os.PathLike) -> Path:
    """`<posterior stem>_report` next to the posterior file."""
    path = Path(posterior)
    return path.with_name(f"{path.stem}_report")


def write_posterior_report(
    posterior: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Write the report of a posterior file; returns its summary (summary.json)."""
    post = read_posterior(posterior)
    path: Path = post["path"]
    samples, truth = post["samples"], post.get("truth")
    if samples.shape[0] < 2:
        raise FieldFileError(
            path,
            f"variable 'samples' holds {samples.shape[0]} sample(s); a report needs at least 2",
        )
    folder = Path(output_dir) if output_dir is not None else default_report_dir(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a directory")
    if not folder.resolve().parent.is_dir():
        raise ValueError(f"{folder}: parent directory '{folder.parent}' does not exist")
    model = str(post["attrs"].get("forward_model", "unknown"))
    maps = {
        "y": post.get("y", samples.mean(axis=0)),
        "mean": samples.mean(axis=0),
        "std": samples.std(axis=0, ddof=1),
        "samples_head": samples[:2],
        "mask": post.get("mask"),
        "noise_std": post.get("noise_std"),
    }
    summary: dict[str, Any] = {
        "posterior_file": str(path),
        "report_directory": str(folder),
        "command": command or "(Python API)",
        "statistics": _statistics(samples),
        "provenance": post["attrs"],
    }
    n = samples.shape[0]
    highlights = [
        ("samples", f"{n} of shape {tuple(samples.shape[1:])}"),
        ("sampler", str(post["attrs"].get("sampler", "unknown"))),
        ("forward model, prior", f"{model}, {post['attrs'].get('prior_name', 'unknown')}"),
        ("mean posterior std", f"{summary['statistics']['mean_posterior_std']:.4g}"),
    ]
    tables: list[Table] = []
    specs = []
    if truth is not None:
        cov, z, spec, pdf = _truth_diagnostics(samples, truth)
        maps.update(truth=truth, z_map=pdf.pop("z_map"))
        summary["truth_diagnostics"] = {
            "rmse_of_mean": float(np.sqrt(np.mean((maps["mean"] - truth) ** 2))),
            "coverage": cov,
            "zscores": z,
            "spectra": {k: v for k, v in spec.items() if not k.startswith("first_")},
            "one_point_pdf": pdf,
        }
        for level in (0.5, 0.68, 0.9, 0.95):
            i = int(np.argmin(np.abs(LEVELS - level)))
            highlights.append(
                (
                    f"coverage at {level:.0%}",
                    f"{cov['empirical'][i]:.3f} (calibrated {cov['expected'][i]:.3f})",
                )
            )
        highlights.append(("z-score std", f"{z['std']:.3f} (calibrated {z['expected_std']:.3f})"))
        tables += [
            Table(
                "coverage",
                "coverage of central credible intervals, this test",
                *columns(
                    level=LEVELS,
                    calibrated=cov["expected"],
                    empirical=cov["empirical"],
                    **(
                        {"band_low": cov["band_low"], "band_high": cov["band_high"]}
                        if "band_low" in cov
                        else {}
                    ),
                ),
            ),
            Table(
                "spectra",
                "P(k), r(k), T(k) (k in cycles/pixel)",
                *columns(
                    k=spec["k"],
                    modes=spec["modes"],
                    p_truth=spec["p_truth"],
                    p_samples=spec["p_samples"],
                    p_mean=spec["p_mean"],
                    r_mean=spec["r_mean"],
                    r_samples=spec["r_samples"],
                    t_mean=spec["t_mean"],
                    t_samples=spec["t_samples"],
                ),
            ),
        ]
        specs += [
            FigureSpec(
                "coverage",
                "Coverage of central credible intervals (this map)",
                "Fraction of pixels whose truth lies in the central interval of the samples. "
                "Pixels of one map are correlated, so one test scatters widely about the "
                "calibrated curve: the grey band is where a calibrated sampler's single test "
                "falls, with the probability in the legend, at each level (each sample in turn "
                "taken as the truth, its intervals from the others). Use `calibrate` for a "
                "verdict.",
                lambda: figures.coverage_curve(cov, n, 1),
            ),
            FigureSpec(
                "spectra",
                "Power spectra, cross-correlation and transfer function",
                "P(k) of the truth (grey: sample variance), the samples and the posterior mean; "
                "r(k) and T(k) of the mean and the samples against the truth.",
                lambda: figures.spectra(
                    spec, 1, pixel_scale_of(post["attrs"]) if has_shear_data(model) else None
                ),
            ),
            FigureSpec(
                "one_point",
                "One-point PDF and z-scores",
                "Pixel values of truth and samples; z = (truth - mean) / std against the "
                "calibrated Student-t.",
                lambda: figures.one_point(pdf, z),
            ),
        ]
    eb = (
        _lensing_eb(samples, post["y"], post.get("mask"), post["attrs"], post.get("noise_std"))
        if (has_shear_data(model) and "y" in post)
        else None
    )
    if eb is not None:
        summary["eb_modes"] = eb
        highlights += eb_highlights(eb)
        tables.append(eb_table(eb))
        specs.append(
            FigureSpec(
                "eb_modes",
                "Lensing E/B-mode power of the data residuals",
                EB_CAPTION,
                lambda: figures.eb_modes(eb, 1),
            )
        )
    panel_title = f"{path.name}: {model}"
    specs.insert(
        0,
        FigureSpec(
            "panels",
            "Observation and posterior",
            "Observation (grey: unobserved), the data's noise std where it varies, posterior mean "
            "and standard deviation, two samples; the white line is the footprint's edge"
            + ("; truth, residual and z-score map" if truth is not None else "")
            + ".",
            lambda: figures.panels(
                maps,
                model,
                panel_title,
                pixel_scale_of(post["attrs"]),
                sky_header(post["attrs"], samples.shape[-2:]),
            ),
        ),
    )
    prov_keys = (
        "posterior_diffusion_version",
        "command",
        "created_utc",
        "sampler",
        "sampler_settings",
        "seed",
        "prior",
        "forward_model_params",
        "input_file",
    )
    provenance = {k: post["attrs"][k] for k in prov_keys if k in post["attrs"]}
    provenance["report command"] = summary["command"]
    write_report(
        folder,
        f"Posterior report: {path.name}",
        specs,
        summary,
        tables,
        highlights,
        provenance,
    )
    return summary
