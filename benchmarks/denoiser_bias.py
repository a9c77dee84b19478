"""Is a trained denoiser the posterior mean? Its regression slope on fresh simulations, per scale.

The exact denoiser D(x) = E[x0 | x] is orthogonal to its error: E[(x0 - D) f(x)] = 0 for every f,
so in particular, per Fourier mode, E[x0_k conj(D_k)] = E[|D_k|^2] and the least-squares slope
beta(sigma, k) = Re E[x0_k conj(D_k)] / E[|D_k|^2] is exactly 1. A network whose estimate is
shrunk (beta > 1) under-predicts what the data support at that scale and noise level, and draws
by the reverse SDE then carry too little power. Held-out simulations (a seed unused in training)
plus fresh noise at each level; slopes per radial k band with their bootstrap errors.

    OMP_NUM_THREADS=1 python benchmarks/denoiser_bias.py --prior posterior_diffusion/data/default_prior.pt \
        --kind convergence --num 256 --json slopes.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.simulators import simulate_fields


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True)
    parser.add_argument("--kind", default="convergence", help="simulator kind it was trained on")
    parser.add_argument("--num", type=int, default=256, help="held-out simulations")
    parser.add_argument("--seed", type=int, default=98, help="a seed unused in training")
    parser.add_argument(
        "--levels", type=float, nargs="+",
        default=[0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0],
        help="noise levels in data std",
    )  # fmt: skip
    parser.add_argument("--bins", type=int, default=6, help="radial k bands")
    parser.add_argument("--json", help="also write the numbers here")
    return parser.parse_args()


def band_index(h: int, w: int, bins: int) -> np.ndarray:
    """Radial band (0..bins-1) of each rfft2 mode, -1 for k = 0; bands equal in |k| up to 0.5."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.rfftfreq(w), indexing="ij"))
    index = np.minimum((k / 0.5 * bins).astype(int), bins - 1)
    index[0, 0] = -1
    return index


def band_sums(
    x0: np.ndarray, denoised: np.ndarray, noisy: np.ndarray, index: np.ndarray, bins: int
):
    """Per-map sums per band of Re(x0_k conj(D_k)), |D_k|^2, |x0_k|^2 and Re((x0_k - D_k)
    conj(x_k)) for the noisy input x: (4, maps, bins)."""
    fx, fd, fn = np.fft.rfft2(x0), np.fft.rfft2(denoised), np.fft.rfft2(noisy)
    cross, dd, xx = (fx * fd.conj()).real, np.abs(fd) ** 2, np.abs(fx) ** 2
    drift = ((fx - fd) * fn.conj()).real
    return np.stack(
        [np.stack([a[:, index == b].sum(-1) for b in range(bins)], -1)
         for a in (cross, dd, xx, drift)]
    )  # fmt: skip


HEIGHTS = (-np.inf, 0.0, 2.0, 5.0, 10.0, 20.0, np.inf)  # noisy pixel value / data std


def height_residuals(x0, noisy, denoised, std) -> list[dict]:
    """Mean x0 - D over pixels binned by the noisy pixel's height (a function of the input, so
    the exact denoiser's mean residual is 0 in every bin), in data std, with its error."""
    out = []
    for lo, hi in zip(HEIGHTS[:-1], HEIGHTS[1:], strict=True):
        pick = (noisy >= lo * std) & (noisy < hi * std)
        n = int(pick.sum())
        if n < 2:
            out.append({"lo": lo, "hi": hi, "pixels": n})
            continue
        # Per-map means carry the error: pixels of one map are not independent.
        per_map = [((x0 - denoised)[m][pick[m]]).sum() for m in range(len(x0))]
        counts = pick.reshape(len(x0), -1).sum(1)
        mean = np.sum(per_map) / n
        err = np.std(np.array(per_map) - mean * counts) * np.sqrt(len(x0)) / n
        out.append({"lo": lo, "hi": hi, "pixels": n, "residual": mean / std, "error": err / std,
                    "x0_mean": float(x0[pick].mean() / std)})  # fmt: skip
    return out


