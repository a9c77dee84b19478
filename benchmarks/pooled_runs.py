"""Independent runs of an ensemble sampler, pooled, against one HMC reference.

`twisted`'s members descend from shared ancestors, so one run's members are correlated and
spread less than the posterior even where each member's own law is right; members of independent
runs are not. This runs K independent ensembles of n members (sampler seeds reference seed x 1000
+ k + offset), scores each run and their union against the reference's draws
(`nonlinear.score`): if the union comes out wider than any single run of the same total size,
the narrowness was the correlation, not the members' law.

    OMP_NUM_THREADS=1 python benchmarks/pooled_runs.py --prior PRIOR.pt \\
        --reference REFS/lognormal_lensing_seed0.npz --runs 4 --members 128 \\
        --options '{"wiener_twist_above": 3.0}' --json pooled.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import cpu_threads, refuse_existing, result_header, write_results
from hmc_references import load_reference
from nonlinear import score

from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.samplers.run import sample_posterior

KEPT = ("std_ratio", "coverage_minus_reference", "log_power_spread_ratio", "log_power_offset",
        "band_power_spread_ratios")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--members", type=int, default=128, help="per run")
    parser.add_argument("--sampler", default="twisted")
    parser.add_argument("--options", type=json.loads, default={}, help="sampler options, JSON")
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    refuse_existing(args.json)
    cpu_threads()
    prior = NetworkPrior.from_file(args.prior)
    reference, problem = load_reference(args.reference)
    seed = int(problem.params["seed"])
    results = result_header(args, "2-core CPU")
    pooled = []
    for k in range(args.runs):
        start = time.perf_counter()
        samples, info = sample_posterior(
            prior, problem.model, problem.y, args.members, sampler=args.sampler,
            seed=seed * 1000 + k + args.seed_offset, progress=False, options=args.options,
        )  # fmt: skip
        pooled.append(samples)
        draws = reference.sample(args.members, torch.Generator().manual_seed(seed))
        row = {name: value for name, value in score(samples, reference, draws, problem.truth).items()
               if name in KEPT}  # fmt: skip
        row.update(
            run=k, nfe_per_sample=info["nfe_per_sample"], seconds=time.perf_counter() - start
        )
        results["rows"].append(row)
        print(f"run {k}: {row}", flush=True)
    union = torch.cat(pooled)
    draws = reference.sample(len(union), torch.Generator().manual_seed(seed))
    row = {name: value for name, value in score(union, reference, draws, problem.truth).items()
           if name in KEPT}  # fmt: skip
    results["pooled"] = {**row, "members": len(union)}
    print(f"pooled ({len(union)} members): {row}", flush=True)
    if args.json:
        write_results(args.json, results)


if __name__ == "__main__":
    main()
