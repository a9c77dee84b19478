"""Could pixel noise left in a prior's draws make its excess of low peaks? Simulations with and
without white noise of a few % of their pixel std, counted as `prior_samples.py` counts peaks.

The default prior's 1,024 draws have 1.6 peaks per map too many at 0-1 map std (noiseless) and
0.29 too many at S/N 0-1 (the lensing default's shape noise, 2-pixel smoothing) against 16,384
simulations (docs/default_prior.md). Noise the sampler failed to remove would be white at the
pixel scale; this measures how much of it each excess would take and what it would do to the
power at high k. Paired: the same simulations, the same shape noise, with and without it.

    OMP_NUM_THREADS=1 python benchmarks/peaks_white_noise.py --reference 4096 --levels 0.02 0.04 0.08 \
        --json benchmarks/results_default_prior_peaks_white_noise.json
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from prior_samples import PEAK_EDGES, SNR_NOISE_SEEDS, peaks_per_map, snr_peaks_per_map
from small_scale_texture import power_2d

from posterior_diffusion.simulators import simulate_fields

K_RANGES = ((0.2, 0.3), (0.4, 0.71))  # |k| [cycles/pixel] where the power change is reported


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="convergence")
    parser.add_argument("--reference", type=int, default=4096, help="simulations")
    parser.add_argument("--reference-seed", type=int, default=200)
    parser.add_argument("--noise-seed", type=int, default=1)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.02, 0.04, 0.08],
                        help="white-noise std in units of the simulations' pixel std")  # fmt: skip
    parser.add_argument("--snr-smoothing", type=float, default=2.0)
    parser.add_argument("--json", help="also write the numbers here")
    return parser.parse_args()


def paired(before: np.ndarray, after: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean per-map change per bin and its error (per-map differences' std / sqrt(M))."""
    diff = after - before
    return diff.mean(0).tolist(), (diff.std(0) / np.sqrt(len(diff))).tolist()


def with_errors(values: list[float], errors: list[float]) -> str:
    return " / ".join(f"{v:+.3f} +- {e:.3f}" for v, e in zip(values, errors, strict=True))


def ring_power(maps: np.ndarray) -> list[float]:
    power, k = power_2d(maps)
    mean = power.mean(0)
    return [float(mean[(k >= lo) & (k < hi)].sum()) for lo, hi in K_RANGES]


def main() -> None:
    args = parse()
    if args.json and os.path.exists(args.json):  # refused before the work, never overwritten
        raise SystemExit(f"{args.json}: exists; give a new path")
    sims, _ = simulate_fields(args.kind, (64, 64), args.reference, args.reference_seed)
    std = float(sims.std())
    seed = SNR_NOISE_SEEDS["simulations"]
    peaks0 = peaks_per_map(sims, std)
    snr0 = snr_peaks_per_map(sims, args.snr_smoothing, seed)
    power0 = ring_power(sims)
    rows = []
    print(f"{len(sims)} simulations; peak bins {PEAK_EDGES} (map std; S/N)")
    print("| white noise / pixel std | noiseless peaks per map, change | S/N peaks, change "
          "| P ratio, k 0.2-0.3 / > 0.4 |\n|---|---|---|---|")  # fmt: skip
    for level in args.levels:
        rng = np.random.default_rng(args.noise_seed)
        noisy = sims + rng.standard_normal(sims.shape) * level * std
        peaks, peaks_err = paired(peaks0, peaks_per_map(noisy, std))
        snr, snr_err = paired(snr0, snr_peaks_per_map(noisy, args.snr_smoothing, seed))
        ratios = [p / p0 for p, p0 in zip(ring_power(noisy), power0, strict=True)]
        rows.append({"level": level, "peaks_change": peaks, "peaks_error": peaks_err,
                     "snr_peaks_change": snr, "snr_peaks_error": snr_err,
                     "power_ratio": dict(zip(map(str, K_RANGES), ratios, strict=True))})  # fmt: skip
        print(f"| {level:g} | {with_errors(peaks, peaks_err)} | {with_errors(snr, snr_err)} "
              f"| {ratios[0]:.4f} / {ratios[1]:.4f} |")  # fmt: skip
    if args.json:
        with open(args.json, "x") as f:  # never overwrite an earlier measurement
            json.dump({"simulations": len(sims), "reference_seed": args.reference_seed,
                       "pixel_std": std, "rows": rows}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
