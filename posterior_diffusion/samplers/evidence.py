"""Posterior weights of a prior's latent components: omega_k ∝ pi_k p(y | k).

For a prior that names its components (`Prior.latent_components`: a mixture, a parameter on a
grid) the posterior is sum_k omega_k p(x | y, k). A sampler that draws each member's component
from omega and then samples p(x | y, k) needs only to be right per component, and `guided` is
exact for a Gaussian component. Left to pick components along its trajectory, it put up to 37%
of the mass in components the posterior rules out (docs/samplers.md).

p(y | k) here is the evidence of the Gaussian with component k's mean mu_k and covariance C_k,
in whitened data space (B = Sigma^{-1/2} A):

    log p(y | k) = -1/2 [ r^T (I + B C_k B^T)^{-1} r + log det(I + B C_k B^T) + n log 2 pi ],
    r = y_w - B mu_k

exact for a Gaussian component (a mixture of Gaussian fields), the moment-matched approximation
otherwise. mu_k and C_k come from the component's own denoiser at one noise level s: for a
Gaussian, D(x) = mu + M (x - mu) with M = C (C + s^2)^{-1} = Cov[x0 | x_s] / s^2, so with M's
eigenpairs (m, v)

    C = sum s^2 m / (1 - m) v v^T,   mu = (I - M)^{-1} (D(x) - M x)  at any x.

M is built densely over the field's pixels (one covariance product per pixel, at typical points
x = s z, where a network has been trained), symmetrised, and its eigenvalues clipped to [0, 1):
the nearest valid covariance when a learned Jacobian is not one (a warning says how far it was).
Then B C^{1/2} needs only forward-model products, and I + B C B^T is factorised densely. Exact
for a Gaussian at any s, deterministic (the points x are fixed, so every batch and every rank
gets the same omega), and it costs one product per pixel and component for the whole ensemble.

The level s: any for an exact prior; for a network, where its Jacobian is right. On a trained
conditional 16 x 16 GRF prior (benchmarks/parameter_grid.py), the weights' TV from the exact
ones was 0.10-0.64 at sigma_max (at x = 0 or typical x), 0.04-0.10 at 2 data std, 0.01-0.06 at
4, 0.03-0.17 at 15: s = `EVIDENCE_SIGMA` data std. Stochastic log-determinants were measured
too noisy for omega (~10 nats at n = 768 with 16 products per probe; omega needs ~0.1), so above
`MAX_DENSE` pixels or data entries the components are read as stationary where the forward model
is (`stationary_evidence.py`: dense over observed data entries only), and otherwise no weights
are estimated and the caller says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..likelihood import WhitenedLinearGaussian
from ..memory import MEMORY_FRACTION, available_bytes
from ..priors.base import Prior
from . import stationary_evidence as stationary

# Pixels (and observed data entries) up to which M and I + B C B^T are built densely: a 64 x 64
# map (its B C^{1/2}, for shear data, 4096 x 8192 float64 = 256 MiB).
MAX_DENSE = 4096
# Fields per batch of covariance products while building M.
COLUMN_BATCH = 64
# The noise level of the evidence, in units of the prior's data std (module docstring).
EVIDENCE_SIGMA = 4.0
# M's eigenvalues are clipped below 1 - this (C = s^2 m / (1 - m) must stay finite).
MAX_GAIN_GAP = 1e-9
# Above this fraction of |eigenvalues| in negative directions, a component's covariance (from a
# learned Jacobian) is reported as not positive. Measured on the conditional 16 x 16 prior: 2.6%
# at 4 data std came with weights within TV 0.01-0.02 of the exact ones, 47-95% at sigma_max
# with TV 0.3-0.6; 10% is a line drawn between the two, not a measured threshold.
NEGATIVE_TOLERANCE = 0.1
# Simulator kinds (`simulators/kinds.py`) whose fields are not Gaussian: a network trained on them
# has components whose Gaussian evidence is an approximation (`warn_if_not_gaussian`).
NON_GAUSSIAN_KINDS = {"lognormal", "convergence", "density"}


class ComponentWeightsWarning(UserWarning):
    """The prior names latent components, but their posterior weights could not be estimated,
    or only approximately (a covariance that is not positive)."""


@dataclass
class ComponentWeights:
    """omega_k and the pieces behind them, for provenance."""

    weights: Tensor  # omega_k, (K,), sums to 1
    log_evidence: Tensor  # log p(y | k) up to a constant shared by the components, (K,)
    observed_entries: int
    # Set when the components were read as stationary (`stationary_evidence.py`): the largest
    # relative departure of their gains from a circulant (0 for stationary Gaussians).
    stationary_departure: float | None = None

    def as_dict(self) -> dict:
        out = {
            "component_weights": [round(float(w), 6) for w in self.weights],
            "component_log_evidence": [round(float(v), 4) for v in self.log_evidence],
            "evidence": "Gaussian evidence per component (exact for Gaussian components), "
            f"dense over the field's pixels and {self.observed_entries} observed data entries",
        }
        if self.stationary_departure is not None:
            out["evidence"] = (
                "Gaussian evidence per component (exact for stationary Gaussian components), "
                "each component's covariance read as a power spectrum (its gain's departure "
                f"from a circulant: {self.stationary_departure:.2g}), dense over "
                f"{self.observed_entries} observed data entries"
            )
            out["component_stationary_departure"] = round(self.stationary_departure, 6)
        return out


def latent_component_weights(
    prior: Prior, likelihood: WhitenedLinearGaussian
) -> ComponentWeights | None:
    """omega for a prior with latent components, or None if it has none or the field or the data
    are too large: densely over the pixels up to `MAX_DENSE`; above, for a stationary forward
    model, with each component read as stationary up to `MAX_OBSERVED` observed data entries
    (`stationary_evidence.py`)."""
    latent = prior.latent_components()
    if latent is None:
        return None
    pi, parts = latent
    warn_if_not_gaussian(parts)
    observed = likelihood.observed().flatten()
    n = int(observed.sum())
    pixels = math.prod(likelihood.model.field_shape)
    log_pi = torch.as_tensor(pi, dtype=torch.float64).cpu().log()
    if max(n, pixels) <= MAX_DENSE:
        index = observed.nonzero().flatten()
        log_evidence = torch.stack([gaussian_log_evidence(p, likelihood, index) for p in parts])
        weights = torch.softmax(log_pi + log_evidence, dim=0)
        return ComponentWeights(weights=weights, log_evidence=log_evidence, observed_entries=n)
    operator = stationary.stationary_operator(likelihood)
    if operator is None or stationary.stationary_route(operator) is None:
        why = (
            f"{n} observed data entries (and a noise map, or as many unobserved), above the "
            f"{stationary.MAX_OBSERVED} up to which"
            if operator is not None
            else f"{pixels} pixels and {n} observed data entries, above the {MAX_DENSE} up to "
            "which (for a forward model that is not a Fourier multiplier with independent noise)"
        )
        warnings.warn(
            ComponentWeightsWarning(
                f"the prior's {len(parts)} latent components are not weighted by the data: "
                f"{why} their evidence is computed; samples may sit in components the posterior "
                "rules out (docs/samplers.md)"
            ),
            stacklevel=3,
        )
        return None
    needed = stationary.dense_bytes(operator)
    free = MEMORY_FRACTION * available_bytes(likelihood.y_white.device)
    if needed > free:
        warnings.warn(
            ComponentWeightsWarning(
                f"the prior's {len(parts)} latent components are not weighted by the data: "
                f"their evidence needs about {needed / 2**20:.0f} MiB on "
                f"{likelihood.y_white.device}, more than the {free / 2**20:.0f} MiB free; "
                "samples may sit in components the posterior rules out (docs/samplers.md)"
            ),
            stacklevel=3,
        )
        return None
    found = [
        stationary.stationary_log_evidence(p, likelihood, operator, evidence_sigma(p))
        for p in parts
    ]
    log_evidence = torch.stack([value for value, _ in found])
    weights = torch.softmax(log_pi + log_evidence, dim=0)
    return ComponentWeights(
        weights=weights,
        log_evidence=log_evidence,
        observed_entries=n,
        stationary_departure=max(departure for _, departure in found),
    )


def warn_if_not_gaussian(parts: list[Prior]) -> None:
    """Warn when the components were trained on fields the simulators make non-Gaussian: their
    Gaussian evidence was measured off by up to 8 nats (omega by TV up to 0.75) for lognormal
    components against annealed importance sampling (benchmarks/lognormal_evidence.py)."""
    kinds = sorted({str(p.identity().get("data_kind")) for p in parts} & NON_GAUSSIAN_KINDS)
    if kinds:
        warnings.warn(
            ComponentWeightsWarning(
                f"the prior's latent components were trained on {', '.join(kinds)} fields, which "
                "are not Gaussian; their weights come from each component's Gaussian evidence, "
                "measured to be badly off for lognormal fields (TV up to 0.75; docs/samplers.md, "
                "'Non-Gaussian components')"
            ),
            stacklevel=4,
        )


def evidence_sigma(prior: Prior) -> float:
    """The noise level s at which a component's mean and covariance are read (module docstring)."""
    try:
        scale = EVIDENCE_SIGMA * float(prior.data_std())
    except NotImplementedError:
        return float(prior.sigma_max())
    return min(scale, float(prior.sigma_max()))