def ratio_with_error(num: np.ndarray, den: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """sum(num) / sum(den) over maps (axis 0) per band, and its bootstrap error over maps."""
    picks = rng.integers(0, len(num), (200, len(num)))
    boot = [num[pick].sum(0) / den[pick].sum(0) for pick in picks]
    return num.sum(0) / den.sum(0), np.std(boot, axis=0)


def plus_minus(values: list[float], errors: list[float], spec: str) -> list[str]:
    return [f"{v:{spec}} +- {e:.3f}" for v, e in zip(values, errors, strict=True)]


def print_table(title: str, labels: list[str], rows: list[dict], cells) -> None:
    """A markdown table, one row per noise level, `cells(row)` its entries."""
    print(f"\n{title}\n")
    print(f"| sigma / std | {' | '.join(labels)} |")
    print("|---" * (len(labels) + 1) + "|")
    for row in rows:
        print(f"| {row['sigma_over_std']:g} | {' | '.join(cells(row))} |")


def main() -> None:
    args = parse()
    prior = NetworkPrior.from_file(args.prior)
    c, h, w = prior.trained_shape
    sims, _ = simulate_fields(args.kind, (h, w), args.num, args.seed)
    x0 = torch.from_numpy(sims).to(torch.float32)[:, None]
    std = prior.data_std()
    index = band_index(h, w, args.bins)
    edges = np.linspace(0, 0.5, args.bins + 1)
    gen = torch.Generator().manual_seed(args.seed)
    rows, rng = [], np.random.default_rng(args.seed)
    for level in args.levels:
        sigma = level * std
        noisy = x0 + sigma * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            denoised = torch.cat(
                [prior.denoise(noisy[i : i + 64], sigma) for i in range(0, len(noisy), 64)]
            )
        noisy_np, denoised_np = noisy[:, 0].double().numpy(), denoised[:, 0].double().numpy()
        cross, dd, xx, drift = band_sums(sims, denoised_np, noisy_np, index, args.bins)
        beta, beta_err = ratio_with_error(cross, dd, rng)
        # Stein: the exact score keeps each band's variance stationary, E[(x0 - D) x*] = 0; a
        # positive value (over the band's power) is a score that pulls its power down there.
        pull, pull_err = ratio_with_error(drift, xx, rng)
        rows.append({
            "sigma_over_std": level, "beta": beta.tolist(), "beta_error": beta_err.tolist(),
            "denoised_over_true_power": (dd.sum(0) / xx.sum(0)).tolist(),
            "pull": pull.tolist(), "pull_error": pull_err.tolist(),
            "by_height": height_residuals(sims, noisy_np, denoised_np, std),
        })  # fmt: skip
    print(f"\n{args.num} held-out {args.kind} maps of {h} x {w}; prior {args.prior}")
    bands = [f"k {lo:.2f}-{hi:.2f}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    print_table(
        "slope beta = Re<x0_k D_k*> / <|D_k|^2> per band (exact denoiser: 1)", bands, rows,
        lambda row: plus_minus(row["beta"], row["beta_error"], ".3f"),
    )  # fmt: skip
    print_table(
        "Re<(x0_k - D_k) x_k*> / <|x0_k|^2> per band (exact: 0; > 0 pulls the band's power down)",
        bands, rows,
        lambda row: plus_minus(row["pull"], row["pull_error"], "+.3f"),
    )  # fmt: skip
    print_table(
        "mean x0 - D [data std] over pixels binned by the noisy value [data std] (exact: 0)",
        [f"{lo:g} to {hi:g}" for lo, hi in zip(HEIGHTS[:-1], HEIGHTS[1:], strict=True)], rows,
        lambda row: [f"{b['residual']:+.3f} +- {b['error']:.3f} ({b['pixels']})" if "residual" in b
                     else f"({b['pixels']})" for b in row["by_height"]],
    )  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "band_edges": edges.tolist(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
