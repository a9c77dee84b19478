"""An exactly known conditional prior behind the NetworkPrior machinery: the network output
that makes EDMPrecond's denoiser the exact Gaussian denoiser of PowerLawSpectrum(*theta)."""

from __future__ import annotations

import torch
from torch import nn

from forward_models.fourier import frequency_magnitude
from posterior_diffusion.networks.edm import EDMPrecond
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.power_spectrum import PowerLawSpectrum

SHAPE = (1, 16, 16)
NAMES = ["amplitude", "slope"]


def condition_entry(mean=(1.25, -1.75), std=(0.43, 0.43)) -> dict:
    return {"names": NAMES, "mean": list(mean), "std": list(std), "min": [0.5, -2.5],
            "max": [2.0, -1.0], "dropout": 0.1}  # fmt: skip


def network_prior(net: nn.Module, data_std: float, condition: dict | None) -> NetworkPrior:
    precond = EDMPrecond(net)
    precond.set_normalisation([0.0], data_std)
    if condition:
        precond.set_condition_normalisation(condition["mean"], condition["std"])
    metadata = {
        "field_shape": list(SHAPE),
        "channels": 1,
        "hybrid": False,
        "data_std": data_std,
        "data_mean": [0.0],
        "sigma_data": 1.0,
        "condition": condition,
        "network": {"name": type(net).__name__, "config": net.config()},
    }
    return NetworkPrior(precond, metadata, source="test-prior.pt", checksum="0" * 64)


class OracleConditionalNet(nn.Module):
    """The EDM network output F that makes EDMPrecond's D(x, sigma | theta) exactly the denoiser
    of GaussianPrior(PowerLawSpectrum(*theta)), for fields standardised by (0, data_std).

    It receives theta standardised by the precond's buffers and undoes that; a dropped condition
    (None, or keep False) gives the Gaussian denoiser at `null_theta`."""

    condition_dim = 2

    def __init__(self, data_std: float, theta_mean, theta_std, null_theta):
        super().__init__()
        self.data_std = float(data_std)
        k = torch.from_numpy(frequency_magnitude(SHAPE[1], SHAPE[2]))
        self.register_buffer("k2", k**2)
        self.register_buffer("theta_mean", torch.tensor(theta_mean, dtype=torch.float64))
        self.register_buffer("theta_std", torch.tensor(theta_std, dtype=torch.float64))
        self.register_buffer("null_theta", torch.tensor(null_theta, dtype=torch.float64))
        self.dtype_probe = nn.Parameter(torch.zeros((), dtype=torch.float64))  # run in float64

    def config(self) -> dict:
        return {"channels": 1, "condition_dim": 2}

    def size_multiple(self) -> int:
        return 1

    def power(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, H, W): PowerLawSpectrum(*theta_b) on the fft grid."""
        probe = PowerLawSpectrum(1.0, 0.0)
        amplitude, slope = theta[:, 0, None, None], theta[:, 1, None, None]
        return amplitude * ((self.k2 + probe.core**2) / probe.pivot**2) ** (slope / 2)

    def forward(self, x_in, c_noise, condition=None, keep=None):
        theta = self.null_theta.expand(x_in.shape[0], 2)
        if condition is not None:
            physical = condition * self.theta_std + self.theta_mean
            theta = physical if keep is None else torch.where(keep[:, None], physical, theta)
        sigma_n = (4 * c_noise).exp()[:, None, None, None]
        c_in = 1 / (sigma_n**2 + 1).sqrt()
        c_skip, c_out = c_in**2, sigma_n * c_in
        x_n = x_in / c_in
        power = self.power(theta)[:, None]
        gain = power / (power + (sigma_n * self.data_std) ** 2)
        denoised_n = torch.fft.ifft2(torch.fft.fft2(x_n) * gain).real
        return (denoised_n - c_skip * x_n) / c_out


# The pooled pixel std of 16 x 16 maps over the default box (measured 0.526 over 2000 maps), so
# sampling starts at the noise level a trained prior would use (40 data std).
ORACLE_STD = 0.53
THETA_1, THETA_2 = [0.7, -2.2], [1.8, -1.2]


def oracle_prior() -> NetworkPrior:
    condition = condition_entry()
    net = OracleConditionalNet(ORACLE_STD, condition["mean"], condition["std"], [1.25, -1.75])
    return network_prior(net, ORACLE_STD, condition)
