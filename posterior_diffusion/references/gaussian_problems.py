"""Gaussian test problems with exact posteriors, and how far a sampler's ensemble is from them.

P1: a unit-variance Gaussian random field, a mask (border-free, rectangular holes) and white noise.
P2: a convergence-like field (the default spectrum) seen through weak-lensing shear with a survey
mask and shape noise (sigma_e 0.26, 30 galaxies per arcmin^2, 1 arcmin pixels).
Shared by the tests and `benchmarks/exact_posterior.py`, so both measure the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from forward_models import Compose, ForwardModel, GaussianNoise, Mask, Shear, shape_noise_sigma
from posterior_diffusion.diagnostics.coverage import coverage_curve
from posterior_diffusion.diagnostics.moments import std_ratio, z_mean
from posterior_diffusion.masks import survey_mask
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.priors.power_spectrum import power_on_grid
from posterior_diffusion.references.gaussian import ExactPosterior

LEVELS = (0.5, 0.68, 0.9, 0.95)


def unit_variance_spectrum(height: int, width: int):
    """A red spectrum, P(k) proportional to 1 / (1 + (k / 0.05)^2), scaled to unit pixel variance."""

    def shape(k):
        return 1.0 / (1.0 + (np.asarray(k) / 0.05) ** 2)

    scale = 1.0 / power_on_grid(shape, height, width).mean()
    return lambda k: scale * shape(k)


def gaussian_problem(
    name: str, shape: tuple[int, int], seed: int = 0, spectrum: str = "problem"
) -> tuple[GaussianPrior, ForwardModel]:
    """The prior and forward model of test problem 'P1' or 'P2' on an H x W grid.

    spectrum "default" gives P1 the default (convergence-like) spectrum instead of its own, with
    the noise still at 0.2 of the field's pixel standard deviation: the mask-and-noise problem for
    a prior trained on default-spectrum maps.
    """
    h, w = shape
    if spectrum not in ("problem", "default"):
        raise ValueError(f"spectrum must be 'problem' or 'default', got '{spectrum}'")
    if name == "P1":
        if spectrum == "default":
            prior = GaussianPrior(default_power_spectrum(), (1, h, w))
        else:
            prior = GaussianPrior(unit_variance_spectrum(h, w), (1, h, w), name="P1 red spectrum")
        mask = torch.from_numpy(survey_mask((h, w), hole_fraction=0.25, seed=seed))
        noise = GaussianNoise(0.2 * prior.pixel_variance() ** 0.5, mask)
        model = ForwardModel(Mask(mask), noise, (1, h, w), name="inpainting")
    elif name == "P2":
        prior = GaussianPrior(default_power_spectrum(), (1, h, w))
        mask = torch.from_numpy(
            survey_mask((h, w), hole_fraction=0.1, border=max(1, h // 16), seed=seed)
        )
        sigma = shape_noise_sigma(0.26, 30.0, 1.0)
        model = ForwardModel(
            Compose(Shear((h, w)), Mask(mask)),
            GaussianNoise(sigma, mask),
            (1, h, w),
            name="lensing",
        )
    else:
        raise ValueError(f"unknown test problem '{name}' (P1 or P2)")
    return prior, model


def interval_coverage(samples: Tensor, truth: Tensor, levels=LEVELS) -> list[float]:
    """Fraction of pixels whose truth lies in the central credible interval, per level."""
    _, covered = coverage_curve(samples, truth, levels, batched=False)
    return [float(c) for c in covered]


@dataclass
class ExactComparison:
    z_mean: float  # RMS over pixels of (sample mean - exact mean) / exact std
    std_ratio: float  # median over pixels of sample std / exact std
    whitened_mean: float  # N * mean over posterior eigenmodes of (mean of whitened samples)^2; ~1
    whitened_variance: float  # mean over eigenmodes of the whitened sample variance; ~1
    whitened_variance_range: tuple[float, float]  # smallest and largest per-mode variance


def compare_to_exact(
    samples: Tensor, exact: ExactPosterior, whitened: bool = True
) -> ExactComparison:
    """Distances of an ensemble from the exact posterior, in pixel space and in whitened space.

    In the whitened space w = Lambda^{-1/2} U^T (x - mean) (Cov = U Lambda U^T) exact samples are
    N(0, I): whitened_mean ~ chi^2_n / n and whitened_variance ~ 1 +- sqrt(2 / (n (N - 1))).
    """
    n_samples = samples.shape[0]
    flat = samples.reshape(n_samples, -1).double()
    mean = exact.mean.reshape(-1)
    z = z_mean(flat, exact.mean, exact.std)
    ratio = std_ratio(flat, exact.std)
    if not whitened:  # the eigendecomposition is the slow part on 64 x 64 grids
        nan = float("nan")
        return ExactComparison(z, ratio, nan, nan, (nan, nan))
    evals, evecs = torch.linalg.eigh(exact.covariance)
    keep = evals > evals.max() * 1e-12
    w = ((flat - mean) @ evecs[:, keep]) / evals[keep].sqrt()
    variances = w.var(0)
    return ExactComparison(
        z_mean=z,
        std_ratio=ratio,
        whitened_mean=float(n_samples * w.mean(0).square().mean()),
        whitened_variance=float(variances.mean()),
        whitened_variance_range=(float(variances.min()), float(variances.max())),
    )
