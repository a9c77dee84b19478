"""Do `twisted`'s moves keep a trained prior's noised marginals where its own sampler puts them?

`twisted` weights members against the prior's reverse-SDE steps (exact for the path the network
samples), but its rejuvenation moves target p_sigma through the network's score, integrated along
a line as if it were a gradient. Both describe the same law only if the network is consistent
with its own sampler. Here members are drawn by the prior's reverse SDE down `twisted`'s grid and
stopped at a level sigma; data-free MALA moves (noise 1e4 data std: the target is p_sigma alone)
should then leave them where they are. Printed per level: the mean change of each member's log
total power of x and of D(x) (paired, with its standard error), the ratio of their spreads after
and before, and the acceptance. A drift is the moves pulling the ensemble towards the score's own
stationary law (issue 14: twisted's posteriors are 7-9% narrow on a trained prior, 1% on exact
ones).

    OMP_NUM_THREADS=1 python benchmarks/trained_move_invariance.py --prior PRIOR.pt \\
        --levels 0.3 1 3 --draws 128 --moves 8 --json moves.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, refuse, refuse_existing, result_header, write_results

from forward_models.base import ForwardModel
from forward_models.identity import Identity
from forward_models.noise import GaussianNoise
from posterior_diffusion.likelihood import WhitenedLinearGaussian
from posterior_diffusion.priors.draw import reverse_sde
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.prior_file import PriorFileError
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers.refine import MoveStatistics, noised_posterior_mala
from posterior_diffusion.schedules import log_uniform_sigmas


def log_powers(prior: NetworkPrior, x: torch.Tensor, sigma: float) -> dict[str, np.ndarray]:
    """Each member's log mean square of x and of its denoised estimate D(x, sigma)."""
    with torch.no_grad():
        denoised = prior.denoise(x, sigma)
    return {
        name: v.flatten(1).square().mean(1).log().numpy()
        for name, v in (("x", x), ("denoised", denoised))
    }


def compare(before: dict, after: dict) -> dict:
    out = {}
    for name in before:
        change = after[name] - before[name]
        out[name] = {
            "mean_change": float(change.mean()),
            "change_se": float(change.std(ddof=1) / np.sqrt(len(change))),
            "spread_ratio": float(after[name].std(ddof=1) / before[name].std(ddof=1)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", required=True, help="a trained prior file")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.3, 1.0, 3.0],
                        help="noise levels in data std (the nearest level of the grid is used)")  # fmt: skip
    parser.add_argument("--draws", type=int, default=128)
    parser.add_argument("--moves", type=int, default=8, help="MALA moves (twisted: 4)")
    parser.add_argument("--steps", type=int, default=96, help="levels of the grid (twisted's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.json:
        refuse_existing(args.json)
    try:
        prior = NetworkPrior.from_file(args.prior)
    except PriorFileError as error:
        refuse(str(error))
    shape = tuple(prior.trained_shape)
    if prior.second_moment_power(shape) is None:  # the moves' preconditioner needs it
        refuse(f"{args.prior}: the prior file records no training spectrum (older than the moves)")
    cpu_threads()
    std = prior.data_std()
    model = ForwardModel(Identity(), GaussianNoise(1e4 * std), shape, name="no data")
    likelihood = WhitenedLinearGaussian(model, torch.zeros(shape, dtype=torch.float64))
    sigmas = log_uniform_sigmas(args.steps, prior.sigma_min(), prior.sigma_max()).tolist()
    results = result_header(args, "2-core CPU")
    results["levels"] = []
    for level in args.levels:
        j = int(np.argmin([abs(np.log(s / (level * std))) for s in sigmas[:-1]]))
        sigma = sigmas[j]
        rng = EnsembleRNG(args.seed, range(args.draws))
        with torch.no_grad():
            x = reverse_sde(
                prior.denoise, sigmas[0] * rng.randn(shape), sigmas[: j + 1], lambda rng=rng: rng.randn(shape)
            )  # fmt: skip
        before = log_powers(prior, x, sigma)
        statistics = MoveStatistics(sigma=sigma)
        move = noised_posterior_mala(
            prior, likelihood, sigma, args.moves, lambda rng=rng: rng.randn(shape),
            lambda rng=rng: rng.rand(()), statistics, scale_moves=False,
        )  # fmt: skip
        after = log_powers(prior, move(x), sigma)
        row = {"sigma": sigma, "sigma_over_std": sigma / std, "level_index": j,
               **compare(before, after), "acceptance": statistics.as_dict()["acceptance"]}  # fmt: skip
        results["levels"].append(row)
        print(
            f"sigma {sigma / std:.3g} data std (level {j}): log power of x "
            f"{row['x']['mean_change']:+.4f} +- {row['x']['change_se']:.4f} "
            f"(spread x{row['x']['spread_ratio']:.3f}), of D(x) "
            f"{row['denoised']['mean_change']:+.4f} +- {row['denoised']['change_se']:.4f} "
            f"(spread x{row['denoised']['spread_ratio']:.3f}), acceptance {row['acceptance']:.2f}",
            flush=True,
        )
    if args.json:
        write_results(args.json, results)


if __name__ == "__main__":
    main()