def gaussian_log_evidence(
    prior: Prior, likelihood: WhitenedLinearGaussian, index: Tensor
) -> Tensor:
    """log N(y_w; B mu, I + B C B^T) over the observed data entries `index` (flat), for the
    Gaussian with the prior's mean and covariance (module docstring)."""
    y_w = likelihood.y_white
    shape = likelihood.model.field_shape
    dtype, device = y_w.dtype, y_w.device
    pixels = math.prod(shape)
    s = evidence_sigma(prior)
    typical = torch.randn((pixels, *shape), generator=torch.Generator().manual_seed(0),
                          dtype=dtype).to(device)  # fmt: skip
    gain = torch.empty((pixels, pixels), dtype=dtype, device=device)  # M, one column per row
    mean_rhs = None  # D(x) - M x, averaged over the first batch of points: (I - M) mu
    for start in range(0, pixels, COLUMN_BATCH):
        stop = min(start + COLUMN_BATCH, pixels)
        x = s * typical[start:stop]
        x0_hat, cov = prior.linearize(x, s)
        unit = torch.zeros((stop - start, pixels), dtype=dtype, device=device)
        unit[
            torch.arange(stop - start, device=device), torch.arange(start, stop, device=device)
        ] = 1
        gain[start:stop] = (cov(unit.reshape(-1, *shape)) / s**2).detach().flatten(1)
        if mean_rhs is None:
            mean_rhs = (x0_hat - cov(x) / s**2).detach().flatten(1).mean(0)
    gain = 0.5 * (gain + gain.T)
    m, vectors = torch.linalg.eigh(gain)
    negative = float(m.clamp_max(0).abs().sum() / m.abs().sum().clamp_min(1e-300))
    if negative > NEGATIVE_TOLERANCE:
        name = prior.identity().get("theta") or prior.identity().get("name")
        warnings.warn(
            ComponentWeightsWarning(
                f"the covariance of latent component {name} is not positive ({negative:.1%} "
                f"of its gain's trace in negative directions, set to 0): its evidence weight "
                "is approximate"
            ),
            stacklevel=4,
        )
    m = m.clamp(0.0, 1.0 - MAX_GAIN_GAP)
    mu = vectors @ ((vectors.T @ mean_rhs) / (1 - m))
    root = vectors * (s * (m / (1 - m)).sqrt())  # C^{1/2}: columns are fields
    with torch.no_grad():
        r = likelihood.residual(mu.reshape(shape)).flatten()[index]
        b_root = torch.cat(
            [
                likelihood.B(root[:, j : j + COLUMN_BATCH].T.reshape(-1, *shape)).flatten(1)
                for j in range(0, pixels, COLUMN_BATCH)
            ]
        )[:, index]  # (pixels, observed): (B C^{1/2})^T
    k = b_root.T @ b_root + torch.eye(len(index), dtype=dtype, device=device)
    chol = torch.linalg.cholesky(k)
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    quadratic = torch.linalg.solve_triangular(chol, r[:, None], upper=False).square().sum()
    return (-0.5 * (quadratic + log_det + len(index) * math.log(2 * math.pi))).cpu()
