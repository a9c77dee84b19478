"""The report's figures, each a function from diagnostics (numpy, as `aggregate` makes them) to a
matplotlib Figure. Build and save them inside `style.plot_style()`."""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io.fits import Header
from astropy.wcs import WCS
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from scipy import stats

from forward_models.registry import data_labels, field_label
from posterior_diffusion.diagnostics import binomial_band

from .style import (
    DIVERGING_CMAP,
    K_LABEL,
    STD_CMAP,
    field_limits,
    new_figure,
    show_image,
    symmetric_limit,
)

POWER_LABEL = "P(k) [field$^2$ pixel$^2$]"
EXPECTED_COLOUR, BAND_COLOUR = "0.3", "0.85"


def _first_channel(array: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W), the first channel."""
    array = np.asarray(array)
    return array[0] if array.ndim == 3 else array


def panels(
    maps: dict[str, np.ndarray],
    forward_model: str,
    title: str,
    pixel_scale_arcmin: float | None = None,
    sky: Header | None = None,
) -> Figure:
    """Truth, observation, noise map, posterior mean, std, two samples, residual and z-score maps.

    `maps` holds mean, std, samples_head (2, C, H, W) and optionally y, noise_std, truth, mask,
    z_map. Fields show their first channel; unobserved data pixels are grey, and the footprint's
    edge (the mask) is drawn on the field maps. With a sky WCS header (`sky`) the axes are RA/Dec,
    else arcmin when the pixel scale is known, else pixels.
    """
    truth = maps.get("truth")
    y = np.zeros((0, 1, 1)) if maps.get("y") is None else np.asarray(maps["y"])
    y = y if y.ndim == 3 else y[None]
    mask = maps.get("mask")
    hidden = None if mask is None else np.asarray(mask) == 0
    mean, std = _first_channel(maps["mean"]), _first_channel(maps["std"])
    heads = [_first_channel(s) for s in maps["samples_head"]]
    fields = [mean, *heads] + ([_first_channel(truth)] if truth is not None else [])
    low, high = field_limits(*fields)
    field = field_label(forward_model)
    specs: list[tuple] = []  # (array, title, colour-bar label, cmap, vmin, vmax, hidden, edge)
    if truth is not None:
        specs.append((_first_channel(truth), "truth", field, None, low, high, None, True))
    names = data_labels(forward_model, len(y))
    for c in range(min(len(y), 2)):
        label = f"observation ({names[c]})" if len(y) > 1 else "observation"
        seen = y[c] if hidden is None or np.shape(hidden) != y[c].shape else y[c][~hidden]
        data_low, data_high = field_limits(seen)  # a few wild pixels must not set the range
        specs.append((y[c], label, "data value", None, data_low, data_high, hidden, False))
    if maps.get("noise_std") is not None:
        noise = _first_channel(maps["noise_std"])
        specs.append((noise, "noise std of the data", "data value", STD_CMAP, 0.0,
                      _robust_high(noise, hidden), hidden, False))  # fmt: skip
    specs.append((mean, "posterior mean", field, None, low, high, None, True))
    # A few extreme pixels (a massive peak's spread) must not set the whole std panel's range.
    specs.append((std, "posterior std", f"std of {field}", STD_CMAP, 0.0, _robust_high(std),
                  None, True))  # fmt: skip
    for i, head in enumerate(heads):
        specs.append((head, f"posterior sample {i + 1}", field, None, low, high, None, True))
    if truth is not None:
        residual = _first_channel(truth) - mean
        limit = symmetric_limit(residual)
        specs.append((residual, "truth - mean", field, DIVERGING_CMAP, -limit, limit, None, True))
    if maps.get("z_map") is not None:
        z = _first_channel(maps["z_map"])
        specs.append((z, "z = (truth - mean) / std", "z", DIVERGING_CMAP, -4.0, 4.0, None, True))
    columns = 4 if len(specs) <= 8 else 5
    rows = -(-len(specs) // columns)
    fig = new_figure(3.3 * columns, 3.0 * rows + 0.4)
    projection = None if sky is None else WCS(sky)
    for i, (array, name, label, cmap, vmin, vmax, hide, edge) in enumerate(specs):
        ax = fig.add_subplot(rows, columns, i + 1, projection=projection)
        show_image(fig, ax, array, name, label, cmap or "viridis", vmin, vmax, hide,
                   pixel_scale_arcmin, mask if edge else None)  # fmt: skip
    fig.suptitle(title)
    return fig


def _robust_high(values: np.ndarray, hidden: np.ndarray | None = None) -> float | None:
    """The 99.5% quantile of the finite (and not hidden) values: the top of a colour range."""
    keep = np.isfinite(values) if hidden is None else np.isfinite(values) & ~hidden
    finite = np.asarray(values)[keep]
    return float(np.quantile(finite, 0.995)) if finite.size and finite.max() > 0 else None


def coverage_curve(cov: dict[str, Any], num_samples: int, num_tests: int) -> Figure:
    """Empirical coverage of central credible intervals against the nominal level, and their
    difference from what an exactly calibrated sampler with N samples gives."""
    levels, empirical, expected = cov["levels"], cov["empirical"], cov["expected"]
    low, high = cov.get("band_low"), cov.get("band_high")
    band = cov.get("band_label", "95% binomial band")
    fig = new_figure(10.0, 4.2)
    left, right = fig.subplots(1, 2)
    left.plot([0, 1], [0, 1], ":", color="0.5", label="nominal")
    if low is not None:
        left.fill_between(levels, low, high, color=BAND_COLOUR, label=band)
    left.plot(levels, expected, "-", color=EXPECTED_COLOUR, label=f"calibrated, N = {num_samples}")
    if cov.get("exact_reference") is not None:
        left.plot(levels, cov["exact_reference"], "--", color="tab:green", label="exact samples")
    left.plot(levels, empirical, "o", color="tab:blue", ms=4, label="this sampler")
    left.set_xlabel("nominal credible level")
    left.set_ylabel("empirical coverage (fraction of pixels)")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.set_aspect("equal")
    left.legend(loc="upper left")
    right.axhline(0.0, color=EXPECTED_COLOUR, label="calibrated")
    if low is not None:
        right.fill_between(levels, low - expected, high - expected, color=BAND_COLOUR, label=band)
    if cov.get("exact_reference") is not None:
        right.plot(
            levels,
            cov["exact_reference"] - expected,
            "--",
            color="tab:green",
            label="exact samples",
        )
    se = cov.get("standard_error")
    difference = empirical - expected
    if se is not None and np.isfinite(se).any():
        right.errorbar(
            levels, difference, yerr=2 * se, fmt="o", ms=4, capsize=2, label="this sampler +- 2 SE"
        )
    else:
        right.plot(levels, difference, "o", ms=4, color="tab:blue", label="this sampler")
    right.set_xlabel("nominal credible level")
    right.set_ylabel("empirical - calibrated coverage")
    right.set_xlim(0, 1)
    right.legend(loc="best")
    fig.suptitle(f"Pixel coverage of central credible intervals ({num_tests} tests)")
    return fig


def coverage_maps(
    cov: dict[str, Any],
    mask: np.ndarray | None,
    num_tests: int,
    num_samples: int,
    sky: Header | None = None,
    pixel_scale_arcmin: float | None = None,
) -> Figure:
    """Per-pixel fraction of tests whose truth lies in the central interval, at two levels; on
    RA/Dec axes with a sky WCS header, else arcmin or pixels."""
    levels = list(np.asarray(cov["map_levels"]))
    chosen = [i for i, a in enumerate(levels) if round(a, 2) in (0.68, 0.95)] or [0]
    fig = new_figure(4.4 * len(chosen), 4.0)
    projection = None if sky is None else WCS(sky)
    for j, i in enumerate(chosen):
        ax = fig.add_subplot(1, len(chosen), j + 1, projection=projection)
        level = levels[i]
        fraction = _first_channel(cov["map_fraction"][i])
        calibrated = level * (num_samples - 1) / (num_samples + 1)
        low, high = binomial_band(calibrated, num_tests, 0.95)
        title = (
            f"{level:.0%} intervals (calibrated: {calibrated:.2f} at N = {num_samples})\n"
            f"95% of pixels expected in [{low:.2f}, {high:.2f}]"
        )
        show_image(fig, ax, fraction, title, "fraction of tests covered", vmin=0.0, vmax=1.0,
                   pixel_scale_arcmin=pixel_scale_arcmin, footprint=mask)  # fmt: skip
    return fig


def tarp(result: dict[str, Any], num_tests: int) -> Figure:
    """TARP expected coverage probability against the credibility level."""
    alpha, ecp = result["alpha"], result["ecp"]
    fig = new_figure(5.0, 4.6)
    ax = fig.subplots()
    ax.fill_between(
        alpha,
        result["band_low"],
        result["band_high"],
        color=BAND_COLOUR,
        label=f"simultaneous 95% band, {num_tests} tests",
    )
    ax.plot(alpha, result.get("expected", alpha), "-", color=EXPECTED_COLOUR, label="calibrated")
    if result.get("exact_reference") is not None:
        ax.plot(alpha, result["exact_reference"], "--", color="tab:green", label="exact samples")
    ax.plot(alpha, ecp, "o-", color="tab:blue", ms=4, label="this sampler")
    ax.set_xlabel("credibility level alpha")
    ax.set_ylabel("expected coverage probability")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    ax.set_title(f"TARP, prior-draw references (max |ECP - alpha| = {result['deviation']:.3f})")
    return fig


def sbc(result: dict[str, Any], num_samples: int, num_tests: int) -> Figure:
    """Pooled SBC rank histograms per family of statistics, with the uniform expectation."""
    families = result["families"]
    fig = new_figure(3.4 * len(families), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(families)))
    bins = result["bins"]
    edges = np.arange(bins + 1) / bins
    for ax, fam in zip(axes, families.values(), strict=True):
        ax.fill_between(
            edges,
            np.r_[fam["band_low"], fam["band_low"][-1]],
            np.r_[fam["band_high"], fam["band_high"][-1]],
            step="post",
            color=BAND_COLOUR,
            label="99% band per bin",
        )
        ax.stairs(fam["expected_fraction"], edges, color=EXPECTED_COLOUR, label="uniform")
        ax.stairs(fam["pooled_fraction"], edges, color="tab:blue", linewidth=2, label="ranks")
        ax.set_xlabel(f"rank / N (N = {num_samples})")
        ax.set_ylabel("fraction of ranks")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, max(fam["band_high"].max(), fam["pooled_fraction"].max()) * 1.15)
        ax.set_title(
            f"{fam['label']}\n{fam['num_statistics']} statistics, median p = {fam['median_p']:.2f}"
        )
    axes[0].legend(loc="lower center")
    fig.suptitle(f"SBC rank histograms ({num_tests} tests, {bins} bins)")
    return fig


def _positive_k(spec: dict[str, Any]) -> np.ndarray:
    return np.asarray(spec["k"]) > 0


def _plain(value: float, _position=None) -> str:
    return f"{value:g}"


def _leading_2_or_5(value: float, _position=None) -> str:
    digit = f"{value:.0e}"[0]
    return f"{value:g}" if digit in "25" else ""


def _log_k_axis(ax, label: str = K_LABEL) -> None:
    """Log-scaled k axis labelled 0.01, 0.02, 0.05, 0.1, ... instead of 2 x 10^-1."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(FuncFormatter(_leading_2_or_5))
    ax.set_xlabel(label)


