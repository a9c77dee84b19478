"""Denoising networks, and the names under which checkpoints may rebuild them."""

from __future__ import annotations

from .unet import UNet

# Checkpoints name their network; only these classes are ever built from a file (data, not code).
NETWORKS = {"UNet": UNet}

__all__ = ["NETWORKS", "UNet"]
