"""Level by level through one `twisted` run on an R1 mixture with its components hidden.

Per level: the noise level, the twist's fitted scale a, the ESS before any resampling, and the
component shares of the members (their exact responsibilities p(k | x_sigma), which the sampler
never sees), unweighted and weighted; omega, the exact posterior's weights, for comparison. At
the level where the ESS is smallest, the heaviest members before the resampling: their
log-weight, log-twist and the rest of the log-weight (the accumulated proposal ratios p / q since
the last resampling), each against the median member, and their responsibilities. This is how
a weight collapse was traced in docs/samplers.md ("`twisted`", at N = 512).

    OMP_NUM_THREADS=1 python benchmarks/twisted_trace.py --problem amplitude/lensing \\
        --observation 1 --members 512

With `--prior PRIOR.pt --reference REF.npz` (a trained prior and an HMC reference of
`hmc_references.py`, whose problem it samples with the seed `trained_lognormal.py` uses), per
level: sigma, the fitted scale, the ESS, and at each resampling the members' mean pixel variance
after the moves over the weighted one before; at the end the diagnostics and the median std
ratio against the reference's draws. This traced the trained lensing prior in docs/samplers.md.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from common import cpu_threads

from posterior_diffusion.references import mixture_exact_posterior
from posterior_diffusion.references.mixture import MarginalDenoiser
from posterior_diffusion.references.problems import draw_observations, problem_from_name
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers.twisted import twisted


def shares(prior, x: torch.Tensor, log_w: torch.Tensor, sigma: float) -> tuple[list, list]:
    r = prior.responsibilities(x, sigma)
    w = torch.softmax(log_w, 0).to(r)
    return r.mean(0).tolist(), (w[:, None] * r).sum(0).tolist()


def heaviest(prior, state: dict, sigma: float, count: int = 3) -> list[dict]:
    log_w, psi = state["log_weights"], state["log_twist"]
    rest = log_w - psi
    top = torch.argsort(log_w, descending=True)[:count]
    r = prior.responsibilities(state["x"][top], sigma)
    return [
        {
            "member": int(m),
            "weight": float(torch.softmax(log_w, 0)[m]),
            "log_weight_minus_median": float(log_w[m] - log_w.median()),
            "log_twist_minus_median": float(psi[m] - psi.median()),
            "log_p_over_q_minus_median": float(rest[m] - rest.median()),
            "responsibilities": r[j].tolist(),
        }
        for j, m in enumerate(top.tolist())
    ]


def weighted_pixel_variance(x: torch.Tensor, log_w: torch.Tensor) -> float:
    w = torch.softmax(log_w, 0).to(x).view(-1, *[1] * (x.dim() - 1))
    mean = (w * x).sum(0)
    return float((w * (x - mean).square()).sum(0).mean())


def trace_trained(args) -> None:
    from hmc_references import load_reference

    from posterior_diffusion.priors.network import NetworkPrior

    prior = NetworkPrior.from_file(args.prior)
    reference, problem = load_reference(args.reference)
    trace: list[dict] = []
    rng = EnsembleRNG(int(problem.params["seed"]), range(args.members))
    with torch.no_grad():
        samples = twisted(prior, problem.model, problem.y, rng, args.levels, trace.append,
                          **args.options)  # fmt: skip
    previous = None  # the last level's log-weights, None after a resampling (reset to 0)
    for s in trace[:-1]:
        before = s["before_resampling"]
        # This level's log-weight increment per member: log p / q plus the twist's change.
        after_step = s["log_weights"] if before is None else before["log_weights"]
        step = after_step if previous is None else after_step - previous
        previous = None if before is not None else s["log_weights"]
        line = (
            f"level {s['i']:2d} sigma {s['sigma']:.4g} ({s['sigma'] / prior.data_std():.3g} data "
            f"std) a {s['twist_amplitude']:.3f} ESS {s['ess']:.3f} sd of the log-weight "
            f"increment {float(step.std()):.2f}"
        )
        if before is not None:
            kept = weighted_pixel_variance(s["x"], s["log_weights"])
            kept /= weighted_pixel_variance(before["x"], before["log_weights"])
            line += f" resampled; pixel variance after the moves / before {kept:.3f}"
        print(line)
    print("final diagnostics:", trace[-1]["diagnostics"])
    draws = reference.sample(max(args.members, 512), torch.Generator().manual_seed(0)).double()
    ratio = samples.double().std(0) / draws.std(0)
    print(f"median std ratio against {draws.shape[0]} reference draws: {float(ratio.median()):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", default="amplitude/lensing")
    parser.add_argument("--observation", type=int, default=1)
    parser.add_argument("--members", type=int, default=512)
    parser.add_argument("--levels", type=int, default=96)
    parser.add_argument("--options", type=json.loads, default={}, help="sampler options, JSON")
    parser.add_argument("--prior", help="a trained prior file (with --reference)")
    parser.add_argument("--reference", help="an HMC reference .npz (with --prior)")
    args = parser.parse_args()
    cpu_threads()
    if args.prior or args.reference:
        if not (args.prior and args.reference):
            parser.error("--prior and --reference go together")
        trace_trained(args)
        return
    prior, model = problem_from_name(args.problem, (24, 32))
    truth, y = draw_observations(prior, model, args.observation + 1, 0)[args.observation]
    omega = mixture_exact_posterior(prior, model, y).weights.tolist()
    print(f"{args.problem} observation {args.observation}: omega {np.round(omega, 3).tolist()}")
    trace: list[dict] = []
    # The seed twisted_r1.py gives this observation, so the run is the one it scores.
    rng = EnsembleRNG(1000 + args.observation, range(args.members))
    with torch.no_grad():
        twisted(MarginalDenoiser(prior), model, y, rng, args.levels, trace.append, **args.options)
    levels = [s for s in trace if "diagnostics" not in s]
    worst = min(levels, key=lambda s: s["ess"])
    for s in levels:
        plain, weighted = shares(prior, s["x"], s["log_weights"], s["sigma"])
        mark = " resampled" if s["before_resampling"] is not None else ""
        print(
            f"level {s['i']:2d} sigma {s['sigma']:9.4f} a {s['twist_amplitude']:6.3f} "
            f"ESS {s['ess']:.3f} shares {np.round(plain, 3).tolist()} "
            f"weighted {np.round(weighted, 3).tolist()}{mark}"
        )
        if s is worst:
            before = s["before_resampling"] or s
            for row in heaviest(prior, before, s["sigma"]):
                print("    heaviest before resampling:", json.dumps(row, default=float))
    print("final diagnostics:", trace[-1]["diagnostics"])


if __name__ == "__main__":
    main()