def sky_spectrum_units(pixel_scale_arcmin: float) -> tuple[float, float]:
    """(ell per cycle/pixel, C_ell per unit of P(k)) for pixels of `pixel_scale_arcmin`.

    P(k) = |FFT|^2 / (H W) is in field^2 pixel^2, so C_ell = P Omega_pix with Omega_pix the
    pixel's solid angle [sr], at ell = 2 pi k / theta_pix [rad] (flat sky)."""
    theta = np.deg2rad(pixel_scale_arcmin / 60.0)
    return 2 * np.pi / theta, theta**2


def spectra(spec: dict[str, Any], num_tests: int, sky_pixel_arcmin: float | None = None) -> Figure:
    """P(k) of the first test with sample-variance band; samples/truth power ratio; r(k), T(k).

    With `sky_pixel_arcmin` (a lensing convergence on the sky) the axes are multipole ell and
    C_ell instead of cycles/pixel and P(k)."""
    keep = _positive_k(spec)
    k, modes = spec["k"][keep], spec["modes"][keep]
    to_power, x_label, power_label = 1.0, K_LABEL, POWER_LABEL
    if sky_pixel_arcmin:
        to_ell, to_power = sky_spectrum_units(sky_pixel_arcmin)
        k, x_label, power_label = k * to_ell, "multipole $\\ell$", "$C_\\ell$ [sr]"
    fig = new_figure(10.0, 7.6)
    (a, b), (c, d) = fig.subplots(2, 2)
    truth = spec["first_truth"][keep] * to_power
    rel = np.sqrt(2.0 / modes)
    a.fill_between(
        k,
        truth * np.clip(1 - rel, 1e-3, None),
        truth * (1 + rel),
        color=BAND_COLOUR,
        label="truth +- sample variance",
    )
    a.plot(k, truth, "-", color="black", label="truth")
    a.fill_between(
        k,
        spec["first_samples_low"][keep] * to_power,
        spec["first_samples_high"][keep] * to_power,
        color="tab:blue",
        alpha=0.3,
        label="samples 16-84%",
    )
    median, mean = spec["first_samples_median"][keep], spec["first_mean"][keep]
    a.plot(k, median * to_power, "-", color="tab:blue", label="samples median")
    a.plot(k, mean * to_power, "--", color="tab:orange", label="posterior mean")
    _log_k_axis(a, x_label)
    a.set_yscale("log")
    a.set_ylabel(power_label)
    a.set_title("power spectrum, " + ("first test" if num_tests > 1 else "this map"))
    a.legend(loc="lower left")

    b.fill_between(
        k,
        spec["ratio_band_low"][keep],
        spec["ratio_band_high"][keep],
        color=BAND_COLOUR,
        label="truth sample variance (2 sigma)",
    )
    b.axhline(1.0, color=EXPECTED_COLOUR)
    b.plot(
        k,
        spec["samples_over_truth"][keep],
        "o-",
        ms=3,
        color="tab:blue",
        label="<P samples> / <P truth>",
    )
    _log_k_axis(b, x_label)
    b.set_ylabel("power ratio")
    b.set_title(
        f"samples against truths, {num_tests} tests" if num_tests > 1 else "samples against truth"
    )
    b.legend(loc="best")

    c.axhline(1.0, color=EXPECTED_COLOUR)
    c.plot(k, spec["r_mean"][keep], "o-", ms=3, color="tab:orange", label="posterior mean")
    c.plot(k, spec["r_samples"][keep], "s-", ms=3, color="tab:blue", label="samples")
    _log_k_axis(c, x_label)
    c.set_ylim(min(0.0, np.nanmin(spec["r_samples"][keep]) - 0.05), 1.05)
    c.set_ylabel("r(k) with the truth")
    c.set_title("cross-correlation coefficient")
    c.legend(loc="lower left")

    d.axhline(1.0, color=EXPECTED_COLOUR)
    d.plot(k, spec["t_mean"][keep], "o-", ms=3, color="tab:orange", label="posterior mean")
    d.plot(k, spec["t_samples"][keep], "s-", ms=3, color="tab:blue", label="samples")
    _log_k_axis(d, x_label)
    d.set_ylim(0.0, max(1.2, float(np.nanmax(spec["t_samples"][keep])) * 1.05))
    d.set_ylabel("T(k) = sqrt(P / P truth)")
    d.set_title("transfer function")
    d.legend(loc="lower left")
    return fig


