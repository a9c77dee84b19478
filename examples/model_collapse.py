"""Model collapse: a prior retrained, generation after generation, on its own samples.

Generation 0 is trained on simulated lognormal fields (shift 0.05: skewness 2.2, excess
kurtosis 10 at 32 x 32); generation g + 1 on maps drawn from
generation g's prior. Each generation's training maps are measured against the simulations:
the power spectrum P(k) and the one-point PDF, whose far tails hold the rare bright pixels.
A figure and a JSON table go to OUT (docs/model_collapse.md discusses them).

    python examples/model_collapse.py --out model_collapse   # defaults: ~40 min on 2 CPUs (est.)
    python examples/model_collapse.py --generations 2 --steps 500 --maps 1024 --sampling-steps 48
        # the run in docs/model_collapse.md: 10 min on 2 CPU cores (measured)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from posterior_diffusion.diagnostics.spectra import power_spectrum
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.simulators import simulate_fields, write_dataset_file

ROOT = Path(__file__).resolve().parent.parent
TAIL_QUANTILES = (0.001, 0.01, 0.99, 0.999)


def train(data: Path, folder: Path, steps: int, seed: int) -> Path:
    """A small U-Net prior on `data` through the real `train` command; its prior file."""
    command = [sys.executable, "-m", "posterior_diffusion.cli", "train",
               "--config", str(ROOT / "configs" / "train_tiny.yaml"), "--data.path", str(data),
               "--data.batch_size", "32", "--data.val_fraction", "0.05",
               "--model.net.init_args.base_channels", "16",
               "--model.net.init_args.channel_mults", "[1, 2, 2]", "--model.lr", "1e-3",
               "--model.warmup_steps", "100", "--model.ema_decay", "0.999",
               "--trainer.max_steps", str(steps), "--seed_everything", str(seed),
               "--trainer.default_root_dir", str(folder)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return next(folder.glob("lightning_logs/version_*/prior.pt"))


def draw(prior_file: Path, num: int, steps: int, seed: int) -> np.ndarray:
    """`num` maps from a trained prior by its reverse SDE, (num, H, W)."""
    prior = NetworkPrior.from_file(prior_file)
    generator = torch.Generator().manual_seed(seed)
    maps = [
        prior.sample(min(256, num - start), generator, steps=steps)[:, 0].numpy()
        for start in range(0, num, 256)
    ]
    return np.concatenate(maps).astype(np.float32)


def statistics(maps: np.ndarray, edges: np.ndarray) -> dict:
    """P(k) in bins, one-point quantiles in the tails, skewness and kurtosis."""
    k, power, _ = power_spectrum(maps, k_edges=edges)
    values = maps.ravel().astype(np.float64)
    z = (values - values.mean()) / values.std()
    return {
        "k": k.tolist(),
        "power": power.mean(axis=0).tolist(),
        "std": float(values.std()),
        "quantiles": dict(
            zip(map(str, TAIL_QUANTILES), np.quantile(values, TAIL_QUANTILES).tolist(), strict=True)
        ),
        "skewness": float(np.mean(z**3)),
        "excess_kurtosis": float(np.mean(z**4) - 3),
    }


def plot(generations: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    first = np.asarray(generations[0]["power"])
    for g, stats in enumerate(generations):
        label = "simulations" if g == 0 else f"generation {g}"
        left.plot(stats["k"], np.asarray(stats["power"]) / first, label=label)
        values = np.asarray(stats["histogram"])
        right.semilogy(stats["bin_centres"], values, label=label)
    left.axhline(1, color="k", lw=0.5)
    left.set(xscale="log", xlabel="k [cycles/pixel]", ylabel="P(k) / P_simulations(k)")
    right.set(xlabel="pixel value", ylabel="PDF")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "model_collapse.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("model_collapse"))
    parser.add_argument("--generations", type=int, default=3, help="trained priors in the chain")
    parser.add_argument("--maps", type=int, default=2048, help="training maps per generation")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1500, help="training steps per generation")
    parser.add_argument("--sampling-steps", type=int, default=64)
    parser.add_argument("--shift", type=float, default=0.05, help="lognormal shift")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    maps, attrs = simulate_fields(
        "lognormal", (args.size, args.size), num=args.maps, seed=0, shift=args.shift
    )
    maps = maps.astype(np.float32)
    edges = np.linspace(0.5 / args.size, 0.5, 9)
    bins = np.linspace(np.quantile(maps, 1e-4), np.quantile(maps, 1 - 1e-4), 41)
    results = []
    for generation in range(args.generations + 1):
        stats = statistics(maps, edges)
        histogram, _ = np.histogram(maps.ravel(), bins=bins, density=True)
        stats.update(
            histogram=histogram.tolist(), bin_centres=(0.5 * (bins[1:] + bins[:-1])).tolist()
        )
        results.append({"generation": generation, **stats})
        print(f"generation {generation}: std {stats['std']:.4g}, skewness {stats['skewness']:.3f}, "
              f"excess kurtosis {stats['excess_kurtosis']:.3f}, 99.9% {stats['quantiles']['0.999']:.4g}",
              flush=True)  # fmt: skip
        if generation == args.generations:
            break
        data = write_dataset_file(args.out / f"generation_{generation}.h5", maps, attrs)
        prior_file = train(data, args.out / f"run_{generation}", args.steps, seed=generation)
        maps = draw(prior_file, args.maps, args.sampling_steps, seed=100 + generation)
    (args.out / "model_collapse.json").write_text(
        json.dumps(
            {"settings": vars(args) | {"out": str(args.out)}, "generations": results}, indent=1
        )
    )
    plot(results, args.out)
    print(f"wrote {args.out / 'model_collapse.png'} and {args.out / 'model_collapse.json'}")


if __name__ == "__main__":
    main()
