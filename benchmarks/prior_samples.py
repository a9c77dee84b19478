"""Does a trained prior draw maps like its training set? P(k), one-point statistics, peaks.

Draws N maps from the prior (reverse SDE, `prior_sde`) and compares them with N held-out
simulations of the same kind: the ratio of mean power spectra per k bin (with its sample-variance
error), mean, standard deviation, skewness and the 0.1% / 99.9% quantiles of pixel values, and
peak counts per map in bins of height over the simulations' pixel std (signal-to-noise bins of a
noiseless map) and, for convergence, peak counts as a survey sees them (`--snr-peaks`: the
lensing default's shape noise added, Gaussian smoothing, bins of S/N). Prints markdown tables
(docs/default_prior.md's) and issue 17's bar: P(k) within 3% per bin, std within 2%, skewness
within 10%, quantiles within 5%, peaks within 2 sigma.

    python benchmarks/prior_samples.py --prior posterior_diffusion/data/default_prior.pt \
        --kind convergence --num 64

Larger checks: processes with different `--seed`s write their maps (`--maps-out`), `--pool`
compares them together, and `--reference N` compares against N fresh simulations instead of
as many as the draws (the simulations' own scatter then drops out of the errors).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch

from forward_models import shape_noise_sigma
from posterior_diffusion.calibration.held_out import PEAK_THRESHOLDS
from posterior_diffusion.diagnostics import power_spectrum
from posterior_diffusion.diagnostics.peaks import gaussian_smooth, local_maxima
from posterior_diffusion.diagnostics.sbc import peak_counts
from posterior_diffusion.priors.draw import reverse_sde
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers.unconditional import prior_sde
from posterior_diffusion.schedules import log_uniform_sigmas
from posterior_diffusion.simulators import simulate_fields


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior")
    parser.add_argument("--kind", default="convergence", help="simulator kind it was trained on")
    parser.add_argument("--num", type=int, default=64, help="maps from each side")
    parser.add_argument("--steps", type=int, default=200, help="reverse-SDE steps")
    parser.add_argument("--seed", type=int, default=99, help="a seed unused in training")
    parser.add_argument(
        "--corrector-steps", type=int, default=0, help="Langevin corrector steps per level"
    )
    parser.add_argument("--bins", type=int, default=12, help="k bins of the P(k) table")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="draw maps of this size (default: the training size), against simulations of it",
    )
    parser.add_argument(
        "--depth",
        type=int,
        help="density: the simulations' projection depth [cells] (default: the prior's training "
        "map side, so that larger maps are of the same field)",
    )
    parser.add_argument(
        "--log-shift",
        type=float,
        metavar="S",
        help="the prior was trained on u = log(1 + x / S) (a Gaussianised shifted-lognormal "
        "field); its draws are mapped back, x = S (exp(u) - 1), before the comparison",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (draws differ between them)")
    parser.add_argument(
        "--pooled-norm",
        action="store_true",
        help="diagnostic: GroupNorm statistics pooled over the whole batch of draws (all at one "
        "noise level) instead of each map's own, as if each map were part of a larger one",
    )
    parser.add_argument(
        "--start",
        choices=("noise", "simulations"),
        default="noise",
        help="diagnostic: start the reverse SDE from pure noise at sigma_max (as the package "
        "does) or from other held-out simulations plus that noise (the exact noised marginal)",
    )
    parser.add_argument(
        "--start-sigma",
        type=float,
        metavar="S",
        help="with --start simulations: start at S data std instead of sigma_max, on the same "
        "grid density (steps scaled by the log of the range), to find where draws lose power",
    )
    parser.add_argument(
        "--gaussian-above",
        type=float,
        metavar="S",
        help="diagnostic: above S data std replace the network by the Gaussian (Wiener) denoiser "
        "of the power spectrum of 2,048 other held-out simulations",
    )
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument(
        "--maps-out", help="also write the drawn maps and the simulations here (.npz), to pool"
    )
    parser.add_argument(
        "--pool",
        nargs="+",
        metavar="NPZ",
        help="draw nothing: compare the maps of these --maps-out files, pooled (runs with "
        "different seeds on different cores make one larger check)",
    )
    parser.add_argument(
        "--reference",
        type=int,
        metavar="N",
        help="compare against N fresh simulations of --reference-seed instead of --num of "
        "--seed: simulations are cheap, and many of them leave only the draws' own scatter in "
        "the errors (a lognormal field's power scatters widely from one set of maps to another)",
    )
    parser.add_argument("--reference-seed", type=int, default=200)
    parser.add_argument(
        "--snr-peaks",
        type=float,
        default=2.0,
        metavar="PIXELS",
        help="convergence: also count peaks of noisy maps smoothed by a Gaussian of this std "
        "[pixels], in bins of S/N, the weak-lensing peak statistic; the noise is the lensing "
        "forward model's default (sigma_e 0.26, 30 galaxies per arcmin^2, 1 arcmin pixels as "
        "the convergence simulator's); 0: off",
    )
    args = parser.parse_args()
    if args.pool and args.prior:
        parser.error("--pool compares saved maps; it takes no --prior")
    if not args.pool and not args.prior:
        parser.error("--prior is required (or --pool)")
    if args.start == "simulations" and (args.gaussian_above or args.log_shift):
        parser.error("--start simulations runs the plain network on the simulations' variable")
    if args.start_sigma and args.start != "simulations":
        parser.error("--start-sigma needs --start simulations")
    return args


def moments(maps: np.ndarray) -> dict[str, float]:
    x = maps.reshape(len(maps), -1)
    centred = x - x.mean()
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "skewness": float((centred**3).mean() / x.std() ** 3),
        "q0.001": float(np.quantile(x, 0.001)),
        "q0.999": float(np.quantile(x, 0.999)),
        # How much the maps' total power varies from map to map (a per-map normalisation in
        # the network would narrow it): the spread over maps of log(map variance).
        "log_map_variance_sd": float(np.log(x.var(axis=1)).std()),
    }


PEAK_EDGES = (0.0, 1.0, 2.0, 3.0, 5.0, np.inf)  # height / the simulations' pixel std


def peaks_per_map(maps: np.ndarray, scale: float) -> np.ndarray:
    """(M, H, W) -> (M, bins): local maxima (8 periodic neighbours) per height bin, heights
    (x - map mean) / scale with one `scale` for every map, so both sets share the bins."""
    height = (maps - maps.mean(axis=(-2, -1), keepdims=True)) / scale
    is_peak = local_maxima(height)
    edges = PEAK_EDGES
    return np.stack(
        [(is_peak & (height >= lo) & (height < hi)).sum(axis=(-2, -1))
         for lo, hi in zip(edges[:-1], edges[1:], strict=True)], axis=1
    ).astype(np.float64)  # fmt: skip


# Independent noise for the two sets, from fixed seeds so that reruns and pools repeat.
SNR_NOISE_SEEDS = {"simulations": 9001, "prior": 9002}


def snr_peaks_per_map(maps: np.ndarray, smoothing: float, seed: int) -> np.ndarray:
    """(M, H, W) -> (M, bins): peaks of a survey's convergence map, the lensing default's shape
    noise (per pixel sigma_e / sqrt(n_gal A)) added, smoothed by a periodic Gaussian of std
    `smoothing` pixels, heights in units of the smoothed noise's std (S/N), map mean removed
    (a Kaiser-Squires map has none)."""
    noise_std = shape_noise_sigma(0.26, 30.0, 1.0)
    noise = np.random.default_rng(seed).standard_normal(maps.shape) * noise_std
    smoothed = gaussian_smooth(maps + noise, smoothing)
    h, w = maps.shape[-2:]
    transfer = gaussian_smooth(np.eye(1, h * w).reshape(h, w), smoothing)  # impulse response
    smoothed_noise_std = noise_std * float(np.sqrt((transfer**2).sum()))
    return peaks_per_map(smoothed, smoothed_noise_std)


def peak_z_scores(peaks_sim: np.ndarray, peaks_prior: np.ndarray) -> np.ndarray:
    err = np.sqrt(peaks_sim.var(0) / len(peaks_sim) + peaks_prior.var(0) / len(peaks_prior))
    return (peaks_prior.mean(0) - peaks_sim.mean(0)) / np.where(err > 0, err, np.inf)


def bar(ratio, rel_err, stats, peak_z, snr_z=None) -> dict[str, bool]:
    sim, pri = stats["simulations"], stats["prior"]
    snr = {} if snr_z is None else {
        "S/N peak counts (noisy, smoothed) within 2 sigma in every bin": bool(
            np.all(np.abs(snr_z) <= 2)
        )
    }  # fmt: skip
    return {
        "P(k) within 3% in every bin": bool(np.all(np.abs(ratio - 1) <= 0.03)),
        "P(k) consistent with 1 within 2 errors in every bin": bool(
            np.all(np.abs(ratio - 1) <= 2 * rel_err)
        ),
        "pixel std within 2%": abs(pri["std"] / sim["std"] - 1) <= 0.02,
        "skewness within 10%": abs(pri["skewness"] / sim["skewness"] - 1) <= 0.10,
        "0.1% and 99.9% quantiles within 5%": all(
            abs(pri[q] / sim[q] - 1) <= 0.05 for q in ("q0.001", "q0.999")
        ),
        "peak counts within 2 sigma in every bin": bool(np.all(np.abs(peak_z) <= 2)),
        **snr,
    }


def pool_group_norms(module: torch.nn.Module) -> None:
    """Make every GroupNorm in `module` normalise by statistics over the batch and the map
    (per group) instead of per map: the draws then share one scale, as the pixels of one larger
    map would. A diagnostic of what per-map normalisation does to the draws; members become
    dependent, so it is not a sampler."""

    def pooled(norm: torch.nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b, norm.num_groups, c // norm.num_groups, h, w)
        mean = g.mean(dim=(0, 2, 3, 4), keepdim=True)
        var = g.var(dim=(0, 2, 3, 4), keepdim=True, unbiased=False)
        g = ((g - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, h, w)
        return g * norm.weight[:, None, None] + norm.bias[:, None, None]

    for m in module.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.forward = pooled.__get__(m)


def gaussian_above(prior, args, shape, extra):
    """A denoiser that is the prior's network at or below `args.gaussian_above` data std and the
    Wiener filter of the simulations' measured mean and P(k) (2,048 maps, seed + 2) above it."""
    maps, _ = simulate_fields(args.kind, shape[-2:], 2048, args.seed + 2, **extra)
    mean = float(maps.mean())
    power = torch.from_numpy((np.abs(np.fft.fft2(maps - mean)) ** 2).mean(0) / maps[0].size)
    power = power.to(args.device)
    cut = args.gaussian_above * prior.data_std()

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if sigma <= cut:
            return prior.denoise(x, sigma)
        wiener = power / (power + sigma**2)
        return mean + torch.fft.ifft2(wiener * torch.fft.fft2(x - mean)).real

    return denoise


