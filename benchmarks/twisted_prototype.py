"""Prototype (not a package sampler): twisted SMC along the diffusion levels with a stationary twist.

Issue 14's twisted-SMC lead used guided's own Tweedie covariance in the twist, whose
particle-dependent log-determinant had to be estimated (stochastic Lanczos). Here the twist is

    psi_sigma(x) = N(y_w; B D(x, sigma), I + B C_sigma B^T),   C_sigma = sigma^2 P / (P + sigma^2)

with P the prior's second moments per Fourier mode (`Prior.second_moment_power`): the same
covariance for every particle, so its log-determinant cancels from the weights; psi tends to the
exact likelihood as sigma -> 0 and is exact at every level for a Gaussian prior. Particles move
by guided's reverse-SDE proposal (first order), weights are p(x' | x) psi(x') / (q(x' | x) psi(x)),
with p the prior's own reverse transition; systematic resampling (sorted by total power) below
half ESS, each followed by `--moves` Langevin moves on p_sigma psi (`samplers/refine.py`).
Measured on R1's blind mixtures against their exact posteriors (`references/compare.py`).

    OMP_NUM_THREADS=1 python benchmarks/twisted_prototype.py --problems amplitude/mask \\
        --observations 6 --members 128 --json benchmarks/results_twisted_prototype_cpu.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from common import cpu_threads, result_header

from forward_models.fourier import fourier_filter
from posterior_diffusion.likelihood import WhitenedLinearGaussian
from posterior_diffusion.linalg import conjugate_gradient_with_image
from posterior_diffusion.references import mixture_exact_posterior
from posterior_diffusion.references.compare import LEVELS, compare_to_reference
from posterior_diffusion.references.mixture import MarginalDenoiser
from posterior_diffusion.references.problems import draw_observations, problem_from_name
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.schedules import log_uniform_sigmas

guided_module = importlib.import_module("posterior_diffusion.samplers.guided")
refine_module = importlib.import_module("posterior_diffusion.samplers.refine")
smc_module = importlib.import_module("posterior_diffusion.samplers.smc")


def dot(a, b):
    return (a * b).flatten(1).sum(1)


class Counting:
    """Counts the prior's denoiser calls and covariance products per member."""

    def __init__(self, prior):
        self.prior, self.calls = prior, 0

    def denoise(self, x, sigma):
        self.calls += x.shape[0]
        return self.prior.denoise(x, sigma)

    def linearize(self, x, sigma):
        self.calls += x.shape[0]
        x0, cov = self.prior.linearize(x, sigma)

        def counted(v):
            self.calls += v.shape[0]
            return cov(v)

        return x0, counted

    def __getattr__(self, name):
        return getattr(self.prior, name)


