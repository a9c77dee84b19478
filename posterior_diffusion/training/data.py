"""Training fields from HDF5 or zarr, read lazily, with symmetry augmentation and statistics.

Files hold a dataset `fields` of shape (num, H, W) or (num, C, H, W), as `posterior-diffusion
simulate` writes them, and for a parameter-conditioned prior a dataset `theta` (num, P) with the
parameters' names in the attribute `theta_names` (then batches are (fields, theta) pairs).
Statistically isotropic periodic fields keep their distribution under the square's 8
flips/rotations and under periodic shifts, so each draw is a fresh-looking map.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

DATASET = "fields"
THETA_DATASET = "theta"
STATS_BLOCK = 256  # maps read at a time when computing statistics


class TrainingDataError(ValueError):
    """A training file that cannot be used; the message is one line naming file and dataset."""


def open_fields(path: str | os.PathLike) -> Any:
    """The `fields` array of an .h5/.hdf5 file or a .zarr store (h5py / zarr array, lazy)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise TrainingDataError(f"{path}: file not found")
    try:
        if suffix in (".h5", ".hdf5"):
            import h5py

            group = h5py.File(path, "r")
        elif suffix == ".zarr":
            import zarr

            group = zarr.open_group(str(path), mode="r")
        else:
            raise TrainingDataError(f"{path}: training data must be .h5, .hdf5 or .zarr")
    except TrainingDataError:
        raise
    except Exception as err:  # h5py / zarr raise many types for unreadable files
        raise TrainingDataError(f"{path}: not a readable {suffix} file ({err})") from None
    if DATASET not in group:
        raise TrainingDataError(
            f"{path}: no dataset '{DATASET}' (found: {', '.join(group) or 'none'})"
        )
    fields = group[DATASET]
    if len(fields.shape) not in (3, 4) or min(fields.shape) < 1:
        raise TrainingDataError(
            f"{path}: dataset '{DATASET}' must be (num, H, W) or (num, C, H, W), got {fields.shape}"
        )
    if not np.issubdtype(fields.dtype, np.floating):
        raise TrainingDataError(
            f"{path}: dataset '{DATASET}' must be floating point, got {fields.dtype}"
        )
    return fields


def open_theta(path: str | os.PathLike, num: int) -> Any:
    """The `theta` array (num, P) beside `fields`, checked; None when the file has none."""
    fields = open_fields(path)
    group = fields.file if hasattr(fields, "file") else None
    if group is None:
        import zarr

        group = zarr.open_group(str(path), mode="r")
    if THETA_DATASET not in group:
        return None
    theta = group[THETA_DATASET]
    if len(theta.shape) != 2 or theta.shape[0] != num or theta.shape[1] < 1:
        raise TrainingDataError(
            f"{path}: dataset '{THETA_DATASET}' must be (num, P) with num = {num} maps, got "
            f"{theta.shape}"
        )
    values = np.asarray(theta[...], dtype=np.float64)
    if not np.isfinite(values).all():
        raise TrainingDataError(f"{path}: dataset '{THETA_DATASET}' has NaN or inf values")
    return values


def theta_statistics(theta: np.ndarray, indices: np.ndarray, names: Any, path: str) -> dict:
    """Names, mean, std and range of the training maps' theta: the prior file's `condition`."""
    count = theta.shape[1]
    if isinstance(names, str):
        import json

        try:
            names = json.loads(names)
        except json.JSONDecodeError:
            names = None
    if names is None:
        names = [f"theta_{i}" for i in range(count)]
    if not (
        isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names)
    ):
        raise TrainingDataError(
            f"{path}: attribute 'theta_names' must list {count} names, got {names!r}"
        )
    train = theta[indices]
    std = train.std(0)
    if not np.all(std > 0):
        constant = [n for n, s in zip(names, std, strict=True) if not s > 0]
        raise TrainingDataError(
            f"{path}: dataset '{THETA_DATASET}' does not vary in {', '.join(constant)} over the "
            "training maps: nothing to condition on"
        )
    return {
        "names": names,
        "mean": train.mean(0).tolist(),
        "std": std.tolist(),
        "min": train.min(0).tolist(),
        "max": train.max(0).tolist(),
    }


def file_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The file's attributes (kind, pixel scale, ...) as plain Python values."""
    fields = open_fields(path)
    attrs = fields.file.attrs if hasattr(fields, "file") else {}
    if not attrs and Path(path).suffix.lower() == ".zarr":
        import zarr

        attrs = zarr.open_group(str(path), mode="r").attrs
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in dict(attrs).items()}


def field_statistics(fields: Any, indices: np.ndarray, path: str) -> dict[str, Any]:
    """Per-channel mean, global standard deviation and a checksum of the whole dataset.

    The checksum is sha256 over every map's float32 little-endian bytes in file order: it names
    the data, whatever the container (HDF5 or zarr), chunking or compression.
    """
    num = fields.shape[0]
    digest = hashlib.sha256()
    total = 0
    channel_sum = channel_sq = None
    selected = np.zeros(num, dtype=bool)
    selected[indices] = True
    for start in range(0, num, STATS_BLOCK):
        block = np.asarray(fields[start : start + STATS_BLOCK], dtype=np.float64)
        if not np.isfinite(block).all():
            bad = start + int(np.nonzero(~np.isfinite(block.reshape(len(block), -1)).all(1))[0][0])
            raise TrainingDataError(f"{path}: dataset '{DATASET}' map {bad} has NaN or inf values")
        digest.update(block.astype("<f4").tobytes())
        block = block[selected[start : start + STATS_BLOCK]]
        block = block[:, None] if block.ndim == 3 else block
        s, sq = block.sum((0, 2, 3)), np.square(block).sum((0, 2, 3))
        channel_sum = s if channel_sum is None else channel_sum + s
        channel_sq = sq if channel_sq is None else channel_sq + sq
        total += block.shape[0] * block.shape[2] * block.shape[3]
    mean = channel_sum / total
    variance = float((channel_sq / total - mean**2).mean())
    if not variance > 0:
        raise TrainingDataError(f"{path}: dataset '{DATASET}' is constant (zero variance)")
    return {"mean": mean.tolist(), "std": variance**0.5, "checksum": digest.hexdigest()}


