"""E- and B-mode power of weak-lensing shear fields, and of data residuals, against shape noise.

A real convergence makes a pure E-mode shear (`forward_models.lensing.Shear`), so a
reconstruction has no B mode by construction. What E/B says about a posterior is in the data:
  - the B power of the observed shear is a null test of the data: noise only, expected at the
    binned noise level;
  - the E and B power of the residual y - A(x) on the observed pixels: for posterior samples x of
    a calibrated posterior the residual has exactly the noise covariance (Cov[y - A x] = N,
    marginally over truths, noise and samples, for a linear-Gaussian model), so both follow the
    noise level; the posterior mean fits part of the noise, so its E residual falls below it
    (N (1 - W(k)) without a mask, W the Wiener factor P / (P + N)) while its B residual stays at
    it.

Conventions: shear (..., 2, H, W) with channels (gamma1, gamma2) on a flat periodic grid,
Kaiser-Squires E and B maps and filters from `forward_models.lensing` (0 at k = 0, so the mean
shear is lost; D2 zeroed on Nyquist lines, which changes D1^2 + D2^2 = 1 only at |k| > 1/2,
outside the bins), power spectra binned as in `spectra` (k in cycles per pixel, P in shear^2
pixel^2).

Masks: with observed pixels m (0 or 1) the residual and the data are m times a field. Independent
noise of per-pixel variance v then has flat expected E and B power mean_x(m v) (sigma^2 f_obs for
a uniform sigma and observed fraction f_obs), which `eb_noise_power` returns. A masked signal leaks
E into B (the mask is a convolution in Fourier space): the observed shear's B power exceeds the
noise level by that leakage, growing with the signal-to-noise and the mask's edge length.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from forward_models.lensing import kaiser_squires, shear_filters

from ._arrays import as_numpy
from .spectra import azimuthal_average, k_bin_edges, power_spectrum


class EBPower(NamedTuple):
    k: np.ndarray  # (B,) mean |k| per bin [cycles/pixel]
    e: np.ndarray  # (..., B) E-mode power [shear^2 pixel^2]
    b: np.ndarray  # (..., B) B-mode power [shear^2 pixel^2]
    modes: np.ndarray  # (B,) Fourier modes per bin


def _check_shear(shear: np.ndarray, who: str) -> None:
    if shear.ndim < 3 or shear.shape[-3] != 2:
        raise ValueError(f"{who} takes shear of shape (..., 2, H, W), got {shear.shape}")


def eb_maps(shear) -> tuple[np.ndarray, np.ndarray]:
    """Kaiser-Squires E and B convergence maps of shear (..., 2, H, W): two (..., H, W) arrays.

    Both lose the k = 0 mode (mass-sheet degeneracy); see `forward_models.lensing.kaiser_squires`.
    """
    shear = as_numpy(shear)
    _check_shear(shear, "eb_maps")
    kappa_e, kappa_b = kaiser_squires(torch.from_numpy(shear))
    return kappa_e[..., 0, :, :].numpy(), kappa_b[..., 0, :, :].numpy()


def eb_power(shear, num_bins: int | None = None, k_edges=None) -> EBPower:
    """Binned E- and B-mode power spectra of shear (..., 2, H, W).

    For a shear made by `Shear` from kappa, E is the power of kappa at every k > 0 and B is 0 to
    round-off; for white noise of variance sigma^2 per component both are sigma^2.
    """
    kappa_e, kappa_b = eb_maps(shear)
    k, p_e, modes = power_spectrum(kappa_e, num_bins, k_edges)
    _, p_b, _ = power_spectrum(kappa_b, num_bins, k_edges)
    return EBPower(k, p_e, p_b, modes)


def residual_eb_power(
    y, prediction, observed=None, num_bins: int | None = None, k_edges=None
) -> EBPower:
    """E and B power of the data residual observed * (y - prediction).

    Args:
        y: shear data (..., 2, H, W).
        prediction: A(x) for fields x, broadcastable against y (e.g. (N, 2, H, W) for samples).
        observed: 1 (True) on observed data entries, broadcastable to (2, H, W); None: all.
        num_bins, k_edges: binning, as in `spectra.power_spectrum`.

    Returns:
        `EBPower`; compare e and b with `eb_noise_power` of the same noise and mask.
    """
    residual = as_numpy(y) - as_numpy(prediction)
    if observed is not None:
        residual = residual * as_numpy(observed)
    return eb_power(residual, num_bins, k_edges)


def eb_noise_power(
    noise_variance, shape=None, num_bins: int | None = None, k_edges=None
) -> EBPower:
    """Expected E and B power of independent Gaussian shear noise, binned like `eb_power`.

    Noise of variance v1(x), v2(x) per pixel and component (0 where unobserved) has
    <|n_i_hat(k)|^2> = sum_x v_i(x) at every k, so E gets D1^2 V1 + D2^2 V2 and B gets
    D2^2 V1 + D1^2 V2, V_i = mean over all H W pixels of v_i: flat at k > 0 inside the bins.

    Args:
        noise_variance: per-pixel variance [shear^2], broadcastable to (..., 2, H, W), with 0 on
            unobserved entries (a scalar sigma^2 needs `shape`).
        shape: (H, W) of the grid when noise_variance does not give it.
        num_bins, k_edges: binning, as in `spectra.power_spectrum`.
    """
    variance = as_numpy(noise_variance)
    if shape is not None:
        h, w = (int(n) for n in shape)
        variance = np.broadcast_to(variance, (*variance.shape[:-3], 2, h, w))
    _check_shear(variance, "eb_noise_power")
    h, w = variance.shape[-2:]
    v1, v2 = variance[..., 0, :, :], variance[..., 1, :, :]
    v1 = v1.mean(axis=(-2, -1))[..., None, None]
    v2 = v2.mean(axis=(-2, -1))[..., None, None]
    d1, d2 = (d.numpy() ** 2 for d in shear_filters((h, w)))
    edges = k_bin_edges(h, w, num_bins) if k_edges is None else k_edges
    k, p_e, modes = azimuthal_average(d1 * v1 + d2 * v2, edges)
    _, p_b, _ = azimuthal_average(d2 * v1 + d1 * v2, edges)
    return EBPower(k, p_e, p_b, modes)
