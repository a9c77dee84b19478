"""Is a sampler exact scale by scale? Its ensembles against the exact posterior per k bin (P2, lensing).

`exact_posterior.py` and the README's Gaussian table average over every pixel, which a few
wrong modes barely move: the 8 largest-scale Fourier modes of a 64 x 64 map are 0.2% of them.
Here, on test problem P2 (the default spectrum seen through shear, survey mask, shape noise),
K observations are drawn from the prior; for each, the exact posterior (mean m*, and the
variance of every Fourier mode from its covariance factor) and N sampler draws. Per |k| bin:

- mean slope: sum Re(conj(m*_k) m_k) / sum |m*_k|^2 over the bin's modes and the tests, with m the
  N draws' mean. The draws' Monte Carlo noise is independent of m*, so an exact sampler gives 1;
  a sampler that over- (under-) shrinks the mean on that scale gives below (above) 1.
- spread ratio: the draws' scatter about their own mean, sum |x_ik - m_k|^2 / (N - 1), over the
  exact posterior's variance of those modes; 1 for an exact sampler.

Errors are delete-one jackknife over the tests; with few tests they are too small (6
observations of exact draws gave z = -4.5 in one bin), so use 30 or more (48 by default).
`--control exact` puts N exact posterior draws in place of the sampler (the check passes an
exact sampler), `--control off` exact draws whose mean is 3% too small and whose variance is 4%
too small on every scale (the check sees an error of that size).
Exact posteriors are cached in `--cache` (dense linear algebra, the slow part at 64 x 64), so
sampler settings can be compared on the same observations.

    python benchmarks/exact_by_scale.py --num-obs 48 --num-samples 8 --control exact
    python benchmarks/exact_by_scale.py --num-obs 48 --num-samples 8 \
        --steps 96 --options '{"stochastic": true, "refine_moves": 200, "refine_sigma": 1.0}'
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from posterior_diffusion.diagnostics.spectra import azimuthal_average, k_bin_edges
from posterior_diffusion.references.gaussian import exact_posterior
from posterior_diffusion.references.gaussian_problems import gaussian_problem
from posterior_diffusion.samplers.run import sample_posterior

CONTROL_DRAWS = 32  # exact draws kept per observation for the controls


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="map side in pixels")
    parser.add_argument("--num-obs", type=int, default=48, help="K observations")
    parser.add_argument("--num-samples", type=int, default=8, help="N draws per observation")
    parser.add_argument("--sampler", default="guided")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the sampler's)")
    parser.add_argument("--options", type=json.loads, default={}, help="sampler options, JSON")
    parser.add_argument("--control", choices=["exact", "off"], help="exact draws instead")
    parser.add_argument("--bins", type=int, default=6, help="k bins shown (from the largest scale)")
    parser.add_argument("--seed", type=int, default=0, help="observations' seed")
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("exact_by_scale_cache"))
    parser.add_argument("--json", type=Path, help="also write the per-bin numbers here")
    return parser.parse_args(argv)


def mode_variances(sqrt_factor: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """E|fft2(x - m*)_k|^2 per Fourier mode for Cov = S S^T: sum over S's columns of |fft2|^2."""
    columns = sqrt_factor.T.reshape(-1, *shape)  # column j of S as a map
    total = torch.zeros(shape, dtype=torch.float64)
    for chunk in columns.split(512):
        total += torch.fft.fft2(chunk).abs().square().sum(0)
    return total.numpy()


def observation(args, prior, model, index: int) -> dict[str, np.ndarray]:
    """Truth, data, exact mean and per-mode variance of observation `index` (cached)."""
    path = args.cache / f"P2_{args.size}_seed{args.seed}_{index:04d}.npz"
    if path.is_file():
        with np.load(path) as kept:
            return {name: kept[name] for name in kept.files}
    g = torch.Generator().manual_seed(1000 * args.seed + index)
    truth = prior.sample(1, g)[0]
    y = model.simulate(truth, g)
    exact = exact_posterior(prior, model, y)
    out = {
        "truth": truth.numpy(),
        "y": y.numpy(),
        "mean": exact.mean.numpy(),
        "mode_variance": mode_variances(exact.sqrt_factor, (args.size, args.size)),
        # exact draws for the controls (the covariance factor itself is 128 MB)
        "draws": exact.sample(CONTROL_DRAWS, g).numpy(),
    }
    args.cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **out)
    tmp.rename(path)
    return out


def exact_draws(obs: dict, num: int, first: int, mean_scale=1.0, spread_scale=1.0) -> np.ndarray:
    """`num` of the cached exact draws from `first` on, optionally with their mean and their
    scatter about it scaled."""
    draws = obs["draws"][first : first + num]
    if len(draws) < num:
        raise SystemExit(f"the cache holds {CONTROL_DRAWS} exact draws per observation")
    return mean_scale * obs["mean"] + spread_scale * (draws - obs["mean"])


