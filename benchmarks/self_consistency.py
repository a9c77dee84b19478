"""Is a trained prior's posterior sampler calibrated against the prior it was given?

Against HMC references (`trained_lognormal.py`) a trained prior's posteriors mix two errors: the
network's distribution differs from the simulator's, and the sampler's guidance approximates the
posterior of that distribution. This separates them by simulation-based calibration with truths
drawn from the prior itself (`--truths prior`): if the sampler samples the network prior's own
posterior, the truth's statistics rank uniformly among the members' and the members spread each
statistic as widely as the truth scatters about them. `--truths simulator` runs the same with the
simulator's maps as truths (the HMC references' setting, where the prior's error counts too);
`--truths mixture` with exact draws of the amplitude mixture below, for a network trained on them.

Per statistic (log total power and three log band powers), with K tests of N members: the
offset of the truth from the members' mean (in logs and in the members' sd, z), the spread
(for an exact posterior t and the members are exchangeable, so sd z = sqrt((1 + 1/N) (N - 1) /
(N - 3)), Student t; spread = that / observed sd z, 1 when calibrated, above 1 when the members
are too wide; bootstrap error over tests) and the SBC rank-uniformity p-value. Per pixel: the
coverage of the intervals between the members' order statistics, (b - a) / (N + 1) for an
exact posterior whatever its shape. Exact priors with the field's spectrum (`make_prior`): a
Gaussian and an amplitude mixture, where guided is exact (controls that must pass), and the
same mixture with its components hidden from the sampler.

    OMP_NUM_THREADS=1 python benchmarks/self_consistency.py --field lensing --prior PRIOR.pt \\
        --truths prior --tests 200 --members 16 --json prior_truths.json

Progress is saved to the JSON after every test; rerunning with the same settings resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, refuse, result_header, resumed_tests, write_results
from jacobian_symmetry import symmetrise_jacobian

from posterior_diffusion.diagnostics.global_stats import log_band_powers, log_total_power
from posterior_diffusion.diagnostics.sbc import rank_uniformity_pvalue
from posterior_diffusion.priors import GaussianPrior
from posterior_diffusion.priors.mixture import GaussianMixturePrior
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.references.gold_standard import lognormal_problem
from posterior_diffusion.references.mixture import MarginalDenoiser
from posterior_diffusion.samplers.run import sample_posterior
from posterior_diffusion.simulators import write_dataset_file

STATISTICS = ("log_total_power", "log_band_0", "log_band_1", "log_band_2")


def global_statistics(maps: np.ndarray) -> np.ndarray:
    """(M, 1, H, W) -> (M, 4): log total power and three log band powers."""
    return np.column_stack([log_total_power(maps), log_band_powers(maps)])


def truth_zscores(truth: np.ndarray, members: np.ndarray) -> np.ndarray:
    """(..., S), (..., N, S) -> (..., S): the truth's distance from the members' mean in their
    std."""
    return (truth - members.mean(-2)) / members.std(-2, ddof=1)


def spread(z: np.ndarray, members: int, seed: int = 0, boots: int = 1000) -> tuple[float, float]:
    """Members' spread over the posterior's from the truths' z (K,) and its bootstrap error over
    tests: the sd of z for an exact posterior over the observed sd of z."""
    expected = np.sqrt((1 + 1 / members) * (members - 1) / (members - 3))
    rng = np.random.default_rng(seed)
    boot = [expected / z[rng.integers(0, len(z), len(z))].std() for _ in range(boots)]
    return float(expected / z.std()), float(np.std(boot))


# Central intervals between the members' order statistics a and b (1-based) cover an exchangeable
# truth with probability (b - a) / (N + 1): the pixel coverages that need no Gaussian assumption.
def order_statistic_intervals(members: int) -> list[tuple[int, int]]:
    levels = (0.5, 0.68, 0.9)
    pairs = []
    for level in levels:
        width = min(round(level * (members + 1)), members - 1)
        a = (members + 1 - width) // 2
        pairs.append((a, a + width))
    return pairs


def summarise(tests: list[dict], members: int) -> dict:
    truth = np.array([t["truth_stats"] for t in tests])  # (K, 4)
    samples = np.array([t["member_stats"] for t in tests])  # (K, N, 4)
    z = truth_zscores(truth, samples)
    offset = truth - samples.mean(1)
    ranks = (samples < truth[:, None, :]).sum(1)
    bins = min(members + 1, len(tests) // 5)  # about 5 or more expected per bin
    pvalues = rank_uniformity_pvalue(ranks, members, bins) if bins >= 2 else [None] * 4
    out = {"tests": len(tests), "members": members, "statistics": {}}
    for i, name in enumerate(STATISTICS):
        ratio, error = spread(z[:, i], members)
        out["statistics"][name] = {
            "offset": float(offset[:, i].mean()),  # truth minus the members' mean, in logs
            "offset_error": float(offset[:, i].std(ddof=1) / np.sqrt(len(z))),
            "mean_z": float(z[:, i].mean()),
            "mean_z_error": float(z[:, i].std(ddof=1) / np.sqrt(len(z))),
            "spread": ratio,
            "spread_error": error,
            "rank_pvalue": None if pvalues[i] is None else float(pvalues[i]),
        }
    counts = np.sum([t["pixel_rank_counts"] for t in tests], axis=0)  # (N + 1,)
    pixels = {"mean_z": float(np.mean([t["pixel_mean_z"] for t in tests]))}
    for a, b in order_statistic_intervals(members):
        nominal, found = (b - a) / (members + 1), counts[a:b].sum() / counts.sum()
        pixels[f"coverage_{nominal:.3f}"] = float(found)
    out["statistics"]["pixels"] = pixels
    return out


# Variance factors of the mixture priors' components (equal weights): a field whose amplitude
# varies from map to map over a factor 16, as a prior pooled over cosmologies would.
MIXTURE_AMPLITUDES = (0.25, 0.5, 1.0, 2.0, 4.0)


def make_prior(name: str, problem):
    """The prior to test: a trained prior's file, or an exact one with the field's spectrum:
    "gaussian" (guided is exact: the control that must pass), "mixture" (amplitude mixture,
    components named: exact too) or "blind-mixture" (the same, components hidden)."""
    power = torch.from_numpy(problem.field.power)
    if name == "gaussian":
        return GaussianPrior.from_power_grid(power, 1, "gaussian control")
    if name in ("mixture", "blind-mixture"):
        parts = [GaussianPrior.from_power_grid(a * power, 1, f"x{a}") for a in MIXTURE_AMPLITUDES]
        return GaussianMixturePrior(parts, [1.0] * len(parts), "amplitude mixture")
    return NetworkPrior.from_file(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", help="a prior file, or gaussian, mixture, blind-mixture")
    parser.add_argument("--field", default="lensing", choices=("lensing", "mask"))
    parser.add_argument(
        "--shape", type=int, nargs=2, default=[24, 32], metavar=("H", "W"),
        help="grid of the problem (e.g. 64 64 for the shipped default prior)",
    )  # fmt: skip
    parser.add_argument("--truths", default="prior", choices=("prior", "simulator", "mixture"))
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--sampler", default="guided")
    parser.add_argument("--options", type=json.loads, default={}, help="sampler options, JSON")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the sampler's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--simulate-mixture", type=Path, help="write mixture maps here and stop")
    parser.add_argument("--num", type=int, default=12000, help="maps for --simulate-mixture")
    parser.add_argument(
        "--symmetrise-jacobian", action="store_true",
        help="a trained prior's covariance products with (J + J^T) / 2 (jacobian_symmetry.py)",
    )  # fmt: skip
    args = parser.parse_args()
    cpu_threads()
    problem = lognormal_problem(args.field, tuple(args.shape), seed=0)  # the model; truths below
    if args.simulate_mixture:  # training maps for a mixture network, seeds apart from the truths'
        if args.simulate_mixture.exists():
            refuse(f"{args.simulate_mixture}: exists; choose another path")
        draws = make_prior("mixture", problem).sample(args.num, torch.Generator().manual_seed(1234))
        write_dataset_file(
            args.simulate_mixture,
            draws[:, 0].numpy().astype(np.float32),
            {"kind": "amplitude mixture", "amplitudes": list(MIXTURE_AMPLITUDES)},
        )
        print(f"wrote {args.num} maps to {args.simulate_mixture}")
        return
    if args.json is None or args.prior is None:
        parser.error("--prior and --json are required")
    prior = sampled_prior = make_prior(args.prior, problem)
    if args.symmetrise_jacobian:
        if not isinstance(prior, NetworkPrior):
            parser.error("--symmetrise-jacobian needs a trained prior (exact ones are symmetric)")
        symmetrise_jacobian(prior)
    if args.prior == "blind-mixture":  # exact denoiser, components hidden from the sampler
        sampled_prior = MarginalDenoiser(prior)
    results = result_header(args, "2-core CPU")
    done = resumed_tests(args.json, results)
    # Truths from seeds no training set used; each test's own noise and sampler seed.
    if args.truths in ("prior", "mixture"):  # mixture: exact draws, for a network trained on them
        source = prior if args.truths == "prior" else make_prior("mixture", problem)
        with torch.no_grad():
            truths = source.sample(args.tests, generator=torch.Generator().manual_seed(4242))
    else:
        truths = torch.from_numpy(problem.field.simulate(args.tests, seed=4242))[:, None]
    truths = truths.double()
    start, first = time.perf_counter(), len(done)
    for i in range(first, args.tests):
        truth = truths[i]
        y = problem.model.simulate(truth, torch.Generator().manual_seed(10_000 + i))
        samples, info = sample_posterior(
            sampled_prior, problem.model, y, args.members, sampler=args.sampler, seed=i, progress=False,
            options=args.options, steps=args.steps,
        )  # fmt: skip
        samples = samples.double().numpy()
        flat = samples.reshape(args.members, -1)
        pixel_ranks = (flat < truth.numpy().reshape(1, -1)).sum(0)
        done.append({
            "truth_stats": global_statistics(truth.numpy()[None]).ravel().tolist(),
            "member_stats": global_statistics(samples).tolist(),
            "pixel_rank_counts": np.bincount(pixel_ranks, minlength=args.members + 1).tolist(),
            "pixel_mean_z": float(truth_zscores(truth.numpy().ravel(), flat).mean()),
            "nfe_per_sample": info["nfe_per_sample"],
        })  # fmt: skip
        results["tests_done"] = done
        if len(done) >= 10:
            results["summary"] = summarise(done, args.members)
        write_results(args.json, results)
        rate = (time.perf_counter() - start) / (i + 1 - first)
        eta = rate * (args.tests - i - 1) / 60
        print(f"test {i + 1}/{args.tests}, {rate:.1f} s per test, ETA {eta:.0f} min", flush=True)
    summary = summarise(done, args.members)
    for name, row in summary["statistics"].items():
        values = (f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in row.items())
        print(f"{name}: " + ", ".join(values), flush=True)


if __name__ == "__main__":
    main()
