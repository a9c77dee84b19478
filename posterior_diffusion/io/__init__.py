"""Observation files in (validated), field files and result datasets in and out (atomically)."""

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.dataset import write_dataset
from posterior_diffusion.io.fields import (
    FieldFileError,
    output_format,
    read_fields,
    result_format,
    write_fields,
)
from posterior_diffusion.io.observation import (
    Observation,
    ObservationError,
    check_observation,
    check_observation_path,
    read_observation,
    write_observation,
)
from posterior_diffusion.io.posterior import (
    data_dims,
    field_dims,
    posterior_dataset,
    read_posterior,
)

__all__ = [
    "FieldFileError",
    "Observation",
    "ObservationError",
    "atomic_path",
    "check_observation",
    "check_observation_path",
    "data_dims",
    "field_dims",
    "output_format",
    "result_format",
    "posterior_dataset",
    "read_fields",
    "read_observation",
    "read_posterior",
    "write_dataset",
    "write_fields",
    "write_observation",
]
