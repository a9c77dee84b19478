"""The log-density of a field under a prior, through the probability-flow ODE (Song et al. 2021).

The PF-ODE dx/dsigma = f(x, sigma) = (x - D(x, sigma)) / sigma carries p_sigma into p_sigma', so
along its solution d log p_sigma(x(sigma)) / dsigma = -div f, and

    log p_{sigma_min}(x) = log p_{sigma_max}(x(sigma_max)) + int_{sigma_min}^{sigma_max} div f dsigma,

with div f = (n - tr dD/dx) / sigma for n pixels. tr dD/dx = tr Cov[x0 | x_sigma] / sigma^2 is
estimated by Hutchinson's estimator eps^T (dD/dx) eps with Rademacher eps (one covariance
product, i.e. one vector-Jacobian product of the network, per probe), or summed exactly over
the pixel basis on small grids. At sigma_max the field is pure noise: p_{sigma_max} is taken as
N(0, sigma_max^2 I), whose error is of order (field variance / sigma_max^2) per pixel.

What is estimated is log p_{sigma_min}(x): the density of the field plus N(0, sigma_min^2)
noise, which for sigma_min far below the field's pixel scatter is the field's own density.
Use it for model checking: compare a field's value with those of fields drawn from the prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor
from tqdm.auto import tqdm

from posterior_diffusion.priors.base import Prior


@dataclass(frozen=True)
class LogLikelihood:
    """Per field: the log-density estimate [nats], its standard error from the trace
    estimator (0 for the exact trace; the ODE's own discretisation error is not included),
    and the number of pixels it is spread over."""

    log_density: Tensor
    standard_error: Tensor
    pixels: int
    evaluations: int  # denoiser linearisations the ODE solver took


def log_likelihood(
    prior: Prior,
    x: Tensor,
    probes: int | str = 4,
    seed: int = 0,
    rtol: float = 1e-6,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    progress: bool = False,
) -> LogLikelihood:
    """log p_{sigma_min}(x) for fields x (N, C, H, W) under `prior` (see the module docstring).

    Args:
        probes: Rademacher probes, each held fixed along the trajectory so that each gives an
            unbiased estimate (the standard error falls as 1 / sqrt(probes)); or "exact" for
            the trace summed over all pixels (n covariance products per evaluation).
        seed: seeds the probes.
        rtol: relative tolerance of the adaptive ODE solver (scipy's RK45, as in Song et al.).
        progress: a bar on stderr over the log-sigma range the solver has covered.
    """
    if x.ndim != 4:
        raise ValueError(f"fields must be (N, C, H, W), got shape {tuple(x.shape)}")
    exact = probes == "exact"
    if not exact and (not isinstance(probes, int) or probes < 2):
        raise ValueError(
            f"probes must be an integer >= 2 (for an error bar) or 'exact', got {probes}"
        )
    lo = float(sigma_min or prior.sigma_min())
    hi = float(sigma_max or prior.sigma_max())
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    num, n = x.shape[0], x[0].numel()
    columns = 1 if exact else probes
    eps = None
    if not exact:
        eps = torch.randint(0, 2, (probes, *x.shape), generator=generator, device=x.device)
        eps = (2 * eps - 1).to(x.dtype)
    evaluations = 0
    span = (math.log(lo), math.log(hi))
    bar = tqdm(total=100, unit="%", desc="log-likelihood", disable=not progress, leave=False)

    def rhs(t: float, state: np.ndarray) -> np.ndarray:
        """In t = log sigma: dx/dt = x - D(x, sigma), and d/dt of the trace integral."""
        nonlocal evaluations
        evaluations += 1
        done = int(100 * (t - span[0]) / (span[1] - span[0]))
        if done > bar.n:
            bar.update(done - bar.n)
        sigma = math.exp(t)
        current = torch.from_numpy(state[: num * n]).to(x).reshape(x.shape)
        x0_hat, cov = prior.linearize(current, sigma)
        if exact:
            trace = _exact_trace(cov, current)[:, None]
        else:
            trace = hutchinson_trace(cov, eps)
        out = torch.cat([(current - x0_hat).flatten(), (trace / sigma**2).flatten()])
        return out.detach().cpu().numpy()

    start = np.concatenate([x.detach().cpu().numpy().ravel(), np.zeros(num * columns)])
    with bar:
        solution = solve_ivp(rhs, span, start, method="RK45", rtol=rtol, atol=rtol * 1e-3)
    if not solution.success:
        raise RuntimeError(f"the probability-flow ODE did not converge: {solution.message}")
    end = torch.from_numpy(solution.y[:, -1])
    x_end = end[: num * n].reshape(num, -1)
    traces = end[num * n :].reshape(num, columns)
    # d log p / dt = -(n - tr dD/dx): the n part integrates exactly to n log(hi / lo).
    estimates = _isotropic_gaussian_log_density(x_end, hi)[:, None] + n * math.log(hi / lo) - traces
    error = (
        torch.zeros(num, dtype=torch.float64) if exact else estimates.std(1) / math.sqrt(columns)
    )
    return LogLikelihood(estimates.mean(1), error, n, evaluations)


def hutchinson_trace(cov, probes: Tensor) -> Tensor:
    """tr Cov per field, one estimate per probe: eps^T Cov eps for probes (P, N, C, H, W) of
    +-1 entries; returns (N, P). Unbiased for any square operator, symmetric or not."""
    return torch.stack([(e * cov(e)).flatten(1).sum(1) for e in probes], 1)


def _exact_trace(cov, x: Tensor) -> Tensor:
    """tr Cov per field, summed over the pixel basis (n products: small grids only)."""
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    basis = torch.zeros_like(x)
    flat = basis.view(x.shape[0], -1)
    for j in range(flat.shape[1]):
        flat[:, j] = 1.0
        total += cov(basis).reshape(x.shape[0], -1)[:, j]
        flat[:, j] = 0.0
    return total


def _isotropic_gaussian_log_density(x: Tensor, sigma: float) -> Tensor:
    n = x[0].numel()
    return -0.5 * x.flatten(1).square().sum(1) / sigma**2 - 0.5 * n * math.log(
        2 * math.pi * sigma**2
    )
