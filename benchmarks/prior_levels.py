"""Where along the reverse SDE does a trained prior's power deficit arise?

At a noise level sigma, a draw's state x_sigma should be distributed as a simulation plus noise,
x0 + sigma n. The script draws N maps (reverse SDE, `prior_sde`'s) and, every `--every` steps,
compares the prior's denoised estimate of the draws, D(x_sigma), with its denoised estimate of N
simulations plus fresh noise, D(x0 + sigma n): the ratio of their mean power per k band. Ratios
of 1 all the way down mean the chain stays on the noisy marginal; the level where they first fall
is where the draws lose what the simulations have. Measured on the shipped default prior
(docs/default_prior.md, `--num 64 --every 20`): 0.59-0.83 at 4.7 data std, 0.86-0.91 at the end;
above ~10 data std D is mostly its response to the noise and the ratios are noisy.

    OMP_NUM_THREADS=1 python benchmarks/prior_levels.py \
        --prior posterior_diffusion/data/default_prior.pt --kind convergence --num 64
"""

from __future__ import annotations

import argparse
import json

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
    parser.add_argument("--every", type=int, default=10, help="compare every this many steps")
    parser.add_argument("--bins", type=int, default=6, help="k bins")
    parser.add_argument("--seed", type=int, default=99, help="a seed unused in training")
    parser.add_argument("--json", help="also write the numbers here")
    return parser.parse_args()


def denoised_in_batches(prior: NetworkPrior, x: torch.Tensor, sigma: float) -> np.ndarray:
    with torch.no_grad():
        parts = [prior.denoise(x[i : i + 64], sigma) for i in range(0, len(x), 64)]
    return torch.cat(parts)[:, 0].double().numpy()


def main() -> None:
    args = parse()
    prior = NetworkPrior.from_file(args.prior)
    c, h, w = prior.trained_shape
    sims, _ = simulate_fields(args.kind, (h, w), args.num, args.seed)
    data_std = float(sims.std())
    recorded: dict[int, tuple[float, np.ndarray]] = {}

    def record(state: dict) -> None:
        if state["i"] % args.every == 0:
            recorded[state["i"]] = (state["sigma"], state["denoised"][:, 0].double().numpy().copy())

    with torch.no_grad():
        drawn = prior_sde(
            prior, None, None, EnsembleRNG(args.seed, range(args.num)), args.steps, record,
            field_shape=(c, h, w),
        )  # fmt: skip
    k, p_sim, _ = power_spectrum(sims, num_bins=args.bins)
    final = power_spectrum(drawn[:, 0].double().numpy(), num_bins=args.bins)[1].mean(0)
    noise = torch.Generator().manual_seed(args.seed + 1)
    truth = torch.as_tensor(sims[:, None], dtype=torch.float32)
    rows = []
    for i, (sigma, denoised_draws) in sorted(recorded.items()):
        noisy = truth + sigma * torch.randn(truth.shape, generator=noise)
        denoised_sims = denoised_in_batches(prior, noisy, sigma)
        ratio = power_spectrum(denoised_draws, num_bins=args.bins)[1].mean(0) / power_spectrum(
            denoised_sims, num_bins=args.bins
        )[1].mean(0)
        rows.append({"step": i, "sigma_over_std": sigma / data_std, "ratio": ratio.tolist()})
    print(f"\n{args.num} draws of {h} x {w} from {args.prior}, {args.steps} SDE steps\n")
    print("| step | sigma / data std | " + " | ".join(f"k = {kk:.2f}" for kk in k) + " |")
    print("|---" * (len(k) + 2) + "|")
    for row in rows:
        cells = " | ".join(f"{r:.3f}" for r in row["ratio"])
        print(f"| {row['step']} | {row['sigma_over_std']:.3g} | {cells} |")
    final_ratio = final / p_sim.mean(0)
    print(
        "| final draws: P_prior / P_sim | | " + " | ".join(f"{r:.3f}" for r in final_ratio) + " |"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "k": k.tolist(), "levels": rows,
                 "final_ratio": final_ratio.tolist()}, f, indent=1,
            )  # fmt: skip


if __name__ == "__main__":
    main()
