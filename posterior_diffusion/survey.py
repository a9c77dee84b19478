"""Simulated observations like a real one: its grid, footprint, per-pixel noise and sky position.

`simulate-obs --survey OBS` and `calibrate --survey OBS` use an observation file (what
`bin-catalog` writes from a shear catalogue) as the survey to imitate. A real patch is cut from a
sky that does not wrap around, so a truth is drawn on a periodic domain EMBEDDING times the
patch's side, observed there with the survey's mask and noise map in the bottom-left corner and
nothing observed elsewhere (shear at the patch's edge thus comes from mass outside it), and the
data, mask, noise and truth are cut back to the patch. The result carries the survey's WCS, so
`reconstruct` pads it as it pads the real data (docs/sky.md, "Survey edges").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forward_models.registry import get_spec
from posterior_diffusion.defaults import MAP_SIDE_MULTIPLE
from posterior_diffusion.io import Observation, read_observation
from posterior_diffusion.io.observation import ObservationError
from posterior_diffusion.observing import observe_field, pixel_scale
from posterior_diffusion.padding import pad_observation
from posterior_diffusion.priors import Prior
from posterior_diffusion.priors.resolve import resolve_prior
from posterior_diffusion.provenance import file_sha256
from posterior_diffusion.rng import member_seed

EMBEDDING = 2  # the truth's periodic domain, in patch sides


@dataclass(frozen=True)
class Survey:
    """An observation read as the survey to imitate."""

    observation: Observation
    sha256: str

    @property
    def path(self) -> Path:
        return Path(self.observation.source)

    @property
    def forward_model(self) -> str:
        return str(self.observation.forward_model)

    @property
    def spatial_shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.observation.y.shape[-2:])

    @property
    def domain_shape(self) -> tuple[int, int]:
        """The periodic domain a truth is drawn on: EMBEDDING patch sides, in whole multiples of
        MAP_SIDE_MULTIPLE (what a trained prior draws)."""
        return tuple(
            MAP_SIDE_MULTIPLE * math.ceil(EMBEDDING * n / MAP_SIDE_MULTIPLE)
            for n in self.spatial_shape
        )

    def simulation_attrs(self) -> dict[str, Any]:
        """The forward model's parameters and the sky grid, without the survey's provenance."""
        names = {p.name for p in get_spec(self.forward_model).parameters}
        keep = names | {"pixel_scale_arcmin", "wcs_header"}
        return {k: v for k, v in self.observation.attrs.items() if k in keep}

    def provenance(self) -> dict[str, Any]:
        return {"survey_file": str(self.path), "survey_sha256": self.sha256}


def survey_for(
    path: str | os.PathLike, forward_model: str, given: dict[str, Any] | None = None
) -> Survey:
    """The survey at `path` for a simulation of `forward_model`; ValueError when it observes
    another model, or when `given` (setting name -> value, None when not given) names a setting
    that the survey fixes."""
    named = [name for name, value in (given or {}).items() if value is not None]
    if named:
        raise ValueError(
            f"--survey {path} fixes the grid, mask, noise and forward model; do not also give "
            + ", ".join(named)
        )
    survey = read_survey(path)
    if survey.forward_model != forward_model:
        raise ValueError(
            f"{path}: the survey observes '{survey.forward_model}', not '{forward_model}'"
        )
    return survey


def read_survey(path: str | os.PathLike) -> Survey:
    """The observation at `path` as a survey; ObservationError (one line) if it cannot be one."""
    obs = read_observation(path)
    if obs.forward_model is None:
        raise ObservationError(
            obs.source, "has no 'forward_model' attribute; a survey must say what it observes"
        )
    return Survey(obs, file_sha256(path))


def observe_like(
    survey: Survey,
    truth: np.ndarray,
    seed: int,
    command: str | None = None,
    prior_identity: dict[str, Any] | None = None,
) -> Observation:
    """Observe `truth` (C, H', W'), a periodic domain at least the survey's size, as the survey
    would see its bottom-left H x W corner; returns the observation of that corner, truth
    included."""
    field = np.asarray(truth, dtype=np.float64)
    field = field[None] if field.ndim == 2 else field
    height, width = survey.spatial_shape
    if field.ndim != 3 or field.shape[-2] < height or field.shape[-1] < width:
        raise ValueError(
            f"a truth of shape {np.shape(truth)} cannot hold the survey's {height} x {width} "
            f"patch ({survey.path})"
        )
    embedded = pad_observation(survey.observation, field.shape[-2:])
    whole = observe_field(
        field,
        survey.forward_model,
        attrs=survey.simulation_attrs(),
        mask=embedded.mask,
        noise_std=embedded.noise_std,
        seed=seed,
        command=command,
        prior_identity=prior_identity,
        **embedded.arrays,
    )
    if whole.y.shape[-2:] != field.shape[-2:]:
        raise ValueError(
            f"--survey needs data on the field's grid; '{survey.forward_model}' changes it"
        )

    def corner(array: np.ndarray | None) -> np.ndarray | None:
        if array is None or np.shape(array)[-2:] != field.shape[-2:]:
            return array  # a scalar, per-channel value or kernel holds on any grid
        return np.ascontiguousarray(np.asarray(array)[..., :height, :width])

    return replace(
        whole,
        y=corner(whole.y),
        mask=corner(whole.mask),
        noise_std=corner(whole.noise_std),
        truth=corner(whole.truth),
        arrays={name: corner(a) for name, a in whole.arrays.items()},
        attrs={
            **whole.attrs,
            **survey.provenance(),
            "truth_domain": list(field.shape[-2:]),
        },
    )


def noise_seed(seed: int) -> int:
    """The noise's seed of a simulation whose truth is drawn with `seed` (another stream)."""
    return member_seed(seed, 1)


def truth_prior(
    survey: Survey, prior: str | Prior | None, power_spectrum: str | os.PathLike | None = None
) -> Prior:
    """The prior, as `reconstruct` names it, resolved on the survey's periodic truth domain."""
    attrs = survey.simulation_attrs()
    return resolve_prior(prior, power_spectrum, (1, *survey.domain_shape), pixel_scale(attrs))


def simulate_like(
    survey: Survey, prior: Prior, seed: int = 0, command: str | None = None
) -> Observation:
    """Draw a truth from `prior` (see `truth_prior`) on the survey's periodic domain and observe
    it as the survey would (`observe_like`); the truth with `seed`, the noise with
    `noise_seed(seed)`."""
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        truth = prior.sample(1, generator, field_shape=(1, *survey.domain_shape))[0]
    return observe_like(
        survey,
        truth.to(torch.float64).numpy(),
        noise_seed(seed),
        command=command,
        prior_identity=prior.identity(),
    )
