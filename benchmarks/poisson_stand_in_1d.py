"""One pixel, exactly: how far the Gaussian stand-ins of `linearized` put a Poisson posterior's mean
and std, against quadrature (docs/samplers.md, "The Poisson stand-in").

x ~ N(m0, s0^2) (prior), y ~ Poisson(n_bar (1 + x)). Stand-ins, each iterated to its fixed point:
  point:    N(y; n_bar (1 + x), lambda(p)), p the stand-in posterior's own mean;
  averaged: precision E_q[n_bar^2 / lambda], data moved so its slope at q's mean is E_q[y / lambda - 1]
            (q the stand-in posterior; Gauss-Hermite expectations).

    python benchmarks/poisson_stand_in_1d.py
"""

from __future__ import annotations

import numpy as np

N_BAR = 20.0
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def exact(y: int, m0: float, s0: float) -> tuple[float, float]:
    x = np.linspace(-0.999, 6.0, 200_001)
    log_p = y * np.log(N_BAR * (1 + x)) - N_BAR * (1 + x) - 0.5 * ((x - m0) / s0) ** 2
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    mean = float((w * x).sum())
    return mean, float(np.sqrt((w * (x - mean) ** 2).sum()))


def gaussian_posterior(site_mean, site_precision, m0, s0):
    precision = 1 / s0**2 + site_precision
    return (m0 / s0**2 + site_mean * site_precision) / precision, np.sqrt(1 / precision)


def point(y: int, m0: float, s0: float) -> tuple[float, float]:
    p = m0
    for _ in range(50):
        mean, std = gaussian_posterior(y / N_BAR - 1, N_BAR / (1 + p), m0, s0)
        p = mean
    return mean, std


def averaged(y: int, m0: float, s0: float) -> tuple[float, float]:
    mean, std = m0, 0.5 * s0
    for _ in range(300):  # damped fixed-point iteration
        lam = N_BAR * (1 + np.clip(mean + std * NODES, -0.99, None))
        precision = np.sum(WEIGHTS * N_BAR**2 / lam)
        slope = np.sum(WEIGHTS * (y / lam - 1) * N_BAR)
        new_mean, new_std = gaussian_posterior(mean + slope / precision, precision, m0, s0)
        mean, std = 0.5 * (mean + new_mean), 0.5 * (std + new_std)
    return mean, std


def main() -> None:
    rng = np.random.default_rng(0)
    print("prior std, prior mean, count y: exact mean +- std | z and std ratio: point | averaged")
    for s0 in (0.2, 0.7):
        for m0 in (-0.5, 0.0, 1.0):
            for truth in (-0.6, 0.0, 1.0):
                y = int(rng.poisson(N_BAR * (1 + truth)))
                me, se = exact(y, m0, s0)
                cells = [
                    f"z {(m - me) / se:+.2f} std {s / se:.3f}"
                    for m, s in (point(y, m0, s0), averaged(y, m0, s0))
                ]
                print(f"{s0} {m0:+.1f} {y:3d}: {me:+.3f} +- {se:.3f} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
