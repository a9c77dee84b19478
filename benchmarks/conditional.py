"""A parameter-conditioned prior p(x | theta) and classifier-free guidance, against exact answers.

Gaussian random fields with power-law spectra P(k; amplitude, slope) (`PowerLawSpectrum`), theta
uniform in a box, train one U-Net with theta dropped 10% of the time. At a fixed theta the true
prior is Gaussian, so its denoiser and every posterior under a blurred, noisy observation are
known exactly (Fourier-diagonal). Measured at a few theta, for guidance weights w:

- denoiser excess error E|D - D_exact(theta)|^2 / E|D_exact(theta) - x0|^2 at fixed noise levels
  (in data standard deviations), for the conditional denoiser, the unconditional one (theta
  dropped: the marginal prior) and guided ones;
- posterior calibration with the default `guided` sampler (or `--sampler`): RMS z of the ensemble mean against
  the exact posterior mean, median std ratio, and 68% / 95% coverage of the truth minus that of
  exact posterior samples, averaged over observations.

Training uses Lightning's Trainer directly (not the `train` command), so the benchmark also runs
where jsonargparse is not installed (the GPU machines here).

    python benchmarks/conditional.py --device cuda --json benchmarks/results_conditional_gpu.json
    python benchmarks/conditional.py --table-from benchmarks/results_conditional_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import cpu_threads, denoiser_excess, ensemble_scores, mean_scores, result_header
from performance import problem

from posterior_diffusion.priors import GaussianPrior
from posterior_diffusion.priors.conditioned import ConditionedPrior, GuidanceWarning
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.power_spectrum import PowerLawSpectrum
from posterior_diffusion.samplers.run import sample_posterior

NOISE_LEVELS = (0.03, 0.1, 0.3, 1.0, 3.0)  # in data standard deviations
TEST_THETAS = ((0.7, -2.2), (1.25, -1.75), (1.8, -1.2))  # inside the default training box
MARGINAL = "marginal"  # the conditional network with theta dropped


def train(data: Path, out: Path, args: argparse.Namespace) -> tuple[Path, float]:
    import lightning as L

    from posterior_diffusion.networks import UNet
    from posterior_diffusion.priors.prior_file import save_record
    from posterior_diffusion.training.data import FieldDataModule
    from posterior_diffusion.training.module import ScorePriorModule

    L.seed_everything(0, verbose=False)
    net = UNet(base_channels=args.base_channels, channel_mults=(1, 2, 2), condition_dim=2)
    module = ScorePriorModule(net, lr=1e-3, warmup_steps=200, ema_decay=0.999)
    data_module = FieldDataModule(str(data), batch_size=args.batch_size, val_fraction=0.02)
    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        max_steps=args.steps,
        gradient_clip_val=1.0,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        val_check_interval=min(1000, args.steps),
        check_val_every_n_epoch=None,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data_module)
    save_record(module.prior_record(), out)
    return out, time.perf_counter() - start


def exact_prior(theta, size: int) -> GaussianPrior:
    return GaussianPrior(PowerLawSpectrum(*theta), (1, size, size))


def view(prior: NetworkPrior, theta, weight):
    """The prior a row measures: the marginal (theta dropped) or theta at guidance weight w."""
    if weight == MARGINAL:
        return prior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GuidanceWarning)  # w != 0 is what is being measured
        return ConditionedPrior(prior, theta, float(weight))


def calibration(denoiser, exact: GaussianPrior, args: argparse.Namespace, seed0: int) -> dict:
    rows = []
    for seed in range(seed0, seed0 + args.observations):
        _, model, truth, y, posterior = problem(args.size, seed, exact)
        samples, info = sample_posterior(
            denoiser,
            model,
            y,
            args.members,
            sampler=args.sampler,
            seed=seed,
            device=args.device,
            progress=False,
        )
        rows.append(ensemble_scores(samples.cpu(), truth, posterior, seed, info))
    return mean_scores(rows)


def table(result: dict) -> str:
    lines = [f"{result['hardware']}; torch {result['torch']}; {result['settings']}", ""]
    levels = " | ".join(f"excess {k}" for k in NOISE_LEVELS)
    lines += [
        f"| theta (A, n) | w | {levels} | z_mean | std ratio | cov68-exact | cov95-exact |",
        "|---" * (6 + len(NOISE_LEVELS)) + "|",
    ]
    for r in result["rows"]:
        c = r["calibration"]
        errors = " | ".join(f"{r['denoiser_excess'][f'{k:g}']:.1e}" for k in NOISE_LEVELS)
        lines.append(
            f"| ({r['theta'][0]:g}, {r['theta'][1]:g}) | {r['weight']} | {errors} "
            f"| {c['z_mean']:.3f} | {c['std_ratio']:.3f} | {c['cov68_minus_exact']:+.3f} "
            f"| {c['cov95_minus_exact']:+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--maps", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--observations", type=int, default=4)
    parser.add_argument("--members", type=int, default=128)
    parser.add_argument("--weights", default="0,0.5,2", help="guidance weights, comma-separated")
    parser.add_argument("--sampler", default="guided")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prior", type=Path, help="a trained conditional prior: skip training")
    parser.add_argument("--save-prior", type=Path, help="keep the trained prior here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table-from", type=Path)
    args = parser.parse_args()
    if args.table_from:
        print(table(json.loads(args.table_from.read_text())))
        return
    if args.device == "cpu":
        cpu_threads()
    hardware = (
        torch.cuda.get_device_name(0) if args.device == "cuda" else f"{os.cpu_count()}-core CPU"
    )
    result = result_header(args, hardware)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.prior
        if path is None:
            from posterior_diffusion.simulators import write_dataset_file
            from posterior_diffusion.simulators.conditional import conditional_grf

            data = Path(tmp) / "conditional.h5"
            fields, theta, attrs = conditional_grf((args.size, args.size), args.maps, seed=1)
            write_dataset_file(data, fields, attrs, theta=theta)
            path, seconds = train(data, args.save_prior or Path(tmp) / "prior.pt", args)
            result["train_seconds"] = seconds
            print(f"trained in {seconds:.0f} s", flush=True)
        prior = NetworkPrior.from_file(path).to(args.device)
    result["validation_loss"] = prior.metadata["validation_loss"]
    result["training_steps"] = prior.metadata["training_steps"]
    weights = [MARGINAL, *(float(w) for w in args.weights.split(","))]
    for index, theta in enumerate(TEST_THETAS):
        exact = exact_prior(theta, args.size)
        for weight in weights:
            denoiser = view(prior, theta, weight)
            row = {
                "theta": list(theta),
                "weight": weight if weight == MARGINAL else f"{weight:g}",
                "denoiser_excess": denoiser_excess(
                    denoiser, exact, prior.data_std(), NOISE_LEVELS, 256, seed=11 + index
                ),
                "calibration": calibration(denoiser, exact, args, seed0=100 * index),
            }
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
