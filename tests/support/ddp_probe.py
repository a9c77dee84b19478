"""A Lightning callback for the DDP training test: what each rank fetched, and its final weights.

Not a test module: the `train` CLI subprocesses import it (PYTHONPATH holds this folder) through
`--trainer.callbacks+=ddp_probe.Probe`. Each rank writes into `out_dir`:

- `rank{R}.json`: the first noise levels its training step draws (the global torch stream);
  the file indices of the training maps its dataset actually returned, per epoch;
  the indices its training sampler hands out in epoch 0 (before the loader drops a last partial
  batch); the sampler's type, rank and number of replicas; the last step.
- `rank{R}.pt`: its EMA and live state dicts at the end of training.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch

from posterior_diffusion.training.data import FieldDataset


class _RecordingFieldDataset(FieldDataset):
    """A FieldDataset that notes the file index of every map it returns."""

    def __getitem__(self, i: int) -> torch.Tensor:
        probe = self.probe
        probe.fetched[probe.epoch].append(int(self.indices[i]))
        return super().__getitem__(i)


class Probe(L.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.fetched: dict[int, list[int]] = defaultdict(list)
        self.epoch = -1
        self.sampler: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not hasattr(self, "first_draws"):
            # What the training step's next draws will be, without consuming the stream.
            state = torch.random.get_rng_state()
            self.first_draws = torch.randn(4).tolist()
            torch.random.set_rng_state(state)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dataset = trainer.train_dataloader.dataset
        assert type(dataset) is FieldDataset, type(dataset)
        dataset.__class__ = _RecordingFieldDataset  # same object, so the loader's fetcher sees it
        dataset.probe = self

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch = trainer.current_epoch
        if self.sampler:
            return
        loader = trainer.train_dataloader
        sampler = loader.sampler  # the fit loop has called set_epoch on it before this hook
        self.sampler = {
            "type": type(sampler).__name__,
            "rank": getattr(sampler, "rank", None),
            "num_replicas": getattr(sampler, "num_replicas", None),
            "epoch0": [int(loader.dataset.indices[i]) for i in sampler],
            "drop_last": loader.drop_last,
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rank = trainer.global_rank
        torch.save(
            {"ema": pl_module.ema.state_dict(), "live": pl_module.model.state_dict()},
            self.out_dir / f"rank{rank}.pt",
        )
        summary = {
            "rank": rank,
            "world_size": trainer.world_size,
            "global_step": int(trainer.global_step),
            "fetched": {str(k): v for k, v in self.fetched.items()},
            "sampler": self.sampler,
            "first_draws": self.first_draws,
        }
        (self.out_dir / f"rank{rank}.json").write_text(json.dumps(summary))
