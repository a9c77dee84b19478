"""Is the posterior mean's error orthogonal to the mean, per k bin? From a calibrate run's kept tests.

For the exact posterior the error of the posterior mean m* = E[x | y] is uncorrelated with any
function of the data, m* included, so over tests E[P_cross(m*, truth)] = E[P(m*)] in every k bin:
the truth regressed on the posterior mean has slope 1 (the Wiener filter's property, which holds
for non-Gaussian posteriors too). A sampler whose means overshoot the data (too little
shrinkage) gives a slope below 1, one that shrinks too much a slope above 1; pixel coverage and
rank histograms see neither directly. The run keeps the mean of N samples, m = m* + noise of
variance (posterior variance) / N, so P(m*) is estimated as P(m) - spread / (N - 1), with
spread = mean_i P(s_i) - P(m) the samples' scatter about their mean.

Prints per k bin the slope sum P_cross / sum P(m*) and the z of the mean paired difference
(P_cross - P(m*)) over tests, the same for bands of k, and Hotelling's T^2 over all bins (their
correlation taken from the tests' scatter; needs more tests than bins). `--control` runs the
check on an exact Gaussian posterior (white prior and noise) and on one whose means are 10% too
large, to show it passes the first and fails the second.

    python benchmarks/mean_orthogonality.py cal_default/tests
    python benchmarks/mean_orthogonality.py --control
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from posterior_diffusion.calibration.held_out import spectrum_terms

BANDS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.6))


TERMS = ("p_truth", "p_mean", "p_cross_mean", "p_samples")


def read_tests(tests: Path) -> list[dict[str, np.ndarray]]:
    """The spectrum terms of each kept test (`held_out.spectrum_terms`' keys), in test order."""
    out = []
    for path in sorted(tests.glob("test_*.npz")):
        with np.load(path) as kept:
            out.append({name: np.asarray(kept[name]) for name in ("k", *TERMS)})
    return out


def stack_terms(tests: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """k, N and per test (rows) P(truth), P(mean), P_cross(mean, truth) and mean_i P(s_i)."""
    out = {name: np.array([t[name] for t in tests]) for name in TERMS}
    out["num_samples"] = out["p_samples"].shape[1]
    out["p_samples"] = out["p_samples"].mean(axis=1)
    out["k"] = np.asarray(tests[0]["k"])
    return out


def orthogonality(terms: dict[str, np.ndarray]) -> dict[str, np.ndarray | float]:
    """Slopes, per-bin and per-band z and Hotelling's p over k bins 1.. (bin 0 is k = 0)."""
    n_samples = terms["num_samples"]
    p_mean = terms["p_mean"][:, 1:]
    spread = terms["p_samples"][:, 1:] - p_mean
    p_exact_mean = p_mean - spread / (n_samples - 1)
    # each bin's difference in units of its average P(m*), so that bins can be pooled
    x = (terms["p_cross_mean"][:, 1:] - p_exact_mean) / p_exact_mean.mean(axis=0)
    num, bins = x.shape
    se = x.std(axis=0, ddof=1) / np.sqrt(num)
    k = terms["k"][1:]
    out: dict[str, np.ndarray | float] = {
        "k": k,
        "slope": terms["p_cross_mean"][:, 1:].sum(axis=0) / p_exact_mean.sum(axis=0),
        "z": x.mean(axis=0) / se,
        "num_tests": num,
    }
    band_z, band_offset = [], []
    for low, high in BANDS:
        y = x[:, (k >= low) & (k < high)].mean(axis=1)
        band_offset.append(y.mean())
        band_z.append(y.mean() / (y.std(ddof=1) / np.sqrt(num)))
    out["band_offset"], out["band_z"] = np.array(band_offset), np.array(band_z)
    out["hotelling_p"] = float("nan")
    if num > bins:
        mu = x.mean(axis=0)
        t2 = mu @ np.linalg.solve(np.cov(x.T) / num, mu)
        out["hotelling_p"] = float(
            stats.f.sf((num - bins) / (bins * (num - 1)) * t2, bins, num - bins)
        )
    return out


def report(result: dict, title: str) -> None:
    print(f"{title}: {result['num_tests']} tests")
    for k, slope, z in zip(result["k"], result["slope"], result["z"], strict=True):
        print(f"  k = {k:.3f}: slope {slope:.3f}, z {z:+.2f}")
    for (low, high), offset, z in zip(BANDS, result["band_offset"], result["band_z"], strict=True):
        print(f"  k in [{low:.1f}, {high:.1f}): slope - 1 = {offset:+.4f}, z {z:+.2f}")
    print(f"  Hotelling's T^2 over all bins: p = {result['hotelling_p']:.3g}")


def control(num_tests: int = 100, num_samples: int = 32, side: int = 32, seed: int = 0) -> None:
    """White Gaussian prior x ~ N(0, 1), y = x + noise of std 1: exact posterior N(y / 2, 1 / 2)
    per pixel; and the same with means 10% too large."""
    rng = np.random.default_rng(seed)
    for title, scale in (("exact posterior", 1.0), ("means 10% too large (control)", 1.1)):
        rows = []
        for _ in range(num_tests):
            truth = rng.standard_normal((1, side, side))
            y = truth + rng.standard_normal(truth.shape)
            samples = scale * y / 2 + np.sqrt(0.5) * rng.standard_normal(
                (num_samples, *truth.shape)
            )
            rows.append(spectrum_terms(samples, truth))
        report(orthogonality(stack_terms(rows)), title)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", type=Path, nargs="?", help="a calibrate run's tests folder")
    parser.add_argument("--control", action="store_true", help="run the synthetic control")
    args = parser.parse_args(argv)
    if args.control:
        control()
        return 0
    if args.tests is None or not any(args.tests.glob("test_*.npz")):
        print(
            f"{args.tests}: no test_*.npz there (a calibrate run's tests folder?)", file=sys.stderr
        )
        return 2
    report(orthogonality(stack_terms(read_tests(args.tests))), str(args.tests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
