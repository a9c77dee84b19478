"""Forward models by name: builders, their parameters, data shapes and default masks.

Everything that knows a forward model by name lives here: the CLI builds its flags from
`parameter_table()`, simulations take their defaults from `simulation_defaults`, and data shapes
and default masks come from the model's `ForwardModelSpec`.

A builder is `build(attrs, arrays, y_shape) -> ForwardModel`: attrs are the observation file's root
attributes, arrays its optional datasets ('mask' (H, W), 'noise_std', 'psf', 'n_gal_per_arcmin2'),
y_shape the data's (C, H, W). Third-party builders can also be published under the entry-point
group "posterior_diffusion.forward_models"; they are loaded only when an unknown name is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import torch
from torch import Tensor

from forward_models.base import ForwardModel, ForwardOperator
from forward_models.blur import Blur
from forward_models.compose import Compose
from forward_models.downsample import Downsample
from forward_models.galaxy_counts import GalaxyCounts
from forward_models.identity import Identity
from forward_models.lensing import ReducedShear, Shear, shape_noise_sigma
from forward_models.mask import Mask, as_binary_mask
from forward_models.noise import GaussianNoise, PoissonNoise
from forward_models.smoothing import KINDS, Smoothing

ENTRY_POINT_GROUP = "posterior_diffusion.forward_models"

Builder = Callable[[Mapping[str, Any], Mapping[str, Tensor], tuple[int, int, int]], ForwardModel]


class ForwardModelError(ValueError):
    """A forward model cannot be built: unknown name, or a missing or invalid parameter."""


@dataclass(frozen=True)
class Parameter:
    """A forward-model parameter stored as a root attribute of observation files.

    `name` is the attribute (and, with dashes, the CLI flag); `default` is what a simulation uses
    when none is given (None: no default); `unit` in words ("" when dimensionless).
    """

    name: str
    type: type
    default: Any
    unit: str
    help: str
    metavar: str = "X"


DataShape = Callable[[Mapping[str, Any], tuple[int, int, int]], tuple[int, int, int]]


def same_shape(attrs: Mapping[str, Any], field_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(field_shape)


@dataclass(frozen=True)
class ForwardModelSpec:
    """What the package knows about a forward model beyond its builder.

    Args:
        build: `build(attrs, arrays, y_shape) -> ForwardModel`.
        parameters: its root-attribute parameters.
        data_shape: the data shape a simulation produces from a field shape, given attributes.
        default_mask: a simulation's mask when none is asked for: (fraction of pixels lost to
            holes, border width as a share of min(H, W)).
        data_labels: names of the data channels, for figures (() : "data").
        field_label: what the field is, for colour bars ("" : "field value").
        shear_data: the data are shear (gamma1, gamma2), so E/B-mode diagnostics apply.
        noise_parameters: parameters that set the noise in place of a 'noise_std' dataset (a
            simulation given a noise map does not fill them in from their defaults).
    """

    build: Builder
    parameters: tuple[Parameter, ...] = ()
    data_shape: DataShape = same_shape
    default_mask: tuple[float, float] = (0.0, 0.0)
    data_labels: tuple[str, ...] = ()
    field_label: str = ""
    shear_data: bool = False
    noise_parameters: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _attr(attrs: Mapping[str, Any], key: str, model: str) -> Any:
    if key not in attrs:
        raise ForwardModelError(f"forward model '{model}' needs the root attribute '{key}'")
    value = attrs[key]
    if isinstance(value, bytes):  # HDF5 string attributes may arrive as bytes
        return value.decode()
    return (
        value.item()
        if isinstance(value, np.generic | np.ndarray) and np.size(value) == 1
        else value
    )


def _float_attr(attrs: Mapping[str, Any], key: str, model: str) -> float:
    try:
        return float(_attr(attrs, key, model))
    except (TypeError, ValueError) as err:
        raise ForwardModelError(
            f"forward model '{model}': attribute '{key}' must be a number"
        ) from err


# A PSF or smoothing scale beyond this many map sides leaves only the map mean (every other
# mode is damped below float64's reach), and larger values overflow the kernel's arithmetic.
MAX_SCALE_IN_MAP_SIDES = 100


def _length_attr(attrs: Mapping[str, Any], key: str, model: str, y_shape: tuple) -> float:
    """A length attribute in pixels: finite, > 0 and at most MAX_SCALE_IN_MAP_SIDES map sides."""
    value = _float_attr(attrs, key, model)
    limit = MAX_SCALE_IN_MAP_SIDES * max(int(n) for n in y_shape[-2:])
    if not (math.isfinite(value) and 0 < value <= limit):
        raise ForwardModelError(
            f"forward model '{model}': attribute '{key}' must be > 0 and at most {limit:g} pixels "
            f"({MAX_SCALE_IN_MAP_SIDES} map sides), got {value:g}"
        )
    return value


def _array(arrays: Mapping[str, Tensor], key: str, model: str) -> Tensor:
    if key not in arrays:
        raise ForwardModelError(f"forward model '{model}' needs the dataset '{key}'")
    return torch.as_tensor(arrays[key])


def _mask(arrays: Mapping[str, Tensor], model: str) -> Tensor | None:
    if "mask" not in arrays:
        return None
    return as_binary_mask(arrays["mask"], model).to(torch.float64)


def _gaussian(
    operator: ForwardOperator,
    field_shape: tuple[int, int, int],
    arrays: Mapping[str, Tensor],
    model: str,
) -> ForwardModel:
    """`operator` + GaussianNoise(noise_std), masked where a 'mask' dataset is present."""
    sigma = _array(arrays, "noise_std", model).to(torch.float64)
    noise = GaussianNoise(sigma.reshape(()) if sigma.numel() == 1 else sigma, _mask(arrays, model))
    return ForwardModel(operator, noise, field_shape, name=model)


def build_noise(
    attrs: Mapping[str, Any], arrays: Mapping[str, Tensor], y_shape: tuple
) -> ForwardModel:
    """Denoising: y = x + n."""
    return _gaussian(Identity(), tuple(y_shape), arrays, "noise")


def build_inpainting(
    attrs: Mapping[str, Any], arrays: Mapping[str, Tensor], y_shape: tuple
) -> ForwardModel:
    """Inpainting: y = mask * x + n, requires the 'mask' dataset."""
    mask = _array(arrays, "mask", "inpainting")
    return _gaussian(Mask(mask), tuple(y_shape), arrays, "inpainting")


def build_blur(
    attrs: Mapping[str, Any], arrays: Mapping[str, Tensor], y_shape: tuple
) -> ForwardModel:
    """Deblurring: a 'psf' dataset if present, else a Gaussian PSF of attribute psf_fwhm_pixels."""
    shape = tuple(y_shape)
    if "psf" in arrays:
        operator = Blur(torch.as_tensor(arrays["psf"]), shape)
    else:
        operator = Blur.gaussian(_length_attr(attrs, "psf_fwhm_pixels", "blur", shape), shape)
    return _gaussian(operator, shape, arrays, "blur")


# The largest field a forward model may derive from its data (a downsampled observation is a
# factor^2 larger field): 2^28 values, 2 GiB per float64 field, 16384 x 16384 pixels.
MAX_FIELD_PIXELS = 2**28


def build_downsample(
    attrs: Mapping[str, Any], arrays: Mapping[str, Tensor], y_shape: tuple
) -> ForwardModel:
    """Super-resolution: y is x block-averaged by attribute downsample_factor."""
    factor = _float_attr(attrs, "downsample_factor", "downsample")
    if factor != int(factor) or factor < 1:
        raise ForwardModelError(
            f"forward model 'downsample': downsample_factor must be a positive integer, "
            f"got {factor}"
        )
    c, h, w = y_shape
    f = int(factor)
    if c * h * f * w * f > MAX_FIELD_PIXELS:
        raise ForwardModelError(
            f"forward model 'downsample': downsample_factor {f} makes the field {h * f} x {w * f} "
            f"pixels; at most {MAX_FIELD_PIXELS} pixels are supported"
        )
    return _gaussian(Downsample(f), (c, h * f, w * f), arrays, "downsample")


def build_smoothing(
    attrs: Mapping[str, Any], arrays: Mapping[str, Tensor], y_shape: tuple
) -> ForwardModel:
    """Smoothed data: attribute smoothing_kind ("gaussian" by default, or "tophat") and
    smoothing_radius_pixels (smoothing_sigma_pixels is accepted for the Gaussian)."""
    kind = (
        str(_attr(attrs, "smoothing_kind", "smoothing"))
        if "smoothing_kind" in attrs
        else "gaussian"
    )
    if kind not in KINDS:
        raise ForwardModelError(
            f"forward model 'smoothing': smoothing_kind must be one of {KINDS}, got {kind!r}"
        )
    key = "smoothing_radius_pixels"
    if key not in attrs and kind == "gaussian" and "smoothing_sigma_pixels" in attrs:
        key = "smoothing_sigma_pixels"
    radius = _length_attr(attrs, key, "smoothing", y_shape)
    shape = tuple(y_shape)
    return _gaussian(Smoothing(kind, radius, shape), shape, arrays, "smoothing")


def build_lensing(
    attrs: Mapping[str, Any], arrays: Mapping[str, Tensor], y_shape: tuple
) -> ForwardModel:
    """Weak lensing: convergence (1, H, W) -> shear y (2, H, W), masked if 'mask' is present.

    Noise per pixel and component from sigma_e, n_gal_per_arcmin2 (attribute or (H, W) dataset) and
    pixel_scale_arcmin when all are given, else the 'noise_std' dataset. Pixels without galaxies
    are unobserved.
    """
    c, h, w = y_shape
    if c != 2:
        raise ForwardModelError(
            f"forward model 'lensing' needs shear data of shape (2, H, W), got {tuple(y_shape)}"
        )
    mask = _mask(arrays, "lensing")
    reduced = int(attrs.get("reduced_shear", 0))
    if reduced not in (0, 1):
        raise ForwardModelError(f"'reduced_shear' must be 0 or 1, got {attrs.get('reduced_shear')}")
    shear: ForwardOperator = ReducedShear((h, w)) if reduced else Shear((h, w))
    operator: ForwardOperator = shear if mask is None else Compose(shear, Mask(mask))
    n_gal = arrays.get("n_gal_per_arcmin2", attrs.get("n_gal_per_arcmin2"))
    if n_gal is None or "sigma_e" not in attrs or "pixel_scale_arcmin" not in attrs:
        if "noise_std" not in arrays:
            raise ForwardModelError(
                "forward model 'lensing' needs the dataset 'noise_std' "
                "or the attributes 'sigma_e', 'n_gal_per_arcmin2' and 'pixel_scale_arcmin'"
            )
        return _gaussian(operator, (1, h, w), arrays, "lensing")
    n_gal = torch.as_tensor(np.asarray(n_gal, dtype=np.float64))
    sigma_e = _float_attr(attrs, "sigma_e", "lensing")
    sigma = shape_noise_sigma(sigma_e, n_gal, _float_attr(attrs, "pixel_scale_arcmin", "lensing"))
    observed = n_gal > 0 if mask is None else (mask > 0) & (n_gal > 0)
    noise = GaussianNoise(sigma, None if bool(observed.all()) else observed)
    return ForwardModel(operator, noise, (1, h, w), name="lensing")


def build_galaxy_counts(
    attrs: Mapping[str, Any], arrays: Mapping[str, Tensor], y_shape: tuple
) -> ForwardModel:
    """Galaxy counts y ~ Poisson(n_bar * max(1 + bias * x, 0)); 'mask' marks observed pixels."""
    n_bar = _float_attr(attrs, "n_bar", "galaxy_counts")
    bias = _float_attr(attrs, "bias", "galaxy_counts")
    operator = GalaxyCounts(n_bar, bias)
    return ForwardModel(
        operator, PoissonNoise(_mask(arrays, "galaxy_counts")), tuple(y_shape), name="galaxy_counts"
    )


def shear_shape(
    attrs: Mapping[str, Any], field_shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    _, h, w = field_shape
    return (2, h, w)


def downsampled_shape(
    attrs: Mapping[str, Any], field_shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    c, h, w = field_shape
    try:
        f = int(attrs.get("downsample_factor"))
    except (TypeError, ValueError):
        raise ForwardModelError(
            "forward model 'downsample' needs an integer downsample_factor"
        ) from None
    if f < 1 or h % f or w % f:
        raise ForwardModelError(
            f"forward model 'downsample': a {h} x {w} field is not divisible by factor {f}"
        )
    return (c, h // f, w // f)


_SPECS: dict[str, ForwardModelSpec] = {
    "noise": ForwardModelSpec(build_noise),
    "inpainting": ForwardModelSpec(build_inpainting, default_mask=(0.2, 0.0)),
    "blur": ForwardModelSpec(
        build_blur,
        (Parameter("psf_fwhm_pixels", float, 3.0, "pixels", "Gaussian PSF FWHM", "PIX"),),
    ),
    "downsample": ForwardModelSpec(
        build_downsample,
        (Parameter("downsample_factor", int, 2, "pixels", "block side", "F"),),
        data_shape=downsampled_shape,
    ),
    "smoothing": ForwardModelSpec(
        build_smoothing,
        (
            Parameter("smoothing_kind", str, "gaussian", "", "gaussian or tophat", "KIND"),
            Parameter(
                "smoothing_radius_pixels", float, 2.0, "pixels", "sigma or disk radius", "PIX"
            ),
        ),
    ),
    "lensing": ForwardModelSpec(
        build_lensing,
        (
            Parameter("sigma_e", float, 0.26, "", "ellipticity dispersion per component", "S"),
            Parameter("n_gal_per_arcmin2", float, 30.0, "arcmin^-2", "source galaxy density", "N"),
            Parameter("pixel_scale_arcmin", float, 1.0, "arcmin", "pixel side", "ARCMIN"),
            Parameter(
                "reduced_shear", int, 0, "", "1: data are reduced shear gamma / (1 - kappa)", "0|1"
            ),  # fmt: skip
        ),
        data_shape=shear_shape,
        default_mask=(0.1, 1 / 16),
        data_labels=("gamma 1", "gamma 2"),
        field_label="convergence kappa",
        shear_data=True,
        noise_parameters=("sigma_e", "n_gal_per_arcmin2"),
    ),
    "galaxy_counts": ForwardModelSpec(
        build_galaxy_counts,
        (
            Parameter("n_bar", float, 10.0, "", "mean galaxies per pixel", "N"),
            Parameter("bias", float, 1.5, "", "linear galaxy bias", "B"),
        ),
    ),
}


def register_forward_model(
    name: str,
    builder: Builder,
    replace: bool = False,
    parameters: tuple[Parameter, ...] = (),
    data_shape: DataShape = same_shape,
    default_mask: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Make `builder` available under `name`; re-registering a name needs replace=True.

    `parameters`, `data_shape` and `default_mask` are as in `ForwardModelSpec`.
    """
    if name in _SPECS and not replace:
        raise ForwardModelError(f"forward model '{name}' is already registered (pass replace=True)")
    _SPECS[name] = ForwardModelSpec(builder, tuple(parameters), data_shape, default_mask)


