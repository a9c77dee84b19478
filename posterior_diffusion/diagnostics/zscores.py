"""Posterior z-score maps and the reduced chi^2 of data-space residuals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._arrays import as_numpy, batch_tests


def zscore_map(samples, truth, batched: bool | None = None) -> np.ndarray:
    """z = (truth - mean) / std per pixel, mean and std (ddof 1) over the N samples.

    Args:
        samples: (N, ...) or (K, N, ...); truth: (...) or (K, ...).
        batched: whether samples are (K, N, ...); None infers it (and refuses if ambiguous).

    Returns:
        z of the truth's shape; ~ N(0, 1) per pixel (Student-t with N - 1 dof) if calibrated.
    """
    samples, truth, single = batch_tests(samples, truth, batched)
    z = (truth - samples.mean(axis=1)) / samples.std(axis=1, ddof=1)
    return z[0] if single else z


def reduced_chi2(
    y, prediction, whiten: Callable, batch_dims: int = 0, dof: int | None = None
) -> np.ndarray:
    """chi^2 / dof with chi^2 = |Sigma^{-1/2} (y - prediction)|^2, Sigma the noise covariance.

    Args:
        y: data; prediction: A(x) for a field x (broadcastable against y).
        whiten: r -> Sigma^{-1/2} r, called on y - prediction in the caller's type (numpy or
            torch, e.g. `model.noise.whiten`); entries it maps to 0 (unobserved) are not counted.
        batch_dims: leading axes kept (e.g. 1 for one value per sample).
        dof: degrees of freedom; default the number of nonzero whitened residuals (the observed
            entries; subtract fitted parameters yourself).

    Returns:
        ~ 1 for residuals consistent with the noise; an array of the batch shape.
    """
    r = as_numpy(whiten(y - prediction))
    axes = tuple(range(batch_dims, r.ndim))
    chi2 = np.square(r).sum(axis=axes)
    if dof is None:  # an observed residual is exactly 0 with probability 0
        dof = np.count_nonzero(r, axis=axes)
    return chi2 / dof
