"""Score prior files with `train`'s validation loss on fresh simulations, on the same footing.

`train` logs the validation loss of the weights it exports (the weighted EDM loss at fixed noise
levels from 0.01 to 30 data std; 1 would be the trivial denoiser) on its file's held-out maps.
A file made otherwise (fine-tuned, or its live weights exported) has no such number; this
computes it for each file given, on the same N simulations (seed `--seed`, never used in
training) and the same noise, in batches of 32 with noise seeded by batch index as `train` does.

    OMP_NUM_THREADS=1 python benchmarks/validation_loss.py posterior_diffusion/data/default_prior.pt \
        finetuned.pt --kind convergence --num 256
"""

from __future__ import annotations

import argparse

import torch

from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.simulators import simulate_fields
from posterior_diffusion.training.module import VALIDATION_SIGMAS, validation_losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("priors", nargs="+")
    parser.add_argument("--kind", default="convergence")
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--seed", type=int, default=99, help="a seed unused in training")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print("| prior | loss | " + " | ".join(f"sigma {s:g}" for s in VALIDATION_SIGMAS) + " |")
    print("|---" * (len(VALIDATION_SIGMAS) + 2) + "|")
    maps = None
    for path in args.priors:
        prior = NetworkPrior.from_file(path)
        if maps is None:
            extra = {"depth": prior.trained_shape[-1]} if args.kind == "density" else {}
            fields, _ = simulate_fields(
                args.kind, prior.trained_shape[-2:], args.num, args.seed, **extra
            )
            maps = torch.from_numpy(fields)[:, None].to(torch.float32)
        per_sigma = torch.zeros(len(VALIDATION_SIGMAS), dtype=torch.float64)
        with torch.no_grad():
            for index, start in enumerate(range(0, len(maps), args.batch)):
                batch = maps[start : start + args.batch]
                losses = validation_losses(prior.precond.eval(), batch, seed=index)
                per_sigma += len(batch) * torch.stack(losses).double()
        per_sigma /= len(maps)
        cells = " | ".join(f"{v:.4f}" for v in per_sigma.tolist())
        print(f"| {path} | {per_sigma.mean():.4f} | {cells} |")


if __name__ == "__main__":
    main()
