"""Where do a prior's draws put their small-scale power? Against simulations, from the maps of
`prior_samples.py --maps-out` files (pooled).

A lognormal field's small-scale fluctuations are strongest where its large-scale field is high;
a network that spread them more evenly would draw the right P(k) with too many low peaks. Prints
(1) the high-pass power (the map minus its 1-pixel Gaussian smoothing, squared) averaged in bins of
the large-scale field (3-pixel smoothing; bins at the simulations' quantiles), draws over
simulations, and (2) the power in rings of |k| out to the Fourier grid's corners (|k| up to
0.71 cycles per pixel, beyond the 12-bin tables' 0.5), where pixel-scale artefacts would sit.

    python benchmarks/small_scale_texture.py a.npz b.npz --reference 4096
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from posterior_diffusion.diagnostics.peaks import gaussian_smooth
from posterior_diffusion.simulators import simulate_fields

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.97, 0.99, 1.0)
RINGS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.71)  # |k| [cycles/pixel]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("maps", nargs="+", help="--maps-out files of prior_samples.py")
    parser.add_argument("--kind", default="convergence")
    parser.add_argument("--reference", type=int, default=4096, help="simulations to compare with")
    parser.add_argument("--reference-seed", type=int, default=200)
    parser.add_argument("--json", help="also write the numbers here")
    return parser.parse_args()


def ratio_with_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """mean(b) / mean(a) for per-map values a (simulations) and b (draws), with its error."""
    r = b.mean() / a.mean()
    rel = np.sqrt(a.var() / a.mean() ** 2 / len(a) + b.var() / b.mean() ** 2 / len(b))
    return float(r), float(r * rel)


def modulation(maps: np.ndarray, edges: np.ndarray) -> list[np.ndarray]:
    """Per bin of the large-scale field: each map's mean high-pass power there (maps without
    pixels in the bin left out)."""
    high_pass = (maps - gaussian_smooth(maps, 1.0)) ** 2
    which = np.digitize(gaussian_smooth(maps, 3.0), edges) - 1
    return [
        np.array(
            [h[w == b].mean() for h, w in zip(high_pass, which, strict=True) if (w == b).any()]
        )
        for b in range(len(edges) - 1)
    ]


def power_2d(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each map's 2D power (one FFT per map) and the |k| of every grid point."""
    h, w = maps.shape[-2:]
    k = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    return np.abs(np.fft.fft2(maps - maps.mean(axis=(-2, -1), keepdims=True))) ** 2, k


def main() -> None:
    args = parse()
    drawn = []
    for path in args.maps:
        with np.load(path) as f:
            drawn.append(f["drawn"])
    drawn = np.concatenate(drawn)
    sims, _ = simulate_fields(args.kind, drawn.shape[-2:], args.reference, args.reference_seed)
    edges = np.quantile(gaussian_smooth(sims, 3.0), QUANTILES)
    edges[0], edges[-1] = -np.inf, np.inf
    print(f"{len(drawn)} draws against {len(sims)} simulations")
    print(
        "\n| large-scale field bin (simulations' quantiles) | high-pass power, draws / simulations | error |"
    )
    print("|---|---|---|")
    rows = []
    bins = zip(QUANTILES[:-1], QUANTILES[1:], strict=True)
    per_map = zip(bins, modulation(sims, edges), modulation(drawn, edges), strict=True)
    for (q0, q1), a, b in per_map:
        r, e = ratio_with_error(a, b)
        rows.append({"quantiles": [q0, q1], "ratio": r, "error": e})
        print(f"| {q0:g}-{q1:g} | {r:.3f} | {e:.3f} |")
    print("\n| \\|k\\| [cycles/pixel] | power, draws / simulations | error |\n|---|---|---|")
    rings = []
    (p_sims, k), (p_drawn, _) = power_2d(sims), power_2d(drawn)
    for lo, hi in zip(RINGS[:-1], RINGS[1:], strict=True):
        ring = (k >= lo) & (k < hi)
        r, e = ratio_with_error(p_sims[:, ring].mean(1), p_drawn[:, ring].mean(1))
        rings.append({"k": [lo, hi], "ratio": r, "error": e})
        print(f"| {lo:g}-{hi:g} | {r:.3f} | {e:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"maps": args.maps, "draws": len(drawn), "simulations": len(sims),
                       "modulation": rows, "rings": rings}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