def twisted_smc(prior, model, y, members, seed, levels, moves, second_order=True, cg_max_iter=3):
    likelihood = WhitenedLinearGaussian(model, y)
    shape = tuple(model.field_shape)
    power = prior.second_moment_power(shape).to(torch.float64)
    rng = EnsembleRNG(seed, range(members))
    shared = torch.Generator().manual_seed(rng.shared_seed())
    denoise_y = guided_module.conditional_denoiser(prior, likelihood, 1e-3, cg_max_iter)
    warm = {}

    def log_twist(x0_hat, sigma):
        cov = power * sigma**2 / (power + sigma**2)
        r = likelihood.residual(x0_hat)

        def matvec(v):
            bt_v = likelihood.B_adjoint(v)
            return v + likelihood.B(fourier_filter(bt_v, cov)), bt_v

        u, _, _ = conjugate_gradient_with_image(matvec, r, warm.get(sigma), 1e-10, 200)
        return -0.5 * dot(r, u)

    sigmas = log_uniform_sigmas(levels, prior.sigma_min(), prior.sigma_max()).tolist()
    x = sigmas[0] * rng.randn(shape)
    d = prior.denoise(x, sigmas[0])
    psi = log_twist(d, sigmas[0])
    log_w = psi.clone()
    ess_trace, resamplings = [], 0
    previous = None  # (D, D_y, h) of the last step: DPM-Solver++(2M) SDE's second-order term
    for sigma, sigma_next in zip(sigmas[:-2], sigmas[1:-1], strict=True):
        d_y = denoise_y(x, sigma)
        ratio = (sigma_next / sigma) ** 2
        var = sigma_next**2 * (1 - ratio)
        h = math.log(sigma / sigma_next)
        mean_prior = ratio * x + (1 - ratio) * d
        mean_guided = ratio * x + (1 - ratio) * d_y
        if previous is not None and second_order:
            d_prev, d_y_prev, h_prev = previous
            mean_prior = mean_prior + 0.5 * (1 - ratio) * (h / h_prev) * (d - d_prev)
            mean_guided = mean_guided + 0.5 * (1 - ratio) * (h / h_prev) * (d_y - d_y_prev)
        previous = (d, d_y, h)
        x = mean_guided + math.sqrt(var) * rng.randn(shape)
        from_guided, from_prior = x - mean_guided, x - mean_prior
        log_p_minus_q = (dot(from_guided, from_guided) - dot(from_prior, from_prior)) / (2 * var)
        d = prior.denoise(x, sigma_next)
        psi_next = log_twist(d, sigma_next)
        log_w = log_w + log_p_minus_q + psi_next - psi
        psi = psi_next
        ess = smc_module.effective_sample_size(log_w)
        ess_trace.append(ess)
        if ess < 0.5:
            order = torch.argsort(x.flatten(1).square().sum(1))
            ancestors = smc_module.systematic_resample(
                log_w, float(torch.rand((), generator=shared)), order
            )
            x, d, psi = x[ancestors], d[ancestors], psi[ancestors]
            previous = (previous[0][ancestors], previous[1][ancestors], previous[2])
            log_w = torch.zeros_like(log_w)
            resamplings += 1
            if moves:
                move = refine_module.noised_posterior_mala(
                    prior, likelihood, sigma_next, moves, lambda: rng.randn(shape),
                    lambda: rng.rand(()), None, scale_moves=False,
                )  # fmt: skip
                x = move(x)
                previous = None  # the second-order term must not span a move
                d = prior.denoise(x, sigma_next)
                psi = log_twist(d, sigma_next)
    # last level: the posterior mean given x at sigma_min (as guided), then a final resampling
    x0 = denoise_y(x, sigmas[-2])
    final_ess = smc_module.effective_sample_size(log_w)
    order = torch.argsort(x0.flatten(1).square().sum(1))
    ancestors = smc_module.systematic_resample(
        log_w, float(torch.rand((), generator=shared)), order
    )
    unique = len(set(ancestors.tolist())) / members
    return x0[ancestors], {"final_ess": final_ess, "min_ess": min(ess_trace), "resamplings": resamplings,
                           "unique_fraction": unique}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default="amplitude/mask")
    parser.add_argument("--observations", type=int, default=6)
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--levels", type=int, default=96)
    parser.add_argument("--moves", type=int, default=4, help="Langevin moves after each resampling")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_threads()
    results = result_header(args, "2-core CPU")
    for name in args.problems.split(","):
        prior, model = problem_from_name(name, (24, 32))
        for k, (truth, y) in enumerate(draw_observations(prior, model, args.observations, 0)):
            exact = mixture_exact_posterior(prior, model, y)
            reference = exact.sample(args.members, torch.Generator().manual_seed(2**32 + k))
            counting = Counting(MarginalDenoiser(prior))
            start = time.perf_counter()
            with torch.no_grad():
                samples, diag = twisted_smc(
                    counting, model, y, args.members, 1000 + k, args.levels, args.moves
                )
            seconds = time.perf_counter() - start
            c = compare_to_reference(samples, reference, truth, exact, LEVELS)
            row = {"problem": name, "observation": k, "omega": exact.weights.tolist(),
                   "nfe_per_sample": counting.calls / args.members, "seconds": seconds,
                   **diag, **c.as_dict()}  # fmt: skip
            results["rows"].append(row)
            print(
                f"{name} obs {k} omega {np.round(exact.weights.numpy(), 2)}: TV {c.component_tv:.3f} "
                f"(exact {c.reference_component_tv:.3f}, tol {c.component_tv_tolerance:.3f}), "
                f"log-power spread {c.log_power_spread_ratio:.2f}, std ratio {c.std_ratio:.3f}, "
                f"cov-ref {np.round(c.coverage_minus_reference, 3)}, NFE {row['nfe_per_sample']:.0f}, "
                f"ESS final {diag['final_ess']:.2f} min {diag['min_ess']:.2f}, resamplings "
                f"{diag['resamplings']}, unique {diag['unique_fraction']:.2f}, {seconds:.0f} s",
                flush=True,
            )
            if args.json:
                tmp = args.json.with_suffix(".tmp")
                tmp.write_text(json.dumps(results, indent=1))
                tmp.replace(args.json)


if __name__ == "__main__":
    main()
