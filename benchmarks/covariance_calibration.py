"""Is a trained prior's Tweedie covariance the right size, band by band?

`guided` uses C = sigma^2 dD/dx (the network's Jacobian, below 10 data std) as Cov[x0 | x_sigma].
Averaged over x_sigma, an exact posterior covariance equals the denoiser's squared error:
E[Cov[x0 | x_sigma]] = E[(x0 - D)(x0 - D)^T]. Per |k| band b (`band_edges`) this compares
tr(P_b C P_b), by Hutchinson probes limited to the band, with the band's squared error of D on
simulations plus noise, and the same for the Gaussian covariance P sigma^2 / (P + sigma^2) of the
training spectrum P (what guided uses above 10 data std). Ratios near 1: the right size on average
(a necessary condition only; the shape of p(x0 | x_sigma) is not tested).

    OMP_NUM_THREADS=1 python benchmarks/covariance_calibration.py --prior PRIOR.pt --json cov.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, refuse_existing, result_header, write_results

from posterior_diffusion.diagnostics.global_stats import band_edges
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.references.gold_standard import lognormal_problem

LEVELS = (25.0, 16.0, 10.0, 6.7, 4.3, 2.75, 1.76, 1.13, 0.72, 0.46, 0.3)  # data std


def band_masks(height: int, width: int, bands: int = 3) -> list[torch.Tensor]:
    k = torch.sqrt(torch.fft.fftfreq(height)[:, None] ** 2 + torch.fft.fftfreq(width)[None] ** 2)
    edges = band_edges(height, width, bands)
    return [((k >= a) & (k < b)).float() for a, b in zip(edges[:-1], edges[1:], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", required=True)
    parser.add_argument("--field", default="lensing", choices=("lensing", "mask"))
    parser.add_argument("--maps", type=int, default=64)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    refuse_existing(args.json)
    cpu_threads()
    height, width = 24, 32
    problem = lognormal_problem(args.field, (height, width), seed=0)
    prior = NetworkPrior.from_file(args.prior)
    x0 = torch.from_numpy(problem.field.simulate(args.maps, seed=99))[:, None].float()
    power = prior.stationary_power((1, height, width)).float().reshape(height, width)
    masks = band_masks(height, width)
    results = result_header(args, "2-core CPU")
    for level in LEVELS:
        sigma = level * prior.data_std()
        generator = torch.Generator().manual_seed(1)
        x = x0 + sigma * torch.randn(x0.shape, generator=generator)
        denoised, cov = prior.linearize(x, sigma)
        error = torch.fft.fft2(x0 - denoised.detach())
        row = {"sigma_over_data_std": level, "jacobian_over_error": [], "gaussian_over_error": []}
        for mask in masks:
            squared_error = float(((error.abs() ** 2) * mask).sum((-2, -1)).mean()) / x0[0].numel()
            traces = []
            for _ in range(args.probes):  # E[v^T C v] = tr(P_b C P_b) for band-limited white v
                v = torch.fft.ifft2(
                    torch.fft.fft2(torch.randn(x0.shape, generator=generator)) * mask
                )
                v = v.real
                traces.append(float((v * cov(v).detach()).sum((-3, -2, -1)).mean()))
            gaussian = float((mask * power * sigma**2 / (power + sigma**2)).sum())
            row["jacobian_over_error"].append(float(np.mean(traces)) / squared_error)
            row["gaussian_over_error"].append(gaussian / squared_error)
        results["rows"].append(row)
        cells = "  ".join(
            f"{a:.2f} / {b:.2f}"
            for a, b in zip(row["jacobian_over_error"], row["gaussian_over_error"], strict=True)
        )
        print(f"{level:6.2f} data std, per band (Jacobian / Gaussian over the error): {cells}")
    if args.json:
        write_results(args.json, results)


if __name__ == "__main__":
    main()
