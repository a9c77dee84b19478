"""Do the Langevin moves (`samplers/refine.py`) keep a multi-modal noised prior invariant?

Exact draws of the eight-amplitude mixture (R1's "loguniform" prior, 24 x 32) noised to sigma are
moved by `noised_posterior_mala` with data far below the noise (noise 1e4 prior std, so the
target is p_sigma alone). An invariant kernel leaves the share of draws in each component
(their mean responsibilities p(k | x_sigma)) and the mean power where they were, up to Monte
Carlo error (binomial, printed); the two ways of taking log p_sigma(x') - log p_sigma(x) from the
score are compared: the trapezoid rule on the end nodes and 4-point Gauss-Lobatto.

    OMP_NUM_THREADS=1 python benchmarks/move_invariance.py --draws 1024 --moves 40 \\
        --json benchmarks/results_move_invariance_cpu.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, result_header, write_results

from posterior_diffusion.likelihood import WhitenedLinearGaussian
from posterior_diffusion.references.problems import problem_from_name
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers.refine import MoveStatistics, noised_posterior_mala


def summary(prior, x: torch.Tensor, sigma: float) -> dict:
    shares = prior.responsibilities(x, sigma).mean(0)
    return {"component_shares": shares.tolist(), "mean_power": float(x.square().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--draws", type=int, default=1024)
    parser.add_argument("--moves", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_threads()
    results = result_header(args, "2-core CPU")
    prior, model = problem_from_name("loguniform/mask", (24, 32), noise=1e4)
    generator = torch.Generator().manual_seed(7)
    y = model.simulate(prior.sample(1, generator)[0], generator)
    likelihood = WhitenedLinearGaussian(model, y)
    shape = tuple(model.field_shape)
    draws = prior.sample(args.draws, generator)
    x = draws + args.sigma * torch.randn(draws.shape, generator=generator, dtype=draws.dtype)
    before = summary(prior, x, args.sigma)
    se = np.sqrt(np.array(before["component_shares"]) * (1 - np.array(before["component_shares"])))
    results["exact_draws"] = {**before, "share_se": (se / np.sqrt(args.draws)).tolist()}
    print(f"exact draws: shares {np.round(before['component_shares'], 3)}, "
          f"mean power {before['mean_power']:.4f}")  # fmt: skip
    for energy in ("trapezoid", "lobatto"):
        rng = EnsembleRNG(3, range(args.draws))
        statistics = MoveStatistics(sigma=args.sigma)
        move = noised_posterior_mala(
            prior, likelihood, args.sigma, args.moves, lambda rng=rng: rng.randn(shape),
            lambda rng=rng: rng.rand(()), statistics, scale_moves=False, energy=energy,
        )  # fmt: skip
        after = {**summary(prior, move(x), args.sigma), **statistics.as_dict()}
        results[energy] = after
        print(f"{energy}: shares {np.round(after['component_shares'], 3)}, mean power "
              f"{after['mean_power']:.4f}, acceptance {after['acceptance']:.2f}")  # fmt: skip
    if args.json:
        write_results(args.json, results)


if __name__ == "__main__":
    main()
