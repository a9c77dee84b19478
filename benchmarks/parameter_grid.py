"""A trained conditional prior marginalised over a theta grid, against the exact posterior.

The truth's prior is a mixture over a grid of power-law amplitudes (slope fixed) of Gaussian
random fields, sum_j pi_j N(0, C(A_j)), so the posterior is exact (`references/mixture.py`). The
network was trained on fields over a box of (amplitude, slope) (`benchmarks/conditional.py
--save-prior`). Rows, all `guided`:

- "grid": `ParameterGridPrior(network, grid)`: the network's conditional priors as named
  components, weighed by their (Gaussian) evidence computed from the network's own Jacobian;
- "marginal": the network without theta (the marginal over its training box), components
  unnamed, as a user gets without the grid;
- "exact grid": the exact mixture, components named (what the sampler does with exact pieces).

Besides the R1 metrics it prints the network's evidence weights against the exact omega.

    python benchmarks/conditional.py --size 16 --maps 10000 --steps 4000 --batch-size 64 \\
        --base-channels 16 --observations 1 --members 16 --weights 0 --save-prior conditional_16.pt
    OMP_NUM_THREADS=1 python benchmarks/parameter_grid.py --prior conditional_16.pt \\
        --json benchmarks/results_parameter_grid_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_threads, result_header  # noqa: E402

from forward_models import ForwardModel, GaussianNoise, Mask  # noqa: E402
from posterior_diffusion.likelihood import WhitenedLinearGaussian  # noqa: E402
from posterior_diffusion.masks import survey_mask  # noqa: E402
from posterior_diffusion.priors import GaussianPrior  # noqa: E402
from posterior_diffusion.priors.mixture import GaussianMixturePrior  # noqa: E402
from posterior_diffusion.priors.network import NetworkPrior  # noqa: E402
from posterior_diffusion.priors.parameter_grid import ParameterGridPrior  # noqa: E402
from posterior_diffusion.priors.power_spectrum import PowerLawSpectrum  # noqa: E402
from posterior_diffusion.references.compare import LEVELS, compare_to_reference  # noqa: E402
from posterior_diffusion.references.mixture import mixture_exact_posterior  # noqa: E402
from posterior_diffusion.references.problems import draw_observations  # noqa: E402
from posterior_diffusion.rng import member_seed  # noqa: E402
from posterior_diffusion.samplers.evidence import latent_component_weights  # noqa: E402
from posterior_diffusion.samplers.run import sample_posterior  # noqa: E402

REFERENCE_STREAM = 2**32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=Path, required=True)
    parser.add_argument(
        "--amplitudes", default="0.6,0.85,1.2,1.7", help="the grid, comma-separated"
    )
    parser.add_argument("--slope", type=float, default=-1.75)
    parser.add_argument("--size", type=int, default=16, help="map side in pixels")
    parser.add_argument("--noise", type=float, default=1.0, help="white noise, field units")
    parser.add_argument("--observations", type=int, default=6)
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_threads()
    network = NetworkPrior.from_file(args.prior)
    size = args.size
    amplitudes = [float(a) for a in args.amplitudes.split(",")]
    thetas = [(a, args.slope) for a in amplitudes]
    exact_prior = GaussianMixturePrior(
        [GaussianPrior(PowerLawSpectrum(*t), (1, size, size)) for t in thetas],
        [1.0] * len(thetas),
        name="power-law amplitude grid",
    )
    mask = torch.from_numpy(survey_mask((size, size), hole_fraction=0.25, seed=0))
    model = ForwardModel(Mask(mask), GaussianNoise(args.noise, mask), (1, size, size), name="mask")
    priors = {
        "grid": ParameterGridPrior(network, thetas),
        "marginal": network,
        "exact grid": exact_prior,
    }
    results = result_header(args, "2-core CPU")
    for k, (truth, y) in enumerate(
        draw_observations(exact_prior, model, args.observations, seed=args.seed)
    ):
        exact = mixture_exact_posterior(exact_prior, model, y)
        found = latent_component_weights(priors["grid"], WhitenedLinearGaussian(model, y))
        weights_tv = 0.5 * float((found.weights - exact.weights).abs().sum())
        print(
            f"observation {k}: omega {np.round(exact.weights.numpy(), 3)}, network evidence "
            f"weights {np.round(found.weights.numpy(), 3)} (TV {weights_tv:.3f})",
            flush=True,
        )
        stream = torch.Generator().manual_seed(member_seed(args.seed, REFERENCE_STREAM + k))
        reference = exact.sample(args.members, stream)
        for name, prior in priors.items():
            samples, info = sample_posterior(
                prior, model, y, args.members, seed=1000 * args.seed + k, progress=False
            )
            comparison = compare_to_reference(samples, reference, truth, exact, LEVELS)
            row = {"observation": k, "prior": name, "omega": exact.weights.tolist(),
                   "network_weights": found.weights.tolist(), "weights_tv": weights_tv,
                   "nfe_per_sample": info["nfe_per_sample"], **comparison.as_dict()}  # fmt: skip
            results["rows"].append(row)
            print(
                f"  {name}: TV {comparison.component_tv:.3f} (exact draws "
                f"{comparison.reference_component_tv:.3f}, tolerance "
                f"{comparison.component_tv_tolerance:.3f}), std ratio {comparison.std_ratio:.3f}, "
                f"coverage - exact draws' {np.round(comparison.coverage_minus_reference, 3)}, "
                f"log-power spread {comparison.log_power_spread_ratio:.2f}, "
                f"NFE {info['nfe_per_sample']:.0f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