def draw_from_simulations(prior, rng, args, shape, extra) -> torch.Tensor:
    """The reverse SDE of `prior_sde` started from held-out simulations (seed + 1, not the
    comparison's) plus noise at sigma_max or `--start-sigma`: the exact noised marginal there
    (the package starts from noise alone at sigma_max). Returns the draws and the start maps."""
    top, steps = prior.sigma_max(), args.steps
    if args.start_sigma:
        top = args.start_sigma * prior.data_std()
        steps = max(2, round(steps * math.log(top / prior.sigma_min()) / math.log(
            prior.sigma_max() / prior.sigma_min())))  # fmt: skip
    sigmas = log_uniform_sigmas(steps, prior.sigma_min(), top)
    start, _ = simulate_fields(args.kind, shape[-2:], args.num, args.seed + 1, **extra)
    x = torch.from_numpy(start)[:, None].to(args.device) + sigmas[0].item() * rng.randn(shape)
    return reverse_sde(prior.denoise, x, sigmas.tolist(), lambda: rng.randn(shape)), start


def paired_ratio(drawn: np.ndarray, start: np.ndarray, bins: int) -> dict[str, list[float]]:
    """Power of each draw over that of the simulation it started from, per k bin: the paired
    ratio cancels most of the maps' own scatter, so it resolves what the SDE lost from there."""
    _, p_draw, _ = power_spectrum(drawn, num_bins=bins)
    k, p_start, _ = power_spectrum(start, num_bins=bins)
    ratio = p_draw.mean(0) / p_start.mean(0)
    pick = np.random.default_rng(0).integers(0, len(drawn), (200, len(drawn)))
    err = np.std(p_draw[pick].mean(1) / p_start[pick].mean(1), axis=0)  # paired bootstrap
    print("\n| k | P_draw / P_start (paired) | error |\n|---|---|---|")
    for kk, r, e in zip(k, ratio, err, strict=True):
        print(f"| {kk:.3f} | {r:.3f} | {e:.3f} |")
    return {"k": k.tolist(), "ratio": ratio.tolist(), "error": err.tolist()}


