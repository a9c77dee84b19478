"""Checks of the settings every run shares (ensemble size, steps, seed, batch size, device), and
the choice of sampler for a forward model."""

from __future__ import annotations

import torch

from forward_models.base import ForwardModel
from posterior_diffusion.samplers import DEFAULT_SAMPLER, SAMPLERS, available_samplers

# For linear-Gaussian models the default sampler; otherwise the one that needs neither.
FALLBACK_SAMPLER = "linearized"


def check_run_settings(
    num_samples: int = 1,
    steps: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    device: str = "cpu",
) -> None:
    """Refuse impossible settings in one line (ValueError) before anything is drawn."""
    if int(num_samples) < 1:
        raise ValueError(f"number of samples must be >= 1, got {num_samples}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"number of steps must be >= 1, got {steps}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device '{device}' (use cpu or cuda)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available here")


def choose_sampler(sampler: str | None, model: ForwardModel) -> str:
    """`sampler`, checked against `model`; None: the default one for linear-Gaussian models,
    else FALLBACK_SAMPLER."""
    if sampler is None:
        return DEFAULT_SAMPLER if model.is_linear_gaussian else FALLBACK_SAMPLER
    if sampler not in SAMPLERS:
        raise ValueError(
            f"unknown sampler '{sampler}' (available: {', '.join(available_samplers())})"
        )
    if SAMPLERS[sampler].needs_linear_gaussian and not model.is_linear_gaussian:
        raise ValueError(
            f"sampler '{sampler}' needs a linear forward model with Gaussian noise; "
            f"'{model.name}' is not (use --sampler {FALLBACK_SAMPLER})"
        )
    return sampler
