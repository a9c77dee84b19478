"""R1 test problems: Gaussian-field mixture priors (exact non-Gaussian posteriors) and their data.

A prior kind (what the mixture's components differ in) and a model kind (what is observed) make a
problem, named "prior/model" as in `PROBLEMS`. Noise levels are set so that the data leave the
component genuinely uncertain for a fair share of observations: a sampler must then put the right
fraction of its samples in each component, which per-pixel checks do not see.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from forward_models import Compose, ForwardModel, GaussianNoise, Mask, Shear

from ..masks import survey_mask
from ..priors import GaussianPrior
from ..priors.mixture import GaussianMixturePrior
from ..priors.power_spectrum import power_on_grid
from ..rng import member_seed
from .gaussian_problems import unit_variance_spectrum

PRIOR_KINDS = ("amplitude", "slope", "loguniform")
MODEL_KINDS = ("mask", "lensing")

# The cases the benchmark runs by default, "prior/model".
PROBLEMS = [
    "amplitude/mask",
    "amplitude/lensing",
    "slope/mask",
    "slope/lensing",
    "loguniform/mask",
]

# Power amplitudes (multiplying a unit-variance spectrum) of the two-component "amplitude" prior:
# a factor 4 in power, 2 in pixel std, so every prior draw is unambiguous about its component
# (p(k | x) within 1e-100 of 0 or 1 on 24 x 32), and only the data make omega uncertain.
AMPLITUDES = (0.5, 2.0)
# "loguniform": the marginal over cosmology of an amplitude-conditioned prior, 8 amplitudes evenly
# spaced in log over a factor 16 (neighbours differ by 16^(1/7) = 1.49 in power).
LOGUNIFORM_AMPLITUDES = tuple(np.geomspace(0.25, 4.0, 8).tolist())
# The spectral shape 1 / (1 + (k / k0)^2)^n of the "slope" prior's components, k0 in cycles per
# pixel: n = 1 is `unit_variance_spectrum`'s shape, n = 2 is steeper; both at unit pixel variance,
# so they differ in how the same variance is spread over scales, not in the total.
SLOPE_KNEE = 0.05
SLOPE_EXPONENTS = (1.0, 2.0)

# White noise per pixel (per shear component for lensing), in units of the prior's pixel std.
# Chosen by measuring omega(y) for K = 6 observations from `draw_observations(seed=0)` on 24 x 32
# (mask seed 0; run this module to print them). For the two-component priors the largest weight
# is below 0.9 in 4 or 5 of the 6 and above it in the rest (0.92-1.00), so the benchmark sees
# both regimes. Half this noise puts the largest weight at 0.96-1.00 in all 24: a red spectrum
# puts the variance in a few large-scale modes, and once a dozen of them are measured the
# amplitude (or slope) is decided. Mask and lensing levels differ because shear loses the k = 0 mode and the
# masks differ; each was measured on its own. "loguniform" is the informative case: at noise 1
# (1.2 in field units; the amplitudes' pixel std runs from 0.5 to 2) omega still spreads over
# 2-3 neighbouring amplitudes (largest weight 0.57-1.00), a narrow but multi-modal posterior.
NOISE_IN_PRIOR_STD = {
    ("amplitude", "mask"): 5.0,
    ("amplitude", "lensing"): 4.0,
    ("slope", "mask"): 3.0,
    ("slope", "lensing"): 2.5,
    ("loguniform", "mask"): 1.0,
    ("loguniform", "lensing"): 2.0,
}


def _unit_variance(shape_fn, height: int, width: int):
    """shape_fn(k) scaled to unit pixel variance on an H x W grid."""
    scale = 1.0 / power_on_grid(shape_fn, height, width).mean()
    return lambda k: scale * shape_fn(k)


def _scaled(spectrum, amplitude: float):
    return lambda k: amplitude * spectrum(k)


def _slope_shape(exponent: float):
    return lambda k: (1.0 + (np.asarray(k) / SLOPE_KNEE) ** 2) ** -exponent


def mixture_prior(kind: str, shape: tuple[int, int]) -> GaussianMixturePrior:
    """The mixture prior of an R1 problem on an H x W grid (one channel), equal weights.

    Args:
        kind: "amplitude", "slope" or "loguniform".
        shape: (H, W) in pixels.
    """
    h, w = (int(n) for n in shape)
    field = (1, h, w)
    if kind in ("amplitude", "loguniform"):
        base = unit_variance_spectrum(h, w)
        amplitudes = AMPLITUDES if kind == "amplitude" else LOGUNIFORM_AMPLITUDES
        components = [
            GaussianPrior(_scaled(base, a), field, name=f"red spectrum x {a:.4g}")
            for a in amplitudes
        ]
    elif kind == "slope":
        components = [
            GaussianPrior(
                _unit_variance(_slope_shape(n), h, w),
                field,
                name=f"1 / (1 + (k / {SLOPE_KNEE})^2)^{n:g}, unit variance",
            )
            for n in SLOPE_EXPONENTS
        ]
    else:
        raise ValueError(f"unknown prior kind '{kind}' ({', '.join(PRIOR_KINDS)})")
    return GaussianMixturePrior(components, [1.0] * len(components), name=f"R1 {kind}")


def mixture_problem(
    prior_kind: str,
    model_kind: str,
    shape: tuple[int, int] = (24, 32),
    seed: int = 0,
    noise: float | None = None,
) -> tuple[GaussianMixturePrior, ForwardModel]:
    """The mixture prior and forward model of R1 problem "prior_kind/model_kind".

    Args:
        prior_kind: "amplitude", "slope" or "loguniform" (see the module's constants).
        model_kind: "mask" (P1's mask, 25% in holes, and white noise) or "lensing" (P2's shear,
            border and 10% holes, and white shape noise per shear component).
        shape: (H, W) in pixels; need not be square.
        seed: seed of the mask.
        noise: white noise per datum in units of the prior's pixel std; default
            `NOISE_IN_PRIOR_STD`, chosen on 24 x 32. Smaller grids have fewer large-scale modes,
            so the same noise tells them less about the component (omega nearer the prior
            weights): pass a lower one there to keep the data informative.
    """
    if model_kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind '{model_kind}' ({', '.join(MODEL_KINDS)})")
    h, w = (int(n) for n in shape)
    prior = mixture_prior(prior_kind, (h, w))
    if noise is None:
        noise = NOISE_IN_PRIOR_STD[(prior_kind, model_kind)]
    sigma = float(noise) * prior.pixel_variance() ** 0.5
    name = f"{prior_kind}/{model_kind}"
    if model_kind == "mask":
        mask = torch.from_numpy(survey_mask((h, w), hole_fraction=0.25, seed=seed))
        model = ForwardModel(Mask(mask), GaussianNoise(sigma, mask), (1, h, w), name=name)
    else:
        mask = torch.from_numpy(
            survey_mask((h, w), hole_fraction=0.1, border=max(1, h // 16), seed=seed)
        )
        model = ForwardModel(
            Compose(Shear((h, w)), Mask(mask)), GaussianNoise(sigma, mask), (1, h, w), name=name
        )
    return prior, model


def problem_from_name(
    name: str, shape: tuple[int, int] = (24, 32), seed: int = 0, noise: float | None = None
) -> tuple[GaussianMixturePrior, ForwardModel]:
    """`mixture_problem` for a name "prior_kind/model_kind" such as "amplitude/mask"."""
    prior_kind, sep, model_kind = name.partition("/")
    if not sep:
        raise ValueError(f"a problem name is 'prior/model', e.g. 'amplitude/mask'; got '{name}'")
    return mixture_problem(prior_kind, model_kind, shape, seed, noise)


def draw_observations(
    prior: GaussianMixturePrior, model: ForwardModel, num: int, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """`num` (truth (C, H, W), y) pairs: truths from the prior, y simulated from them.

    Observation i has its own generator, seeded from (seed, i), so it does not depend on `num`.
    """
    out = []
    for i in range(num):
        generator = torch.Generator().manual_seed(member_seed(seed, i))
        truth = prior.sample(1, generator)[0]
        out.append((truth, model.simulate(truth, generator)))
    return out


def _print_weights(shape: tuple[int, int] = (24, 32), num: int = 6) -> None:
    """omega(y) of `num` observations of every problem: how the noise levels were chosen."""
    from .mixture import mixture_exact_posterior

    for prior_kind in PRIOR_KINDS:
        for model_kind in MODEL_KINDS:
            prior, model = mixture_problem(prior_kind, model_kind, shape)
            print(f"{prior_kind}/{model_kind}, noise {model.noise.sigma.max():.3g}:")
            for truth, y in draw_observations(prior, model, num):
                omega = mixture_exact_posterior(prior, model, y).weights
                which = int(prior.responsibilities(truth).argmax())
                print(f"  truth in {which}: omega {np.array2string(omega.numpy(), precision=3)}")


if __name__ == "__main__":
    _print_weights()
