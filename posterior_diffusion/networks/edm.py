"""EDM preconditioning and its training loss in one class (Karras et al. 2022, Table 1).

D(x, sigma) = c_skip x + c_out F(c_in x, c_noise) on standardised fields, so the network sees
unit-variance inputs and targets at every noise level. Fields are standardised with the training
set's per-channel mean and one global standard deviation (a single sigma per field keeps the
preconditioning scalar). With a `base` Gaussian prior the network learns the residual on top of
the analytic denoiser (the hybrid prior of Remy et al. 2023, A&A 672, A51).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..priors.base import Prior, append_dims


class EDMPrecond(nn.Module):
    """Denoiser D(x, sigma) in physical units around a network F.

    Args:
        net: F(x, c_noise), (B, C, H, W), (B,) -> (B, C, H, W).
        sigma_data: standard deviation of the standardised data (1 by construction).
        base: an analytic prior whose denoiser the network corrects (hybrid), or None.
    """

    objective = "edm"

    def __init__(self, net: nn.Module, sigma_data: float = 1.0, base: Prior | None = None):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        self.base = base
        channels = int(getattr(net, "config", lambda: {"channels": 1})()["channels"])
        self.register_buffer("data_mean", torch.zeros(channels, dtype=torch.float64))
        self.register_buffer("data_std", torch.ones((), dtype=torch.float64))
        # A conditional network sees theta standardised by the training set's mean and std.
        self.condition_dim = int(getattr(net, "condition_dim", 0))
        if self.condition_dim:
            self.register_buffer("theta_mean", torch.zeros(self.condition_dim, dtype=torch.float64))
            self.register_buffer("theta_std", torch.ones(self.condition_dim, dtype=torch.float64))

    def set_normalisation(self, mean: Sequence[float], std: float) -> None:
        self.data_mean.copy_(torch.as_tensor(mean, dtype=torch.float64))
        self.data_std.fill_(float(std))

    def set_condition_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.theta_mean.copy_(torch.as_tensor(mean, dtype=torch.float64))
        self.theta_std.copy_(torch.as_tensor(std, dtype=torch.float64))

    def run_net(
        self, x: Tensor, c_noise: Tensor, condition: Tensor | None, keep: Tensor | None
    ) -> Tensor:
        """F(x, c_noise[, standardised theta]) in the network's dtype, returned in x's dtype.

        `condition`: theta (P,) for the whole batch or (B, P) per member, physical units; None:
        the unconditional denoiser. `keep` (B,) bool drops members' conditions (training)."""
        weight = next(self.net.parameters())
        args = [x.to(weight.dtype), c_noise.reshape(-1).to(weight.dtype)]
        if condition is not None:
            if not self.condition_dim:
                raise ValueError("this prior is unconditional: it takes no theta")
            theta = torch.as_tensor(condition, dtype=torch.float64, device=x.device)
            theta = theta.expand(x.shape[0], -1) if theta.ndim == 1 else theta
            theta = (theta - self.theta_mean) / self.theta_std
            args += [theta.to(weight.dtype), keep]
        return self.net(*args).to(x.dtype)

    def coefficients(self, sigma_n: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in, c_noise at standardised noise levels sigma_n."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma_n**2 + sd2)
        c_out = sigma_n * self.sigma_data / (sigma_n**2 + sd2).sqrt()
        c_in = 1.0 / (sigma_n**2 + sd2).sqrt()
        c_noise = sigma_n.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(
        self,
        x: Tensor,
        sigma: Tensor | float,
        condition: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        """E[x0 | x0 + sigma z = x (, theta)] for x of shape (B, C, H, W), sigma a float or (B,);
        `condition` and `keep` as in `run_net`."""
        std = self.data_std.to(x.dtype)
        mean = self.data_mean.to(x.dtype)[:, None, None]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        sigma_n = sigma / std
        c_skip, c_out, c_in, c_noise = (append_dims(c, x.ndim) for c in self.coefficients(sigma_n))
        x_n = (x - mean) / std
        correction = std * c_out * self.run_net(c_in * x_n, c_noise, condition, keep)
        if self.base is not None:
            return self.base.denoise(x, sigma) + correction
        return mean + std * c_skip * x_n + correction

    def loss(
        self,
        x0: Tensor,
        log_sigma_mean: float = -1.2,
        log_sigma_std: float = 1.2,
        condition: Tensor | None = None,
        condition_dropout: float = 0.0,
    ) -> Tensor:
        """EDM loss: lambda(sigma) |D(x0 + n, sigma) - x0|^2 on standardised fields, batch mean.

        ln(sigma / data_std) ~ N(log_sigma_mean, log_sigma_std^2); lambda = 1 / c_out^2 makes
        every noise level's effective target unit-variance. With `condition` (B, P), each map's
        theta is dropped with probability `condition_dropout`.
        """
        std = self.data_std.to(x0.dtype)
        sigma_n = (
            (torch.randn(x0.shape[0], device=x0.device) * log_sigma_std + log_sigma_mean)
            .exp()
            .to(x0.dtype)
        )
        sigma = sigma_n * std
        noisy = x0 + append_dims(sigma, x0.ndim) * torch.randn_like(x0)
        weight = (sigma_n**2 + self.sigma_data**2) / (sigma_n * self.sigma_data) ** 2
        keep = drop_mask(condition, condition_dropout, x0.shape[0], x0.device)
        error = ((self(noisy, sigma, condition, keep) - x0) / std).square().flatten(1).mean(1)
        return (weight * error).mean()


def drop_mask(condition: Tensor | None, dropout: float, batch: int, device) -> Tensor | None:
    """Which maps keep their theta in a training step: each is dropped with probability
    `dropout`, so the network also learns the unconditional denoiser."""
    if condition is None or dropout <= 0:
        return None
    return torch.rand(batch, device=device) >= dropout