def one_point(pdf: dict[str, Any], z: dict[str, Any] | None) -> Figure:
    """Pixel-value PDF of truths and samples; z-score histogram against Student-t."""
    fig = new_figure(10.0 if z is not None else 5.2, 4.2)
    axes = np.atleast_1d(fig.subplots(1, 2 if z is not None else 1))
    ax = axes[0]
    edges = pdf["edges"]
    ax.stairs(pdf["truth_density"], edges, color="black", linewidth=1.5, label="truths")
    ax.stairs(pdf["samples_density"], edges, color="tab:blue", linewidth=1.5, label="samples")
    ax.set_yscale("log")
    ax.set_xlabel("field value (per pixel)")
    ax.set_ylabel("probability density")
    ax.set_title("one-point PDF")
    ax.legend(loc="upper right")
    if z is not None:
        ax = axes[1]
        ze = z["edges"]
        ax.stairs(z["density"], ze, color="tab:blue", linewidth=1.5, label="z of truths")
        grid = np.linspace(ze[0], ze[-1], 400)
        expected = stats.t.pdf(grid / z["scale"], z["dof"]) / z["scale"]
        ax.plot(grid, expected, "-", color=EXPECTED_COLOUR, label="calibrated")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 1.0)
        ax.set_xlabel("z = (truth - mean) / std")
        ax.set_ylabel("probability density")
        ax.set_title(f"z-scores: std {z['std']:.3f} (calibrated {z['expected_std']:.3f})")
        ax.legend(loc="upper right")
    return fig


