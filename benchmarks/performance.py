"""Speed, memory and calibration of every sampler, side by side with deepinv's DPS, across sizes.

The problem has an exact posterior at every map size: a Gaussian random field with the default
(convergence-like) spectrum, blurred by a Gaussian PSF (FWHM 2 pixels) with white noise at 0.2 of
the field's pixel std. Prior and model are both diagonal in Fourier space, so the exact posterior
comes from FFTs (`fourier_exact_posterior`), not dense algebra. Each case (map size, prior in the
sampler, sampler, ensemble batch size, network precision) reports:

- NFE per sample, seconds per sample, seconds per NFE (per member), peak memory and the
  memory estimate that picks batch sizes;
- for a network prior, the same network's standalone cost (forward with graph and one
  vector-Jacobian product, at the same batch) times the sampler's counts, so sampler overhead
  (time beyond its network work) and in-sampler network throughput come out of one run;
- calibration next to speed: z_mean and median std ratio against the exact posterior, and
  per-pixel coverage minus the coverage of exact samples (same N) of the truth.

    python benchmarks/performance.py --device cpu --json benchmarks/results_performance_cpu.json
    python benchmarks/performance.py --table-from benchmarks/results_performance_cpu.json

"unet" is the GRF prior trained on 64 x 64 maps of the same spectrum (benchmarks/priors/grf_64.pt);
on larger maps it sees larger scales than in training, which the calibration columns show.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer_deepinv  # noqa: E402

from forward_models import ForwardModel, GaussianNoise  # noqa: E402
from forward_models.blur import Blur  # noqa: E402
from posterior_diffusion import __version__  # noqa: E402
from posterior_diffusion.memory import bytes_per_member  # noqa: E402
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum  # noqa: E402
from posterior_diffusion.priors.network import NetworkPrior  # noqa: E402
from posterior_diffusion.references.gaussian import fourier_exact_posterior  # noqa: E402
from posterior_diffusion.references.gaussian_problems import LEVELS, interval_coverage  # noqa: E402
from posterior_diffusion.samplers.run import sample_posterior  # noqa: E402

UNET = Path(__file__).resolve().parent / "priors" / "grf_64.pt"
DEFAULT_STEPS = {"guided": 48, "split_gibbs": 50, "dps": 1000, "deepinv_dps": 1000}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--cases", help="a JSON list of case dicts, or a .json file of one (default: a grid)"
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--priors", nargs="+", default=["analytic", "unet"])
    p.add_argument("--samplers", nargs="+", default=["guided", "split_gibbs", "dps", "deepinv_dps"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16])
    p.add_argument("--num-samples", type=int, default=16, help="per case (a multiple of batch)")
    p.add_argument("--precision", nargs="+", default=["fp32"], help="fp32 and/or bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile the network too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="append rows here as they finish")
    p.add_argument("--table-from", nargs="+", help="only print the tables of these JSON files")
    return p.parse_args()


def problem(size: int, seed: int, prior: GaussianPrior | None = None):
    """Blur of 2 pixels and noise 0.2 of the pixel std on a draw from `prior` (default: the
    default spectrum's): (prior, model, truth, y, exact posterior)."""
    prior = prior or GaussianPrior(default_power_spectrum(), (1, size, size))
    noise = GaussianNoise(0.2 * prior.pixel_variance() ** 0.5)
    model = ForwardModel(Blur.gaussian(2.0, (size, size)), noise, (1, size, size), name="blur")
    g = torch.Generator().manual_seed(seed)
    truth = prior.sample(1, g)[0]
    y = model.simulate(truth, g)
    return prior, model, truth, y, fourier_exact_posterior(prior, model, y)


def sampling_prior(kind: str, exact_prior, device, precision: str, compile: bool):
    if kind == "analytic":
        return exact_prior.to(device)
    prior = NetworkPrior.from_file(UNET).to(device)
    return prior.configure(precision=precision, compile=compile)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> int:
    """Start a peak-memory window; returns the baseline in bytes."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _proc_status("VmRSS")


def peak_since(device: torch.device, baseline: int) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) - baseline
    return _proc_status("VmHWM") - baseline


def _proc_status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def median_time(fn, device, repeats: int) -> float:
    fn()  # warm-up: allocator, cuDNN algorithm choice, compilation
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_cost(prior, field_shape, batch: int, device, repeats: int = 5) -> dict:
    """Standalone per-call seconds of the network at this batch: forward (no graph), forward
    keeping the graph (a `linearize`), and one covariance product (a VJP through that graph)."""
    x = 0.05 * torch.randn((batch, *field_shape), device=device, dtype=torch.float64)
    v = torch.randn_like(x)
    sigma = 0.01
    with torch.no_grad():
        forward = median_time(lambda: prior.denoise(x, sigma), device, repeats)
    linearize = median_time(lambda: prior.linearize(x, sigma), device, repeats)
    _, cov = prior.linearize(x, sigma)
    vjp = median_time(lambda: cov(v), device, repeats)
    return {"forward": forward, "linearize": linearize, "vjp": vjp}


def run_sampler(name, prior, model, y, num, batch, steps, seed, device, dtype=torch.float64):
    if name == "deepinv_dps":
        return peer_deepinv.sample(prior, model, y, num, batch, seed, device, steps)
    samples, info = sample_posterior(
        prior,
        model,
        y,
        num,
        sampler=name,
        steps=steps,
        seed=seed,
        batch_size=batch,
        device=device,
        dtype=dtype,
        progress=False,
    )
    return samples, info


def run_case(case: dict, args, device: torch.device) -> dict:
    size, kind, name, batch = case["size"], case["prior"], case["sampler"], case["batch"]
    precision = case.get("precision", "fp32")
    num = case.get("num_samples", args.num_samples)
    steps = case.get("steps", DEFAULT_STEPS[name])
    dtype = getattr(torch, case.get("dtype", "float64"))  # the sampler's state
    exact_prior, model, truth, y, exact = problem(size, args.seed)
    prior = sampling_prior(kind, exact_prior, device, precision, case.get("compile", False))
    field_shape = model.field_shape
    # Warm-up at the timed batch shape (compilation, cuDNN), not counted.
    start = time.perf_counter()
    run_sampler(name, prior, model, y, batch, batch, 2, args.seed + 999, device, dtype)
    synchronize(device)
    warmup = time.perf_counter() - start
    baseline = reset_peak(device)
    start = time.perf_counter()
    samples, info = run_sampler(name, prior, model, y, num, batch, steps, args.seed, device, dtype)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = peak_since(device, baseline)
    row = {
        **case,
        "precision": precision,
        "steps": steps,
        "num_samples": num,
        "warmup_seconds": warmup,
        "seconds_per_sample": seconds / num,
        "nfe_per_sample": info["nfe_per_sample"],
        "seconds_per_nfe": seconds / num / info["nfe_per_sample"],
        "peak_memory_mib": peak / 2**20,
        "estimated_memory_mib": batch * bytes_per_member(prior, field_shape, device, dtype) / 2**20,
    }
    if kind != "analytic":
        cost = network_cost(prior, field_shape, batch, device)
        calls = info["denoiser_calls_per_sample"]
        products = info["covariance_products_per_sample"]
        batches = math.ceil(num / batch)
        # Our samplers call linearize (graph kept) for every denoiser call; deepinv's DPS runs
        # forwards without a graph too (its prior score), so those are charged as plain forwards.
        graph_calls = products if name == "deepinv_dps" else calls
        plain_calls = calls - graph_calls
        network_seconds = batches * (
            graph_calls * cost["linearize"] + plain_calls * cost["forward"] + products * cost["vjp"]
        )
        row.update(
            network_standalone=cost,
            network_seconds=network_seconds,
            sampler_overhead=seconds / network_seconds - 1,
            network_efficiency=network_seconds / seconds,
        )
    flat = samples.reshape(num, -1)
    mean, std = exact.mean.reshape(-1), exact.std.reshape(-1)
    reference = exact.sample(num, torch.Generator().manual_seed(args.seed + 7))
    row.update(
        z_mean=float(((flat.mean(0) - mean) / std).square().mean().sqrt()),
        std_ratio=float((flat.std(0) / std).median()),
        coverage=interval_coverage(samples, truth),
        exact_coverage=interval_coverage(reference, truth),
    )
    return row


def default_cases(args) -> list[dict]:
    cases = []
    for size in args.sizes:
        for kind in args.priors:
            for name in args.samplers:
                for batch in args.batch_sizes:
                    for precision in args.precision if kind == "unet" else ["fp32"]:
                        cases.append(
                            {
                                "size": size,
                                "prior": kind,
                                "sampler": name,
                                "batch": batch,
                                "precision": precision,
                                "compile": args.compile,
                            }
                        )
    return cases


def main() -> None:
    args = parse()
    if args.table_from:
        rows, meta = [], {}
        for path in args.table_from:
            saved = json.loads(Path(path).read_text())
            rows += saved["rows"]
            meta = saved["machine"]
        print_tables(rows, meta)
        return
    device = torch.device(args.device)
    machine = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "posterior_diffusion": __version__,
        "deepinv": _deepinv_version(),
    }
    if args.cases and args.cases.endswith(".json"):
        cases = json.loads(Path(args.cases).read_text())
    else:
        cases = json.loads(args.cases) if args.cases else default_cases(args)
    rows = []
    for case in cases:
        if case["sampler"] == "deepinv_dps" and not peer_deepinv.available():
            print(f"skip {case}: deepinv does not import here", flush=True)
            continue
        try:
            rows.append(run_case(case, args, device))
        except Exception as err:  # one failing case (say, torch.compile) must not end the run
            print(f"case {case} failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
            continue
        print(json.dumps(_short(rows[-1])), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    print_tables(rows, machine)


def _deepinv_version() -> str | None:
    if not peer_deepinv.available():
        return None
    import deepinv

    return deepinv.__version__


def _short(row: dict) -> dict:
    keys = (
        "size",
        "prior",
        "sampler",
        "batch",
        "precision",
        "seconds_per_sample",
        "nfe_per_sample",
        "sampler_overhead",
        "std_ratio",
        "z_mean",
    )
    return {k: row[k] for k in keys if k in row}


def variant(r: dict) -> str:
    """Everything besides map, prior, sampler and batch that changes the speed."""
    parts = [r["precision"], _compiled(r.get("compile"))]
    parts += [f"state {r['dtype']}" if r.get("dtype") else "", r.get("variant", "")]
    return " ".join(p for p in parts if p)


def _compiled(mode) -> str:
    if not mode:
        return ""
    return "compiled" if mode is True else f"compiled ({mode})"


def print_tables(rows: list[dict], machine: dict) -> None:
    print(
        f"\n{machine.get('device')}, torch {machine.get('torch')}, deepinv {machine.get('deepinv')}\n"
    )
    print(
        "| map | prior | sampler | batch | settings | NFE/sample | s/sample | ms/NFE | "
        "peak MiB (est.) | overhead | z_mean | std ratio | cov-exact 68% | cov-exact 95% |"
    )
    print("|" + "---|" * 14)
    for r in rows:
        cov = [c - e for c, e in zip(r["coverage"], r["exact_coverage"], strict=True)]
        overhead = f"{100 * r['sampler_overhead']:+.0f}%" if "sampler_overhead" in r else ""
        print(
            f"| {r['size']}² | {r['prior']} | {r['sampler']} | {r['batch']} | {variant(r)} | "
            f"{r['nfe_per_sample']:.0f} | "
            f"{r['seconds_per_sample']:.3g} | {1e3 * r['seconds_per_nfe']:.3g} | "
            f"{r['peak_memory_mib']:.0f} ({r['estimated_memory_mib']:.0f}) | {overhead} | "
            f"{r['z_mean']:.3f} | {r['std_ratio']:.3f} | {cov[LEVELS.index(0.68)]:+.3f} | "
            f"{cov[LEVELS.index(0.95)]:+.3f} |"
        )
    print_ratios(rows)
    print_scaling(rows)


def print_ratios(rows: list[dict]) -> None:
    """Per-sample time of 1000-step DPS (ours, deepinv's) over each sampler's, all else equal."""
    print(
        "\n| map | prior | batch | settings | sampler | s/sample | our DPS / this | deepinv DPS / this |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = {o["sampler"]: o for o in rows if _setting(o) == _setting(r)}
        ours, peer = same.get("dps"), same.get("deepinv_dps")
        if not (ours or peer):
            continue
        speed = r["seconds_per_sample"]
        ratios = [f"{o['seconds_per_sample'] / speed:.1f}x" if o else "" for o in (ours, peer)]
        print(
            f"| {r['size']}² | {r['prior']} | {r['batch']} | {variant(r)} | {r['sampler']} | "
            f"{speed:.3g} | {ratios[0]} | {ratios[1]} |"
        )


def _setting(r: dict) -> tuple:
    return r["size"], r["prior"], r["batch"], variant(r)


def print_scaling(rows: list[dict]) -> None:
    """Least-squares exponents: s/sample against pixels (fixed batch), and against batch size."""
    print("\n| prior | sampler | settings | fixed | exponent | points |")
    print("|---|---|---|---|---|---|")
    groups: dict = {}
    for r in rows:
        kind, name, setting = r["prior"], r["sampler"], variant(r)
        groups.setdefault(("pixels", kind, name, setting, r["batch"]), []).append(
            (r["size"] ** 2, r["seconds_per_sample"])
        )
        groups.setdefault(("batch", kind, name, setting, r["size"]), []).append(
            (r["batch"], r["seconds_per_sample"])
        )
    for (axis, kind, name, setting, fixed), points in groups.items():
        points = sorted(set(points))
        if len({p[0] for p in points}) < 2:
            continue
        x, t = np.log([p[0] for p in points]), np.log([p[1] for p in points])
        slope = np.polyfit(x, t, 1)[0]
        what = f"batch {fixed}" if axis == "pixels" else f"map {fixed}²"
        label = "s/sample ∝ pixels^a" if axis == "pixels" else "s/sample ∝ batch^b"
        print(f"| {kind} | {name} | {setting} | {what} | {label}: {slope:.2f} | {len(points)} |")


if __name__ == "__main__":
    main()