def _entry_points() -> list[Any]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def available_forward_models() -> list[str]:
    """Registered names and installed entry-point names, sorted; entry points are not loaded."""
    return sorted(set(_SPECS) | {ep.name for ep in _entry_points()})


def get_spec(name: str) -> ForwardModelSpec:
    """What is known about `name`, loading a matching entry point on first use of an unknown name.

    An entry point names a builder, or a `ForwardModelSpec` for a model with parameters, a
    different data shape or a default mask.
    """
    if name not in _SPECS:
        for ep in _entry_points():
            if ep.name == name:
                loaded = ep.load()
                _SPECS[name] = (
                    loaded if isinstance(loaded, ForwardModelSpec) else ForwardModelSpec(loaded)
                )
                break
        else:
            raise ForwardModelError(
                f"unknown forward model '{name}'; known: {', '.join(available_forward_models())}"
            )
    return _SPECS[name]


def get_builder(name: str) -> Builder:
    """The builder for `name` (see `get_spec`)."""
    return get_spec(name).build


def simulation_defaults(name: str, noise_map: bool = False) -> dict[str, Any]:
    """{attribute: default} of `name`'s parameters that have one, in table order; with a
    `noise_map` (a 'noise_std' dataset), without the parameters that would replace it."""
    spec = get_spec(name)
    skip = spec.noise_parameters if noise_map else ()
    return {
        p.name: p.default for p in spec.parameters if p.default is not None and p.name not in skip
    }


