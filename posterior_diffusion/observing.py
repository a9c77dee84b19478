"""The observation model: the forward model an observation implies, and simulated observations of
prior draws or of given fields."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forward_models.base import ForwardModel
from forward_models.registry import (
    ForwardModelError,
    available_forward_models,
    build_forward_model,
    default_mask,
    simulated_data_shape,
    simulation_defaults,
)
from posterior_diffusion.defaults import DEFAULT_FIELD_SHAPE
from posterior_diffusion.io import Observation, ObservationError, check_observation
from posterior_diffusion.masks import survey_mask
from posterior_diffusion.priors import Prior
from posterior_diffusion.priors.resolve import resolve_prior
from posterior_diffusion.provenance import provenance
from posterior_diffusion.samplers.run import check_run_settings


def observation_model(
    observation: Observation, forward_model: str | ForwardModel | None
) -> ForwardModel:
    """The forward model for `observation`, checked against its y and truth shapes."""
    src = observation.source
    if isinstance(forward_model, ForwardModel):
        model = forward_model
    else:
        name = forward_model or observation.forward_model
        if not name:
            raise ObservationError(
                src,
                "no root attribute 'forward_model' and no forward model given "
                f"(available: {', '.join(available_forward_models())})",
            )
        arrays = observation.forward_model_arrays()
        model = _build_model(str(name), observation.attrs, arrays, observation.y.shape, src)
    if tuple(model.data_shape) != tuple(observation.y.shape):
        raise ObservationError(
            src,
            f"has shape {tuple(observation.y.shape)} but forward model '{model.name}' predicts "
            f"data of shape {tuple(model.data_shape)}",
            "y",
        )
    truth = observation.truth
    if truth is not None and tuple(truth.shape) != tuple(model.field_shape):
        raise ObservationError(
            src,
            f"has shape {tuple(truth.shape)} but forward model '{model.name}' works on fields "
            f"of shape {tuple(model.field_shape)}",
            "truth",
        )
    return model


def _build_model(
    name: str,
    attrs: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    y_shape: tuple,
    source: str,
) -> ForwardModel:
    """The registry's model, with any error it raises prefixed by where the inputs came from."""
    tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in arrays.items()}
    try:
        return build_forward_model(name, attrs, tensors, tuple(y_shape))
    except ValueError as err:  # ForwardModelError, and plain ones from operator constructors
        raise ForwardModelError(f"{source}: {' '.join(str(err).split())}") from None


def pixel_scale(attrs: Mapping[str, Any]) -> float | None:
    """The pixel side [arcmin] an observation declares, if any."""
    value = attrs.get("pixel_scale_arcmin")
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def simulation_params(
    forward_model: str, attrs: Mapping[str, Any] | None, noise_map: bool = False
) -> dict[str, Any]:
    """The registry's defaults for `forward_model`, overridden by `attrs`; with a `noise_map`
    (noise_std given), the defaults that would replace it are left out: the map is the noise."""
    try:
        defaults = simulation_defaults(forward_model, noise_map)
    except ForwardModelError as err:
        raise ForwardModelError(f"simulation: {err}") from None
    return {**defaults, **dict(attrs or {})}


def simulation_mask(
    forward_model: str,
    params: Mapping[str, Any],
    field_shape: tuple[int, int, int],
    fraction: float | None,
    border: int | None,
    seed: int,
) -> np.ndarray | None:
    """The survey mask of a simulation on its data grid; None when it has no holes and no border.

    Args:
        fraction: approximate fraction of pixels lost to random rectangular holes; None: the
            forward model's default (the registry's `default_mask`).
        border: width of the unobserved frame [pixels]; None: the forward model's default share
            of the field's min(H, W).
        seed: seeds the holes.
    """
    if fraction is None or border is None:
        default_fraction, border_share = default_mask(forward_model)
        fraction = default_fraction if fraction is None else fraction
        border = int(border_share * min(field_shape[-2:])) if border is None else border
    if fraction <= 0 and border <= 0:
        return None
    data_shape = simulated_data_shape(forward_model, params, field_shape)
    return survey_mask(data_shape[-2:], fraction, int(border), seed=seed)


