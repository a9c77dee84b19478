"""At which noise level does `guided` leave a trained prior's own posterior?

`self_consistency.py` ranks a truth drawn from the prior among the final members. The same holds
at every level of the reverse process: if the members at sigma follow p(x_sigma | y), then the
truth noised to that level, x0 + sigma z, is one more draw of p(x_sigma | y) and ranks uniformly
among them. So any statistic of x_sigma, here the log total power and three log band powers of
the prior's own denoised estimate D(x_sigma, sigma), gives an offset (truth minus the members'
mean) and a spread at each level; the level where the offset first departs from 0 is where the
sampler's error is made. The last row is the final members (sigma = 0, statistics of the maps).

    OMP_NUM_THREADS=1 python benchmarks/level_consistency.py --prior PRIOR.pt --tests 40 \\
        --members 16 --json levels.json

Progress is saved to the JSON after every test; rerunning with the same settings resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, result_header, resumed_tests, write_results
from self_consistency import STATISTICS, global_statistics, spread, truth_zscores

from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.references.gold_standard import lognormal_problem
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers.guided import guided


def level_statistics(prior, x: torch.Tensor, sigma: float) -> np.ndarray:
    """(M, 1, H, W) at noise level sigma -> (M, 4): statistics of D(x, sigma) (of x at 0)."""
    if sigma > 0:
        with torch.no_grad():
            x = prior.denoise(x.float(), sigma)
    return global_statistics(x.double().numpy())


def guided_levels(prior, model, y, seed: int, args) -> tuple[list, list, torch.Tensor]:
    """`guided` (reverse SDE) on y with member streams (seed, i): the levels recorded, the
    members there, and the final members."""
    levels, recorded = [], {}

    def on_step(state: dict) -> None:
        if state.get("refine_move"):  # a refinement move's progress report, not a level
            return
        levels.append(state["sigma"])
        if state["i"] % args.every == args.every - 1 and state["i"] + 1 < args.steps:
            recorded[state["i"]] = state["x"].clone()

    rng = EnsembleRNG(seed, range(args.members), "cpu")
    final = guided(
        prior, model, y, rng, args.steps, on_step, **{"stochastic": True, **args.options}
    )
    grid = levels + [0.0]  # step i ends at level i + 1
    steps = sorted(recorded)
    return [grid[i + 1] for i in steps], [recorded[i] for i in steps], final


def summarise(tests: list[dict], members: int) -> list[dict]:
    truth = np.array([t["truth"] for t in tests])  # (K, L, 4)
    samples = np.array([t["members"] for t in tests])  # (K, L, N, 4)
    z = truth_zscores(truth, samples)
    offset = truth - samples.mean(2)
    rows = []
    for level, sigma in enumerate(tests[0]["sigmas"]):
        row = {"sigma": sigma, "sigma_over_data_std": sigma / tests[0]["data_std"]}
        for i, name in enumerate(STATISTICS):
            ratio, error = spread(z[:, level, i], members)
            row[name] = {
                "offset": float(offset[:, level, i].mean()),
                "offset_error": float(offset[:, level, i].std(ddof=1) / np.sqrt(len(tests))),
                "spread": ratio,
                "spread_error": error,
            }
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", required=True, help="a trained prior's file")
    parser.add_argument("--field", default="lensing", choices=("lensing", "mask"))
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--every", type=int, default=8, help="record every this many steps")
    parser.add_argument("--options", type=json.loads, default={}, help="guided's options, JSON")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    cpu_threads()
    problem = lognormal_problem(args.field, (24, 32), seed=0)
    prior = NetworkPrior.from_file(args.prior)
    results = result_header(args, "2-core CPU")
    done = resumed_tests(args.json, results)
    with torch.no_grad():  # drawn as self_consistency.py --truths prior draws them
        truths = prior.sample(args.tests, generator=torch.Generator().manual_seed(4242)).double()
    start, first = time.perf_counter(), len(done)
    for t in range(first, args.tests):
        truth = truths[t]
        y = problem.model.simulate(truth, torch.Generator().manual_seed(10_000 + t))
        sigmas, recorded, final = guided_levels(prior, problem.model, y, t, args)
        noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(20_000 + t))
        truth_rows, member_rows = [], []
        for sigma, members in zip(sigmas, recorded, strict=True):
            noised = (truth + sigma * noise.double())[None]
            both = level_statistics(prior, torch.cat([noised, members.double()]), sigma)  # one call
            truth_rows.append(both[0].tolist())
            member_rows.append(both[1:].tolist())
        truth_rows.append(global_statistics(truth.numpy()[None])[0].tolist())
        member_rows.append(global_statistics(final.double().numpy()).tolist())
        done.append({
            "sigmas": sigmas + [0.0], "data_std": prior.data_std(),
            "truth": truth_rows, "members": member_rows,
        })  # fmt: skip
        results["tests_done"] = done
        if len(done) >= 5:
            results["summary"] = summarise(done, args.members)
        write_results(args.json, results)
        rate = (time.perf_counter() - start) / (t + 1 - first)
        eta = rate * (args.tests - t - 1) / 60
        print(f"test {t + 1}/{args.tests}, {rate:.1f} s per test, ETA {eta:.0f} min", flush=True)
    for row in summarise(done, args.members):
        cells = ", ".join(
            f"{name} {row[name]['offset']:+.3f}+-{row[name]['offset_error']:.3f} "
            f"(spread {row[name]['spread']:.2f})"
            for name in STATISTICS
        )
        print(f"sigma/std {row['sigma_over_data_std']:8.3f}: {cells}", flush=True)


if __name__ == "__main__":
    main()
