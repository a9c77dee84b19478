"""Observation files in (validated), result datasets out (atomically)."""

from posterior_diffusion.io.atomic import atomic_path
from posterior_diffusion.io.dataset import (
    OUTPUT_FORMATS,
    OutputPathError,
    output_format,
    write_dataset,
)
from posterior_diffusion.io.observation import (
    Observation,
    ObservationError,
    check_observation,
    check_observation_path,
    read_observation,
    write_observation,
)
from posterior_diffusion.io.posterior import data_dims, field_dims, posterior_dataset

__all__ = [
    "OUTPUT_FORMATS",
    "Observation",
    "ObservationError",
    "OutputPathError",
    "atomic_path",
    "check_observation",
    "check_observation_path",
    "data_dims",
    "field_dims",
    "output_format",
    "posterior_dataset",
    "read_observation",
    "write_dataset",
    "write_observation",
]
