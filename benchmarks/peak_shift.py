"""Paired shift of the truths' peak counts against their posterior samples', from a calibrate report.

SBC's rank histograms test the shape of the rank distribution; a small, steady shift of the
samples' peak counts shows sooner in the paired difference over tests (samples' mean minus
truth, per test), which this prints with its standard error from the tests' scatter, and in
the truth's mean offset in units of its samples' spread. Reads the report's peaks.csv.

With `--tests DIR` (the run's kept per-test files, `DIR/test_*.npz`: not shipped, they stay with
the run) it also compares the first kept samples of each test with the truth by second moments
that set a field's peak density (pixel variance, gradient variance, Laplacian variance: for a
Gaussian field the peak density goes as the ratio of the last two) and by skewness, paired per
test, to tell a change of texture from a change of the peaks' heights.

    python benchmarks/peak_shift.py docs/density_prior_calibration
    python benchmarks/peak_shift.py docs/density_prior_calibration --tests cal_density/tests
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


def texture(field: np.ndarray) -> np.ndarray:
    """Pixel, gradient and Laplacian variance (periodic finite differences) and skewness."""
    m = field - field.mean()
    grad = (np.roll(m, -1, -1) - m) ** 2 + (np.roll(m, -1, -2) - m) ** 2
    neighbours = sum(np.roll(m, s, a) for s in (-1, 1) for a in (-1, -2))
    variance = m.var()
    return np.array(
        [variance, grad.mean(), ((neighbours - 4 * m) ** 2).mean(), (m**3).mean() / variance**1.5]
    )


def paired_texture(tests: Path) -> None:
    """Samples' (kept head's) texture against the truth's, paired per test."""
    logs, skews = [], []
    for path in sorted(tests.glob("test_*.npz")):
        with np.load(path) as kept:
            truth = texture(kept["truth"])
            samples = np.mean([texture(s) for s in kept["samples_head"]], axis=0)
        logs.append(np.log(samples[:3] / truth[:3]))
        skews.append(samples[3] - truth[3])
    logs, skews = np.array(logs), np.array(skews)
    num = len(logs)
    print(f"texture, {num} tests (kept samples against the truth, paired):")
    for name, column in (
        ("std", logs[:, 0] / 2),
        ("gradient std", logs[:, 1] / 2),
        ("Laplacian std", logs[:, 2] / 2),
        ("Laplacian / gradient std", (logs[:, 2] - logs[:, 1]) / 2),
    ):
        se = column.std(ddof=1) / np.sqrt(num)
        print(f"  {name}: ratio {np.exp(column.mean()):.4f} +- {se:.4f}")
    se = skews.std(ddof=1) / np.sqrt(num)
    print(f"  skewness: samples - truth {skews.mean():+.3f} +- {se:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a calibrate output directory (holds peaks.csv)")
    parser.add_argument("--tests", type=Path, help="the run's kept per-test files (test_*.npz)")
    args = parser.parse_args(argv)
    if not (args.report / "peaks.csv").is_file():
        print(f"{args.report}: no peaks.csv there (not a calibrate report?)", file=sys.stderr)
        return 2
    if args.tests is not None and not any(args.tests.glob("test_*.npz")):
        print(
            f"{args.tests}: no test_*.npz there (a calibrate run's tests folder?)", file=sys.stderr
        )
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
    if args.tests is not None:
        paired_texture(args.tests)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
