"""Calibration of every sampler against the exact posterior on P1 (mask + noise) and P2 (lensing).

For K observations drawn from the prior, each sampler draws N samples; exact posterior samples
(same N, same K) give the reference coverage. Prints a markdown table (the README's).

    python benchmarks/exact_posterior.py --size 64 --num-obs 10 --num-samples 256

With `--prior FILE` the samplers use a trained prior (truths and exact posteriors stay analytic);
`--spectrum default` gives P1 the default spectrum, which the GRF training config uses.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.references.gaussian import exact_posterior
from posterior_diffusion.references.gaussian_problems import (
    LEVELS,
    compare_to_exact,
    gaussian_problem,
    interval_coverage,
)
from posterior_diffusion.samplers.run import sample_posterior


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="map side in pixels")
    parser.add_argument("--problems", nargs="+", default=["P1", "P2"])
    parser.add_argument("--samplers", nargs="+", default=["guided", "split_gibbs", "dps"])
    parser.add_argument("--num-obs", type=int, default=10, help="K observations per problem")
    parser.add_argument("--num-samples", type=int, default=256, help="N samples per observation")
    parser.add_argument(
        "--steps", type=json.loads, default={}, help='JSON, e.g. {"guided": 48, "dps": 1000}'
    )
    parser.add_argument(
        "--options", type=json.loads, default={}, help='JSON, e.g. {"guided": {"cg_max_iter": 3}}'
    )
    parser.add_argument("--prior", help="a trained prior file for the samplers (default: exact)")
    parser.add_argument(
        "--spectrum",
        default="problem",
        choices=["problem", "default"],
        help="P1's spectrum: its own or the default one (P2 always the default)",
    )
    parser.add_argument("--batch-size", type=int, help="samples per sampler batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--table-from", help="only print the table of a --json file")
    return parser.parse_args()


def main() -> None:
    args = parse()
    if args.table_from:
        with open(args.table_from) as f:
            saved = json.load(f)
        print_table(saved["rows"], argparse.Namespace(**saved["args"]))
        return
    rows = []
    for problem in args.problems:
        prior, model = gaussian_problem(
            problem, (args.size, args.size), seed=args.seed, spectrum=args.spectrum
        )
        sampling_prior = prior
        if args.prior:
            sampling_prior = NetworkPrior.from_file(args.prior)
            sampling_prior.check_fields(model.field_shape)
        cases = []
        for k in range(args.num_obs):
            g = torch.Generator().manual_seed(1000 * args.seed + k)
            truth = prior.sample(1, g)[0]
            y = model.simulate(truth, g)
            exact = exact_posterior(prior, model, y)
            reference = exact.sample(args.num_samples, g)
            cases.append((truth, y, exact, interval_coverage(reference, truth)))
        exact_cov = [sum(c[3][j] for c in cases) / len(cases) for j in range(len(LEVELS))]
        rows.append({"problem": problem, "sampler": "exact", "coverage": exact_cov})
        for name in args.samplers:
            z, ratio, cov, seconds, nfe = [], [], [[] for _ in LEVELS], 0.0, 0.0
            for k, (truth, y, exact, _) in enumerate(cases):
                start = time.perf_counter()
                samples, info = sample_posterior(
                    sampling_prior,
                    model,
                    y,
                    args.num_samples,
                    sampler=name,
                    steps=args.steps.get(name),
                    seed=k,
                    device=args.device,
                    batch_size=args.batch_size,
                    progress=False,
                    options=args.options.get(name),
                )
                seconds += time.perf_counter() - start
                nfe = info["nfe_per_sample"]
                comparison = compare_to_exact(samples, exact, whitened=False)
                z.append(comparison.z_mean)
                ratio.append(comparison.std_ratio)
                for j, c in enumerate(interval_coverage(samples, truth)):
                    cov[j].append(c)
            rows.append(
                {
                    "problem": problem,
                    "sampler": name,
                    "steps": info["steps"],
                    "options": info["options"],
                    "nfe_per_sample": nfe,
                    "seconds_per_sample": seconds / (args.num_obs * args.num_samples),
                    "z_mean": sum(z) / len(z),
                    "std_ratio": sum(ratio) / len(ratio),
                    "coverage": [sum(c) / len(c) for c in cov],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "machine": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(),
                    "rows": rows,
                },
                f,
                indent=1,
            )


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    """Coverage minus nominal for every row; the target compares a sampler with the exact row."""
    print(
        f"\n{args.size}x{args.size}, K = {args.num_obs} observations, N = {args.num_samples} "
        f"samples each, device {args.device} ({torch.get_num_threads()} threads), "
        f"prior {getattr(args, 'prior', None) or 'exact (analytic)'}\n"
    )
    levels = " | ".join(f"cov-nom {int(100 * lv)}%" for lv in LEVELS)
    print(f"| problem | sampler | steps | NFE/sample | s/sample | z_mean | std ratio | {levels} |")
    print("|" + "---|" * (7 + len(LEVELS)))
    for r in rows:
        diffs = " | ".join(f"{c - lv:+.3f}" for c, lv in zip(r["coverage"], LEVELS, strict=True))
        if r["sampler"] == "exact":
            print(f"| {r['problem']} | exact samples | | | | | | {diffs} |")
            continue
        print(
            f"| {r['problem']} | {r['sampler']} | {r['steps']} | {r['nfe_per_sample']:.0f} | "
            f"{r['seconds_per_sample']:.4f} | {r['z_mean']:.3f} | {r['std_ratio']:.3f} | {diffs} |"
        )


if __name__ == "__main__":
    main()
