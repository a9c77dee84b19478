"""`posterior-diffusion train`: LightningCLI over ScorePriorModule and FieldDataModule.

`train --config configs/train_grf_64.yaml` means `train fit --config ...`; any LightningCLI
flag works (`--trainer.max_steps`, `--trainer.devices 4 --trainer.strategy ddp`,
`--ckpt_path last` to resume, `--print_config`).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from .data import FieldDataModule
from .module import ScorePriorModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class TrainingCLI(LightningCLI):
    """LightningCLI whose `--ckpt_path last` finds the newest intact checkpoint under
    default_root_dir.

    Lightning's own "last" looks only in the new run's version directory, which never holds one,
    so without this a resumed run would silently start from scratch. Lightning writes checkpoints
    in place, so a run killed mid-write leaves a truncated file: such files are skipped, with a
    warning, for the newest one that reads back whole.
    """

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if config is None or config.get("ckpt_path") != "last":
            return
        root = Path(config["trainer"].get("default_root_dir") or ".")
        found = sorted(root.glob("**/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime)
        for path in reversed(found):
            if intact(path):
                config["ckpt_path"] = str(path)
                return
            warnings.warn(f"{path}: damaged checkpoint (cut short?), skipped", stacklevel=2)
        raise TrainingResumeError(f"{root}: no intact checkpoint to resume from (--ckpt_path last)")


def intact(path: Path) -> bool:
    """Whether a checkpoint file (a torch.save zip archive) reads back whole: every member's CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


class TrainingResumeError(ValueError):
    """Nothing to resume from."""


def run_training(argv: Sequence[str]) -> None:
    """Parse `argv` (without the leading 'train') and run the subcommand; fit by default."""
    args = list(argv)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help")):
        args = ["fit", *args]
    # LightningCLI warns when given args while sys.argv holds other ones: here that is by design.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    TrainingCLI(
        ScorePriorModule,
        FieldDataModule,
        args=args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "posterior-diffusion train"},
    )
