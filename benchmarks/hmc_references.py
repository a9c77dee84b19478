"""Gold-standard HMC posteriors for the non-Gaussian benchmark cases (R2, R3), saved for samplers.

Cases on a 24 x 32 grid: lognormal + mask/noise, lognormal + lensing, GRF + galaxy counts,
lognormal + galaxy counts (`posterior_diffusion/references/gold_standard.py`), a few observations
each. Per observation it prints R-hat, ESS and wall time, and how non-Gaussian and how informative
the posterior is: per-pixel skewness against its standard error sqrt(6 / N), and posterior std
over prior std. Each converged reference goes to `--out/{case}_seed{seed}.npz` (samples, mean,
std, diagnostics, truth, data); one that does not converge is reported and not saved.

    OMP_NUM_THREADS=1 python benchmarks/hmc_references.py --json benchmarks/results_hmc_references.json

Load one with `load_reference(path)`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from posterior_diffusion.references.gold_standard import (
    NotConvergedError,
    ReferenceProblem,
    gold_standard_posterior,
    grf_counts_problem,
    lognormal_problem,
)
from posterior_diffusion.references.hmc import GoldStandardPosterior

CASES = (
    "lognormal_mask",
    "lognormal_lensing",
    "grf_counts",
    "lognormal_counts",
    "lognormal_reduced",
)


def make_problem(case: str, shape: tuple[int, int], seed: int) -> ReferenceProblem:
    if case == "grf_counts":
        return grf_counts_problem(shape, seed=seed)
    if case.startswith("lognormal_"):
        return lognormal_problem(case.removeprefix("lognormal_"), shape, seed=seed)
    raise ValueError(f"unknown case '{case}' (choose from {', '.join(CASES)})")


def load_reference(path: str | Path) -> tuple[GoldStandardPosterior, ReferenceProblem]:
    """A saved reference and its problem, rebuilt from the stored case, shape and seed (the
    stored truth and data are checked against the rebuilt ones)."""
    posterior = GoldStandardPosterior.load(path)
    info = posterior.settings["problem"]
    problem = make_problem(info["name"], tuple(info["field"]["shape"]), info["seed"])
    with np.load(path) as data:
        if not (
            np.allclose(data["truth"], problem.truth.numpy())
            and np.allclose(data["y"], problem.y.numpy())
        ):
            raise ValueError(f"{path}: truth or data differ from the rebuilt problem")
    return posterior, problem


def shape_of_posterior(posterior: GoldStandardPosterior, problem: ReferenceProblem) -> dict:
    """Skewness per pixel against its standard error, and posterior std over prior std."""
    draws = posterior.samples.reshape(posterior.samples.shape[0], -1).numpy()
    n = draws.shape[0]
    centred = draws - draws.mean(0)
    skew = (centred**3).mean(0) / centred.std(0) ** 3
    prior = problem.field(
        torch.randn(
            (4096, 1, *problem.field.shape),
            generator=torch.Generator().manual_seed(0),
            dtype=torch.float64,
        )
    )
    prior_std = prior.reshape(4096, -1).std(0).numpy()
    ratio = posterior.std.reshape(-1).numpy() / prior_std
    z = (problem.truth.reshape(-1) - posterior.mean.reshape(-1)) / posterior.std.reshape(-1)
    return {
        "skew_median": float(np.median(skew)),
        "skew_abs_mean": float(np.abs(skew).mean()),
        "skew_se": float(np.sqrt(6 / n)),
        "skew_beyond_5se": float((np.abs(skew) > 5 * np.sqrt(6 / n)).mean()),
        "std_ratio_median": float(np.median(ratio)),
        "std_ratio_min": float(ratio.min()),
        "truth_z_rms": float(z.square().mean().sqrt()),
    }


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--shape", type=int, nargs=2, default=[24, 32], help="H W in pixels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="observations")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=1000, help="per chain after warm-up")
    parser.add_argument("--thin", type=int, default=32, help="store every thin-th draw")
    parser.add_argument("--hmc-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/references"))
    parser.add_argument("--json", help="also write the rows here")
    return parser.parse_args()


def main() -> None:
    args = parse()
    torch.set_num_threads(1)  # tiny FFTs: thread start-up costs more than it saves
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    start = time.perf_counter()
    for case in args.cases:
        for seed in args.seeds:
            problem = make_problem(case, tuple(args.shape), seed)
            try:
                posterior = gold_standard_posterior(
                    problem,
                    chains=args.chains,
                    warmup=args.warmup,
                    draws=args.draws,
                    seed=args.hmc_seed,
                    thin=args.thin,
                )
            except NotConvergedError as err:
                posterior = err.posterior
                failed.append(f"{case} seed {seed}")
            converged = f"{case} seed {seed}" not in failed
            row = {
                "case": case,
                "seed": seed,
                "converged": converged,
                **posterior.summary(),
                **shape_of_posterior(posterior, problem),
            }
            rows.append(row)
            print(
                f"{case:18s} seed {seed}: R-hat {row['max_rhat']:.4f}  min ESS {row['min_ess']:6.0f}"
                f"  median bulk ESS {row['median_ess_bulk']:6.0f}  {row['wall_seconds']:6.1f} s"
                f"  step {row['step_size_min']:.3f}  grad/draw "
                f"{row['sampling_gradients_per_draw']:.1f}  accept {row['accept_rate_mean']:.2f}"
                f"  |skew| {row['skew_abs_mean']:.2f} ({row['skew_beyond_5se']:.0%} > 5 SE)"
                f"  std/prior {row['std_ratio_median']:.2f}"
                + ("" if converged else "  NOT CONVERGED: not saved"),
                flush=True,
            )
            if converged:
                posterior.save(
                    args.out / f"{case}_seed{seed}.npz",
                    arrays={
                        "truth": problem.truth.numpy(),
                        "truth_latent": problem.truth_latent.numpy(),
                        "y": problem.y.numpy(),
                    },
                )
    total = time.perf_counter() - start
    print(f"total {total:.0f} s; not converged: {', '.join(failed) or 'none'}")
    if args.json:
        header = {
            "hardware": f"{platform.processor() or 'cpu'} ({platform.machine()}), 1 thread",
            "torch": torch.__version__,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "total_seconds": total,
        }
        Path(args.json).write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
