"""Fine-tune a trained prior at the noise levels where its draws lose power (an experiment).

`benchmarks/prior_samples.py --start simulations --start-sigma S` locates where along the reverse
SDE a prior's draws lose power; for the default convergence prior it is between about 16 and 4
data std, where a denoiser's loss is dominated by what it cannot know and training's gradients are
noisiest. This continues training from a prior file with a share `--focus` of each batch's noise
levels drawn from ln(sigma / std) ~ N(ln(--centre), --width^2) and the rest from the training
config's distribution, on fresh simulations every step (the simulator is cheap, so no map is seen
twice), with the same EDM loss, AdamW, clipping and EMA as `posterior-diffusion train`. Writes a
prior file (the source's metadata, plus what was done) of the averaged (EMA) weights; `--steps N
--anneal` lets the learning rate fall linearly to 0 over N steps, and `--raw-out` also writes the
live weights (docs/default_prior.md, "The averaged weights are the lag", measured both).
`--data FILE` draws the batches from a training file instead (random maps under random flips,
rotations and shifts, as `train` does), for a simulator too slow to run every step (density).

    OMP_NUM_THREADS=1 python benchmarks/finetune_levels.py --prior posterior_diffusion/data/default_prior.pt \
        --minutes 30 --out finetuned.pt
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.prior_file import make_record, save_record
from posterior_diffusion.simulators import simulate_fields
from posterior_diffusion.training.data import augment
from posterior_diffusion.training.module import lr_factor


def stored_maps(path: str, shape) -> torch.Tensor:
    """A training file's maps (num, 1, H, W), checked against the prior's map shape."""
    with h5py.File(path, "r") as f:
        maps = np.asarray(f["fields"], dtype=np.float32)
    maps = maps[:, None] if maps.ndim == 3 else maps
    if maps.shape[1:] != tuple(shape):
        raise SystemExit(f"{path}: fields are {maps.shape[1:]}, the prior's maps {tuple(shape)}")
    return torch.from_numpy(maps)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True)
    parser.add_argument("--kind", default="convergence")
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--centre", type=float, default=6.0, help="data std")
    parser.add_argument("--width", type=float, default=0.7, help="in ln(sigma)")
    parser.add_argument("--focus", type=float, default=0.75, help="share of the batch focused")
    parser.add_argument("--base-mean", type=float, default=-1.0, help="the config's log_sigma_mean")
    parser.add_argument("--base-std", type=float, default=1.6, help="the config's log_sigma_std")
    parser.add_argument("--seed", type=int, default=1000, help="simulation seeds start here")
    parser.add_argument(
        "--steps", type=int, default=0, help="stop after this many steps (0: only --minutes)"
    )
    parser.add_argument(
        "--anneal", action="store_true", help="learning rate falls linearly to 0 over --steps"
    )
    parser.add_argument("--raw-out", help="also write the live (not averaged) weights here")
    parser.add_argument(
        "--data",
        help="draw each batch from this file's `fields` (random maps, each under a random flip, "
        "rotation and periodic shift, as `train` does) instead of fresh simulations: for a "
        "simulator too slow to run every step (density: 7 s per batch of 32 on one thread)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse()
    if args.anneal and args.steps <= 0:
        raise SystemExit("--anneal needs --steps (the schedule is per step, so it is reproducible)")
    torch.manual_seed(args.seed)
    prior = NetworkPrior.from_file(args.prior)
    model = prior.precond.train().requires_grad_(True)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    focused = round(args.focus * args.batch)
    shape = prior.trained_shape[-2:]
    stored = stored_maps(args.data, prior.trained_shape) if args.data else None
    periodic = bool(prior.metadata.get("periodic"))  # shifts only where the field wraps
    start, step, losses = time.perf_counter(), 0, []
    while time.perf_counter() - start < 60 * args.minutes and (
        args.steps <= 0 or step < args.steps
    ):
        if args.anneal:
            for group in optimizer.param_groups:
                group["lr"] = args.lr * lr_factor(step, 0, args.steps)  # train's schedule
        if stored is None:
            maps, _ = simulate_fields(args.kind, shape, args.batch, args.seed + step)
            x0 = torch.from_numpy(maps)[:, None].to(torch.float32)
        else:
            pick = torch.randint(len(stored), (args.batch,))
            x0 = torch.stack([augment(stored[i], periodic) for i in pick])
        loss = (
            sum(
                len(part) * model.loss(part, mean, sd)
                for part, mean, sd in (
                    (x0[:focused], math.log(args.centre), args.width),
                    (x0[focused:], args.base_mean, args.base_std),
                )
                if len(part)  # an empty part's mean loss is NaN
            )
            / args.batch
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1.0 - args.ema_decay)
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            rate = step / (time.perf_counter() - start)
            print(
                f"step {step}: loss {sum(losses[-100:]) / 100:.4f} ({rate:.2f} steps/s)", flush=True
            )
    metadata = dict(prior.metadata)
    metadata["finetuned"] = {
        "from": prior.checksum, "steps": step, "batch": args.batch, "lr": args.lr,
        "lr_schedule": "linear to 0" if args.anneal else "constant",
        "noise_levels": f"{args.focus} of each batch ln(sigma/std) ~ N(ln {args.centre}, "
        f"{args.width}^2), the rest N({args.base_mean}, {args.base_std}^2)",
        "data": f"fresh {args.kind} simulations, seeds {args.seed} + step"
        if stored is None
        else f"{len(stored)} maps of {Path(args.data).name}, random symmetries and shifts",  # no local path
    }  # fmt: skip
    metadata["training_steps"] = int(metadata.get("training_steps") or 0) + step
    # The starting file's losses would describe other weights: keep them under `finetuned`.
    for key in ("training_loss", "validation_loss"):
        metadata["finetuned"][f"starting_file_{key}"] = metadata.pop(key, None)
    metadata["training_loss"] = sum(losses[-100:]) / len(losses[-100:]) if losses else None
    save_record(make_record(ema.state_dict(), metadata), args.out)
    print(f"wrote {args.out} after {step} steps")
    if args.raw_out:
        metadata["finetuned"]["weights"] = "live (no EMA)"
        save_record(make_record(model.eval().state_dict(), metadata), args.raw_out)
        print(f"wrote {args.raw_out} (live weights)")


if __name__ == "__main__":
    main()
