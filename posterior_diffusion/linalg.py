"""Batched conjugate gradients: one SPD system per ensemble member, solved in lockstep."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-member inner products over all but the leading dim, shaped to broadcast back."""
    dot = (a * b).flatten(1).sum(1)
    return dot.reshape(dot.shape + (1,) * (a.ndim - 1))


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    rtol: float = 1e-6,
    max_iter: int = 100,
) -> tuple[Tensor, int]:
    """Solve M x = b for each member (leading dim) of b; returns x and the matvecs used.

    A member stops updating once its residual falls below rtol * |b|, so its result does not
    depend on which other members share the batch.
    """
    x, _, matvecs = conjugate_gradient_with_image(
        lambda v: (matvec(v), None), b, x0, rtol, max_iter
    )
    return x, matvecs


def conjugate_gradient_with_image(
    matvec: Callable[[Tensor], tuple[Tensor, Tensor | None]],
    b: Tensor,
    x0: Tensor | None = None,
    rtol: float = 1e-6,
    max_iter: int = 100,
    curvature_floor: float = 0.0,
    preconditioner: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor | None, int]:
    """CG where `matvec(v)` returns (M v, L v) for some linear L; returns x, L x and the matvecs.

    `preconditioner(r)` applies P^{-1} for a symmetric positive P close to M (preconditioned CG;
    the stopping rule stays on the unpreconditioned residual). None: plain CG.

    L x is carried along by the same recurrences as x, so when computing M v already yields L v
    (as C B^T v inside B C B^T v), L x costs no extra product.

    A member stops (keeping its last iterate) at a search direction p with
    p^T M p <= curvature_floor p^T p: 0 for any SPD M; for M = I + K with K meant to be positive
    semi-definite, just below 1 stops where K is not.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    if x0 is None:
        r, image, matvecs = b.clone(), None, 0
    else:
        m_x, image = matvec(x)
        r, matvecs = b - m_x, 1
    threshold = rtol**2 * batch_dot(b, b)
    precondition = preconditioner or (lambda v: v)
    z = precondition(r)
    p = z.clone()
    rs = batch_dot(r, r)  # the residual's norm, for the stopping rule
    rz = rs if preconditioner is None else batch_dot(r, z)
    # A learned denoiser's Jacobian is only nearly symmetric positive: a member that meets
    # non-positive curvature keeps its last iterate instead of stepping along a bad direction.
    stopped = torch.zeros_like(rs, dtype=torch.bool)
    for _ in range(max_iter):
        active = (rs > threshold) & ~stopped
        if not bool(active.any()):
            break
        mp, image_p = matvec(p)
        matvecs += 1
        p_mp = batch_dot(p, mp)
        curved = p_mp > curvature_floor * batch_dot(p, p)
        stopped = stopped | (active & ~curved)
        active = active & curved
        alpha = torch.where(active, rz / torch.where(p_mp > 0, p_mp, torch.ones_like(p_mp)), 0)
        x = x + alpha * p
        if image_p is not None:
            image = alpha * image_p if image is None else image + alpha * image_p
        r = r - alpha * mp
        rs_new = batch_dot(r, r)
        if preconditioner is None:
            z, rz_new = r, rs_new
        else:
            z = precondition(r)
            rz_new = batch_dot(r, z)
        beta = torch.where(active, rz_new / torch.where(rz > 0, rz, torch.ones_like(rz)), 0)
        p = torch.where(active, z + beta * p, p)
        rs = torch.where(active, rs_new, rs)
        rz = torch.where(active, rz_new, rz)
    return x, image, matvecs