def augment(x: Tensor, periodic: bool) -> Tensor:
    """A random element of the square's symmetry group (non-square maps: flips only), then a
    random periodic shift when the field is periodic."""
    if torch.rand(()) < 0.5:
        x = x.flip(-1)
    if torch.rand(()) < 0.5:
        x = x.flip(-2)
    if x.shape[-1] == x.shape[-2] and torch.rand(()) < 0.5:
        x = x.transpose(-1, -2)
    if periodic:
        shifts = (int(torch.randint(x.shape[-2], ())), int(torch.randint(x.shape[-1], ())))
        x = torch.roll(x, shifts, dims=(-2, -1))
    return x


class FieldDataset(Dataset):
    """Maps `indices` of a file's `fields`, as float32 (C, H, W), or (map, theta) pairs when
    `theta` (num, P) is given; the file opens in each worker."""

    def __init__(
        self,
        path: str,
        indices: np.ndarray,
        augment: bool,
        periodic: bool,
        theta: np.ndarray | None = None,
    ):
        self.path, self.indices = path, np.asarray(indices)
        self.augment, self.periodic = augment, periodic
        self.theta = None if theta is None else torch.from_numpy(np.asarray(theta))
        self._fields = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tensor | tuple[Tensor, Tensor]:
        if self._fields is None:  # opened lazily: h5py handles must not cross worker forks
            self._fields = open_fields(self.path)
        index = int(self.indices[i])
        x = torch.from_numpy(np.asarray(self._fields[index], dtype=np.float32))
        x = x[None] if x.ndim == 2 else x
        x = augment(x, self.periodic) if self.augment else x
        # The symmetries augment applies keep an isotropic field's theta.
        return x if self.theta is None else (x, self.theta[index])


class FieldDataModule(L.LightningDataModule):
    """Training and validation maps from one file, split by a seeded permutation.

    Args:
        path: .h5/.hdf5 file or .zarr store with a dataset `fields` (num, H, W) or (num, C, H, W).
        batch_size: maps per training step (per device).
        num_workers: DataLoader worker processes.
        val_fraction: share of the maps held out for validation (at least one map).
        augment: random flips, 90-degree rotations and (if periodic) shifts of training maps.
        periodic: the fields are periodic, so periodic shifts are symmetries.
        split_seed: seed of the train/validation split.
    """

    def __init__(
        self,
        path: str,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.05,
        augment: bool = True,
        periodic: bool = True,
        split_seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.statistics: dict[str, Any] | None = None
        self.field_shape: tuple[int, int, int] | None = None
        self.attrs: dict[str, Any] = {}
        self.theta: np.ndarray | None = None
        self.condition: dict[str, Any] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.statistics is not None:
            return
        hp = self.hparams
        if not 0 < hp.val_fraction < 1:
            raise TrainingDataError(f"val_fraction must be in (0, 1), got {hp.val_fraction}")
        fields = open_fields(hp.path)
        num = fields.shape[0]
        if num < 2:
            raise TrainingDataError(
                f"{hp.path}: dataset '{DATASET}' needs at least 2 maps, has {num}"
            )
        order = np.random.default_rng(hp.split_seed).permutation(num)
        num_val = max(1, int(round(hp.val_fraction * num)))
        self.val_indices, self.train_indices = np.sort(order[:num_val]), np.sort(order[num_val:])
        shape = tuple(int(n) for n in fields.shape[1:])
        self.field_shape = shape if len(shape) == 3 else (1, *shape)
        self.statistics = field_statistics(fields, self.train_indices, hp.path)
        self.attrs = file_attrs(hp.path)
        self.theta = open_theta(hp.path, num)
        if self.theta is not None:
            names = self.attrs.get("theta_names")
            self.condition = theta_statistics(self.theta, self.train_indices, names, hp.path)

    def describe(self) -> dict[str, Any]:
        """What the prior was trained on, for its checkpoint's metadata."""
        parameters = self.attrs.get("parameters")
        return {
            "field_shape": list(self.field_shape),
            "channels": self.field_shape[0],
            "pixel_scale_arcmin": self.attrs.get("pixel_scale_arcmin"),
            "data_kind": self.attrs.get("kind"),
            "data_parameters": parameters if isinstance(parameters, str) else None,
            "data_file": Path(self.hparams.path).name,
            "data_checksum": self.statistics["checksum"],
            "data_mean": self.statistics["mean"],
            "data_std": self.statistics["std"],
            "periodic": bool(self.hparams.periodic),
            "num_train_maps": len(self.train_indices),
            "condition": self.condition,
        }

    def _loader(self, indices: np.ndarray, train: bool) -> DataLoader:
        hp = self.hparams
        dataset = FieldDataset(
            hp.path, indices, augment=train and hp.augment, periodic=hp.periodic, theta=self.theta
        )
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            shuffle=train,
            drop_last=train and len(indices) >= hp.batch_size,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_indices, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_indices, train=False)
