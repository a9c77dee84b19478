"""The user's pipeline against HMC gold standards (R2, R3): a prior trained with
`posterior-diffusion train` on lognormal simulations, then `guided` (mask + noise) and `linearized`
(galaxy counts) on the references of `benchmarks/hmc_references.py`. Two fields, two priors:
`--field mask` (the default: pixel variance 0.5, shift 1; cases lognormal_mask and
lognormal_counts) and `--field lensing` (the package's convergence simulator at 1 arcmin, shift
0.02; case lognormal_lensing, shear + mask + shape noise, and with `--cases lognormal_reduced` the
same seen as reduced shear).

The prior's own error is reported beside the posteriors' (prior draws' pixel std, skewness and
0.1% / 99.9% quantiles against fresh simulations), since a posterior cannot be better than its
prior. The steps (24 x 32 maps, the `lognormal_problem` field: pixel variance 0.5, shift 1):

    python benchmarks/trained_lognormal.py --simulate data/lognormal_24x32.h5 --num 12000
    OMP_NUM_THREADS=1 posterior-diffusion train --config configs/train_lognormal_24x32.yaml
    OMP_NUM_THREADS=1 python benchmarks/trained_lognormal.py \\
        --prior runs/lognormal_24x32/lightning_logs/version_0/prior.pt \\
        --json benchmarks/results_trained_lognormal_cpu.json
    python benchmarks/trained_lognormal.py --field lensing --simulate data/lensing_24x32.h5
    OMP_NUM_THREADS=1 posterior-diffusion train --config configs/train_lensing_24x32.yaml
    OMP_NUM_THREADS=1 python benchmarks/trained_lognormal.py --field lensing \
        --prior runs/lensing_24x32/lightning_logs/version_0/prior.pt \
        --json benchmarks/results_trained_lensing_cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, refuse_existing, result_header, write_results
from hmc_references import load_reference
from nonlinear import measure

from posterior_diffusion.diagnostics.global_stats import log_band_powers, log_total_power
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.references.gold_standard import lognormal_problem
from posterior_diffusion.simulators import write_dataset_file

CASES = {
    "lognormal_mask": "guided",
    "lognormal_lensing": "guided",
    "lognormal_counts": "linearized",
    "lognormal_reduced": "linearized",  # reduced shear: nonlinear, so the default is linearized
}
FIELDS = {"mask": ("lognormal_mask", "lognormal_counts"), "lensing": ("lognormal_lensing",)}


def one_point(maps: np.ndarray) -> dict[str, float]:
    flat = maps.reshape(len(maps), -1)
    centred = flat - flat.mean()
    return {
        "pixel_std": float(flat.std()),
        "skewness": float((centred**3).mean() / flat.std() ** 3),
        "q001": float(np.quantile(flat, 0.001)),
        "q999": float(np.quantile(flat, 0.999)),
        # How much the maps' power varies from map to map (std over maps of the logs).
        "log_total_power_sd": float(log_total_power(maps).std()),
        "log_band_power_sd": log_band_powers(maps).std(0).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulate", type=Path, help="write training maps here and stop")
    parser.add_argument("--num", type=int, default=12000)
    parser.add_argument("--prior", type=Path)
    parser.add_argument("--references", type=Path, default=Path("benchmarks/references"))
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--field", default="mask", choices=list(FIELDS))
    parser.add_argument("--cases", nargs="+", choices=list(CASES), help="default: the field's")
    parser.add_argument("--prior-draws", type=int, default=2048, help="for the prior check")
    parser.add_argument("--options", type=json.loads, default={}, help="sampler options, JSON")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the sampler's)")
    parser.add_argument("--sampler", help="instead of guided for the linear cases (e.g. twisted)")
    parser.add_argument("--prior-check-only", action="store_true", help="skip the posteriors")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    field = lognormal_problem(args.field, (24, 32), seed=0)
    cases = args.cases or FIELDS[args.field]
    refuse_existing(args.simulate, args.json)  # before any work: never overwrite a file
    if args.simulate:
        maps = field.simulate(args.num, seed=1234)
        write_dataset_file(args.simulate, maps.astype(np.float32), {"kind": "lognormal"})
        print(f"wrote {args.num} maps to {args.simulate}")
        return
    cpu_threads()
    prior = NetworkPrior.from_file(args.prior)
    results = result_header(args, "2-core CPU")
    fresh = field.simulate(args.prior_draws, seed=99)  # seeds the training set never used
    with torch.no_grad():
        draws = prior.sample(args.prior_draws, generator=torch.Generator().manual_seed(0))
    results["prior_check"] = {
        "simulations": one_point(fresh),
        "prior_draws": one_point(draws.double().numpy()),
    }
    print("prior check:", results["prior_check"], flush=True)
    if args.prior_check_only:
        cases = ()
    for case, sampler in ((c, CASES[c]) for c in cases):
        if args.sampler and sampler == "guided":
            sampler = args.sampler
        for path in sorted(args.references.glob(f"{case}_seed*.npz")):
            reference, problem = load_reference(path)
            results["rows"].append(
                measure(
                    prior,
                    problem,
                    reference,
                    path.stem,
                    sampler,
                    args.members,
                    args.options,
                    args.steps,
                )
            )
            if args.json:  # after every reference, so a long run keeps what it measured
                write_results(args.json, results)
    if args.json:
        write_results(args.json, results)


if __name__ == "__main__":
    main()
