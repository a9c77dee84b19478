"""How close a trained denoiser is to the exact one, per noise level, on Gaussian random fields.

The prior must have been trained on GRF maps of a known spectrum (configs/train_grf_64.yaml uses
the default one). Fresh maps x0 are drawn from the exact GaussianPrior, noised at each sigma, and
    excess = E|D_net - D_exact|^2 / E|D_exact - x0|^2,
the network's error on top of the Bayes-optimal one (0 for a perfect denoiser). Prints a markdown
table (the README's); sigma is given in units of the data's pixel standard deviation.

    python benchmarks/learned_denoiser.py --prior runs/grf_64/lightning_logs/version_0/prior.pt
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.priors.network import NetworkPrior

SIGMAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True, help="prior file trained on GRF maps")
    parser.add_argument(
        "--power-spectrum", help="the spectrum it was trained on (default: shipped)"
    )
    parser.add_argument("--size", type=int, default=64, help="map side [pixels]")
    parser.add_argument("--num-maps", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--json", help="also write the rows here")
    return parser.parse_args()


def main() -> None:
    args = parse()
    shape = (1, args.size, args.size)
    if args.power_spectrum:
        exact = GaussianPrior.from_file(args.power_spectrum, shape)
    else:
        exact = GaussianPrior(default_power_spectrum(), shape)
    network = NetworkPrior.from_file(args.prior)
    network.check_fields(shape)
    std = exact.pixel_variance() ** 0.5
    generator = torch.Generator().manual_seed(args.seed)
    x0 = exact.sample(args.num_maps, generator)
    rows = []
    start = time.perf_counter()
    for sigma_in_std in SIGMAS:
        sigma = sigma_in_std * std
        noisy = x0 + sigma * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        d_exact = exact.denoise(noisy, sigma)
        with torch.no_grad():
            d_net = torch.cat([network.denoise(b, sigma) for b in noisy.split(args.batch_size)])
        bayes = float((d_exact - x0).square().mean())
        gap = float((d_net - d_exact).square().mean())
        rows.append(
            {
                "sigma_over_std": sigma_in_std,
                "bayes_mse_over_variance": bayes / std**2,
                "excess": gap / bayes,
                "net_mse_over_bayes_mse": float((d_net - x0).square().mean()) / bayes,
            }
        )
    seconds = time.perf_counter() - start
    print_table(rows, args, network)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "prior": network.identity(),
                    "seconds": seconds,
                    "machine": platform.processor() or platform.machine(),
                    "rows": rows,
                },
                f,
                indent=1,
            )


def print_table(rows: list[dict], args: argparse.Namespace, network: NetworkPrior) -> None:
    meta = network.metadata
    print(
        f"\n{args.size}x{args.size} GRF maps, {args.num_maps} per noise level; prior "
        f"{args.prior} ({meta.get('training_steps')} training steps)\n"
    )
    print("| sigma / pixel std | exact MSE / variance | excess E|D_net - D_exact|^2 / exact MSE |")
    print("|---|---|---|")
    for r in rows:
        print(
            f"| {r['sigma_over_std']:g} | {r['bayes_mse_over_variance']:.3g} | "
            f"{100 * r['excess']:.3f}% |"
        )


if __name__ == "__main__":
    main()
