"""What the benchmarks share: the results header, and scores against exact answers."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from posterior_diffusion.priors import GaussianPrior
from posterior_diffusion.references.gaussian_problems import interval_coverage


def result_header(args: argparse.Namespace, hardware: str) -> dict:
    """The start of a results file: hardware, torch, the settings that were run, no rows yet."""
    settings = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("json", "table_from")
    }
    return {
        "hardware": f"{hardware} ({platform.machine()})",
        "torch": torch.__version__,
        "settings": settings,
        "rows": [],
    }


def write_results(path: Path, results: dict) -> None:
    """The results JSON, written to a temporary beside it and renamed, so that a run killed
    while writing leaves the previous file whole."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def refuse(message: str) -> None:
    """Bad input: one line on stderr and exit code 2 (the package's convention), nothing written."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def refuse_existing(*paths: Path | None) -> None:
    """Refuse before any work when an output would overwrite a file."""
    for path in paths:
        if path is not None and path.exists():
            refuse(f"{path}: exists; choose another path")


def cpu_threads() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))


def denoiser_excess(
    denoiser, exact: GaussianPrior, std: float, levels, num: int, seed: int
) -> dict[str, float]:
    """E|D - D_exact|^2 / E|D_exact - x0|^2 on `num` exact prior draws, per noise level (in data
    standard deviations `std`); 0 is the exact denoiser."""
    generator = torch.Generator().manual_seed(seed)
    x0 = exact.sample(num, generator)
    device = next(iter(denoiser.parameters())).device
    out = {}
    for level in levels:
        sigma = level * std
        noisy = x0 + sigma * torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        with torch.no_grad():
            net = denoiser.denoise(noisy.to(device), sigma).cpu()
        best = exact.denoise(noisy, sigma)
        out[f"{level:g}"] = float((net - best).square().mean() / (best - x0).square().mean())
    return out


def ensemble_scores(samples, truth, exact, seed: int, info: dict) -> dict[str, float]:
    """One observation's ensemble against its exact posterior: RMS z of the mean, median std
    ratio, and 68% / 95% coverage of the truth minus that of as many exact samples."""
    members = samples.shape[0]
    flat = samples.reshape(members, -1)
    mean, std = exact.mean.reshape(-1), exact.std.reshape(-1)
    reference = exact.sample(members, torch.Generator().manual_seed(seed + 7))
    covered = interval_coverage(samples, truth)
    covered_exact = interval_coverage(reference, truth)
    return {
        "z_mean": float(((flat.mean(0) - mean) / std).square().mean().sqrt()),
        "std_ratio": float((flat.std(0) / std).median()),
        "cov68_minus_exact": covered[1] - covered_exact[1],
        "cov95_minus_exact": covered[3] - covered_exact[3],
        "nfe_per_sample": info["nfe_per_sample"],
    }


def mean_scores(rows: list[dict]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def resumed_tests(path: Path, results: dict) -> list:
    """The tests a previous run with the same settings saved at `path` (none if it is absent);
    refuses a file written with other settings."""
    if not path.exists():
        return []
    previous = json.loads(path.read_text())
    if previous["settings"] != results["settings"]:
        refuse(f"{path}: written with other settings; choose another path")
    return previous["tests_done"]
