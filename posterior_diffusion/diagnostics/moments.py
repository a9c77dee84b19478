"""Distances of an ensemble from a known Gaussian posterior N(mean, Cov) (pure functions)."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from posterior_diffusion.diagnostics._arrays import as_numpy


def z_mean(samples, mean, std) -> float:
    """RMS over pixels of (sample mean - exact mean) / exact std; ~ sqrt(1 / N) if exact."""
    samples = as_numpy(samples)
    n = samples.shape[0]
    z = (samples.reshape(n, -1).mean(0) - as_numpy(mean).ravel()) / as_numpy(std).ravel()
    return float(np.sqrt(np.mean(z**2)))


def std_ratio(samples, std) -> float:
    """Median over pixels of sample std (ddof 1) / exact std; ~ 1 if exact."""
    samples = as_numpy(samples)
    n = samples.shape[0]
    return float(np.median(samples.reshape(n, -1).std(0, ddof=1) / as_numpy(std).ravel()))


def gaussian_w2(samples, mean, covariance) -> float:
    """2-Wasserstein distance between N(m_s, C_s), the Gaussian fit of the samples, and N(m, C).

    W2^2 = |m_s - m|^2 + tr(C_s + C - 2 (C^{1/2} C_s C^{1/2})^{1/2}) (Dowson and Landau 1982;
    Givens and Shortt 1984). Dense square roots (scipy.linalg.sqrtm): D up to ~ 1000.
    Exact samples give W2^2 ~ tr(C) / N + O(D^2 / N) from the fit's own noise, not 0.
    """
    samples = as_numpy(samples)
    flat = samples.reshape(samples.shape[0], -1)
    m, c = as_numpy(mean).ravel(), as_numpy(covariance)
    m_s, c_s = flat.mean(0), np.atleast_2d(np.cov(flat, rowvar=False))
    root = linalg.sqrtm(c).real
    cross = linalg.sqrtm(root @ c_s @ root).real
    w2_squared = np.sum((m_s - m) ** 2) + np.trace(c_s + c - 2 * cross)
    return float(np.sqrt(max(w2_squared, 0.0)))
