"""Model checking: the log-likelihood of fields under a prior, ranked among the prior's own draws.

A field whose log-density falls in the bottom percent or so of those of fields drawn from the
prior is implausible under it (docs/log_likelihood.md). Fields come from any file the package
writes: `fields` of a simulation, `samples` of a posterior, `truth` of an observation.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .log_likelihood import LogLikelihood, log_likelihood
from .priors.base import Prior

FIELD_DATASETS = ("fields", "samples", "truth")
FIELD_SUFFIXES = (".h5", ".hdf5", ".nc", ".zarr")


class FieldFileError(ValueError):
    """A file of fields that cannot be checked; the message is one line naming file and dataset."""


def read_fields(path: str | os.PathLike, dataset: str | None = None) -> tuple[np.ndarray, str]:
    """(fields (N, C, H, W) float64, dataset name) from an .h5/.hdf5/.nc file or a .zarr store.

    `dataset` None takes the first of `FIELD_DATASETS` the file has. (H, W) is one field,
    (N, H, W) N fields of one channel, (N, C, H, W) as is.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FIELD_SUFFIXES:
        raise FieldFileError(f"{path}: fields must be in {', '.join(FIELD_SUFFIXES)} files")
    if not path.exists():
        raise FieldFileError(f"{path}: file not found")
    try:
        if suffix == ".zarr":
            import zarr

            group = zarr.open_group(str(path), mode="r")
            names = list(group.array_keys())
        else:
            import h5py

            group = h5py.File(path, "r")
            names = [k for k in group if isinstance(group[k], h5py.Dataset)]
    except Exception as err:  # h5py / zarr raise many types for unreadable files
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise FieldFileError(f"{path}: not a readable {suffix} file ({reason})") from None
    if dataset is None:
        dataset = next((name for name in FIELD_DATASETS if name in names), None)
        if dataset is None:
            raise FieldFileError(
                f"{path}: none of the datasets {', '.join(FIELD_DATASETS)} (found: "
                f"{', '.join(names) or 'none'}); name one with --dataset"
            )
    elif dataset not in names:
        raise FieldFileError(
            f"{path}: no dataset '{dataset}' (found: {', '.join(names) or 'none'})"
        )
    array = group[dataset]
    if not np.issubdtype(array.dtype, np.floating) or len(array.shape) not in (2, 3, 4):
        raise FieldFileError(
            f"{path}: dataset '{dataset}' must hold floating-point (H, W), (N, H, W) or "
            f"(N, C, H, W) fields, got {array.dtype} {tuple(array.shape)}"
        )
    fields = np.asarray(array[...], dtype=np.float64)
    fields = fields.reshape((-1, 1, *fields.shape[-2:])) if fields.ndim < 4 else fields
    if not np.isfinite(fields).all():
        raise FieldFileError(f"{path}: dataset '{dataset}' has NaN or inf values")
    return fields, dataset


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
    options = {"field_shape": tuple(fields.shape[1:])}
    if "steps" in inspect.signature(prior.sample).parameters:  # trained priors: reverse SDE
        options["steps"] = sampling_steps
    draws = prior.sample(int(reference), generator, **options).to(fields)
    ranked = log_likelihood(prior, draws, probes=probes, seed=seed + 1, progress=progress)
    below = ranked.log_density[None, :] < scored.log_density[:, None]
    return ModelCheck(scored, ranked, below.double().mean(1))
