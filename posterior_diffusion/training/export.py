"""A callback that writes the EMA prior as a standalone prior file when training ends."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from posterior_diffusion.priors.prior_file import save_record


class ExportPrior(L.Callback):
    """Write `path` (relative paths: under the trainer's log directory) at the end of `fit`.

    Args:
        path: output prior file (.pt), loadable by `reconstruct --prior PATH`.
    """

    def __init__(self, path: str = "prior.pt"):
        self.path = path

    def output_path(self, trainer: L.Trainer) -> Path:
        path = Path(self.path)
        if path.is_absolute():
            return path
        return Path(trainer.log_dir or trainer.default_root_dir) / path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # fast_dev_run is a smoke test: it writes no checkpoints, and no prior file either.
        if trainer.fast_dev_run:
            return
        # trainer.log_dir is a collective (a broadcast) under DDP: every rank must ask for it,
        # or rank 0 waits for ranks that have already left.
        out = self.output_path(trainer)
        if trainer.is_global_zero:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_record(pl_module.prior_record(), out)
            print(f"wrote prior file {out}")
