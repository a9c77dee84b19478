"""Flow matching on linear (rectified) paths (Lipman et al. 2022; Liu et al. 2022), behind the
same denoiser contract as EDM, so every sampler takes a flow-matching prior unchanged.

On standardised fields the path is x_t = (1 - t) x0 + t eps, t in (0, 1), and the network F
predicts the velocity v = eps - x0 by regression, E |F(x_t, t) - v|^2 with t ~ U(0, 1). The
variance-exploding state of the samplers maps onto it exactly: x_sigma = x0 + sigma eps gives
x_t = x_sigma / (1 + sigma) at t = sigma / (1 + sigma), and the denoiser is
D(x_sigma, sigma) = x_t - t F(x_t, t). In denoiser terms the loss weights |D - x0|^2 by 1 / t^2,
and ln sigma = logit t is logistic-distributed, against EDM's normal ln sigma and its
1 / c_out^2 weight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..priors.base import Prior, append_dims
from .edm import EDMPrecond, drop_mask


class FlowMatchingPrecond(EDMPrecond):
    """Denoiser D(x, sigma) in physical units from a velocity network F (see the module docstring).

    Args:
        net: F(x_t, c_noise), (B, C, H, W), (B,) -> (B, C, H, W); c_noise = ln(sigma) / 4 as for
            EDM, so one network class serves both objectives.
        sigma_data: unused by the path (kept for the prior file's metadata).
        base: not supported (a hybrid prior is an EDM residual).
    """

    objective = "flow_matching"

    def __init__(self, net: nn.Module, sigma_data: float = 1.0, base: Prior | None = None):
        if base is not None:
            raise ValueError("a hybrid prior (hybrid_power_spectrum) needs objective 'edm'")
        super().__init__(net, sigma_data, base=None)

    def forward(
        self,
        x: Tensor,
        sigma: Tensor | float,
        condition: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        std = self.data_std.to(x.dtype)
        mean = self.data_mean.to(x.dtype)[:, None, None]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        sigma_n = sigma / std
        t = append_dims(sigma_n / (1 + sigma_n), x.ndim)
        x_t = (x - mean) / std / append_dims(1 + sigma_n, x.ndim)
        velocity = self.run_net(x_t, sigma_n.log() / 4, condition, keep)
        return mean + std * (x_t - t * velocity)

    def loss(
        self,
        x0: Tensor,
        log_sigma_mean: float = 0.0,
        log_sigma_std: float = 1.0,
        condition: Tensor | None = None,
        condition_dropout: float = 0.0,
    ) -> Tensor:
        """Conditional flow matching, t ~ U(0, 1), batch mean (the log-sigma arguments of the
        EDM loss are ignored: the path fixes the noise-level distribution); theta dropout as
        in `EDMPrecond.loss`."""
        std = self.data_std.to(x0.dtype)
        mean = self.data_mean.to(x0.dtype)[:, None, None]
        x0_n = (x0 - mean) / std
        # Keep t off the ends, where sigma = t / (1 - t) is 0 or infinite (ln sigma within +-9).
        t = torch.rand(x0.shape[0], device=x0.device).to(x0.dtype).clamp(1e-4, 1 - 1e-4)
        eps = torch.randn_like(x0_n)
        t_b = append_dims(t, x0.ndim)
        x_t = (1 - t_b) * x0_n + t_b * eps
        sigma_n = t / (1 - t)
        keep = drop_mask(condition, condition_dropout, x0.shape[0], x0.device)
        velocity = self.run_net(x_t, sigma_n.log() / 4, condition, keep)
        return (velocity - (eps - x0_n)).square().flatten(1).mean(1).mean()


OBJECTIVES = {"edm": EDMPrecond, "flow_matching": FlowMatchingPrecond}
