"""Samplers against exact non-Gaussian posteriors: the R1 Gaussian-field mixture problems.

For each problem ("prior/model", `posterior_diffusion/references/problems.py`) and each of K
observations drawn from its prior, the exact posterior sum_k omega_k(y) N(mu_k, S_k) gives N
reference draws; each sampler draws N members, compared by `compare_to_reference`: per-pixel
coverage of the truth minus the reference's, median std ratio, the total-variation distance of
the ensemble's component fractions from omega (against the TV that N exact draws stay below with
probability 0.999), and the spread of each sample's log total power. The "exact" row is a second
set of N exact draws: what sampling noise alone gives. Prints a markdown table (ranges over the
K observations).

    python benchmarks/non_gaussian.py --problems amplitude/mask,loguniform/mask \\
        --samplers guided,split_gibbs,dps --restrict dps=amplitude/mask \\
        --observations 3 --members 64 --json benchmarks/results_non_gaussian_cpu.json
    python benchmarks/non_gaussian.py --table-from benchmarks/results_non_gaussian_cpu.json

Sampler names are those of `posterior_diffusion.samplers` (a new one runs by its name);
"blind:NAME" runs NAME with the mixture's latent components hidden (`MarginalDenoiser`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_threads, refuse, result_header  # noqa: E402

from posterior_diffusion.references.compare import LEVELS, compare_to_reference  # noqa: E402
from posterior_diffusion.references.mixture import (  # noqa: E402
    MarginalDenoiser,
    mixture_exact_posterior,
)
from posterior_diffusion.references.problems import (  # noqa: E402
    PROBLEMS,
    draw_observations,
    problem_from_name,
)
from posterior_diffusion.rng import member_seed  # noqa: E402
from posterior_diffusion.samplers.run import sample_posterior  # noqa: E402

# A sampler named "blind:NAME" runs NAME on the mixture's marginal denoiser, its components
# hidden (`MarginalDenoiser`): a prior trained on pooled simulations is in that position.
BLIND = "blind:"

# Random-stream tags of the exact draws, kept apart from the observations' streams (0..K-1).
REFERENCE_STREAM = 2**32
EXACT_ROW_STREAM = 2**33


def names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def per_sampler(text: str) -> dict[str, int]:
    """'guided=48,dps=500' -> {'guided': 48, 'dps': 500}."""
    out = {}
    for item in names(text):
        name, _, value = item.partition("=")
        out[name] = int(value)
    return out


def restrictions(items: list[str]) -> dict[str, set[str]]:
    """['dps=amplitude/mask+slope/mask'] -> {'dps': {'amplitude/mask', 'slope/mask'}}."""
    out: dict[str, set[str]] = {}
    for item in items:
        name, sep, problems = item.partition("=")
        if not sep:
            refuse(f"--restrict takes SAMPLER=PROBLEM[+PROBLEM...], got '{item}'")
        out.setdefault(name, set()).update(p for p in problems.split("+") if p)
    return out


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", default="guided,split_gibbs,dps", help="comma-separated")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated")
    parser.add_argument(
        "--restrict",
        action="append",
        default=[],
        metavar="SAMPLER=PROBLEM[+PROBLEM]",
        help="run SAMPLER only on these problems (repeatable; e.g. dps=amplitude/mask)",
    )
    parser.add_argument("--observations", type=int, default=6, help="K observations per problem")
    parser.add_argument("--members", type=int, default=128, help="N samples per observation")
    parser.add_argument("--shape", type=int, nargs=2, default=[24, 32], metavar=("H", "W"))
    parser.add_argument("--steps", default="", help="per sampler, e.g. guided=48,dps=500")
    parser.add_argument(
        "--options", type=json.loads, default={}, help='JSON, e.g. {"guided": {"cg_max_iter": 3}}'
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the observations")
    parser.add_argument("--mask-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, help="noise in prior pixel std (default: R1's)")
    parser.add_argument("--batch-size", type=int, help="members per sampler batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here (after each problem)")
    parser.add_argument("--table-from", type=Path, help="only print the table of a --json file")
    return parser.parse_args()


def run_problem(name: str, args: argparse.Namespace, samplers: list[str]) -> list[dict]:
    prior, model = problem_from_name(name, tuple(args.shape), seed=args.mask_seed, noise=args.noise)
    steps = per_sampler(args.steps)
    rows = []
    observations = draw_observations(prior, model, args.observations, seed=args.seed)
    for k, (truth, y) in enumerate(observations):
        exact = mixture_exact_posterior(prior, model, y)
        omega = exact.weights.tolist()
        print(f"{name} observation {k}: omega {weights(omega, 3)}")
        reference_stream = member_seed(args.seed, REFERENCE_STREAM + k)
        reference = exact.sample(args.members, torch.Generator().manual_seed(reference_stream))
        base = {"problem": name, "observation": k, "omega": omega}

        start = time.perf_counter()
        exact_stream = member_seed(args.seed, EXACT_ROW_STREAM + k)
        again = exact.sample(args.members, torch.Generator().manual_seed(exact_stream))
        seconds = time.perf_counter() - start
        comparison = compare_to_reference(again, reference, truth, exact, LEVELS)
        rows.append(
            {
                **base,
                "sampler": "exact",
                "steps": None,
                "nfe_per_sample": 0.0,
                "seconds_per_sample": seconds / args.members,
                **comparison.as_dict(),
            }
        )
        for sampler in samplers:
            blind, name_only = sampler.startswith(BLIND), sampler.removeprefix(BLIND)
            samples, info = sample_posterior(
                MarginalDenoiser(prior) if blind else prior,
                model,
                y,
                args.members,
                sampler=name_only,
                steps=steps.get(sampler),
                seed=1000 * args.seed + k,
                batch_size=args.batch_size,
                device=args.device,
                progress=False,
                options=args.options.get(sampler),
            )
            comparison = compare_to_reference(samples, reference, truth, exact, LEVELS)
            rows.append(
                {
                    **base,
                    "sampler": sampler,
                    "steps": info["steps"],
                    "options": info["options"],
                    "nfe_per_sample": info["nfe_per_sample"],
                    "seconds_per_sample": info["seconds"] / args.members,
                    **comparison.as_dict(),
                }
            )
            print(
                f"  {sampler}: TV {comparison.component_tv:.3f} (exact draws "
                f"{comparison.reference_component_tv:.3f}, tolerance "
                f"{comparison.component_tv_tolerance:.3f}), log-power spread ratio "
                f"{comparison.log_power_spread_ratio:.2f}, std ratio {comparison.std_ratio:.3f}, "
                f"{info['seconds']:.1f} s",
                flush=True,
            )
    return rows


def weights(omega, precision: int) -> str:
    """omega in fixed point, weights below the last digit shown as 0 (loguniform's reach 1e-100)."""
    return np.array2string(
        np.asarray(omega),
        precision=precision,
        suppress_small=True,
        floatmode="fixed",
        max_line_width=200,
    )


def span(values, fmt: str) -> str:
    """'lo..hi' of the values (one value if they agree to the format)."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}..{hi}"


def table(result: dict) -> str:
    rows = result["rows"]
    settings = result["settings"]
    lines = [
        f"{result['hardware']}; torch {result['torch']}; {settings}",
        "",
        f"Grid {settings['shape'][0]} x {settings['shape'][1]}, K = {settings['observations']} "
        f"observations per problem, N = {settings['members']} members. Ranges are over the K "
        "observations. cov-ref: coverage of the truth by central intervals minus that of N exact "
        "draws; TV: component fractions against omega(y), with 'fail' counting observations "
        "above the tolerance (the TV that N exact draws stay below with probability 0.999); "
        "log-P spread: std over samples of log total power, sampler / exact draws; band spread: "
        "the same per k band (3 bands, all bands and observations).",
        "",
    ]
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    for problem in problems:
        omegas = [r["omega"] for r in rows if r["problem"] == problem and r["sampler"] == "exact"]
        shown = "; ".join(weights(w, 2) for w in omegas)
        lines.append(f"**{problem}**: omega per observation {shown}")
    lines.append("")
    levels = " | ".join(f"cov-ref {round(100 * a)}%" for a in LEVELS)
    lines += [
        f"| problem | sampler | steps | NFE/sample | s/sample | {levels} | std ratio "
        "| TV | TV exact draws | TV tolerance | fail | log-P spread | band spread |",
        "|---" * (12 + len(LEVELS)) + "|",
    ]
    for problem in problems:
        samplers = list(dict.fromkeys(r["sampler"] for r in rows if r["problem"] == problem))
        for sampler in samplers:
            group = [r for r in rows if r["problem"] == problem and r["sampler"] == sampler]
            cov = " | ".join(
                span([r["coverage_minus_reference"][j] for r in group], "+.3f")
                for j in range(len(LEVELS))
            )
            fails = sum(r["component_tv"] > r["component_tv_tolerance"] for r in group)
            bands = [b for r in group for b in r["band_spread_ratios"]]
            steps = group[0]["steps"] if group[0]["steps"] is not None else ""
            lines.append(
                f"| {problem} | {sampler} | {steps} "
                f"| {np.mean([r['nfe_per_sample'] for r in group]):.0f} "
                f"| {np.mean([r['seconds_per_sample'] for r in group]):.3g} | {cov} "
                f"| {span([r['std_ratio'] for r in group], '.3f')} "
                f"| {span([r['component_tv'] for r in group], '.3f')} "
                f"| {span([r['reference_component_tv'] for r in group], '.3f')} "
                f"| {span([r['component_tv_tolerance'] for r in group], '.3f')} "
                f"| {fails}/{len(group)} "
                f"| {span([r['log_power_spread_ratio'] for r in group], '.2f')} "
                f"| {span(bands, '.2f')} |"
            )
    return "\n".join(lines)


def main() -> None:
    args = parse()
    if args.table_from:
        print(table(json.loads(args.table_from.read_text())))
        return
    if args.device == "cpu":
        cpu_threads()
    hardware = (
        torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"{os.cpu_count()}-core CPU"
    )
    result = result_header(args, hardware)
    result["threads"] = torch.get_num_threads()
    only = restrictions(args.restrict)
    for problem in names(args.problems):
        samplers = [s for s in names(args.samplers) if s not in only or problem in only[s]]
        result["rows"] += run_problem(problem, args, samplers)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    print()
    print(table(result))


if __name__ == "__main__":
    main()
