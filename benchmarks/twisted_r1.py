"""The experimental `twisted` sampler on R1's mixtures with their components hidden.

Blind to the components (`MarginalDenoiser`: the mixture's denoiser and second moments only, as
a network trained on pooled simulations would have), against the exact posterior
(`references/compare.py`): component TV, coverage, std ratio, log-power spread, and the
sampler's own diagnostics (final and smallest ESS, resamplings, distinct members).
Method: docs/samplers.md, "`twisted`".

    OMP_NUM_THREADS=1 python benchmarks/twisted_r1.py --problems amplitude/mask \\
        --observations 6 --members 128 --json benchmarks/results_twisted_r1_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, result_header, write_results

from posterior_diffusion.references import mixture_exact_posterior
from posterior_diffusion.references.compare import LEVELS, compare_to_reference
from posterior_diffusion.references.mixture import MarginalDenoiser
from posterior_diffusion.references.problems import draw_observations, problem_from_name
from posterior_diffusion.samplers.run import sample_posterior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default="amplitude/mask")
    parser.add_argument("--observations", type=int, default=6)
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--levels", type=int, default=96)
    parser.add_argument(
        "--moves", type=int, help="Langevin moves after each resampling (default: the sampler's)"
    )
    parser.add_argument("--options", type=json.loads, default={}, help="more sampler options, JSON")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_threads()
    results = result_header(args, "2-core CPU")
    moves = {} if args.moves is None else {"moves": args.moves}
    for name in args.problems.split(","):
        prior, model = problem_from_name(name, (24, 32))
        for k, (truth, y) in enumerate(draw_observations(prior, model, args.observations, 0)):
            exact = mixture_exact_posterior(prior, model, y)
            reference = exact.sample(args.members, torch.Generator().manual_seed(2**32 + k))
            start = time.perf_counter()
            samples, info = sample_posterior(
                MarginalDenoiser(prior), model, y, args.members, sampler="twisted", seed=1000 + k,
                steps=args.levels, progress=False, options={**moves, **args.options},
            )  # fmt: skip
            seconds = time.perf_counter() - start
            diag = info["sampler_diagnostics"]
            diag["resamplings"] = len(diag["resampled_at_sigma"])
            c = compare_to_reference(samples, reference, truth, exact, LEVELS)
            row = {"problem": name, "observation": k, "omega": exact.weights.tolist(),
                   "nfe_per_sample": info["nfe_per_sample"], "seconds": seconds,
                   **diag, **c.as_dict()}  # fmt: skip
            results["rows"].append(row)
            print(
                f"{name} obs {k} omega {np.round(exact.weights.numpy(), 2)}: TV {c.component_tv:.3f} "
                f"(exact {c.reference_component_tv:.3f}, tol {c.component_tv_tolerance:.3f}), "
                f"log-power spread {c.log_power_spread_ratio:.2f}, std ratio {c.std_ratio:.3f}, "
                f"cov-ref {np.round(c.coverage_minus_reference, 3)}, NFE {row['nfe_per_sample']:.0f}, "
                f"ESS final {diag['final_ess']:.2f} min {diag['min_ess']:.2f}, resamplings "
                f"{diag['resamplings']}, unique {diag['unique_fraction']:.2f}, {seconds:.0f} s",
                flush=True,
            )
            if args.json:
                write_results(args.json, results)


if __name__ == "__main__":
    main()
