"""Per-member random streams: the same seed gives the same ensemble member whatever the batch size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

# The stream key of ensemble-level draws: no member index reaches it.
SHARED_STREAM = 2**64 - 1


def member_seed(seed: int, member: int) -> int:
    """A 63-bit seed for ensemble member `member` of a run seeded with `seed`."""
    return int(
        np.random.SeedSequence([int(seed), int(member)]).generate_state(1, np.uint64)[0] >> 1
    )


class EnsembleRNG:
    """One torch.Generator per ensemble member; draws are stacked along a new leading dim.

    The generators live on `device`: a sampler that draws noise every step (dps, the SDEs)
    spent more time drawing on the CPU and copying than evaluating the network on a GPU
    (+134% on 256 x 256 maps, benchmarks/README.md). So the same seed gives the same member
    whatever the batch size, on one kind of device; CPU and CUDA streams differ.
    """

    def __init__(self, seed: int, members: Sequence[int], device: torch.device | str = "cpu"):
        self.seed = int(seed)
        self.members = [int(m) for m in members]
        self.device = torch.device(device)
        self._generators = [
            torch.Generator(device=self.device).manual_seed(member_seed(self.seed, m))
            for m in self.members
        ]

    def shared_seed(self) -> int:
        """The seed of draws the whole ensemble shares (an ensemble-level sampler's resampling
        uniforms): it depends on the run's seed only, never on which members are in the batch."""
        return member_seed(self.seed, SHARED_STREAM)

    def __len__(self) -> int:
        return len(self.members)

    def get_state(self) -> list:
        """Every member's generator state (to continue the streams after a restart)."""
        return [generator.get_state() for generator in self._generators]

    def set_state(self, states: list) -> None:
        """Continue every member's stream from `get_state`'s result."""
        if len(states) != len(self._generators):
            raise ValueError(f"{len(states)} generator states for {len(self._generators)} members")
        for generator, state in zip(self._generators, states, strict=True):
            generator.set_state(state)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float64) -> Tensor:
        out = torch.empty((len(self.members), *shape), dtype=dtype, device=self.device)
        for draw, generator in zip(out, self._generators, strict=True):
            torch.randn(
                tuple(shape), generator=generator, dtype=dtype, device=self.device, out=draw
            )
        return out

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float64) -> Tensor:
        """Uniform draws on [0, 1), one set per member, stacked like `randn`'s."""
        out = torch.empty((len(self.members), *shape), dtype=dtype, device=self.device)
        for draw, generator in zip(out, self._generators, strict=True):
            torch.rand(tuple(shape), generator=generator, dtype=dtype, device=self.device, out=draw)
        return out
