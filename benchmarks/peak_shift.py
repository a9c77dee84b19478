"""Paired shift of the truths' peak counts against their posterior samples', from a calibrate report.

SBC's rank histograms test the shape of the rank distribution; a small, steady shift of the
samples' peak counts shows sooner in the paired difference over tests (samples' mean minus
truth, per test), which this prints with its standard error from the tests' scatter, and in
the truth's mean offset in units of its samples' spread. Reads the report's peaks.csv only.

    python benchmarks/peak_shift.py docs/density_prior_calibration
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def read_peaks(report: Path) -> dict[str, np.ndarray]:
    """Columns of peaks.csv as arrays of shape (tests, thresholds), rows ordered by test."""
    with open(report / "peaks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    thresholds = sorted({float(r["nu"]) for r in rows})
    tests = sorted({int(r["test"]) for r in rows})
    names = ("truth", "samples_mean", "samples_std")
    out = {name: np.full((len(tests), len(thresholds)), np.nan) for name in names}
    for r in rows:
        i, j = tests.index(int(r["test"])), thresholds.index(float(r["nu"]))
        for name in out:
            out[name][i, j] = float(r[name])
    out["nu"] = np.array(thresholds)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a calibrate output directory (holds peaks.csv)")
    args = parser.parse_args(argv)
    if not (args.report / "peaks.csv").is_file():
        print(f"{args.report}: no peaks.csv there (not a calibrate report?)", file=sys.stderr)
        return 2
    peaks = read_peaks(args.report)
    num = peaks["truth"].shape[0]
    diff = peaks["samples_mean"] - peaks["truth"]
    offset = (peaks["truth"] - peaks["samples_mean"]) / peaks["samples_std"]
    print(f"{num} tests")
    for j, nu in enumerate(peaks["nu"]):
        d_mean, d_se = diff[:, j].mean(), diff[:, j].std(ddof=1) / np.sqrt(num)
        o_mean, o_se = offset[:, j].mean(), offset[:, j].std(ddof=1) / np.sqrt(num)
        print(
            f"peaks above nu = {nu:g}: truths {peaks['truth'][:, j].mean():.2f}, samples "
            f"{peaks['samples_mean'][:, j].mean():.2f} per map; samples - truth {d_mean:+.2f} +- "
            f"{d_se:.2f} ({d_mean / d_se:+.1f} errors, {d_mean / peaks['truth'][:, j].mean():+.1%}); "
            f"truth's offset {o_mean:+.3f} +- {o_se:.3f} samples' std"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
