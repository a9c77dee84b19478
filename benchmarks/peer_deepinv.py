"""deepinv's DPS (deepinv.sampling.DPS, its defaults: VP schedule, DDPM solver, 1000 steps,
guidance weight 1 on the residual norm) on our problem and our prior, for side-by-side timing.

deepinv calls a denoiser D(x, sigma) on float32 states in the same variance-exploding convention
as ours, so our prior goes in unchanged; `minus_one_one=False` keeps the state in physical units
(deepinv's default maps [0, 1] images to [-1, 1], which our zero-mean fields are not). Its
data-fidelity step clips the denoised estimate to [-1, 1]: harmless here, the fields' pixel std
is 0.03-0.05. Install: `pip install --no-deps deepinv==0.5.0` plus the `bench` extra (deepinv
imports torchvision, which needs a torch build it matches).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from forward_models.base import ForwardModel
from posterior_diffusion.priors.base import Prior


def available() -> bool:
    try:
        import deepinv  # noqa: F401
    except Exception:  # ImportError, or torchvision failing beside this torch
        return False
    return True


def sample(
    prior: Prior,
    model: ForwardModel,
    y: Tensor,
    num_samples: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    steps: int = 1000,
) -> tuple[Tensor, dict]:
    """`num_samples` deepinv-DPS samples (float64, CPU) and cost counts like sample_posterior's."""
    import deepinv

    class Counted(deepinv.models.Denoiser):
        def __init__(self):
            super().__init__()
            self.forwards = 0
            self.with_graph = 0  # forwards that a vector-Jacobian product runs back through

        def forward(self, x: Tensor, sigma, *args, **kwargs) -> Tensor:
            self.forwards += 1
            self.with_graph += int(x.requires_grad)
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
            sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
            return prior.denoise(x, sigma).to(x.dtype)

    denoiser = Counted().to(device)
    physics = deepinv.physics.LinearPhysics(
        A=lambda x: model.A(x.to(torch.float64)).to(x.dtype),
        A_adjoint=lambda r: model.A_adjoint(r.to(torch.float64)).to(r.dtype),
        noise_model=deepinv.physics.GaussianNoise(sigma=float(model.noise.sigma.max())),
    ).to(device)
    sampler = deepinv.sampling.DPS(
        denoiser, num_steps=steps, device=device, dtype=torch.float64, minus_one_one=False
    )
    done = []
    start = time.perf_counter()
    for first in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - first)
        y_batch = y.to(device=device, dtype=torch.float32).expand(n, *y.shape).contiguous()
        x = sampler(y_batch, physics, seed=seed + first)
        done.append(x.detach().to("cpu", torch.float64))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    batches = len(done)
    info = {
        "steps": steps,
        "denoiser_calls_per_sample": denoiser.forwards / batches,
        "covariance_products_per_sample": denoiser.with_graph / batches,
        "nfe_per_sample": (denoiser.forwards + denoiser.with_graph) / batches,
        "seconds": seconds,
        "batch_size": batch_size,
    }
    return torch.cat(done), info
