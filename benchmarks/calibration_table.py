"""Issue 17's calibration bar as a markdown table, one column per calibrate report.

The model cards quote the same rows for every run (coverage at the bar's levels, SBC per family
with its chi^2 and mean-rank-shift p-values, the samples' power over the truths', TARP, r(k)),
so they are printed from the report's own files rather than copied by hand:

    python benchmarks/calibration_table.py docs/density_prior_calibration
    python benchmarks/calibration_table.py cal_default_i52 cal_default_i40 --labels "52 tests" "40 tests"

Reads DIR/summary.json and DIR/sbc_pvalues.csv (written by `posterior-diffusion calibrate`).
The paired peak shift and the posterior mean's slope per scale have their own scripts
(`peak_shift.py`, `mean_orthogonality.py`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

BAR_LEVELS = (0.5, 0.68, 0.9, 0.95)
R_K = (0.02, 0.13, 0.24, 0.38, 0.49)  # scales the cards quote r(k) at


def read_pvalues(report: Path) -> dict[str, list[dict[str, float]]]:
    """sbc_pvalues.csv grouped by family, each row's numbers as floats. Statistics the report
    marks fixed (no p-value: e.g. the map mean under a fixed-mean prior) are left out."""
    families: dict[str, list[dict[str, float]]] = {}
    with open(report / "sbc_pvalues.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if not row["p_value"]:
                continue
            numbers = {key: float(value or "nan") for key, value in row.items() if key != "family"}
            families.setdefault(row["family"], []).append(numbers)
    return families


def coverage_row(summary: dict) -> str:
    cov = summary["coverage"]
    levels = np.asarray(cov["levels"])
    values, errors = [], []
    for level in BAR_LEVELS:
        i = int(np.argmin(np.abs(levels - level)))
        if abs(levels[i] - level) > 1e-6:
            return "(levels not in the report)"
        values.append(f"{cov['empirical'][i]:.3f}")
        errors.append(cov["standard_error"][i])
    return f"{' / '.join(values)} (SE {max(errors):.3f})"


def _flagged(rows: list[dict[str, float]], key: str, k: list[float] | None) -> str:
    """The statistics with p < 0.05 by `key`, smallest first (with their k for P(k) bins)."""
    hits = sorted(
        (r[key], int(r["statistic"]), r.get("mean_rank_z", np.nan)) for r in rows if r[key] < 0.05
    )
    parts = []
    for p, index, z in hits[:4]:
        where = f"k = {k[index]:.3g}, " if k is not None else ""
        parts.append(f"{where}p = {p:.2g}" + (f", z = {z:+.2f}" if np.isfinite(z) else ""))
    more = f"; {len(hits) - 4} more" if len(hits) > 4 else ""
    return "; ".join(parts) + more


def _below(rows: list[dict[str, float]], key: str, k: list[float] | None) -> tuple[str, str]:
    """How many statistics have p < 0.05 by `key` (a share for pixels, a count otherwise), and
    which (listed for families of at most 100 statistics)."""
    n = len(rows)
    below = sum(r[key] < 0.05 for r in rows)
    share = f"{below / n:.1%}" if n > 100 else f"{below} of {n}"
    return share, _flagged(rows, key, k) if n <= 100 else ""


def sbc_rows(summary: dict, pvalues: dict[str, list[dict[str, float]]]) -> dict[str, str]:
    k = summary["spectra"]["k"]
    rows = {}
    for family, rows_of_family in pvalues.items():
        info = summary["sbc"]["families"][family]
        where = k if family == "power" else None
        if family == "peaks":
            chi2 = " / ".join(f"{r['p_value']:.2g}" for r in rows_of_family)
        else:
            share, flagged = _below(rows_of_family, "p_value", where)
            if len(rows_of_family) > 100:
                share += f" of {len(rows_of_family):,}"
            listed = f" ({flagged})" if flagged else ""
            chi2 = f"{share}{listed}; median p {info['median_p']:.2f}"
        rows[f"SBC, {info['label']}: chi^2 p"] = chi2
        if "shift_p_value" not in rows_of_family[0]:  # reports before the shift test
            continue
        share, flagged = _below(rows_of_family, "shift_p_value", where)
        smallest = min(r["shift_p_value"] for r in rows_of_family)
        rows[f"SBC mean-rank shift, {info['label']}: p < 0.05"] = (
            f"{share} ({flagged})" if flagged else f"{share} (smallest p {smallest:.2g})"
        )
    return rows


def power_row(summary: dict) -> str:
    s = summary["spectra"]
    ratio = np.asarray(s["samples_over_truth"][1:])  # bin 0 is the map mean
    low, high = np.asarray(s["ratio_band_low"][1:]), np.asarray(s["ratio_band_high"][1:])
    k = np.asarray(s["k"][1:])
    parts = []
    for side, where in (("below", k[ratio < low]), ("above", k[ratio > high])):
        if len(where):
            listed = ", ".join(f"{x:.2g}" for x in where[:6]) + (", ..." if len(where) > 6 else "")
            parts.append(f"{len(where)} {side}: k = {listed}")
    outside = f" ({'; '.join(parts)})" if parts else ""
    count = int(np.sum((ratio < low) | (ratio > high)))
    return (
        f"{ratio.min():.3f}-{ratio.max():.3f} (mean {ratio.mean():.3f}); outside the 2-sigma "
        f"sample-variance band in {count} of {len(ratio)}{outside}"
    )


def tarp_row(summary: dict) -> str:
    t = summary["tarp"]
    expected = t.get("expected", t["alpha"])  # older reports: the band is centred on alpha
    half = max(h - e for h, e in zip(t["band_high"], expected, strict=True))
    ecp, low, high = (np.asarray(t[key]) for key in ("ecp", "band_low", "band_high"))
    inside = "inside" if np.all((ecp >= low) & (ecp <= high)) else "outside"
    return f"{t['deviation']:.3f}, {inside} the band (widest half-width {half:.2f})"


def r_row(summary: dict) -> str:
    k = np.asarray(summary["spectra"]["k"])
    r = summary["spectra"]["r_mean"]
    parts = [f"{r[int(np.argmin(np.abs(k - x)))]:.2f} at k = {x:g}" for x in R_K]
    return ", ".join(parts)


def column(report: Path) -> dict[str, str]:
    summary = json.loads((report / "summary.json").read_text())
    rows = {
        "tests": str(summary["num_tests"]),
        "per-pixel coverage at 50 / 68 / 90 / 95%": coverage_row(summary),
    }
    rows.update(sbc_rows(summary, read_pvalues(report)))
    rows["samples' power / truths', k bins 1-31"] = power_row(summary)
    rows["TARP, max \\|ECP - alpha\\|"] = tarp_row(summary)
    rows["r(k), posterior mean and truth"] = r_row(summary)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="calibrate output folders")
    parser.add_argument("--labels", nargs="+", help="column headings (default: folder names)")
    args = parser.parse_args(argv)
    labels = args.labels or [p.name for p in args.reports]
    if len(labels) != len(args.reports):
        print("calibration_table: give one label per report", file=sys.stderr)
        return 2
    for report in args.reports:
        for name in ("summary.json", "sbc_pvalues.csv"):
            if not (report / name).is_file():
                print(f"calibration_table: {report / name}: not found", file=sys.stderr)
                return 2
    columns = [column(p) for p in args.reports]
    names = list(dict.fromkeys(name for c in columns for name in c))
    print("| check | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name in names:
        print(f"| {name} | " + " | ".join(c.get(name, "") for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
