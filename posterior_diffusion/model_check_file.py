"""The model check of a file of fields under a prior (the `log-likelihood` command), and its
JSON record."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from posterior_diffusion.io import read_fields
from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.model_check import ModelCheck, model_check
from posterior_diffusion.priors import Prior
from posterior_diffusion.priors.resolve import condition_prior, resolve_prior
from posterior_diffusion.provenance import provenance
from posterior_diffusion.samplers.run import check_run_settings


@dataclass(frozen=True)
class FileCheck:
    """The model check of one dataset of fields in a file."""

    file: str
    dataset: str
    result: ModelCheck


def check_field_file(
    file: str | os.PathLike,
    dataset: str | None = None,
    prior: str | Prior | None = None,
    power_spectrum: str | os.PathLike | None = None,
    theta: Mapping[str, float] | Sequence[float] | None = None,
    probes: int | str = 4,
    reference: int = 32,
    seed: int = 0,
    device: str = "cpu",
    output: str | os.PathLike | None = None,
    progress: bool = True,
    command: str | None = None,
) -> FileCheck:
    """`api.check_model` (documented there)."""
    if output and not str(output).endswith(".json"):
        raise ValueError(f"{output}: the result is written as JSON (.json)")
    fields, dataset = read_fields(file, dataset)  # bad input fails before any torch work
    if reference < 0:
        raise ValueError(f"--reference must be >= 0, got {reference}")
    check_run_settings(seed=seed, device=device)
    prior = resolve_prior(prior, power_spectrum, tuple(fields.shape[1:]))
    prior = condition_prior(prior, theta).to(device)
    x = torch.from_numpy(fields).to(device)
    result = model_check(prior, x, probes, reference, seed, progress=progress)
    check = FileCheck(str(file), dataset, result)
    if output:
        record = provenance(
            command=command, seed=seed, prior_identity=prior.identity(), input_path=file
        )
        _write_json(check, probes, record, output)
    return check


def _write_json(
    check: FileCheck, probes: int | str, record: Mapping[str, Any], output: str | os.PathLike
) -> None:
    """The check's numbers and provenance `record` as JSON, written atomically to `output`."""

    def floats(values) -> list[float] | None:
        return None if values is None else [float(v) for v in values]

    result = check.result
    content = {
        "file": check.file,
        "dataset": check.dataset,
        "pixels": result.fields.pixels,
        "log_density": floats(result.fields.log_density),
        "standard_error": floats(result.fields.standard_error),
        "fraction_of_prior_draws_below": floats(result.percentile),
        "reference_log_density": floats(
            None if result.reference is None else result.reference.log_density
        ),
        "probes": probes,
        "provenance": dict(record),
    }
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(content, indent=1, default=str))