def peak_counts(result: dict[str, Any]) -> Figure:
    """Peak counts of each truth against those of its posterior samples."""
    fig = new_figure(5.2, 4.8)
    ax = fig.subplots()
    truth, mean, std = result["truth"], result["samples_mean"], result["samples_std"]
    for j, nu in enumerate(result["thresholds"]):
        ax.errorbar(
            truth[:, j],
            mean[:, j],
            yerr=std[:, j],
            fmt="o",
            ms=4,
            capsize=2,
            label=f"peaks above {nu:g} sigma",
        )
    top = max(float(truth.max()), float((mean + std).max()), 1.0) * 1.05
    ax.plot([0, top], [0, top], "-", color=EXPECTED_COLOUR, label="equal")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("peaks in the true map (count)")
    ax.set_ylabel("peaks in posterior samples (mean +- std)")
    ax.set_title("lensing peak counts, one point per test")
    ax.legend(loc="upper left")
    return fig


EB_POWER_LABEL = "power P(k) [shear$^2$ pixel$^2$]"
EB_CURVES = (  # (source, label, colour, line style, marker)
    ("samples", "residual y - A(sample), mean over samples", "tab:blue", "-", "o"),
    ("mean", "residual y - A(posterior mean)", "tab:orange", "--", "s"),
    ("data", "observed shear y", "tab:purple", ":", None),
)


