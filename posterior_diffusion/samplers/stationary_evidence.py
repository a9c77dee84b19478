"""The Gaussian evidence of a latent component on fields too large to build densely, when the
component and the forward operator are both translation invariant (periodic).

`evidence.py` builds a component's gain M = Cov[x0 | x_s] / s^2 with one covariance product per
pixel, so it stops at `evidence.MAX_DENSE` pixels. For a stationary component M is circulant:
its response to a delta at pixel p is its response at pixel 0 shifted to p, so a few deltas give
all of it, and C = s^2 M (I - M)^{-1} is the power spectrum P(k) = s^2 m(k) / (1 - m(k)). With
a stationary operator (shear, blur, smoothing, identity; a final mask is folded into the noise
weights) and independent noise, B = diag(w) T with T a Fourier multiplier, so

    I + B C B^T = I + diag(w_o) G_oo diag(w_o),   G = T C T^T,  g_cd(r) = ifft2(T_c P T_d^*)(r)

over the n observed data entries: one n x n matrix from a kernel lookup, whatever the number of
pixels or the noise map. With one noise level on every observed entry, a matrix over the
unobserved entries does instead (`stationary_route`; the complement identity in
`stationary_log_evidence`). Exact for a stationary Gaussian component; for a network, M's
circulant part averaged over `DELTA_POSITIONS` points (its departure from a circulant is
measured and reported).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from forward_models.compose import Compose
from forward_models.mask import Mask

from ..likelihood import WhitenedLinearGaussian
from ..priors.base import Prior

# Data entries (observed, or unobserved for the complement) up to which a dense matrix is built
# (8192^2 float64 = 512 MiB).
MAX_OBSERVED = 8192
# Deltas (each at its own typical point x = s z) whose responses are averaged into M's kernel.
DELTA_POSITIONS = 32
# Relative departure from translation invariance above which an operator is not stationary
# (a Fourier multiplier reproduces itself to rounding, ~1e-15).
OPERATOR_TOLERANCE = 1e-8
# Rows of the n x n matrix gathered at a time (index arrays of ROW_BLOCK x n int64).
ROW_BLOCK = 512


def stationary_operator(likelihood: WhitenedLinearGaussian) -> tuple[Tensor, Tensor] | None:
    """(T, w): B x = w * ifft2(T fft2(x)).real per data channel, T (C', H, W) complex and w the
    whitening weights (C', H, W), 0 where unobserved; None when B is not of that form (a field
    with several channels, an operator that changes the grid or is not translation invariant,
    noise that is not independent)."""
    model = likelihood.model
    channels, height, width = model.field_shape
    if channels != 1 or model.noise.independent_std() is None:
        return None
    dtype, device = likelihood.y_white.dtype, likelihood.y_white.device
    weights = model.noise.whiten(torch.ones_like(likelihood.y_white))
    core = model.operator
    if isinstance(core, Compose):  # masks applied last act on data entries: fold them into w
        parts = list(core.operators)
        while len(parts) > 1 and isinstance(parts[-1], Mask):
            weights = parts.pop().A(weights)
        core = parts[0] if len(parts) == 1 else Compose(*parts)
    if isinstance(core, Mask):  # inpainting: the core is the identity
        weights = core.A(weights)
        apply = lambda x: x  # noqa: E731
    else:
        apply = core.A
    if weights.shape[-2:] != (height, width):
        return None
    # Translation invariance, checked on a random field (a delta would miss an operator that
    # only differs from a multiplier away from it, e.g. a mask applied to the field).
    field = torch.randn((1, 1, height, width), generator=torch.Generator().manual_seed(0),
                        dtype=dtype).to(device)  # fmt: skip
    delta = torch.zeros_like(field)
    delta[..., 0, 0] = 1
    shifts = [(height // 3 + 1, width // 2), (height - 1, width // 3 + 2)]
    with torch.no_grad():
        response = apply(torch.cat([delta, field] + [field.roll(t, dims=(-2, -1)) for t in shifts]))
    if response.shape[-2:] != (height, width):
        return None
    scale = response[1].abs().max().clamp_min(torch.finfo(dtype).tiny)
    for i, shift in enumerate(shifts, start=2):
        if (response[i] - response[1].roll(shift, dims=(-2, -1))).abs().max() > (
            OPERATOR_TOLERANCE * scale
        ):
            return None
    return torch.fft.fft2(response[0]), weights.expand(response.shape[1:])


def stationary_gain(prior: Prior, shape: tuple[int, int], s: float, dtype, device):
    """(m(k), mean field, departure): M's eigenvalues on the fft grid (H, W), clipped to [0, 1),
    the component's mean, and the RMS departure of single delta responses from their average
    relative to its RMS (0 for a stationary Gaussian)."""
    height, width = shape
    count = DELTA_POSITIONS
    generator = torch.Generator().manual_seed(0)
    typical = torch.randn((count, 1, height, width), generator=generator, dtype=dtype).to(device)
    places = torch.stack(
        [torch.randint(0, n, (count,), generator=generator) for n in (height, width)], dim=1
    ).tolist()
    unit = torch.zeros_like(typical)
    for i, (r, c) in enumerate(places):
        unit[i, 0, r, c] = 1
    x = s * typical
    x0_hat, cov = prior.linearize(x, s)
    with torch.no_grad():
        response = (cov(unit) / s**2).detach()[:, 0]
        aligned = torch.stack(
            [response[i].roll((-r, -c), dims=(-2, -1)) for i, (r, c) in enumerate(places)]
        )
        kernel = aligned.mean(0)
        departure = float(
            (aligned - kernel).square().mean().sqrt()
            / kernel.square().mean().sqrt().clamp_min(1e-300)
        )
        # Symmetrise (M is symmetric: its kernel is even) and keep a valid gain.
        kernel = 0.5 * (kernel + kernel.flip((-2, -1)).roll((1, 1), dims=(-2, -1)))
        m = torch.fft.fft2(kernel).real.clamp(0.0, 1.0 - 1e-9)
        rhs = (x0_hat - cov(x) / s**2).detach()[:, 0].mean(0)  # (I - M) mu
        mean = torch.fft.ifft2(torch.fft.fft2(rhs) / (1 - m)).real
    return m, mean, departure


def stationary_route(operator: tuple[Tensor, Tensor]) -> str | None:
    """Which entries the dense matrix is built over: "observed" (any noise map) when at most
    `MAX_OBSERVED` are observed; else "unobserved" when the noise is the same on every observed
    entry and at most `MAX_OBSERVED` are unobserved (the complement identity below); else None."""
    weights = operator[1]
    observed = weights != 0
    if int(observed.sum()) <= MAX_OBSERVED:
        return "observed"
    homogeneous = bool((weights[observed] == weights[observed][0]).all())
    if homogeneous and int((~observed).sum()) <= MAX_OBSERVED:
        return "unobserved"
    return None


def dense_bytes(operator: tuple[Tensor, Tensor]) -> int:
    """Peak bytes of `stationary_log_evidence`'s dense algebra on its route: the matrix and its
    Cholesky factor (0 when there is no route)."""
    weights = operator[1]
    route = stationary_route(operator)
    if route is None:
        return 0
    observed = weights != 0
    n = int(observed.sum()) if route == "observed" else int((~observed).sum())
    return 2 * n * n * weights.element_size()


def stationary_log_evidence(
    prior: Prior, likelihood: WhitenedLinearGaussian, operator: tuple[Tensor, Tensor], s: float
) -> tuple[Tensor, float]:
    """(log N(y_w; B mu, I + B C B^T) over the observed entries, M's departure from a
    circulant) for a stationary component (module docstring), by `stationary_route`.

    The complement identity: with the same weight w on every observed entry, I + B C B^T is the
    observed block S_oo of S = I + w^2 T C T^T over the whole data grid, which is diagonal in
    Fourier space (per k a rank-one update of the C' x C' identity), so
    log det S_oo = log det S + log det (S^{-1})_uu and
    r^T S_oo^{-1} r = r^T S^{-1} r - v_u^T ((S^{-1})_uu)^{-1} v_u with v = S^{-1} r (r = 0 where
    unobserved): dense algebra over the unobserved entries only.
    """
    transfer, weights = operator
    y_w = likelihood.y_white
    dtype, device = y_w.dtype, y_w.device
    channels, height, width = weights.shape
    m, mean, departure = stationary_gain(prior, (height, width), s, dtype, device)
    power = s**2 * m / (1 - m)
    with torch.no_grad():
        r_full = likelihood.residual(mean.reshape(1, height, width)).reshape(weights.shape)
    observed = weights != 0
    n = int(observed.sum())
    if stationary_route(operator) == "observed":
        kernel = torch.fft.ifft2(transfer[:, None] * power * transfer[None, :].conj()).real
        index = observed.flatten().nonzero().flatten()
        w = weights.flatten()[index]
        k = _lookup(kernel, index, (channels, height, width)) * w[:, None] * w[None, :]
        k.diagonal().add_(1.0)
        chol = torch.linalg.cholesky(k)
        log_det = 2 * torch.log(torch.diagonal(chol)).sum()
        r = r_full.flatten()[index]
        quadratic = torch.linalg.solve_triangular(chol, r[:, None], upper=False).square().sum()
    else:
        w2 = weights[observed][0] ** 2
        gain = w2 * power * transfer.abs().square().sum(0)  # w^2 P |t|^2 per k
        # S^{-1} = I - w^2 P t t^* / (1 + w^2 P |t|^2) per k: its kernel, and v = S^{-1} r.
        shrink = w2 * power / (1 + gain)
        inverse = -torch.fft.ifft2(transfer[:, None] * shrink * transfer[None, :].conj()).real
        inverse[torch.arange(channels), torch.arange(channels), 0, 0] += 1.0
        r_hat = torch.fft.fft2(r_full)
        v = r_full - torch.fft.ifft2(transfer * (shrink * (transfer.conj() * r_hat).sum(0))).real
        index = (~observed).flatten().nonzero().flatten()
        inverse_uu = _lookup(inverse, index, (channels, height, width))
        chol = torch.linalg.cholesky(inverse_uu)
        log_det = torch.log1p(gain).sum() + 2 * torch.log(torch.diagonal(chol)).sum()
        v_u = v.flatten()[index]
        correction = torch.linalg.solve_triangular(chol, v_u[:, None], upper=False).square().sum()
        quadratic = (r_full * v).sum() - correction
    return (-0.5 * (quadratic + log_det + n * math.log(2 * math.pi))).cpu(), departure


def _lookup(kernel: Tensor, index: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """The len(index)^2 matrix of a stationary operator with kernel (C', C', H, W) between the
    flat data entries `index` of a (C', H, W) grid."""
    channels, height, width = shape
    flat_kernel = kernel.reshape(-1)
    c, rest = index // (height * width), index % (height * width)
    i, j = rest // width, rest % width
    n = len(index)
    out = torch.empty((n, n), dtype=kernel.dtype, device=kernel.device)
    for start in range(0, n, ROW_BLOCK):
        rows = slice(start, min(start + ROW_BLOCK, n))
        flat = (
            (c[rows, None] * channels + c[None, :]) * height + (i[rows, None] - i[None, :]) % height
        ) * width + (j[rows, None] - j[None, :]) % width
        out[rows] = flat_kernel[flat]
    return out
