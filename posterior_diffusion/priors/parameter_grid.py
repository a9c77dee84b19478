"""A parameter-conditioned prior marginalised over a grid of theta: sum_j pi_j p(x | theta_j).

A prior trained on simulations over many cosmologies, used without theta, is the marginal over
the training set's theta, and a sampler sees only its denoiser: on mixtures of Gaussian fields
`guided` then put up to 67% of its samples in components the posterior rules out
(docs/samplers.md, "blind guided"). The same network conditioned on theta names the components:
this prior's `latent_components` are the conditioned priors p(x | theta_j), so `guided` weighs
each theta_j by its evidence, draws each member's theta from those weights and samples
p(x | y, theta_j). The weights are then a posterior over the grid, p(theta_j | y), recorded with
the output.

Its own `denoise` (used by samplers that ignore components, and to draw from the prior) is the
network's unconditional denoiser: the marginal over the training set's theta, which equals this
mixture only if the grid and its weights match how the training theta were drawn.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import CovarianceProduct, Prior
from .conditioned import ConditionedPrior, parse_theta
from .network import NetworkPrior
from .prior_file import PriorFileError

# More grid points than this makes the per-component evidence (n observed data products each)
# and the per-component batches of a run impractical; refuse rather than crawl.
MAX_GRID_POINTS = 256


class ParameterGridPrior(Prior):
    """sum_j weights[j] p(x | thetas[j]) for a conditional `NetworkPrior`.

    Args:
        prior: a prior trained with a `theta` dataset.
        thetas: the grid, one theta per point ({name: value} or values in the prior's order).
        weights: prior weight of each point (normalised here); default equal.
    """

    can_sample = False
    learned = True

    def __init__(
        self,
        prior: NetworkPrior,
        thetas: Sequence[Mapping[str, float] | Sequence[float]],
        weights: Sequence[float] | None = None,
    ):
        super().__init__()
        condition = prior.metadata.get("condition")
        if not condition:
            raise PriorFileError(
                f"{prior.source}: this prior was trained without parameters; it has no theta to "
                "marginalise over"
            )
        if not 1 <= len(thetas) <= MAX_GRID_POINTS:
            raise ValueError(f"a theta grid needs 1 to {MAX_GRID_POINTS} points, got {len(thetas)}")
        names = list(condition["names"])
        values = [parse_theta(t, names, prior.source) for t in thetas]
        w = (
            torch.ones(len(values), dtype=torch.float64)
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
        if w.shape != (len(values),) or not bool(torch.all(torch.isfinite(w) & (w > 0))):
            raise ValueError(f"need one finite weight > 0 per grid point, got {weights}")
        self.prior, self.names, self.thetas = prior, names, values
        self.weights = w / w.sum()
        self.field_shape = prior.field_shape
        self.components = [ConditionedPrior(prior, theta) for theta in values]

    @classmethod
    def from_ranges(
        cls, prior: NetworkPrior, ranges: Mapping[str, tuple[float, float, int]]
    ) -> ParameterGridPrior:
        """The product grid of `num` evenly spaced values in [low, high] per parameter
        ({name: (low, high, num)}, every parameter of the prior once), equal weights."""
        condition = prior.metadata.get("condition")
        if not condition:
            raise PriorFileError(
                f"{prior.source}: this prior was trained without parameters; it has no theta to "
                "marginalise over"
            )
        names = list(condition["names"])
        if sorted(ranges) != sorted(names):
            raise ValueError(
                f"{prior.source}: a theta grid needs a range for each of {', '.join(names)}, "
                f"got {', '.join(ranges) or 'none'}"
            )
        axes = []
        for name in names:
            low, high, num = ranges[name]
            if int(num) < 1 or not low <= high or (int(num) == 1 and low != high):
                raise ValueError(f"grid for {name}: need low <= high and num >= 1 (num 1 only "
                                 f"if low == high), got {low}:{high}:{num}")  # fmt: skip
            axes.append(torch.linspace(float(low), float(high), int(num), dtype=torch.float64))
        # 12 digits: 0.8 + 0.4 is 1.2, not 1.2000000000000002, in the provenance.
        points = [[float(f"{v:.12g}") for v in p] for p in itertools.product(*axes)]
        return cls(prior, points)

    def latent_components(self) -> tuple[Tensor, list[Prior]]:
        return self.weights, list(self.components)

    def denoise(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        return self.prior.denoise(x, sigma)

    def linearize(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, CovarianceProduct]:
        return self.prior.linearize(x, sigma)

    def check_fields(
        self,
        field_shape: tuple[int, ...],
        pixel_scale_arcmin: float | None = None,
        where: str = "observation",
    ) -> None:
        self.prior.check_fields(field_shape, pixel_scale_arcmin, where)

    def data_std(self) -> float:
        return self.prior.data_std()

    def sigma_max(self) -> float:
        return self.prior.sigma_max()

    def sigma_min(self) -> float:
        return self.prior.sigma_min()

    def identity(self) -> dict[str, Any]:
        return {
            **self.prior.identity(),
            "theta_grid": {
                "names": self.names,
                "points": self.thetas,
                "weights": [float(w) for w in self.weights],
            },
        }
