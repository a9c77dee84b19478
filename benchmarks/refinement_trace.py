"""Where does `guided` lose the blind mixture's amplitude, and do refinement moves restore it?

On observations of the amplitude mixture of `self_consistency.py` (lensing, 24 x 32) whose
component weights omega are uncertain, this compares, by each member's log total power:
exact draws of p(x_sigma | y) (exact posterior draws plus sigma noise) with blind `guided`'s
members at the refinement level sigma, the same members after the refinement moves
(`samplers/refine.py`), and the final members with exact posterior draws.

    OMP_NUM_THREADS=1 python benchmarks/refinement_trace.py --moves 100 --sigma 0.3 \\
        --json benchmarks/results_refinement_trace_cpu.json
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, result_header, write_results
from self_consistency import make_prior

from posterior_diffusion.diagnostics.global_stats import log_total_power
from posterior_diffusion.references.gold_standard import lognormal_problem
from posterior_diffusion.references.mixture import MarginalDenoiser, mixture_exact_posterior
from posterior_diffusion.samplers.run import sample_posterior

# `posterior_diffusion.samplers` exports the function `guided`, which hides the module's name.
guided_module = importlib.import_module("posterior_diffusion.samplers.guided")


def recording(states: dict):
    """guided's refinement factory, wrapped to keep the members before and after the moves."""
    make = guided_module.noised_posterior_mala

    def factory(prior, likelihood, sigma, moves, *args, **kwargs):
        move = make(prior, likelihood, sigma, moves, *args, **kwargs)

        def recorded(x):
            states["before"], states["sigma"] = x.clone(), sigma
            states["after"] = move(x)
            return states["after"]

        return recorded

    return factory


def summary(x: torch.Tensor) -> list[float]:
    power = log_total_power(x.numpy())
    return [float(power.mean()), float(power.std(ddof=1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--moves", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.3, help="level, in data std")
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--observations", type=int, default=6, help="with max omega < 0.9")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_threads()
    problem = lognormal_problem("lensing", (24, 32), seed=0)
    prior = make_prior("mixture", problem)
    truths = prior.sample(60, generator=torch.Generator().manual_seed(4242)).double()
    states: dict = {}
    guided_module.noised_posterior_mala = recording(states)
    results = result_header(args, "2-core CPU")
    for t in range(len(truths)):
        if len(results["rows"]) == args.observations:
            break
        y = problem.model.simulate(truths[t], torch.Generator().manual_seed(10_000 + t))
        exact = mixture_exact_posterior(prior, problem.model, y)
        if float(exact.weights.max()) >= 0.9:
            continue
        samples, info = sample_posterior(
            MarginalDenoiser(prior), problem.model, y, args.members, seed=0, progress=False,
            batch_size=args.members,
            options={"refine_moves": args.moves, "refine_sigma": args.sigma},
        )  # fmt: skip
        x0 = exact.sample(args.members, torch.Generator().manual_seed(1))
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=x0.dtype)
        row = {
            "test": t,
            "omega": exact.weights.tolist(),
            "sigma": states["sigma"],
            "exact_x_sigma": summary(x0 + states["sigma"] * noise),
            "guided_x_sigma": summary(states["before"]),
            "after_moves": summary(states["after"]),
            "exact_x0": summary(x0),
            "final": summary(samples),
            "refinement": info["sampler_diagnostics"]["refinement"],
            "nfe_per_sample": info["nfe_per_sample"],
        }
        results["rows"].append(row)
        print(
            f"test {t} omega {np.round(row['omega'], 3)}: log power mean, sd at sigma "
            f"{row['sigma']:.3g}: exact {np.round(row['exact_x_sigma'], 3)}, guided "
            f"{np.round(row['guided_x_sigma'], 3)}, after moves {np.round(row['after_moves'], 3)}; "
            f"x0: exact {np.round(row['exact_x0'], 3)}, final {np.round(row['final'], 3)}",
            flush=True,
        )
    if args.json:
        write_results(args.json, results)


if __name__ == "__main__":
    main()
