"""The R2 lognormal problems with the exact prior and no network: sample the Gaussian g behind
the field, x = shift (exp(g - sigma_g^2 / 2) - 1), with its exact Gaussian prior and the
transform moved into the forward model (nonlinear, so `linearized`).

This isolates the nonlinear sampler from any trained prior's error: the prior is exactly the
simulator's, so what is left against the HMC references is the sampler's (here the Gauss-Newton
linearisation of the transform). It is also the route of a "Gaussianised" prior (a prior trained
on g = log(1 + x / shift) instead of x), measured before building it.

    python benchmarks/hmc_references.py --cases lognormal_lensing --draws 4000 --thin 16 --out refs
    OMP_NUM_THREADS=1 python benchmarks/latent_lognormal.py --references refs --members 128 \\
        --json benchmarks/results_latent_lensing_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from common import cpu_threads, result_header
from hmc_references import load_reference
from nonlinear import measure
from torch import Tensor

from forward_models import Compose, ForwardModel, ForwardOperator
from posterior_diffusion.priors import GaussianPrior


class ShiftedExp(ForwardOperator):
    """g -> shift (exp(g - offset) - 1): the shifted-lognormal field of its Gaussian g."""

    def __init__(self, shift: float, offset: float):
        super().__init__()
        self.shift, self.offset = float(shift), float(offset)

    def A(self, g: Tensor) -> Tensor:  # noqa: N802
        return self.shift * torch.expm1(g - self.offset)

    def params(self) -> dict[str, Any]:
        return {"operator": "ShiftedExp", "shift": self.shift, "offset": self.offset}


def latent_setup(problem) -> tuple[GaussianPrior, ForwardModel, ShiftedExp]:
    field = problem.field
    prior = GaussianPrior.from_power_grid(torch.from_numpy(field.gaussian_power), 1, "latent g")
    transform = ShiftedExp(field.shift, field.sigma_g2 / 2)
    model = problem.model
    latent = ForwardModel(
        Compose(transform, model.operator), model.noise, model.field_shape, f"latent {model.name}"
    )
    return prior, latent, transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=Path, default=Path("benchmarks/references"))
    parser.add_argument("--cases", nargs="+", default=["lognormal_lensing"])
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--options", type=json.loads, default={}, help="sampler options, JSON")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_threads()
    results = result_header(args, "2-core CPU")
    for case in args.cases:
        for path in sorted(args.references.glob(f"{case}_seed*.npz")):
            reference, problem = load_reference(path)
            prior, latent, transform = latent_setup(problem)
            row = measure(
                prior,
                dataclasses.replace(problem, model=latent),
                reference,
                path.stem,
                "linearized",
                args.members,
                args.options,
                args.steps,
                transform=transform.A,
            )
            results["rows"].append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
