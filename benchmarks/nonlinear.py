"""Samplers for galaxy counts (Poisson, nonlinear) against the HMC gold standards (R3).

The GRF + counts references of `benchmarks/hmc_references.py` (24 x 32, three observations) hold
the exact analytic prior, so a sampler is measured here with that prior: per pixel, the median std
ratio, z_mean and coverage of the truth minus that of N reference draws; globally, the spread of
each sample's log total power over the reference draws'. Build the references first:

    OMP_NUM_THREADS=1 python benchmarks/hmc_references.py
    OMP_NUM_THREADS=1 python benchmarks/nonlinear.py --samplers linearized,dps \\
        --json benchmarks/results_nonlinear_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import cpu_threads, refuse, result_header
from hmc_references import load_reference

from posterior_diffusion.diagnostics.global_stats import log_band_powers, log_total_power
from posterior_diffusion.priors import GaussianPrior
from posterior_diffusion.references.gaussian_problems import LEVELS, interval_coverage
from posterior_diffusion.samplers.run import sample_posterior


def score(samples, reference, draws, truth) -> dict:
    ratio = float((samples.std(0) / reference.std).median())
    z = float((((samples.mean(0) - reference.mean) / reference.std) ** 2).mean().sqrt())
    z_draws = float((((draws.mean(0) - reference.mean) / reference.std) ** 2).mean().sqrt())
    found, covered = interval_coverage(samples, truth), interval_coverage(draws, truth)
    spread = float(log_total_power(samples).std() / log_total_power(draws).std())
    bands, reference_bands = log_band_powers(samples), log_band_powers(draws)
    # Where the sample ensemble's power sits, in units of the reference's spread.
    offset = (log_total_power(samples).mean() - log_total_power(draws).mean()) / log_total_power(
        draws
    ).std()
    return {
        "std_ratio": ratio,
        "z_mean": z,
        "z_mean_reference_draws": z_draws,
        "coverage_minus_reference": [a - b for a, b in zip(found, covered, strict=True)],
        "log_power_spread_ratio": spread,
        "log_power_offset": float(offset),
        "band_power_spread_ratios": (bands.std(0) / reference_bands.std(0)).tolist(),
    }


def measure(
    prior,
    problem,
    reference,
    label: str,
    sampler: str,
    members: int,
    options=None,
    steps=None,
    transform=None,
) -> dict:
    """One sampler on one reference's problem: its scores, cost, and a printed line.
    `transform` maps the sampled variable to the field the reference holds (default: itself)."""
    seed = int(problem.params["seed"])
    draws = reference.sample(members, torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    samples, info = sample_posterior(
        prior,
        problem.model,
        problem.y,
        members,
        sampler=sampler,
        seed=seed,
        progress=False,
        options=options,
        steps=steps,
    )
    if transform is not None:
        with torch.no_grad():
            samples = transform(samples)
    row = {"reference": label, "sampler": sampler, "options": options or {}, "steps": steps,
           **score(samples, reference, draws, problem.truth),
           "nfe_per_sample": info["nfe_per_sample"],
           "seconds": time.perf_counter() - start}  # fmt: skip
    diagnostics = info.get("sampler_diagnostics", {})
    # what says how far to trust the run: SMC-type samplers' weights, the twist, guided's warning
    kept = ("min_ess", "final_ess", "resampled_at_sigma", "unique_fraction", "move_acceptance",
            "wiener_twist_above", "global_statistics_warning", "refinement")  # fmt: skip
    if any(k in diagnostics for k in kept):
        row["diagnostics"] = {k: diagnostics[k] for k in kept if k in diagnostics}
    coverage = ", ".join(f"{c:+.3f}" for c in row["coverage_minus_reference"])
    print(
        f"{label} {sampler}: std ratio {row['std_ratio']:.3f}, z_mean {row['z_mean']:.3f} "
        f"(reference draws {row['z_mean_reference_draws']:.3f}), coverage - reference at "
        f"{LEVELS}: {coverage}, log-power spread {row['log_power_spread_ratio']:.2f} (offset "
        f"{row['log_power_offset']:+.2f} sd), band spreads "
        f"{', '.join(f'{b:.2f}' for b in row['band_power_spread_ratios'])}, NFE "
        f"{row['nfe_per_sample']:.0f}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samplers", default="linearized,dps")
    parser.add_argument("--references", type=Path, default=Path("benchmarks/references"))
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_threads()
    results = result_header(args, "2-core CPU")
    paths = sorted(args.references.glob("grf_counts_seed*.npz"))
    if not paths:
        refuse(f"no GRF counts references in {args.references}: run hmc_references.py")
    for path in paths:
        reference, problem = load_reference(path)
        prior = GaussianPrior.from_power_grid(torch.as_tensor(problem.field.power), 1, path.stem)
        for sampler in args.samplers.split(","):
            results["rows"].append(
                measure(prior, problem, reference, path.stem, sampler, args.members)
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
