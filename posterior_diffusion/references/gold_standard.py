"""Gold-standard posteriors for non-Gaussian priors with an explicit density (R2, R3): the target
log p(u | y) in the whitened latent u ~ N(0, I), the benchmark problems, and the checked HMC run.

R2: shifted-lognormal fields, x = shift * (exp(g - sigma_g^2 / 2) - 1) with g = ifft2(sqrt(P_g)
fft2(u)) (P_g from `lognormal_spectrum`), seen through (a) a mask and white noise or (b) shear, a
mask and shape noise. R3: galaxy counts y ~ Poisson(n_bar max(1 + bias x, 0)) of a Gaussian field
x = ifft2(sqrt(P) fft2(u)) or of a lognormal one. In u the prior is N(0, I), so
log p(u | y) = -|u|^2 / 2 + log p(y | x(u)) + const, with the forward model's own likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from forward_models import (
    Compose,
    ForwardModel,
    GalaxyCounts,
    GaussianNoise,
    Mask,
    PoissonNoise,
    Shear,
    shape_noise_sigma,
)
from forward_models.fourier import fourier_filter
from forward_models.lensing import ReducedShear

from ..masks import survey_mask
from ..priors.gaussian import GaussianPrior
from ..priors.power_spectrum import power_on_grid
from ..rng import member_seed
from ..simulators.convergence import DEFAULT_SHIFT, convergence_power_spectrum
from ..simulators.grf import gaussian_field_from_power_grid
from ..simulators.lognormal import lognormal_from_power_grid, lognormal_spectrum
from .hmc import GoldStandardPosterior, HMCSettings, hmc

RHAT_MAX = 1.01  # Vehtari et al. (2021): use the draws only if every R-hat is below this
MODEL_KINDS = ("mask", "lensing", "reduced", "counts")
# Stream indices for member_seed(seed, .): the truth is map 0 of the simulator's streams.
_DATA_STREAM = 1 << 41  # the observation noise
_START_STREAM = 1 << 42  # the chains' starting points


class LatentField:
    """x(u) for white noise u (..., 1, H, W): a Gaussian random field of power P, or the
    shifted-lognormal field whose spectrum is P (its Gaussian g has the spectrum P_g).

    The same white noise gives the same map as the package's simulators
    (`gaussian_field_from_power_grid`, `lognormal_from_power_grid`): see `latent`.

    Args:
        kind: "grf" or "lognormal".
        power: target power P of x on the (H, W) fft2 grid [pixel units].
        shift: lognormal only: the shift (x > -shift).
    """

    def __init__(self, kind: str, power: np.ndarray, shift: float | None = None):
        if kind not in ("grf", "lognormal"):
            raise ValueError(f"latent field kind must be 'grf' or 'lognormal', got '{kind}'")
        if (shift is None) != (kind == "grf"):
            raise ValueError("a shift is needed for a lognormal field, and only for it")
        self.kind, self.power, self.shift = kind, np.asarray(power, dtype=np.float64), shift
        self.shape = self.power.shape
        if kind == "grf":
            self.gaussian_power, self.sigma_g2, self.clipped_fraction = self.power, 0.0, 0.0
        else:
            spectrum = lognormal_spectrum(self.power, shift)
            self.gaussian_power = spectrum.gaussian_power
            self.sigma_g2, self.clipped_fraction = spectrum.sigma_g2, spectrum.clipped_fraction
        self._gain = torch.from_numpy(np.sqrt(self.gaussian_power))

    def gaussian(self, u: Tensor) -> Tensor:
        """g = ifft2(sqrt(P_g) fft2(u)) (the GRF itself for kind grf)."""
        return fourier_filter(u, self._gain)

    def __call__(self, u: Tensor) -> Tensor:
        g = self.gaussian(u)
        if self.kind == "grf":
            return g
        return self.shift * torch.expm1(g - self.sigma_g2 / 2)

    def latent(self, num: int, seed: int) -> Tensor:
        """The white noise (num, 1, H, W) behind `simulate(num, seed)`: map i's own stream."""
        draws = [
            torch.randn(
                (1, *self.shape),
                generator=torch.Generator().manual_seed(member_seed(seed, i)),
                dtype=torch.float64,
            )
            for i in range(int(num))
        ]
        return torch.stack(draws)

    def simulate(self, num: int, seed: int) -> np.ndarray:
        """`num` prior draws (num, H, W) from the package's simulator: training data for a
        diffusion prior of the same model."""
        if self.kind == "grf":
            return gaussian_field_from_power_grid(self.power, num, seed)
        return lognormal_from_power_grid(self.power, num, seed, self.shift)

    def gaussian_prior(self) -> GaussianPrior:
        """The prior of a GRF as a `GaussianPrior` (for exact posteriors)."""
        if self.kind != "grf":
            raise ValueError("only a Gaussian random field has a Gaussian prior")
        return GaussianPrior.from_power_grid(torch.from_numpy(self.power), 1, name="latent grf")

    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "pixel_variance": float(self.power.mean()),
            "shift": self.shift,
            "sigma_g2": self.sigma_g2,
            "clipped_fraction": self.clipped_fraction,
        }


