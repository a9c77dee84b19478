"""Training helpers shared by the training, conditional-prior and flow-matching tests."""

from __future__ import annotations

from pathlib import Path

import torch

from posterior_diffusion.networks import UNet
from posterior_diffusion.networks.edm import EDMPrecond

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train_tiny.yaml"


def train_args(data: Path, root: Path) -> list[str]:
    """`train` with the tiny config on `data`, logging under `root`."""
    return ["train", "--config", str(TINY_CONFIG), "--data.path", str(data),
            "--trainer.default_root_dir", str(root)]  # fmt: skip


def tiny_net() -> UNet:
    return UNet(channels=1, base_channels=8, channel_mults=(1, 2), blocks_per_level=1)


def fixed_noise_loss(model: EDMPrecond, x0: torch.Tensor) -> float:
    """The weighted EDM loss at fixed noise levels and fixed noise: comparable across steps."""
    generator = torch.Generator().manual_seed(0)
    total = 0.0
    for sigma in (0.03, 0.1, 0.3, 1.0, 3.0):
        noise = torch.randn(x0.shape, generator=generator)
        with torch.no_grad():
            denoised = model(x0 + sigma * noise, sigma)
        total += (1 + sigma**2) / sigma**2 * float((denoised - x0).square().mean())
    return total / 5


def adam_steps(model, x: torch.Tensor, steps: int = 60) -> list[float]:
    """`steps` Adam steps (lr 2e-3) on batches of 16 of the first 80 maps; the losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for step in range(steps):
        start = (step * 16) % 80
        loss = model.loss(x[start : start + 16])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses
