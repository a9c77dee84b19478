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
otherwise. mu_k and C_k come from the component's own denoiser at its sigma_max, where
D(x) = mu + M (x - mu) with M = C (C + s^2)^{-1} and Cov[x0 | x_s] = s^2 M for a Gaussian, so

    mu = (I - M)^{-1} D(0),   C = Cov[x0 | x_s] (I - M)^{-1},

by a Neumann series (|M| ~ prior variance / s^2, small at sigma_max). The matrix I + B C B^T is
built column by column over the observed data entries (one covariance product each) and
factorised densely: exact, deterministic (no random probes, so every batch and every rank gets
the same omega), and for n observed entries it costs n products per component, shared by the
whole ensemble. Stochastic log-determinants were measured too noisy for this (~10 nats at
n = 768 with 16 products per probe; omega needs ~0.1), so above `MAX_DENSE_DATA` entries no
weights are estimated and the caller says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..likelihood import WhitenedLinearGaussian
from ..priors.base import Prior

# Observed data entries up to which I + B C B^T is built densely (8192^2 float64 = 512 MiB;
# a 64 x 64 shear map has 8192 entries).
MAX_DENSE_DATA = 8192
# Fields per batch of covariance products while building the matrix.
COLUMN_BATCH = 64
# The Neumann series for (I - M)^{-1} stops once a term is this small relative to the first.
NEUMANN_RTOL = 1e-8
NEUMANN_MAX_TERMS = 12
# Above this fraction of |eigenvalues| in negative directions, a component's covariance (from a
# learned Jacobian) is reported as not positive.
NEGATIVE_TOLERANCE = 1e-3


class ComponentWeightsWarning(UserWarning):
    """The prior names latent components, but their posterior weights could not be estimated,
    or only approximately (a covariance that is not positive)."""


@dataclass
class ComponentWeights:
    """omega_k and the pieces behind them, for provenance."""

    weights: Tensor  # omega_k, (K,), sums to 1
    log_evidence: Tensor  # log p(y | k) up to a constant shared by the components, (K,)
    observed_entries: int

    def as_dict(self) -> dict:
        return {
            "component_weights": [round(float(w), 6) for w in self.weights],
            "component_log_evidence": [round(float(v), 4) for v in self.log_evidence],
            "evidence": "Gaussian evidence per component (exact for Gaussian components), "
            f"dense over {self.observed_entries} observed data entries",
        }


def latent_component_weights(
    prior: Prior, likelihood: WhitenedLinearGaussian
) -> ComponentWeights | None:
    """omega for a prior with latent components, or None if it has none or the data are too
    many to build I + B C B^T densely (`MAX_DENSE_DATA`)."""
    latent = prior.latent_components()
    if latent is None:
        return None
    pi, parts = latent
    observed = (likelihood.model.noise.whiten(torch.ones_like(likelihood.y_white)) != 0).flatten()
    n = int(observed.sum())
    if n > MAX_DENSE_DATA:
        warnings.warn(
            ComponentWeightsWarning(
                f"the prior's {len(parts)} latent components are not weighted by the data: "
                f"{n} observed data entries exceed the {MAX_DENSE_DATA} up to which their "
                "evidence is computed; samples may sit in components the posterior rules out "
                "(docs/samplers.md)"
            ),
            stacklevel=3,
        )
        return None
    index = observed.nonzero().flatten()
    log_evidence = torch.stack([gaussian_log_evidence(p, likelihood, index) for p in parts])
    log_pi = torch.as_tensor(pi, dtype=torch.float64).cpu().log()
    weights = torch.softmax(log_pi + log_evidence, dim=0)
    return ComponentWeights(weights=weights, log_evidence=log_evidence, observed_entries=n)


def gaussian_log_evidence(
    prior: Prior, likelihood: WhitenedLinearGaussian, index: Tensor
) -> Tensor:
    """log N(y_w; B mu, I + B C B^T) over the observed data entries `index` (flat), for the
    Gaussian with the prior's mean and covariance (module docstring)."""
    y_w = likelihood.y_white
    field_shape = likelihood.model.field_shape
    dtype, device = y_w.dtype, y_w.device
    s = float(prior.sigma_max())

    def at_zero(batch: int):
        """D(0) and the Tweedie covariance product there, for `batch` vectors at a time (a
        network's vector-Jacobian products are tied to the batch it was evaluated on)."""
        x = torch.zeros((batch, *field_shape), dtype=dtype, device=device)
        return prior.linearize(x, s)

    def inverse_one_minus_m(cov_s, v: Tensor) -> Tensor:
        """(I - M)^{-1} v = sum_j M^j v, M v = Cov[x0 | x_s] v / s^2."""
        total, term = v, v
        first = v.flatten(1).norm(dim=1).clamp_min(1e-300)
        for _ in range(NEUMANN_MAX_TERMS):
            term = cov_s(term) / s**2
            total = total + term
            if bool((term.flatten(1).norm(dim=1) <= NEUMANN_RTOL * first).all()):
                break
        return total.detach()

    d0, cov_one = at_zero(1)
    mu = inverse_one_minus_m(cov_one, d0.detach())
    with torch.no_grad():
        r = likelihood.residual(mu).flatten()[index]
    n = len(index)
    k = torch.empty((n, n), dtype=dtype, device=device)
    for start in range(0, n, COLUMN_BATCH):
        rows = index[start : start + COLUMN_BATCH]
        _, cov_s = at_zero(len(rows))
        e = torch.zeros((len(rows), y_w.numel()), dtype=dtype, device=device)
        e[torch.arange(len(rows), device=device), rows] = 1.0
        with torch.no_grad():
            bt_e = likelihood.B_adjoint(e.reshape(-1, *y_w.shape))
        c_bt_e = cov_s(inverse_one_minus_m(cov_s, bt_e))  # C = Cov[x0 | x_s] (I - M)^{-1}
        with torch.no_grad():
            k[start : start + len(rows)] = likelihood.B(c_bt_e.detach()).flatten(1)[:, index]
    k = 0.5 * (k + k.T)
    return _log_normal_density(k, r, getattr(prior, "name", None) or prior.identity()["name"])


def _log_normal_density(k: Tensor, r: Tensor, name: str) -> Tensor:
    """log N(r; 0, I + K) for K meant to be a covariance. A learned denoiser's Jacobian need not
    be positive: then K's negative eigenvalues are set to 0 (the nearest positive semi-definite
    matrix) and, when they carry more than NEGATIVE_TOLERANCE of K's trace, a warning says so."""
    n = len(r)
    eye = torch.eye(n, dtype=k.dtype, device=k.device)
    chol, info = torch.linalg.cholesky_ex(k + eye)
    if int(info) == 0:
        log_det = 2 * torch.log(torch.diagonal(chol)).sum()
        quadratic = torch.linalg.solve_triangular(chol, r[:, None], upper=False).square().sum()
    else:
        values, vectors = torch.linalg.eigh(k)
        negative = float(values.clamp_max(0).abs().sum() / values.abs().sum().clamp_min(1e-300))
        if negative > NEGATIVE_TOLERANCE:
            warnings.warn(
                ComponentWeightsWarning(
                    f"the covariance of latent component '{name}' is not positive "
                    f"({negative:.1%} of its trace in negative directions, set to 0): its "
                    "evidence weight is approximate"
                ),
                stacklevel=4,
            )
        values = values.clamp_min(0) + 1
        log_det = torch.log(values).sum()
        quadratic = ((vectors.T @ r) ** 2 / values).sum()
    return (-0.5 * (quadratic + log_det + n * math.log(2 * math.pi))).cpu()
