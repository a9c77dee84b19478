"""Dark-matter density maps: Lagrangian perturbation theory (Zel'dovich or 2LPT) on a periodic box.

Grid units throughout: positions in cells, k in cycles per cell, and for a box of V cells
<|delta_hat(k)|^2> = V P3(|k|) with delta_hat = fftn(delta) (the 3-D analogue of
`priors/power_spectrum.py`). A box is N^3 cells, or N x N across and `depth` cells along the
projected axis (larger maps of the same field: same cells, same projection depth).
Particles start at the cell corners q and move to x = q + D psi1(q) + D^2 psi2(q), D the growth
amplitude, with psi1 = -grad phi1, laplacian(phi1) = delta (Zel'dovich), and
psi2 = -(3/7) grad phi2, laplacian(phi2) = sum_{i<j} (phi1_ii phi1_jj - phi1_ij^2)
(2LPT with D2 = -3/7 D^2; Bouchet et al. 1995, Scoccimarro 1998). They are painted with
cloud-in-cell and the density contrast is averaged along one axis into an N x N map.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from posterior_diffusion.rng import member_seed

POWER_AMPLITUDE = 0.36  # A in P3(k) = A k^index exp(-(k / k_cut)^2): rms delta_lin ~ 1 per cell
POWER_INDEX = -2.0  # slope of the linear power [cycles per cell]
POWER_K_CUT = 0.25  # Gaussian cutoff [cycles per cell], keeps shell crossing mild at D <= 1


def linear_power_3d(
    k: np.ndarray,
    amplitude: float = POWER_AMPLITUDE,
    index: float = POWER_INDEX,
    k_cut: float = POWER_K_CUT,
) -> np.ndarray:
    """P3(k) = amplitude k^index exp(-(k / k_cut)^2) for k > 0, P3(0) = 0; k in cycles per cell.

    A stand-in for a linear matter spectrum; the defaults give an rms linear density contrast
    of about 1 per cell (2 pi^1.5 amplitude k_cut for an unbounded grid, slightly less on it).
    """
    k = np.asarray(k, dtype=np.float64)
    out = np.zeros_like(k)
    pos = k > 0
    out[pos] = amplitude * k[pos] ** index * np.exp(-((k[pos] / k_cut) ** 2))
    return out


def box_shape(box: int | tuple[int, int, int]) -> tuple[int, int, int]:
    """(n0, n1, n2) cells of a box given as one side n (n^3) or three sides."""
    shape = (box,) * 3 if isinstance(box, int | np.integer) else tuple(int(s) for s in box)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"an LPT box has three sides of at least one cell, got {box}")
    return shape


def _wavevectors(
    shape: tuple[int, int, int], derivative: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Angular wavevectors [radians per cell] on the rfftn grid of a box of `shape` cells.

    For a derivative the Nyquist component (even side) is set to 0: i q is not Hermitian there,
    and a real field has no well-defined derivative at that frequency.
    """
    axes = [2 * np.pi * np.fft.fftfreq(shape[0]), 2 * np.pi * np.fft.fftfreq(shape[1])]
    axes.append(2 * np.pi * np.fft.rfftfreq(shape[2]))
    if derivative:
        for q, side in zip(axes, shape, strict=True):
            if side % 2 == 0:
                q[side // 2] = 0.0  # the Nyquist entry, in fftfreq and rfftfreq alike
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def linear_density(
    box: int | tuple[int, int, int],
    seed: int,
    power_spectrum: Callable[[np.ndarray], np.ndarray] = linear_power_3d,
) -> np.ndarray:
    """A Gaussian density contrast on a periodic grid with power P3(k), float64.

    Args:
        box: cells per side (an n^3 box) or the three sides.
        seed: random seed (a numpy Generator seeded with it draws the white noise).
        power_spectrum: P3(k), k in cycles per cell.
    """
    shape = box_shape(box)
    f0, f1, f2 = (np.fft.fftfreq(s) for s in shape)
    k = np.sqrt(f0[:, None, None] ** 2 + f1[None, :, None] ** 2 + f2[None, None, :] ** 2)
    power = np.asarray(power_spectrum(k), dtype=np.float64)
    if power.shape != k.shape or not np.all(np.isfinite(power)) or np.any(power < 0):
        raise ValueError("3-D power spectrum must be finite and >= 0 on the whole grid")
    white = np.random.default_rng(seed).standard_normal(shape)
    return np.fft.ifftn(np.fft.fftn(white) * np.sqrt(power)).real


def lpt_displacement(delta: np.ndarray, order: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """(psi1, psi2), each (3, *delta.shape) [cells], for a linear density contrast at D = 1.

    psi2 is None for order 1; for order 2 it already carries the -3/7 factor, so that the
    displacement at growth D is D psi1 + D^2 psi2.
    """
    if order not in (1, 2):
        raise ValueError(f"LPT order must be 1 or 2, got {order}")
    full = _wavevectors(delta.shape)
    q2 = full[0] ** 2 + full[1] ** 2 + full[2] ** 2
    qs = _wavevectors(delta.shape, derivative=True)
    q2[0, 0, 0] = 1.0  # the mean mode has no potential; its delta_hat is 0 anyway
    delta_hat = np.fft.rfftn(delta)
    delta_hat[0, 0, 0] = 0.0
    # phi1_hat = -delta_hat / q^2, psi1 = -grad phi1 -> psi1_hat = i q delta_hat / q^2.
    psi1 = np.stack(
        [np.fft.irfftn(1j * q * delta_hat / q2, s=delta.shape, axes=(0, 1, 2)) for q in qs]
    )
    if order == 1:
        return psi1, None
    # phi1_ij = irfftn(-q_i q_j phi1_hat) = irfftn(q_i q_j delta_hat / q^2).
    phi = {
        (i, j): np.fft.irfftn(qs[i] * qs[j] * delta_hat / q2, s=delta.shape, axes=(0, 1, 2))
        for i in range(3)
        for j in range(i, 3)
    }
    source = sum(phi[i, i] * phi[j, j] - phi[i, j] ** 2 for i in range(3) for j in range(i + 1, 3))
    source_hat = np.fft.rfftn(source)
    source_hat[0, 0, 0] = 0.0
    # phi2_hat = -source_hat / q^2, psi2 = D2 grad phi2 with D2 = -3/7 -> (3/7) i q source_hat / q^2
    psi2 = np.stack(
        [
            np.fft.irfftn(3.0 / 7.0 * 1j * q * source_hat / q2, s=delta.shape, axes=(0, 1, 2))
            for q in qs
        ]
    )
    return psi1, psi2


def cic_paint(positions: np.ndarray, box: int | tuple[int, int, int]) -> np.ndarray:
    """Cloud-in-cell mass (box shape) of unit-mass particles at `positions` (3, M) [cells],
    periodic.

    Every particle's eight weights sum to one, so the grid's total is M (up to round-off).
    """
    shape = box_shape(box)
    sides = np.array(shape)[:, None]
    positions = np.mod(positions, sides)
    base = np.floor(positions)
    frac = positions - base
    base = base.astype(np.int64)
    cells = int(np.prod(shape))
    mass = np.zeros(cells)
    for corner in range(8):
        offset = np.array([(corner >> axis) & 1 for axis in range(3)])[:, None]
        weight = np.prod(np.where(offset == 1, frac, 1.0 - frac), axis=0)
        cell = (base + offset) % sides
        index = (cell[0] * shape[1] + cell[1]) * shape[2] + cell[2]
        mass += np.bincount(index, weights=weight, minlength=cells)
    return mass.reshape(shape)


def lpt_density_3d(
    box: int | tuple[int, int, int],
    seed: int,
    order: int = 1,
    growth: float = 1.0,
    power_spectrum: Callable[[np.ndarray], np.ndarray] = linear_power_3d,
) -> np.ndarray:
    """The evolved density contrast (box shape): one particle per cell, moved by LPT,
    CIC-painted."""
    shape = box_shape(box)
    delta = linear_density(shape, seed, power_spectrum)
    psi1, psi2 = lpt_displacement(delta, order)
    displacement = growth * psi1 if psi2 is None else growth * psi1 + growth**2 * psi2
    grid = np.stack(np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij"))
    positions = (grid + displacement).reshape(3, -1)
    return cic_paint(positions, shape) - 1.0  # mean mass per cell is exactly 1


def lpt_density_maps(
    n: int,
    num: int,
    seed: int,
    order: int = 1,
    growth: float = 1.0,
    power_spectrum: Callable[[np.ndarray], np.ndarray] = linear_power_3d,
    axis: int = 0,
    slab: int | None = None,
    depth: int | None = None,
) -> np.ndarray:
    """`num` projected density-contrast maps (num, n, n) float64 from independent LPT boxes.

    Box i uses seed `member_seed(seed, i)`, so it does not depend on `num`. Projected over the
    whole box (the default) a map has mean exactly 0, and its 2-D power spectrum at large scales
    is close to the linear growth^2 P3(k, k_axis = 0) / depth in the convention of
    `priors/power_spectrum.py`.

    Args:
        n: cells across; the maps are n x n [cells].
        num: number of maps.
        seed: random seed; the same seed reproduces the maps exactly.
        order: 1 (Zel'dovich) or 2 (2LPT).
        growth: linear growth amplitude D multiplying the displacement (D^2 for 2LPT's term).
        power_spectrum: linear P3(k) at D = 1, k in cycles per cell.
        axis: axis projected along (0, 1 or 2).
        slab: cells averaged along `axis` starting at 0 (default: all of `depth`).
        depth: the box's cells along `axis` (default n, a cubic box). A map larger than a
            training set's n0 x n0 maps of the same field keeps depth n0: the projection, and
            so the field's one-point statistics, stay those of the training maps.
    """
    depth = n if depth is None else int(depth)
    if min(n, depth) < 4 or int(num) < 1:
        raise ValueError(
            f"LPT needs n, depth >= 4 cells and num >= 1, got n={n}, depth={depth}, num={num}"
        )
    if axis not in (0, 1, 2):
        raise ValueError(f"projection axis must be 0, 1 or 2, got {axis}")
    slab = depth if slab is None else int(slab)
    if not 1 <= slab <= depth:
        raise ValueError(f"slab must be between 1 and {depth} cells, got {slab}")
    box = tuple(depth if i == axis else n for i in range(3))
    maps = []
    for i in range(int(num)):
        density = lpt_density_3d(box, member_seed(seed, i), order, growth, power_spectrum)
        maps.append(np.take(density, np.arange(slab), axis=axis).mean(axis=axis))
    return np.stack(maps)
