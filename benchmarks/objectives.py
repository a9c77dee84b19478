"""EDM against flow matching: the same network, data, steps and seed; only the objective differs.

Both priors are trained by the real `train` command on Gaussian random fields of the default
spectrum, whose exact denoiser and posteriors are known, then measured two ways:

- denoiser excess error: E|D_net - D_exact|^2 / E|D_exact - x0|^2 at fixed noise levels (in
  data standard deviations), on fresh fields drawn from the exact prior (0 = exact denoiser);
- posterior calibration with the default `guided` sampler on a blurred, noisy observation with
  an exact (Fourier) posterior: RMS z of the ensemble mean, median std ratio, and 68% / 95%
  coverage of the truth minus that of exact posterior samples, over several observations.

    python benchmarks/objectives.py --json benchmarks/results_objectives_cpu.json
    python benchmarks/objectives.py --table-from benchmarks/results_objectives_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import (  # noqa: E402
    cpu_threads,
    denoiser_excess,
    ensemble_scores,
    mean_scores,
    result_header,
)
from performance import problem  # noqa: E402

from posterior_diffusion.priors import GaussianPrior, default_power_spectrum  # noqa: E402
from posterior_diffusion.priors.network import NetworkPrior  # noqa: E402
from posterior_diffusion.samplers.run import sample_posterior  # noqa: E402

CLI = [sys.executable, "-m", "posterior_diffusion.cli"]
NOISE_LEVELS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # in data standard deviations


def run(args: list[str], cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")


def train(objective: str, data: Path, root: Path, args) -> tuple[Path, float]:
    start = time.perf_counter()
    run([*CLI, "train", "--config", str(ROOT / "configs" / "train_tiny.yaml"),
         "--data.path", str(data), "--data.batch_size", str(args.batch_size),
         "--data.val_fraction", "0.05",
         "--model.objective", objective, "--model.lr", "1e-3", "--model.warmup_steps", "100",
         "--model.ema_decay", "0.999",
         "--model.net.init_args.base_channels", "16",
         "--model.net.init_args.channel_mults", "[1, 2, 2]",
         "--trainer.max_steps", str(args.steps), "--trainer.log_every_n_steps", "50",
         "--trainer.default_root_dir", str(root)], cwd=root.parent)  # fmt: skip
    return next(root.glob("lightning_logs/version_0/prior.pt")), time.perf_counter() - start


def calibration(prior, observations: int, members: int) -> dict:
    rows = []
    for seed in range(observations):
        _, model, truth, y, exact = problem(prior.trained_shape[-1], seed)
        samples, info = sample_posterior(prior, model, y, members, seed=seed, progress=False)
        rows.append(ensemble_scores(samples, truth, exact, seed, info))
    return mean_scores(rows)


def table(result: dict) -> str:
    lines = [f"{result['hardware']}; torch {result['torch']}; {result['settings']}", ""]
    head = " | ".join(f"excess {k}" for k in result["rows"][0]["denoiser_excess"])
    lines += [f"| objective | train s | val loss | {head} | z_mean | std ratio | cov68-exact "
              "| cov95-exact |", "|---" * (7 + len(NOISE_LEVELS)) + "|"]  # fmt: skip
    for r in result["rows"]:
        c = r["calibration"]
        errors = " | ".join(f"{v:.1e}" for v in r["denoiser_excess"].values())
        lines.append(
            f"| {r['objective']} | {r['train_seconds']:.0f} | {r['validation_loss']:.4f} "
            f"| {errors} | {c['z_mean']:.3f} | {c['std_ratio']:.3f} "
            f"| {c['cov68_minus_exact']:+.3f} | {c['cov95_minus_exact']:+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--maps", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--observations", type=int, default=4)
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table-from", type=Path)
    args = parser.parse_args()
    if args.table_from:
        print(table(json.loads(args.table_from.read_text())))
        return
    cpu_threads()
    exact = GaussianPrior(default_power_spectrum(), (1, args.size, args.size))
    result = result_header(args, f"{os.cpu_count()}-core CPU")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "grf.h5"
        run([*CLI, "simulate", "grf", str(data), "--num", str(args.maps), "--shape",
             str(args.size), str(args.size), "--seed", "1"], folder)  # fmt: skip
        for objective in ("edm", "flow_matching"):
            path, seconds = train(objective, data, folder / objective, args)
            prior = NetworkPrior.from_file(path)
            row = {
                "objective": objective,
                "train_seconds": seconds,
                "validation_loss": prior.metadata["validation_loss"],
                "training_steps": prior.metadata["training_steps"],
                "denoiser_excess": denoiser_excess(
                    prior, exact, prior.data_std(), NOISE_LEVELS, 256, seed=11
                ),
                "calibration": calibration(prior, args.observations, args.members),
            }
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
