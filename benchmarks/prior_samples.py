"""Does a trained prior draw maps like its training set? P(k) and one-point statistics.

Draws N maps from the prior (reverse SDE, `prior_sde`) and compares them with N held-out
simulations of the same kind: the ratio of mean power spectra per k bin (with its sample-variance
error), and mean, standard deviation, skewness and the 0.1% / 99.9% quantiles of pixel values.
Prints a markdown table (docs/default_prior.md's).

    python benchmarks/prior_samples.py --prior posterior_diffusion/data/default_prior.pt \
        --kind convergence --num 64
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from posterior_diffusion.diagnostics import power_spectrum
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers.unconditional import prior_sde
from posterior_diffusion.simulators import simulate_fields


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True)
    parser.add_argument("--kind", default="convergence", help="simulator kind it was trained on")
    parser.add_argument("--num", type=int, default=64, help="maps from each side")
    parser.add_argument("--steps", type=int, default=200, help="reverse-SDE steps")
    parser.add_argument("--seed", type=int, default=99, help="a seed unused in training")
    parser.add_argument("--bins", type=int, default=12, help="k bins of the P(k) table")
    parser.add_argument("--json", help="also write the numbers here")
    return parser.parse_args()


def moments(maps: np.ndarray) -> dict[str, float]:
    x = maps.reshape(len(maps), -1)
    centred = x - x.mean()
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "skewness": float((centred**3).mean() / x.std() ** 3),
        "q0.001": float(np.quantile(x, 0.001)),
        "q0.999": float(np.quantile(x, 0.999)),
    }


def main() -> None:
    args = parse()
    prior = NetworkPrior.from_file(args.prior)
    c, h, w = prior.trained_shape
    sims, _ = simulate_fields(args.kind, (h, w), args.num, args.seed)
    start = time.perf_counter()
    with torch.no_grad():
        drawn = prior_sde(
            prior,
            None,
            None,
            EnsembleRNG(args.seed, range(args.num)),
            args.steps,
            field_shape=(c, h, w),
        )
    seconds = time.perf_counter() - start
    drawn = drawn[:, 0].numpy()
    k, p_sim, _ = power_spectrum(sims, num_bins=args.bins)
    _, p_prior, _ = power_spectrum(drawn, num_bins=args.bins)
    p_sim_mean, p_prior_mean = p_sim.mean(0), p_prior.mean(0)
    # Each map's bin power scatters by the cosmic variance; the ratio of two N-map means has
    # relative error sqrt(var_sim / mean_sim^2 + var_prior / mean_prior^2) / sqrt(N).
    rel_err = np.sqrt(p_sim.var(0) / p_sim_mean**2 + p_prior.var(0) / p_prior_mean**2) / np.sqrt(
        args.num
    )
    ratio = p_prior_mean / p_sim_mean
    stats = {"simulations": moments(sims), "prior": moments(drawn)}
    print(
        f"\n{args.num} maps each; prior {args.prior}; {args.steps} SDE steps, "
        f"{seconds / args.num:.2f} s per map\n"
    )
    print("| k [cycles/pixel] | P_prior / P_sim | error |")
    print("|---|---|---|")
    for kk, r, e in zip(k, ratio, rel_err, strict=True):
        print(f"| {kk:.3f} | {r:.3f} | {e:.3f} |")
    print("\n| statistic | simulations | prior samples |")
    print("|---|---|---|")
    for key in stats["simulations"]:
        print(f"| {key} | {stats['simulations'][key]:.4g} | {stats['prior'][key]:.4g} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "k": k.tolist(),
                    "ratio": ratio.tolist(),
                    "ratio_error": rel_err.tolist(),
                    "stats": stats,
                    "seconds_per_map": seconds / args.num,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
