"""Differentiable forward operators and noise models (imports nothing from posterior_diffusion)."""

from forward_models.base import (
    ForwardModel,
    ForwardOperator,
    GaussianNoiseModel,
    NoiseModel,
    cast_like,
)
from forward_models.blur import Blur
from forward_models.compose import Compose
from forward_models.downsample import Downsample
from forward_models.galaxy_counts import GalaxyCounts
from forward_models.identity import Identity
from forward_models.lensing import Shear, kaiser_squires, shape_noise_sigma, shear_filters
from forward_models.mask import Mask
from forward_models.noise import CorrelatedGaussianNoise, GaussianNoise, PoissonNoise
from forward_models.registry import (
    ForwardModelError,
    ForwardModelSpec,
    Parameter,
    available_forward_models,
    build_forward_model,
    register_forward_model,
)
from forward_models.smoothing import Smoothing

__all__ = [
    "Blur",
    "Compose",
    "CorrelatedGaussianNoise",
    "Downsample",
    "ForwardModel",
    "ForwardModelError",
    "ForwardModelSpec",
    "ForwardOperator",
    "GalaxyCounts",
    "GaussianNoise",
    "GaussianNoiseModel",
    "Identity",
    "Mask",
    "NoiseModel",
    "Parameter",
    "PoissonNoise",
    "Shear",
    "Smoothing",
    "available_forward_models",
    "build_forward_model",
    "cast_like",
    "kaiser_squires",
    "register_forward_model",
    "shape_noise_sigma",
    "shear_filters",
]
