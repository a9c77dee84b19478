"""Conversion of numpy arrays or torch tensors to float64 numpy, and test-batch handling."""

from __future__ import annotations

import numpy as np


def as_numpy(x) -> np.ndarray:
    """A float64 numpy copy of a numpy array, torch tensor (any device) or nested sequence."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def batch_tests(samples, truth, batched: bool | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Samples (K, N, ...) and truths (K, ...), adding K = 1 to a single test (N, ...), (...).

    `batched` says which layout was given; None infers it from the shapes and refuses when both
    fit (e.g. (16, 16, 16) samples of 16 x 16 maps: 16 draws of one map or one draw of 16 maps?).
    Returns the two arrays and whether a test axis was added (so callers can drop it again).
    """
    samples, truth = as_numpy(samples), as_numpy(truth)
    as_single = samples.shape[1:] == truth.shape
    as_batch = samples.ndim == truth.ndim + 1 >= 2 and (
        samples.shape[0] == truth.shape[0] and samples.shape[2:] == truth.shape[1:]
    )
    if batched is None:
        if as_single and as_batch:
            raise ValueError(
                f"samples {samples.shape} and truth {truth.shape} fit both one test (N, ...) and "
                "K tests (K, N, ...): pass batched=True or False"
            )
        batched = as_batch
    if (batched and not as_batch) or (not batched and not as_single):
        raise ValueError(
            f"samples {samples.shape} and truth {truth.shape} do not match: expected "
            "(N, ...) and (...), or (K, N, ...) and (K, ...)"
        )
    if not batched:
        samples, truth = samples[None], truth[None]
    return samples, truth, not batched