class LatentPosterior:
    """log p(u | y) + const = -|u|^2 / 2 + log p(y | x(u)), batched over chains (N, 1, H, W)."""

    def __init__(self, latent_field: LatentField, model: ForwardModel, y: Tensor):
        self.field, self.model = latent_field, model
        self.y = torch.as_tensor(y, dtype=torch.float64)

    def __call__(self, u: Tensor) -> Tensor:
        prior = -0.5 * u.flatten(1).square().sum(1)
        return prior + self.model.log_likelihood(self.y, self.field(u))


@dataclass
class ReferenceProblem:
    """A benchmark problem: the prior (as a latent field), forward model, truth and data."""

    name: str
    field: LatentField  # x(u), and `field.simulate(num, seed)` for training a diffusion prior
    model: ForwardModel
    truth: Tensor  # (1, H, W), a prior draw
    truth_latent: Tensor  # (1, H, W), its white noise: truth = field(truth_latent)
    y: Tensor  # data, model.data_shape
    params: dict[str, Any] = field(default_factory=dict)  # everything that defines the problem

    def log_posterior(self, y: Tensor | None = None) -> LatentPosterior:
        return LatentPosterior(self.field, self.model, self.y if y is None else y)

    def simulate(self, num: int, seed: int) -> np.ndarray:
        """Prior draws (num, H, W) of the field, as the package's simulators make them."""
        return self.field.simulate(num, seed)


# Problem parameters. Each was checked to make the data informative (posterior std well below
# the prior's) while the posterior stays visibly non-Gaussian (per-pixel skewness of the HMC
# draws far beyond its sampling noise): benchmarks/hmc_references.py prints both.
LOGNORMAL_VARIANCE = 0.5  # pixel variance of the lognormal delta (shift 1): skewness ~ 2.5
MASK_NOISE = 0.3  # white noise of R2 (a), in units of the field's pixel std
LENSING_N_GAL = 30.0  # galaxies per arcmin^2 (1 arcmin pixels), sigma_e 0.26, as P2
COUNTS_N_BAR = 5.0  # mean galaxies per pixel of R3 lognormal
COUNTS_BIAS = 1.0  # lognormal delta > -1 with bias <= 1: the clamp never acts
GRF_COUNTS_STD = 0.2  # pixel std of the Gaussian x in R3: 1 + x < 0 is a 5-sigma event
GRF_COUNTS_N_BAR = 20.0  # more galaxies than for the lognormal: x varies the rate by only 20%


def red_spectrum(height: int, width: int, variance: float) -> Callable[[np.ndarray], np.ndarray]:
    """P(k) proportional to 1 / (1 + (k / 0.05)^2), scaled to `variance` per pixel on H x W."""

    def shape(k):
        return 1.0 / (1.0 + (np.asarray(k) / 0.05) ** 2)

    scale = variance / power_on_grid(shape, height, width).mean()
    return lambda k: scale * shape(k)