def simulated_data_shape(
    name: str, attrs: Mapping[str, Any], field_shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    """The data shape a simulation of `name` produces from a field of `field_shape`."""
    return tuple(get_spec(name).data_shape(attrs, tuple(field_shape)))


def default_mask(name: str) -> tuple[float, float]:
    """(hole fraction, border share of min(H, W)) of a simulation that asks for no mask."""
    return get_spec(name).default_mask


def default_masks() -> dict[str, tuple[float, float]]:
    """{name: default_mask} of the registered models whose simulations are masked by default
    (entry points are not loaded), in registration order."""
    return {name: spec.default_mask for name, spec in _SPECS.items() if any(spec.default_mask)}


def has_shear_data(name: str | None) -> bool:
    """Whether `name`'s data are shear, for E/B-mode diagnostics; False for a name not registered
    here (a report may read a file made with a plug-in that is not installed)."""
    spec = _SPECS.get(name) if name else None
    return bool(spec and spec.shear_data)


def data_labels(name: str | None, channels: int) -> list[str]:
    """Names of `channels` data channels of `name`, for figures ("data" when unnamed)."""
    spec = _SPECS.get(name) if name else None
    labels = list(spec.data_labels) if spec else []
    return labels if len(labels) == channels else ["data"] * channels


def field_label(name: str | None) -> str:
    """What the field behind data of model `name` is, for colour bars ("field value" unnamed)."""
    spec = _SPECS.get(name) if name else None
    return spec.field_label if spec and spec.field_label else "field value"


def parameter_table() -> dict[str, list[tuple[str, Parameter]]]:
    """Every registered parameter name -> [(model, Parameter), ...], in registration order: one
    CLI flag per name, whichever models share it."""
    table: dict[str, list[tuple[str, Parameter]]] = {}
    for model, spec in _SPECS.items():
        for parameter in spec.parameters:
            table.setdefault(parameter.name, []).append((model, parameter))
    return table


def build_forward_model(
    name: str,
    attrs: Mapping[str, Any],
    arrays: Mapping[str, Tensor],
    y_shape: tuple[int, int, int],
) -> ForwardModel:
    """The forward model `name` for data y of shape y_shape (C, H, W).

    Raises:
        ForwardModelError: unknown name, missing or invalid parameter, or a model whose data
            shape is not y_shape.
    """
    y_shape = tuple(int(n) for n in y_shape)
    builder = get_builder(name)
    try:
        model = builder(attrs, arrays, y_shape)
        data_shape = model.data_shape
    except ForwardModelError:
        raise
    except ValueError as err:  # an invalid value caught by an operator or noise model
        raise ForwardModelError(f"forward model '{name}': {err}") from err
    if tuple(data_shape) != y_shape:
        raise ForwardModelError(
            f"forward model '{name}' predicts data of shape {data_shape}, but y is {y_shape}"
        )
    return model
