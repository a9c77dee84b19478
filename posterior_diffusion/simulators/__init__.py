"""Field simulators for training and tests: GRF, lognormal, weak-lensing convergence, LPT density."""

from .convergence import convergence_cl, convergence_map, convergence_power_spectrum
from .grf import gaussian_random_field
from .io import write_dataset_file
from .kinds import KINDS, simulate_fields
from .lognormal import LognormalSpectrum, lognormal_field, lognormal_spectrum
from .lpt import cic_paint, linear_density, linear_power_3d, lpt_density_3d, lpt_density_maps

__all__ = [
    "KINDS",
    "LognormalSpectrum",
    "cic_paint",
    "convergence_cl",
    "convergence_map",
    "convergence_power_spectrum",
    "gaussian_random_field",
    "linear_density",
    "linear_power_3d",
    "lognormal_field",
    "lognormal_spectrum",
    "lpt_density_3d",
    "lpt_density_maps",
    "simulate_fields",
    "write_dataset_file",
]