def _observe(
    name: str,
    latent_field: LatentField,
    model: ForwardModel,
    seed: int,
    params: dict[str, Any],
) -> ReferenceProblem:
    """Truth: the simulator's map for `seed`; data: the forward model's draw from its own stream."""
    truth_latent = latent_field.latent(1, seed)[0]
    truth = latent_field(truth_latent)
    noise = torch.Generator().manual_seed(member_seed(seed, _DATA_STREAM))
    y = model.simulate(truth, noise)
    params = {"name": name, "seed": seed, "field": latent_field.params(), **params}
    params["model"] = model.params()
    return ReferenceProblem(name, latent_field, model, truth, truth_latent, y, params)


def counts_model(shape: tuple[int, int], n_bar: float, bias: float) -> ForwardModel:
    """Poisson counts of n_bar max(1 + bias x, 0) per pixel, with a survey mask (10% in holes)."""
    mask = torch.from_numpy(survey_mask(shape, hole_fraction=0.1, seed=0))
    return ForwardModel(
        GalaxyCounts(n_bar, bias), PoissonNoise(mask), (1, *shape), name="galaxy_counts"
    )


def lognormal_problem(
    model_kind: str, shape: tuple[int, int] = (24, 32), seed: int = 0
) -> ReferenceProblem:
    """R2 (model_kind "mask", "lensing" or "reduced") or R3 lognormal ("counts") on an H x W grid.

    mask: delta with LOGNORMAL_VARIANCE and a red spectrum, the P1 mask (25% in holes), white
    noise MASK_NOISE times delta's pixel std. lensing: the package's convergence simulator
    (analytic C_ell, 1 arcmin pixels, shift 0.02) seen as shear with P2's mask and shape noise
    (sigma_e 0.26, LENSING_N_GAL per arcmin^2). reduced: the same field and survey seen as
    reduced shear g = gamma / (1 - kappa) (nonlinear; what galaxy shapes measure). counts: delta
    as for mask, y ~ Poisson(n_bar (1 + bias delta)) with COUNTS_N_BAR, COUNTS_BIAS and a 10% mask.

    The mask (and so the forward model) does not depend on `seed`; the truth and data do.
    """
    h, w = shape
    if model_kind in ("lensing", "reduced"):
        power = power_on_grid(convergence_power_spectrum(1.0), h, w)
        latent_field = LatentField("lognormal", power, DEFAULT_SHIFT)
        mask = torch.from_numpy(survey_mask(shape, hole_fraction=0.1, border=max(1, h // 16)))
        sigma = shape_noise_sigma(0.26, LENSING_N_GAL, 1.0)
        shear = ReducedShear(shape) if model_kind == "reduced" else Shear(shape)
        model = ForwardModel(
            Compose(shear, Mask(mask)), GaussianNoise(sigma, mask), (1, h, w), "lensing"
        )
        params = {"sigma_e": 0.26, "n_gal_per_arcmin2": LENSING_N_GAL, "pixel_scale_arcmin": 1}
        if model_kind == "reduced":
            params["reduced_shear"] = 1
    elif model_kind in ("mask", "counts"):
        power = power_on_grid(red_spectrum(h, w, LOGNORMAL_VARIANCE), h, w)
        latent_field = LatentField("lognormal", power, 1.0)
        if model_kind == "mask":
            mask = torch.from_numpy(survey_mask(shape, hole_fraction=0.25, seed=0))
            sigma = MASK_NOISE * math.sqrt(LOGNORMAL_VARIANCE)
            model = ForwardModel(Mask(mask), GaussianNoise(sigma, mask), (1, h, w), "inpainting")
            params = {"noise_std": sigma}
        else:
            model = counts_model(shape, COUNTS_N_BAR, COUNTS_BIAS)
            params = {"n_bar": COUNTS_N_BAR, "bias": COUNTS_BIAS}
    else:
        raise ValueError(f"unknown model kind '{model_kind}' (choose from {MODEL_KINDS})")
    return _observe(f"lognormal_{model_kind}", latent_field, model, seed, params)


def grf_counts_problem(
    shape: tuple[int, int] = (24, 32),
    seed: int = 0,
    std: float = GRF_COUNTS_STD,
    n_bar: float = GRF_COUNTS_N_BAR,
    bias: float = COUNTS_BIAS,
) -> ReferenceProblem:
    """R3 with a Gaussian field: x of pixel std `std` (red spectrum), y ~ Poisson(n_bar
    max(1 + bias x, 0)), a 10% mask. The clamp is non-smooth at 1 + bias x = 0; with bias * std
    = 0.2 that is a 5-sigma event per pixel, and `gold_standard_posterior` reports the fraction of
    draws that reach it (`clipped_draws`)."""
    h, w = shape
    latent_field = LatentField("grf", power_on_grid(red_spectrum(h, w, std**2), h, w))
    model = counts_model(shape, n_bar, bias)
    params = {"n_bar": n_bar, "bias": bias}
    return _observe("grf_counts", latent_field, model, seed, params)


class NotConvergedError(RuntimeError):
    """HMC chains that did not converge; the run is kept on `.posterior` for inspection."""

    def __init__(self, message: str, posterior: GoldStandardPosterior):
        super().__init__(message)
        self.posterior = posterior


def gold_standard_posterior(
    problem: ReferenceProblem,
    y: Tensor | None = None,
    chains: int = 16,
    warmup: int = 500,
    draws: int = 1000,
    seed: int = 0,
    thin: int = 4,
    trajectory_length: float = math.pi / 2,
    init_scale: float = 1.0,
    rhat_max: float = RHAT_MAX,
    min_ess: float = 0.0,
    check: bool = True,
) -> GoldStandardPosterior:
    """The HMC posterior of `problem` given y (default: the problem's own data).

    Chains start from prior draws u ~ N(0, init_scale^2 I), over-dispersed against the
    posterior as R-hat needs. Diagnostics cover every pixel and the global statistics (log p,
    log total power, field mean and max). See `HMCSettings` for the other arguments.

    Raises:
        NotConvergedError: when check is True and some R-hat >= rhat_max or the smallest bulk or
            tail ESS < min_ess; the unconverged result is attached. With check False the result
            is returned and its `max_rhat` and `min_ess` must be read by the caller.
    """
    settings = HMCSettings(
        chains=chains,
        warmup=warmup,
        draws=draws,
        thin=thin,
        trajectory_length=trajectory_length,
        init_scale=init_scale,
        seed=seed,
    )
    data = problem.y if y is None else torch.as_tensor(y, dtype=torch.float64)
    start = torch.randn(
        (chains, 1, *problem.field.shape),
        generator=torch.Generator().manual_seed(member_seed(seed, _START_STREAM)),
        dtype=torch.float64,
    )
    run = hmc(
        problem.log_posterior(data), settings.init_scale * start, settings, transform=problem.field
    )
    posterior = GoldStandardPosterior.from_run(
        run, settings, problem=problem.params, data="problem" if y is None else "given"
    )
    if isinstance(problem.model.operator, GalaxyCounts):
        # The clamp max(1 + bias x, 0) is not smooth where it acts: say how often it did.
        lowest = (1 + problem.model.operator.bias * run.fields).reshape(chains * draws, -1).min(1)
        posterior.sampler["clipped_draws"] = float((lowest <= 0).mean())
        posterior.sampler["lowest_rate_factor"] = float(lowest.min())
    if check and (posterior.max_rhat >= rhat_max or posterior.min_ess < min_ess):
        raise NotConvergedError(
            f"{problem.name}: HMC did not converge (max R-hat {posterior.max_rhat:.4f}, needs < "
            f"{rhat_max}; min ESS {posterior.min_ess:.0f}, needs >= {min_ess:.0f}): run longer",
            posterior,
        )
    return posterior
