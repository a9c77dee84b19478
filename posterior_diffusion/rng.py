"""Per-member random streams: the same seed gives the same ensemble member whatever the batch size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def member_seed(seed: int, member: int) -> int:
    """A 63-bit seed for ensemble member `member` of a run seeded with `seed`."""
    return int(
        np.random.SeedSequence([int(seed), int(member)]).generate_state(1, np.uint64)[0] >> 1
    )


class EnsembleRNG:
    """One torch.Generator per ensemble member; draws are stacked along a new leading dim.

    Draws happen on the CPU (generators there are portable and reproducible) and are moved to
    `device`; the cost is negligible next to a denoiser evaluation.
    """

    def __init__(self, seed: int, members: Sequence[int], device: torch.device | str = "cpu"):
        self.seed = int(seed)
        self.members = [int(m) for m in members]
        self.device = torch.device(device)
        self._generators = [
            torch.Generator().manual_seed(member_seed(self.seed, m)) for m in self.members
        ]

    def __len__(self) -> int:
        return len(self.members)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float64) -> Tensor:
        draws = [torch.randn(tuple(shape), generator=g, dtype=dtype) for g in self._generators]
        return torch.stack(draws).to(self.device)