def per_test_terms(samples: np.ndarray, obs: dict, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Bin sums of Re(conj(m*) m), |m*|^2, the draws' scatter and the exact variance."""
    n = samples.shape[0]
    x_hat = np.fft.fft2(samples[:, 0])
    m_hat = x_hat.mean(0)
    e_hat = np.fft.fft2(obs["mean"][0])
    scatter = (np.abs(x_hat - m_hat) ** 2).sum(0) / (n - 1)
    grids = {
        "cross": (np.conj(e_hat) * m_hat).real,
        "exact_mean_power": np.abs(e_hat) ** 2,
        "scatter": scatter,
        "exact_variance": obs["mode_variance"],
    }
    out = {}
    for name, grid in grids.items():
        k, average, counts = azimuthal_average(grid, edges)
        out[name] = average * counts
    out["k"] = k
    return out


def jackknife_ratio(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sum num / sum den over tests (rows), and its delete-one jackknife error, per column."""
    k = num.shape[0]
    ratio = num.sum(0) / den.sum(0)
    loo = (num.sum(0) - num) / (den.sum(0) - den)
    se = np.sqrt((k - 1) / k * ((loo - loo.mean(0)) ** 2).sum(0))
    return ratio, se


def main(argv=None) -> int:
    args = parse(argv)
    size = args.size
    prior, model = gaussian_problem("P2", (size, size), seed=args.seed)
    edges = k_bin_edges(size, size)
    rows, seconds, info = [], 0.0, {}
    for index in range(args.num_obs):
        obs = observation(args, prior, model, index)
        seed = 10_000 * args.sampler_seed + index
        first = args.sampler_seed * args.num_samples  # --sampler-seed picks other cached draws
        if args.control == "exact":
            samples = exact_draws(obs, args.num_samples, first)
        elif args.control == "off":
            samples = exact_draws(obs, args.num_samples, first, 0.97, 0.98)
        else:
            start = time.perf_counter()
            draws, info = sample_posterior(
                prior,
                model,
                torch.from_numpy(obs["y"]),
                args.num_samples,
                sampler=args.sampler,
                steps=args.steps,
                seed=seed,
                progress=False,
                options=args.options,
            )
            seconds += time.perf_counter() - start
            samples = draws.numpy()
        rows.append(per_test_terms(samples, obs, edges))
        print(f"observation {index + 1}/{args.num_obs}", flush=True)
    stack = {name: np.array([r[name] for r in rows]) for name in rows[0] if name != "k"}
    k = rows[0]["k"]
    slope, slope_se = jackknife_ratio(stack["cross"], stack["exact_mean_power"])
    spread, spread_se = jackknife_ratio(stack["scatter"], stack["exact_variance"])
    z_slope, z_spread = (slope - 1) / slope_se, (spread - 1) / spread_se
    what = f"control '{args.control}'" if args.control else f"{args.sampler} {info.get('options')}"
    header = (
        f"P2 {size} x {size}, K = {args.num_obs}, N = {args.num_samples}, {what}, "
        f"steps {info.get('steps')}, {seconds / max(args.num_obs, 1):.1f} s per observation"
    )
    print(f"\n{header}\n")
    print("| k [cycles/pixel] | mean slope | z | spread ratio | z |")
    print("|---|---|---|---|---|")
    for b in range(1, 1 + args.bins):
        print(
            f"| {k[b]:.3f} | {slope[b]:.3f} +- {slope_se[b]:.3f} | {z_slope[b]:+.1f} | "
            f"{spread[b]:.3f} +- {spread_se[b]:.3f} | {z_spread[b]:+.1f} |"
        )
    rest = slice(1 + args.bins, None)
    print(
        f"\nbins {1 + args.bins}-{len(k) - 1}: mean slope {slope[rest].min():.3f}-"
        f"{slope[rest].max():.3f} (|z| <= {np.abs(z_slope[rest]).max():.1f}), spread ratio "
        f"{spread[rest].min():.3f}-{spread[rest].max():.3f} "
        f"(|z| <= {np.abs(z_spread[rest]).max():.1f})"
    )
    # bins hold different modes, nearly independent (the mask couples neighbours a little)
    for name, z in (("mean slope", z_slope[1:]), ("spread ratio", z_spread[1:])):
        chi2 = float((z**2).sum())
        print(
            f"{name}: chi^2 = {chi2:.1f} over {len(z)} bins, p = {stats.chi2.sf(chi2, len(z)):.3g}"
        )
    if args.json:
        result = {
            "args": {key: str(value) for key, value in vars(args).items()},
            "k": k.tolist(),
            "mean_slope": slope.tolist(),
            "mean_slope_se": slope_se.tolist(),
            "spread_ratio": spread.tolist(),
            "spread_ratio_se": spread_se.tolist(),
            "run": header,
            "machine": platform.processor() or platform.machine(),
            "seconds_per_observation": seconds / max(args.num_obs, 1),
            "threads": torch.get_num_threads(),
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