def draw(args):
    """Draw `args.num` maps from the prior and simulate as many (none with `--reference` unless
    `--maps-out` keeps them); returns the maps, the simulations (or None), seconds per map and
    the paired ratios of `--start simulations` (else None)."""
    prior = NetworkPrior.from_file(args.prior).to(args.device)
    args.prior_checksum = prior.checksum  # kept in --maps-out files, so --pool can compare
    if args.pooled_norm:
        pool_group_norms(prior)
    c, h, w = prior.trained_shape
    if args.shape:
        h, w = args.shape
    extra = {}
    if args.kind == "density":  # the training maps' depth, recorded in the JSON's args
        args.depth = args.depth or prior.trained_shape[-1]
        extra["depth"] = args.depth
    sims = None
    if args.maps_out or not args.reference:  # --reference brings its own simulations
        sims, _ = simulate_fields(args.kind, (h, w), args.num, args.seed, **extra)
    start = time.perf_counter()
    rng = EnsembleRNG(args.seed, range(args.num), args.device)
    with torch.no_grad():
        if args.start == "simulations":
            drawn, start_maps = draw_from_simulations(prior, rng, args, (c, h, w), extra)
        elif args.gaussian_above:
            sigmas = log_uniform_sigmas(args.steps, prior.sigma_min(), prior.sigma_max())
            x = sigmas[0].item() * rng.randn((c, h, w))
            denoise = gaussian_above(prior, args, (c, h, w), extra)
            drawn = reverse_sde(denoise, x, sigmas.tolist(), lambda: rng.randn((c, h, w)))
        else:
            drawn = prior_sde(
                prior, None, None, rng, args.steps, field_shape=(c, h, w),
                corrector_steps=args.corrector_steps,
            )  # fmt: skip
    seconds = time.perf_counter() - start
    drawn = drawn[:, 0].cpu().numpy()
    paired = paired_ratio(drawn, start_maps, args.bins) if args.start == "simulations" else None
    if args.log_shift:
        drawn = args.log_shift * np.expm1(drawn)
    return drawn, sims, seconds / args.num, paired


