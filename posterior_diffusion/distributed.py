"""The processes of a sharded run, started by Lightning Fabric's launcher.

`launch(devices, num_nodes, device)` returns this process's place among them. On one machine
Fabric starts the other ranks by running the same command again; under SLURM (`srun`) or
`torchrun` the scheduler has started them and Fabric only connects them. Ranks exchange nothing
but small Python objects (settings, statuses), so the process group is gloo even on GPUs: the
samples themselves go to a shared zarr store, one chunk per member (io/journal.py).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

# A rank that finishes its share first waits at the final exchange for the slowest one.
WAIT_LIMIT = datetime.timedelta(hours=48)
_rank_of_this_process = 0  # kept after the run, so that error messages come from rank 0 alone


@dataclass(frozen=True)
class Ranks:
    """This process's rank among `world_size`, and the device it samples on."""

    rank: int
    world_size: int
    device: torch.device
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, members: Sequence[int]) -> list[int]:
        """This rank's members: every world_size-th, so shares differ by at most one member."""
        return list(members)[self.rank :: self.world_size]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        return values


def check_layout(devices: int, num_nodes: int, device: str) -> None:
    """Refuse a process layout that cannot run, in one line (before anything is launched)."""
    if int(devices) < 1 or int(num_nodes) < 1:
        raise ValueError(f"devices and num_nodes must be >= 1, got {devices} and {num_nodes}")
    if int(devices) * int(num_nodes) > 1 and torch.device(device).index is not None:
        raise ValueError(
            f"device '{device}' names one GPU; a sharded run gives each rank its own "
            "(use --device cuda)"
        )


@contextmanager
def launch(devices: int, num_nodes: int, device: str | torch.device) -> Iterator[Ranks]:
    """Start (or join) the ranks of a run over `devices` per node on `num_nodes` nodes.

    A single process needs no launcher: `Ranks(0, 1, device)`. Otherwise every rank runs the
    caller's command from the start up to here, where Fabric connects them; on the way out
    the process group is closed.
    """
    device = torch.device(device)
    if int(devices) * int(num_nodes) == 1:
        yield Ranks(0, 1, device)
        return
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    fabric = Fabric(
        accelerator="cuda" if device.type == "cuda" else "cpu",
        devices=int(devices),
        num_nodes=int(num_nodes),
        strategy=DDPStrategy(process_group_backend="gloo", timeout=WAIT_LIMIT),
    )
    fabric.launch()
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Ranks on one machine share its cores; each taking all of them oversubscribes.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(devices)))
    global _rank_of_this_process
    _rank_of_this_process = fabric.global_rank
    try:
        yield Ranks(fabric.global_rank, fabric.world_size, fabric.device, int(devices))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def is_main_process() -> bool:
    """False on the ranks other than 0 of a sharded run (they leave messages to rank 0)."""
    return _rank_of_this_process == 0
