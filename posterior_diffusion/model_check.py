"""Model checking: the log-likelihood of fields under a prior, ranked among the prior's own draws.

A field whose log-density falls in the bottom percent or so of those of fields drawn from the
prior is implausible under it (docs/log_likelihood.md). Fields come from any file the package
writes: `fields` of a simulation, `samples` of a posterior, `truth` of an observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .prior_density import LogLikelihood, log_likelihood
from .priors.base import Prior

__all__ = ["ModelCheck", "model_check"]


@dataclass(frozen=True)
class ModelCheck:
    """Per field: its log-likelihood and, with reference draws, the fraction of the prior's own
    draws that score lower (small: implausible under the prior)."""

    fields: LogLikelihood
    reference: LogLikelihood | None
    percentile: Tensor | None


def model_check(
    prior: Prior,
    fields: Tensor,
    probes: int | str = 4,
    reference: int = 32,
    seed: int = 0,
    sampling_steps: int = 200,
    progress: bool = False,
) -> ModelCheck:
    """log p of `fields` (N, C, H, W) under `prior`, ranked among `reference` prior draws.

    Args:
        probes: Hutchinson probes, or "exact" (see `log_likelihood`).
        reference: fields drawn from the prior and scored alike (0: none, no percentiles).
        seed: seeds the reference draws and the probes.
        sampling_steps: reverse-SDE steps of each reference draw from a trained prior.
        progress: progress bars on stderr.
    """
    if int(reference) < 0:
        raise ValueError(f"reference draws must be >= 0, got {reference}")
    scored = log_likelihood(prior, fields, probes=probes, seed=seed, progress=progress)
    if not reference:
        return ModelCheck(scored, None, None)
    generator = torch.Generator().manual_seed(int(seed))
    draws = prior.sample(
        int(reference), generator, field_shape=tuple(fields.shape[1:]), steps=sampling_steps
    ).to(fields)
    ranked = log_likelihood(prior, draws, probes=probes, seed=seed + 1, progress=progress)
    below = ranked.log_density[None, :] < scored.log_density[:, None]
    return ModelCheck(scored, ranked, below.double().mean(1))