def pooled(paths: list[str]):
    """The maps of several `--maps-out` files, concatenated; refuses files whose draws share
    a seed (they would be the same maps) or whose settings differ."""
    drawn, sims, seeds, settings, seconds, checksums = [], [], [], set(), [], set()
    for path in paths:
        with np.load(path) as f:
            drawn.append(f["drawn"])
            sims.append(f["sims"])
            meta = json.loads(str(f["args"]))
        seeds.append(meta["seed"])
        seconds.append(meta["seconds_per_map"])
        # The prior by file name (runs from different folders name it by different paths);
        # files that record its checksum are also held to it.
        same = {k: meta[k] for k in ("kind", "steps", "shape")}
        same["prior"] = os.path.basename(meta["prior"])
        settings.add(json.dumps(same))
        checksums.add(meta.get("prior_checksum"))
    if len(set(seeds)) < len(seeds):
        raise SystemExit(f"--pool: two files were drawn with the same seed ({seeds})")
    if len(settings) > 1 or len(checksums - {None}) > 1:
        raise SystemExit(
            f"--pool: the files were drawn with different settings: {settings}, {checksums}"
        )
    return np.concatenate(drawn), np.concatenate(sims), float(np.mean(seconds)), seeds, meta


def main() -> None:
    args = parse()
    if args.pool:
        drawn, sims, seconds_per_map, seeds, meta = pooled(args.pool)
        for key in ("prior", "kind", "steps", "shape", "corrector_steps", "depth"):
            setattr(args, key, meta[key])  # what the maps were drawn with, for the printout
        args.num, args.seed, paired = len(drawn), seeds, None
    else:
        drawn, sims, seconds_per_map, paired = draw(args)
        if args.maps_out:
            meta = json.dumps({**vars(args), "seconds_per_map": seconds_per_map})
            np.savez(args.maps_out, drawn=drawn, sims=sims, args=meta)
    h, w = drawn.shape[-2:]
    if args.reference:
        extra = {"depth": args.depth} if args.kind == "density" else {}
        sims, _ = simulate_fields(args.kind, (h, w), args.reference, args.reference_seed, **extra)
    k, p_sim, _ = power_spectrum(sims, num_bins=args.bins)
    _, p_prior, _ = power_spectrum(drawn, num_bins=args.bins)
    p_sim_mean, p_prior_mean = p_sim.mean(0), p_prior.mean(0)
    # Each map's bin power scatters by the cosmic variance; the ratio of two N-map means has
    # relative error sqrt(var_sim / (mean_sim^2 N_sim) + var_prior / (mean_prior^2 N_prior)).
    rel_err = np.sqrt(
        p_sim.var(0) / p_sim_mean**2 / len(sims) + p_prior.var(0) / p_prior_mean**2 / len(drawn)
    )
    ratio = p_prior_mean / p_sim_mean
    stats = {"simulations": moments(sims), "prior": moments(drawn)}
    scale = float(sims.std())
    peaks_sim, peaks_prior = peaks_per_map(sims, scale), peaks_per_map(drawn, scale)
    peak_z = peak_z_scores(peaks_sim, peaks_prior)
    # as `calibrate` counts them (above nu times each map's own std), so that a calibration's
    # peak-count offset can be set against the prior's own
    above = {
        name: peak_counts(maps, PEAK_THRESHOLDS)
        for name, maps in (("simulations", sims), ("prior", drawn))
    }
    above["z"] = peak_z_scores(above["simulations"], above["prior"])
    snr = None
    if args.kind == "convergence" and args.snr_peaks > 0:
        snr = {
            name: snr_peaks_per_map(maps, args.snr_peaks, SNR_NOISE_SEEDS[name])
            for name, maps in (("simulations", sims), ("prior", drawn))
        }
        snr["z"] = peak_z_scores(snr["simulations"], snr["prior"])
    checks = bar(ratio, rel_err, stats, peak_z, None if snr is None else snr["z"])
    print(
        f"\n{len(drawn)} draws of {h} x {w} against {len(sims)} simulations; prior {args.prior}; "
        f"{args.steps} SDE steps, {seconds_per_map:.2f} s per map\n"
    )
    print("| k [cycles/pixel] | P_prior / P_sim | error |")
    print("|---|---|---|")
    for kk, r, e in zip(k, ratio, rel_err, strict=True):
        print(f"| {kk:.3f} | {r:.3f} | {e:.3f} |")
    print("\n| statistic | simulations | prior samples |")
    print("|---|---|---|")
    for key in stats["simulations"]:
        print(f"| {key} | {stats['simulations'][key]:.4g} | {stats['prior'][key]:.4g} |")
    print("\n| peak height / sim std | peaks per map, simulations | prior samples | z |")
    print("|---|---|---|---|")
    for i, (lo, hi) in enumerate(zip(PEAK_EDGES[:-1], PEAK_EDGES[1:], strict=True)):
        print(f"| [{lo:g}, {hi:g}) | {peaks_sim[:, i].mean():.2f} | {peaks_prior[:, i].mean():.2f} "
              f"| {peak_z[i]:+.1f} |")  # fmt: skip
    print("\n| peaks above nu map std (as calibrate counts) | simulations | prior samples | z |")
    print("|---|---|---|---|")
    for i, nu in enumerate(PEAK_THRESHOLDS):
        print(f"| {nu:g} | {above['simulations'][:, i].mean():.2f} | {above['prior'][:, i].mean():.2f} "
              f"| {above['z'][i]:+.1f} |")  # fmt: skip
    if snr is not None:
        print(f"\n| S/N (noisy, {args.snr_peaks:g}-pixel smoothing) | peaks per map, simulations "
              "| prior samples | z |\n|---|---|---|---|")  # fmt: skip
        for i, (lo, hi) in enumerate(zip(PEAK_EDGES[:-1], PEAK_EDGES[1:], strict=True)):
            print(f"| [{lo:g}, {hi:g}) | {snr['simulations'][:, i].mean():.2f} "
                  f"| {snr['prior'][:, i].mean():.2f} | {snr['z'][i]:+.1f} |")  # fmt: skip
    print("\nissue 17's bar:")
    for name, ok in checks.items():
        print(f"  {'pass' if ok else 'FAIL'}  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "k": k.tolist(),
                    "ratio": ratio.tolist(),
                    "ratio_error": rel_err.tolist(),
                    "stats": stats,
                    "peak_edges": [float(e) if np.isfinite(e) else None for e in PEAK_EDGES],
                    "peaks_per_map": {
                        "simulations": peaks_sim.mean(0).tolist(),
                        "prior": peaks_prior.mean(0).tolist(),
                        "z": peak_z.tolist(),
                    },  # fmt: skip
                    "peaks_above_map_std": {
                        "thresholds": list(PEAK_THRESHOLDS),
                        "simulations": above["simulations"].mean(0).tolist(),
                        "prior": above["prior"].mean(0).tolist(),
                        "z": above["z"].tolist(),
                    },
                    **(
                        {
                            "snr_peaks_per_map": {
                                "smoothing_pixels": args.snr_peaks,
                                "noise_seeds": SNR_NOISE_SEEDS,
                                "simulations": snr["simulations"].mean(0).tolist(),
                                "prior": snr["prior"].mean(0).tolist(),
                                "z": snr["z"].tolist(),
                            }
                        }
                        if snr is not None
                        else {}
                    ),  # fmt: skip
                    "bar": checks,
                    "seconds_per_map": seconds_per_map,
                    **({"paired_with_start": paired} if paired else {}),
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