def eb_modes(eb: dict[str, Any], num_tests: int) -> Figure:
    """E and B power of the data and of the residuals y - A(x) against the noise level.

    `eb` is `aggregate.eb_modes`' layout: k, modes and <source>_<e|b> (with _se) for the sources
    noise, data, mean and samples. Bands: +- 2 standard errors from the scatter between tests;
    for one test instead the 95% range of one Gaussian noise map's binned power.
    """
    keep = np.asarray(eb["k"]) > 0
    k = np.asarray(eb["k"])[keep]
    fig = new_figure(10.0, 5.0)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, mode, name in zip(axes, "eb", ("E", "B"), strict=True):
        noise = np.asarray(eb[f"noise_{mode}"])[keep]
        if np.isfinite(noise).any():
            if num_tests == 1:  # n_k modes in conjugate pairs: P ~ noise chi^2_{n_k} / n_k
                modes = np.asarray(eb["modes"])[keep]
                low, high = stats.chi2.interval(0.95, modes)
                ax.fill_between(
                    k,
                    noise * low / modes,
                    noise * high / modes,
                    color=BAND_COLOUR,
                    label="noise, one map's 95% range",
                )
            ax.plot(k, noise, "-", color=EXPECTED_COLOUR, linewidth=2, label="noise level")
        for source, label, colour, style, marker in EB_CURVES:
            power = np.asarray(eb[f"{source}_{mode}"])[keep]
            se = np.asarray(eb[f"{source}_{mode}_se"])[keep]
            if np.isfinite(se).any():
                ax.fill_between(
                    k,
                    np.clip(power - 2 * se, power * 1e-3, None),
                    power + 2 * se,
                    color=colour,
                    alpha=0.2,
                    linewidth=0,
                )
            ax.plot(k, power, style, color=colour, marker=marker, ms=4, label=label)
        _log_k_axis(ax)
        ax.set_yscale("log")
        ratios = [
            f"{source} {eb[f'{source}_{mode}_over_noise']:.2f}"
            for source in ("samples", "mean")
            if np.isfinite(eb[f"{source}_{mode}_over_noise"])
        ]
        ax.set_title(
            f"{name} modes" + (": residual / noise = " + ", ".join(ratios) if ratios else "")
        )
    axes[0].set_ylabel(EB_POWER_LABEL)
    handles, labels = axes[0].get_legend_handles_labels()
    # Below the axes, in two rows: the curves fill the axes.
    fig.legend(handles, labels, loc="outside lower center", ncols=(len(handles) + 1) // 2)
    scatter = f", bands +- 2 SE over {num_tests} tests" if num_tests > 1 else ""
    fig.suptitle(f"Lensing E/B-mode power of data and residuals{scatter}")
    return fig