def simulate_observation(
    forward_model: str,
    shape: Sequence[int] = DEFAULT_FIELD_SHAPE,
    attrs: Mapping[str, Any] | None = None,
    prior: str | Prior | None = None,
    power_spectrum: str | os.PathLike | None = None,
    mask: np.ndarray | None = None,
    mask_fraction: float | None = 0.0,
    mask_border: int | None = 0,
    noise_std: float | np.ndarray | None = None,
    seed: int = 0,
    command: str | None = None,
    **arrays: np.ndarray,
) -> Observation:
    """`api.simulate_observation` (documented there)."""
    check_run_settings(seed=seed)
    dims = tuple(int(n) for n in shape)
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise ValueError(f"field shape must be (H, W) or (C, H, W) of positive sizes, got {dims}")
    field_shape = dims if len(dims) == 3 else (1, *dims)
    params = simulation_params(forward_model, attrs, noise_map=noise_std is not None)
    data_shape = simulated_data_shape(forward_model, params, field_shape)
    if mask is None:
        mask = simulation_mask(forward_model, params, field_shape, mask_fraction, mask_border, seed)
    inputs = _simulation_inputs(arrays, mask, noise_std)
    # Validate the inputs as an observation would be, before drawing anything.
    draft = Observation(y=np.zeros(data_shape), path=Path("simulation"), **_split(inputs))
    check_observation(draft)
    model = _simulation_model(forward_model, params, inputs, data_shape, field_shape)
    resolved = resolve_prior(prior, power_spectrum, field_shape, pixel_scale(params))
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        truth = resolved.sample(1, generator, field_shape=field_shape)[0].to(torch.float64)
        y = model.simulate(truth, generator)
    record = provenance(
        command=command,
        seed=seed,
        prior_identity=resolved.identity(),
        forward_model_params=model.params(),
    )
    obs = Observation(
        y=y.numpy(),
        truth=truth.numpy(),
        attrs={**record, **params, "forward_model": forward_model},
        **_split(inputs),
    )
    return check_observation(obs)


def observe_field(
    truth: np.ndarray,
    forward_model: str,
    attrs: Mapping[str, Any] | None = None,
    mask: np.ndarray | None = None,
    noise_std: float | np.ndarray | None = None,
    seed: int = 0,
    command: str | None = None,
    prior_identity: Mapping[str, Any] | None = None,
    **arrays: np.ndarray,
) -> Observation:
    """`api.observe_field` (documented there)."""
    check_run_settings(seed=seed)
    field = np.asarray(truth, dtype=np.float64)
    if field.ndim == 2:
        field = field[None]
    if field.ndim != 3 or min(field.shape) < 1:
        raise ValueError(f"a field must be (H, W) or (C, H, W), got shape {np.shape(truth)}")
    field_shape = tuple(field.shape)
    params = simulation_params(forward_model, attrs, noise_map=noise_std is not None)
    data_shape = simulated_data_shape(forward_model, params, field_shape)
    inputs = _simulation_inputs(arrays, mask, noise_std)
    draft = Observation(
        y=np.zeros(data_shape), truth=field, path=Path("simulation"), **_split(inputs)
    )
    check_observation(draft)  # also refuses NaN/inf in the field
    model = _simulation_model(forward_model, params, inputs, data_shape, field_shape)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        y = model.simulate(torch.from_numpy(field), generator)
    record = provenance(
        command=command,
        seed=seed,
        prior_identity=prior_identity,
        forward_model_params=model.params(),
    )
    obs = Observation(
        y=y.numpy(),
        truth=field,
        attrs={**record, **params, "forward_model": forward_model},
        **_split(inputs),
    )
    return check_observation(obs)


def _simulation_inputs(arrays: Mapping[str, Any], mask, noise_std) -> dict[str, np.ndarray]:
    """The arrays a simulated observation hands its forward model, as float64."""
    inputs = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    if mask is not None:
        inputs["mask"] = np.asarray(mask, dtype=np.float64)
    if noise_std is not None:
        inputs["noise_std"] = np.asarray(noise_std, dtype=np.float64)
    return inputs


def _simulation_model(
    forward_model: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    data_shape: tuple,
    field_shape: tuple,
) -> ForwardModel:
    """The forward model of a simulation, checked against the field shape."""
    try:
        model = _build_model(forward_model, params, inputs, data_shape, "simulation")
    except ForwardModelError as err:
        if "noise_std" not in inputs and "'noise_std'" in str(err):
            raise ForwardModelError(f"{err} (give noise_std; CLI: --noise-std S)") from None
        raise
    if tuple(model.field_shape) != field_shape:
        raise ForwardModelError(
            f"forward model '{forward_model}' works on fields of shape {tuple(model.field_shape)}, "
            f"not {field_shape}"
        )
    return model


def _split(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Observation keyword arguments from a flat dict of arrays."""
    rest = {k: v for k, v in inputs.items() if k not in ("mask", "noise_std")}
    return {"mask": inputs.get("mask"), "noise_std": inputs.get("noise_std"), "arrays": rest}
