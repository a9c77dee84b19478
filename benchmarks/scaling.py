"""Scaling over processes: sharded sampling and DDP training, 1 process against N.

Every case runs the real command line (`posterior-diffusion reconstruct --devices N`,
`posterior-diffusion train --trainer.devices N --trainer.strategy ddp`) in a subprocess, so the
times include what users pay: start-up, the launcher, loading the prior, writing the output.

Sampling: the README's main job (examples/data/lensing_obs.h5, 64 x 64, default U-Net prior,
guided sampler, batch 32 in every layout). Reported: wall time, the sampling time of the slowest
rank (from the output's provenance), start-up (the rest), speed-up over one process, and the
largest difference of any member from the first layout's ensemble, over the ensemble spread.

Training: a U-Net (16 base channels) on 32 x 32 Gaussian random fields, batch 32 per process.
Time per optimiser step is the difference of two runs (few and more steps) over the extra steps,
so start-up cancels; throughput is maps per second over all ranks.

    OMP_NUM_THREADS=1 python benchmarks/scaling.py --json benchmarks/results_scaling_cpu.json
    python benchmarks/scaling.py --table-from benchmarks/results_scaling_cpu.json
    python benchmarks/scaling.py --device cuda --devices 1 2 4 --json ...   # one node, 4 GPUs
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OBSERVATION = ROOT / "examples" / "data" / "lensing_obs.h5"
CLI = [sys.executable, "-m", "posterior_diffusion.cli"]


def run(args: list[str], cwd: Path, threads: int | None) -> float:
    """Wall seconds of one command; it must succeed."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def layouts(devices: list[int], device: str, cores: int) -> list[tuple[int, int | None]]:
    """(processes, threads per process): on the CPU, every layout uses all cores, plus one
    single-thread process as the per-core reference; on GPUs, one process per GPU."""
    if device == "cuda":
        return [(n, None) for n in devices]
    out = [(1, 1)] if cores > 1 else []
    return out + [(n, max(1, cores // n)) for n in devices]


def sampling(args, folder: Path) -> list[dict]:
    import xarray as xr

    rows, reference = [], None
    for processes, threads in layouts(args.devices, args.device, args.cores):
        output = folder / f"sampling_{processes}x{threads}.h5"
        command = [*CLI, "reconstruct", str(OBSERVATION), "--num-samples", str(args.num_samples),
                   "--seed", "0", "--device", args.device, "--devices", str(processes),
                   "--batch-size", str(args.batch_size),
                   "--no-progress", "-o", str(output)]  # fmt: skip
        wall = run(command, folder, threads)
        ds = xr.load_dataset(output, engine="h5netcdf")
        info = json.loads(ds.attrs["sampler_settings"])
        samples = ds["samples"].values
        if reference is None:
            reference = samples
        spread = float(reference.std(axis=0).mean())
        rows.append(
            {
                "part": "sampling",
                "processes": processes,
                "threads_per_process": threads,
                "num_samples": args.num_samples,
                "batch_size": args.batch_size,
                "wall_s": wall,
                "sampling_s": info["seconds"],
                "startup_s": wall - info["seconds"],
                "max_member_difference_over_spread": float(
                    np.abs(samples - reference).max() / spread
                ),
            }
        )
        print(rows[-1], flush=True)
    return rows


def training(args, folder: Path) -> list[dict]:
    data = folder / "grf32.h5"
    run([*CLI, "simulate", "grf", str(data), "--num", "1024", "--shape", "32", "32", "--seed", "1"],
        folder, None)  # fmt: skip
    rows = []
    for processes, threads in layouts(args.devices, args.device, args.cores):
        walls = {}
        for steps in (args.train_steps // 4, args.train_steps):
            root = folder / f"train_{processes}x{threads}_{steps}"
            command = [*CLI, "train", "--config", str(ROOT / "configs" / "train_tiny.yaml"),
                       "--data.path", str(data), "--data.batch_size", "32",
                       "--model.net.init_args.base_channels", "16",
                       "--trainer.accelerator", "gpu" if args.device == "cuda" else "cpu",
                       "--trainer.devices", str(processes), "--trainer.max_steps", str(steps),
                       "--trainer.limit_val_batches", "0",
                       "--trainer.default_root_dir", str(root)]  # fmt: skip
            if processes > 1:
                command += ["--trainer.strategy", "ddp"]
            walls[steps] = run(command, folder, threads)
        extra = args.train_steps - args.train_steps // 4
        step_s = (walls[args.train_steps] - walls[args.train_steps // 4]) / extra
        rows.append(
            {
                "part": "training",
                "processes": processes,
                "threads_per_process": threads,
                "batch_per_process": 32,
                "step_s": step_s,
                "maps_per_s": 32 * processes / step_s,
                "wall_s": walls[args.train_steps],
            }
        )
        print(rows[-1], flush=True)
    return rows


def table(result: dict) -> str:
    rows = result["rows"]
    lines = [f"Hardware: {result['hardware']}; torch {result['torch']}.", ""]

    def base(part: str, key: str) -> float:
        # Speed-ups are over one process using all cores (the first row with the most threads).
        ones = [r for r in rows if r["part"] == part and r["processes"] == 1]
        return max(ones, key=lambda r: r["threads_per_process"] or 0)[key]

    lines += ["| processes x threads | wall s | sampling s | start-up s | speed-up (wall) "
              "| speed-up (sampling) | max member diff / spread |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in (r for r in rows if r["part"] == "sampling"):
        lines.append(
            f"| {r['processes']} x {r['threads_per_process'] or 'GPU'} | {r['wall_s']:.1f} "
            f"| {r['sampling_s']:.1f} | {r['startup_s']:.1f} "
            f"| {base('sampling', 'wall_s') / r['wall_s']:.2f} "
            f"| {base('sampling', 'sampling_s') / r['sampling_s']:.2f} "
            f"| {r['max_member_difference_over_spread']:.1e} |"
        )
    train = [r for r in rows if r["part"] == "training"]
    if train:
        lines += ["", "| processes x threads | s/step | maps/s | speed-up (maps/s) |",
                  "|---|---|---|---|"]  # fmt: skip
        for r in train:
            lines.append(
                f"| {r['processes']} x {r['threads_per_process'] or 'GPU'} | {r['step_s']:.3f} "
                f"| {r['maps_per_s']:.0f} | {r['maps_per_s'] / base('training', 'maps_per_s'):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--num-samples", type=int, default=64)
    # The same batch in every layout, so that only the number of processes changes.
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=80)
    parser.add_argument("--parts", nargs="+", default=["sampling", "training"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table-from", type=Path)
    args = parser.parse_args()
    if args.table_from:
        print(table(json.loads(args.table_from.read_text())))
        return
    import torch

    hardware = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{args.cores}-core CPU"
    from common import result_header

    result = result_header(args, hardware)
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts:
            result["rows"] += {"sampling": sampling, "training": training}[part](args, Path(tmp))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
