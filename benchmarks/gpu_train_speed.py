"""Training steps per second of a prior's network outside Lightning, in a few settings (issue 17:
the 4.8 M U-Net ran 7.1 steps/s at batch 256 on an H200 under Lightning; this says how much of
that is the network and which settings help).

Each setting times `--steps` optimizer steps (EDM loss, AdamW, clipping, the EMA update) on
random maps already on the device, after `--warmup` untimed ones, and prints one JSON line.

    python benchmarks/gpu_train_speed.py --config configs/train_convergence_64_gpu.yaml --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import yaml

from posterior_diffusion.networks import UNet
from posterior_diffusion.networks.edm import EDMPrecond


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a training config (its model.net)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--shape", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    return parser.parse_args()


def steps_per_second(args, batch: int, cudnn_benchmark: bool, channels_last: bool) -> float:
    torch.backends.cudnn.benchmark = cudnn_benchmark
    with open(args.config) as f:
        config = yaml.safe_load(f)["model"]
    model = EDMPrecond(UNet(**config["net"]["init_args"])).to(args.device)
    model.set_normalisation([0.0], 1.0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    maps = torch.randn(batch, 1, *args.shape, device=args.device).to(memory_format=fmt)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.device == "cuda")

    def step() -> None:
        with autocast:
            loss = model.loss(maps, config["log_sigma_mean"], config["log_sigma_std"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1e-3)

    for _ in range(args.warmup):
        step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    return args.steps / (time.perf_counter() - start)


def main() -> None:
    args = parse()
    for batch in args.batch_sizes:
        for cudnn_benchmark in (False, True):
            for channels_last in (False, True):
                rate = steps_per_second(args, batch, cudnn_benchmark, channels_last)
                print(json.dumps({
                    "batch": batch, "cudnn_benchmark": cudnn_benchmark,
                    "channels_last": channels_last, "steps_per_s": round(rate, 2),
                    "maps_per_s": round(rate * batch), "device": args.device,
                }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
