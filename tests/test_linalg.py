"""Batched conjugate gradients: accuracy, per-member stopping, warm starts, budgets, cost counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posterior_diffusion.linalg import batch_dot, conjugate_gradient

SHAPE = (2, 5, 4)  # each member is a small "field" (C, H, W); n = 40 unknowns
N = 40


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spd(condition: float, seed: int) -> torch.Tensor:
    """A random n x n SPD matrix with eigenvalues log-spaced over [1, condition]."""
    q, _ = torch.linalg.qr(torch.randn((N, N), generator=gen(seed), dtype=torch.float64))
    eigenvalues = torch.logspace(0, np.log10(condition), N, dtype=torch.float64)
    return (q * eigenvalues) @ q.T


class DenseMatvec:
    """v (batch, C, H, W) -> M_i v_i, one matrix per member, counting calls.

    Each member's product is its own matrix-vector product, so a member's numbers cannot depend on
    which other members share the batch (a batched matmul might block differently).
    """

    def __init__(self, matrices: list[torch.Tensor]):
        self.matrices = matrices
        self.calls = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert v.shape == (len(self.matrices), *SHAPE)
        products = [m @ vi.reshape(-1) for m, vi in zip(self.matrices, v, strict=True)]
        return torch.stack(products).reshape(v.shape)


def right_hand_sides(count: int, seed: int) -> torch.Tensor:
    return torch.randn((count, *SHAPE), generator=gen(seed), dtype=torch.float64)


def relative_residual(matrices, x, b) -> np.ndarray:
    r = b - DenseMatvec(matrices)(x)
    return (r.flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).numpy()


def test_batch_dot_is_per_member_and_broadcastable():
    a, b = right_hand_sides(3, 0), right_hand_sides(3, 1)
    dots = batch_dot(a, b)
    assert dots.shape == (3, 1, 1, 1)
    np.testing.assert_allclose(dots.flatten(), [(a[i] * b[i]).sum() for i in range(3)], rtol=1e-14)


@pytest.mark.parametrize("rtol", [1e-4, 1e-8])
def test_solves_a_batch_of_spd_systems_to_rtol(rtol):
    matrices = [spd(condition, seed) for seed, condition in enumerate([3.0, 100.0, 1e4])]
    b = right_hand_sides(3, 10)
    x, matvecs = conjugate_gradient(DenseMatvec(matrices), b, rtol=rtol, max_iter=500)
    assert np.all(relative_residual(matrices, x, b) <= rtol)
    exact = torch.stack(
        [torch.linalg.solve(m, bi.reshape(-1)) for m, bi in zip(matrices, b, strict=True)]
    )
    # |x - x*| / |x*| <= condition * relative residual.
    error = (x.flatten(1) - exact).norm(dim=1) / exact.norm(dim=1)
    assert np.all(error.numpy() <= np.array([3.0, 100.0, 1e4]) * rtol)
    assert 0 < matvecs < 500


def test_members_stop_independently_bitwise():
    easy = [spd(2.0, 20)]
    hard = [spd(1e5, 21), spd(1e3, 22)]
    b = right_hand_sides(3, 23)
    alone, alone_count = conjugate_gradient(DenseMatvec(easy), b[:1], rtol=1e-8, max_iter=300)
    batch, batch_count = conjugate_gradient(DenseMatvec(easy + hard), b, rtol=1e-8, max_iter=300)
    # The easy member converges in a few iterations and is then frozen while the others go on.
    assert alone_count < batch_count
    assert torch.equal(batch[:1], alone)
    # The same holds in another position of the batch, with a warm start.
    x0 = 0.1 * right_hand_sides(3, 24)
    order = [1, 0, 2]
    matrices = [(easy + hard)[i] for i in order]
    shuffled, _ = conjugate_gradient(DenseMatvec(matrices), b[order], x0=x0[order], rtol=1e-8)
    alone_warm, _ = conjugate_gradient(DenseMatvec(easy), b[:1], x0=x0[:1], rtol=1e-8)
    assert torch.equal(shuffled[1:2], alone_warm)


def test_warm_start_from_the_solution_only_checks_the_residual():
    matrices = [spd(50.0, 30), spd(500.0, 31)]
    b = right_hand_sides(2, 32)
    exact = torch.stack(
        [torch.linalg.solve(m, bi.reshape(-1)) for m, bi in zip(matrices, b, strict=True)]
    ).reshape(b.shape)
    matvec = DenseMatvec(matrices)
    x, matvecs = conjugate_gradient(matvec, b, x0=exact, rtol=1e-8)
    assert matvecs == 1 and matvec.calls == 1  # the initial residual b - M x0, nothing else
    assert torch.equal(x, exact)
    assert x is not exact  # x0 is not aliased


def test_zero_right_hand_side_needs_no_work():
    matvec = DenseMatvec([spd(10.0, 33)])
    x, matvecs = conjugate_gradient(matvec, torch.zeros((1, *SHAPE), dtype=torch.float64))
    assert matvecs == 0 and matvec.calls == 0
    assert torch.equal(x, torch.zeros_like(x))


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("max_iter", [1, 3, 7])
def test_max_iter_is_respected_and_matvecs_are_counted(warm, max_iter):
    matrices = [spd(1e6, 40), spd(1e5, 41)]  # far from converging in 7 iterations at rtol 1e-12
    b = right_hand_sides(2, 42)
    x0 = torch.zeros_like(b) if warm else None
    matvec = DenseMatvec(matrices)
    x, matvecs = conjugate_gradient(matvec, b, x0=x0, rtol=1e-12, max_iter=max_iter)
    assert matvecs == matvec.calls == max_iter + int(warm)
    assert np.all(relative_residual(matrices, x, b) > 1e-12)  # stopped by the budget


def test_matvec_count_matches_calls_when_converging():
    matrices = [spd(30.0, 50), spd(300.0, 51), spd(3.0, 52)]
    b = right_hand_sides(3, 53)
    matvec = DenseMatvec(matrices)
    x, matvecs = conjugate_gradient(matvec, b, rtol=1e-6, max_iter=200)
    assert matvecs == matvec.calls < 200
    # No product is wasted: one fewer iteration leaves the hardest member unconverged, and the
    # converged answer is exactly what a budget of `matvecs` iterations gives.
    short, _ = conjugate_gradient(DenseMatvec(matrices), b, rtol=1e-6, max_iter=matvecs - 1)
    assert relative_residual(matrices, short, b).max() > 1e-6
    same, _ = conjugate_gradient(DenseMatvec(matrices), b, rtol=1e-6, max_iter=matvecs)
    assert torch.equal(same, x)


def test_cg_minimises_error_in_the_energy_norm_monotonically():
    # A defining property of CG: the M-norm of the error never increases with more iterations.
    matrix = spd(1e3, 60)
    b = right_hand_sides(1, 61)
    exact = torch.linalg.solve(matrix, b.reshape(-1))
    energies = []
    for iterations in range(1, 61, 3):
        x, _ = conjugate_gradient(DenseMatvec([matrix]), b, rtol=1e-14, max_iter=iterations)
        e = x.reshape(-1) - exact
        energies.append(float(e @ matrix @ e))
    pairs = zip(energies, energies[1:], strict=False)
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in pairs)
    assert energies[-1] < 1e-8 * energies[0]


def test_preconditioned_cg_solves_the_same_system_in_fewer_iterations():
    """A badly scaled SPD system (diagonal spread 1e4 plus a coupling): Jacobi-preconditioned CG
    reaches the solution in far fewer products; with no preconditioner the code path is plain CG."""
    from posterior_diffusion.linalg import conjugate_gradient_with_image

    g = torch.Generator().manual_seed(0)
    n = 40
    scales = torch.logspace(0, 4, n, dtype=torch.float64)
    coupling = torch.randn(n, n, generator=g, dtype=torch.float64) / n
    matrix = torch.diag(scales) + coupling @ coupling.T
    b = torch.randn(2, n, generator=g, dtype=torch.float64)

    def matvec(v):
        return v @ matrix.T, None

    exact = torch.linalg.solve(matrix, b.T).T
    plain, _, plain_products = conjugate_gradient_with_image(matvec, b, rtol=1e-10, max_iter=500)
    diagonal = torch.diagonal(matrix)
    fast, _, fast_products = conjugate_gradient_with_image(
        matvec, b, rtol=1e-10, max_iter=500, preconditioner=lambda r: r / diagonal
    )
    torch.testing.assert_close(fast, exact, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(plain, exact, rtol=1e-7, atol=1e-9)
    assert fast_products < plain_products / 2
