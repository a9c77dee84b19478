"""A parameter-conditioned prior p(x | theta) at fixed theta, with classifier-free guidance.

A network trained with its condition dropped at random (`condition_dropout`) gives both the
conditional denoiser D(x, sigma | theta) and the unconditional one D(x, sigma), the denoiser of
the marginal prior over the training set's theta. Guidance with weight w samples with

    D_w = (1 + w) D(x | theta) - w D(x)        (Ho & Salimans 2022),

that is, with the score of p(x | theta)^(1 + w) / p(x)^w at every noise level. At w = 0 this is
the prior the network learned; any w != 0 samples a different, sharper-in-theta distribution
that is not even the noised version of one density, so posteriors are calibrated at w = 0 only
(measured in docs/conditional_priors.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import DRAW_STEPS, Prior
from .draw import draw_fields
from .network import NetworkPrior
from .prior_file import PriorFileError


class GuidanceWarning(UserWarning):
    """Classifier-free guidance with w != 0: the samples no longer follow the learned prior."""


def parse_theta(
    theta: Mapping[str, float] | Sequence[float], names: Sequence[str], source: str
) -> list[float]:
    """theta as floats in the prior's order of `names`, from a {name: value} mapping (every name
    once) or a sequence in that order; a one-line ValueError otherwise."""
    if isinstance(theta, Mapping):
        unknown = sorted(set(theta) - set(names))
        missing = [n for n in names if n not in theta]
        if unknown or missing:
            raise ValueError(
                f"{source}: the prior is conditioned on {', '.join(names)}; "
                + (
                    f"unknown: {', '.join(unknown)}"
                    if unknown
                    else f"missing: {', '.join(missing)}"
                )
            )
        values = [theta[n] for n in names]
    else:
        values = list(theta)
        if len(values) != len(names):
            raise ValueError(
                f"{source}: the prior is conditioned on {len(names)} parameter(s) "
                f"({', '.join(names)}), got {len(values)} value(s)"
            )
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{source}: theta values must be numbers, got {values}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{source}: theta values must be finite, got {values}")
    return values


class ConditionedPrior(Prior):
    """The denoiser of a conditional `NetworkPrior` at fixed theta, guided with weight w.

    Args:
        prior: a prior trained with a `theta` dataset (its metadata has `condition`).
        theta: {name: value}, or values in the prior's order (`prior.condition["names"]`).
        guidance: classifier-free guidance weight w >= -1 (0: the learned p(x | theta); -1: the
            unconditional prior). Each denoiser call costs two network passes when w != 0.

    Raises:
        PriorFileError: the prior is not conditional. ValueError: bad theta or w.
    """

    can_sample = True
    learned = True

    def __init__(
        self,
        prior: NetworkPrior,
        theta: Mapping[str, float] | Sequence[float],
        guidance: float = 0.0,
    ):
        super().__init__()
        condition = prior.metadata.get("condition")
        if not condition:
            raise PriorFileError(
                f"{prior.source}: this prior was trained without parameters; it takes no theta"
            )
        self.prior, self.names = prior, list(condition["names"])
        self.theta = parse_theta(theta, self.names, prior.source)
        self.guidance = float(guidance)
        if not (math.isfinite(self.guidance) and self.guidance >= -1):
            raise ValueError(f"guidance weight must be a finite number >= -1, got {guidance}")
        self.field_shape = prior.field_shape
        outside = [
            f"{name} = {value:g} (trained on [{low:g}, {high:g}])"
            for name, value, low, high in zip(
                self.names, self.theta, condition["min"], condition["max"], strict=True
            )
            if not low <= value <= high
        ]
        if outside:
            warnings.warn(
                f"{prior.source}: theta outside the training range, the prior extrapolates: "
                + "; ".join(outside),
                stacklevel=2,
            )
        if self.guidance != 0:
            warnings.warn(
                f"classifier-free guidance w = {self.guidance:g} changes the prior to "
                "p(x | theta)^(1 + w) / p(x)^w: posterior error bars are calibrated at w = 0 only "
                "(docs/conditional_priors.md)",
                GuidanceWarning,
                stacklevel=2,
            )

    def denoise(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        conditional = self.prior.denoise(x, sigma, condition=self.theta)
        if self.guidance == 0:
            return conditional
        unconditional = self.prior.denoise(x, sigma)
        return conditional + self.guidance * (conditional - unconditional)

    def theta_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.theta, strict=True))

    def identity(self) -> dict[str, Any]:
        return {**self.prior.identity(), "theta": self.theta_dict(), "guidance": self.guidance}

    def check_fields(
        self,
        field_shape: tuple[int, ...],
        pixel_scale_arcmin: float | None = None,
        where: str = "observation",
    ) -> None:
        self.prior.check_fields(field_shape, pixel_scale_arcmin, where)

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        field_shape: tuple[int, ...] | None = None,
        steps: int = DRAW_STEPS,
    ) -> Tensor:
        """`num` draws from the guided conditional prior (as `NetworkPrior.sample`)."""
        shape = self.prior.draw_shape(field_shape)
        return draw_fields(self, num, generator, shape, steps, self.prior.device).to(dtype)

    def data_std(self) -> float:
        return self.prior.data_std()

    def sigma_max(self) -> float:
        return self.prior.sigma_max()

    def sigma_min(self) -> float:
        return self.prior.sigma_min()
