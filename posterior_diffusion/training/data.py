"""Training fields from HDF5 or zarr, read lazily, with symmetry augmentation and statistics.

Files hold a dataset `fields` of shape (num, H, W) or (num, C, H, W), as `posterior-diffusion
simulate` writes them, and for a parameter-conditioned prior a dataset `theta` (num, P) with the
parameters' names in the attribute `theta_names` (then batches are (fields, theta) pairs).
Statistically isotropic periodic fields keep their distribution under the square's 8
flips/rotations and under periodic shifts, so each draw is a fresh-looking map.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from posterior_diffusion.io.attrs import plain_attr
from posterior_diffusion.io.fields import (
    FieldFileError,
    check_finite,
    field_array,
    open_file,
    open_store,
    read_theta,
)
from posterior_diffusion.priors.power_spectrum import radial_table

DATASET = "fields"
THETA_DATASET = "theta"
STATS_BLOCK = 256  # maps read at a time when computing statistics
RANKS = (3, 4)  # (num, H, W) or (num, C, H, W)

TrainingDataError = FieldFileError  # the name training code and its users catch


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
            path, f"attribute 'theta_names' must list {count} names, got {names!r}"
        )
    train = theta[indices]
    std = train.std(0)
    if not np.all(std > 0):
        constant = [n for n, s in zip(names, std, strict=True) if not s > 0]
        raise TrainingDataError(
            path,
            f"does not vary in {', '.join(constant)} over the training maps: nothing to "
            "condition on",
            THETA_DATASET,
        )
    return {
        "names": names,
        "mean": train.mean(0).tolist(),
        "std": std.tolist(),
        "min": train.min(0).tolist(),
        "max": train.max(0).tolist(),
    }


# Spread of the training maps' means, in data std, below which they count as one fixed mean.
FIXED_MEAN_TOLERANCE = 1e-6


def field_statistics(fields: Any, indices: np.ndarray, path: str) -> dict[str, Any]:
    """Per-channel mean (also as `fixed_mean` when every map has it), global standard deviation,
    power spectrum (`radial_table` rows, per channel, of the mean-subtracted training maps) and a
    checksum of the whole dataset.

    The checksum is sha256 over every map's float32 little-endian bytes in file order: it names
    the data, whatever the container (HDF5 or zarr), chunking or compression.
    """
    num = fields.shape[0]
    digest = hashlib.sha256()
    total = 0
    channel_sum = channel_sq = power_sum = low = high = None
    selected = np.zeros(num, dtype=bool)
    selected[indices] = True
    for start in range(0, num, STATS_BLOCK):
        block = np.asarray(fields[start : start + STATS_BLOCK], dtype=np.float64)
        check_finite(path, DATASET, block, first=start)
        digest.update(block.astype("<f4").tobytes())
        block = block[selected[start : start + STATS_BLOCK]]
        block = block[:, None] if block.ndim == 3 else block
        s, sq = block.sum((0, 2, 3)), np.square(block).sum((0, 2, 3))
        power = np.square(np.abs(np.fft.fft2(block))).sum(0)
        if block.shape[0]:  # a block may hold no training map
            map_means = block.mean(axis=(2, 3))  # (maps, C)
            low = map_means.min(0) if low is None else np.minimum(low, map_means.min(0))
            high = map_means.max(0) if high is None else np.maximum(high, map_means.max(0))
        channel_sum = s if channel_sum is None else channel_sum + s
        channel_sq = sq if channel_sq is None else channel_sq + sq
        power_sum = power if power_sum is None else power_sum + power
        total += block.shape[0] * block.shape[2] * block.shape[3]
    mean = channel_sum / total
    variance = float((channel_sq / total - mean**2).mean())
    if not variance > 0:
        raise TrainingDataError(path, "is constant (zero variance)", DATASET)
    pixels = fields.shape[-1] * fields.shape[-2]
    maps = total // pixels
    power = power_sum / (maps * pixels)
    power[:, 0, 0] -= pixels * mean**2  # the mean is subtracted only from the k = 0 mode
    k, table = radial_table(power)
    # Maps whose means all agree to float32 precision (the density contrast of a periodic box is
    # exactly 0) fix the mean: the prior then projects it exactly (NetworkPrior.with_fixed_mean).
    fixed = bool(np.all(high - low <= FIXED_MEAN_TOLERANCE * variance**0.5))
    return {
        "mean": mean.tolist(),
        "fixed_mean": mean.tolist() if fixed else None,
        "std": variance**0.5,
        "checksum": digest.hexdigest(),
        "power": {"k": k.tolist(), "power": table.tolist()},
    }


def train_val_split(
    num: int, val_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) map indices, each sorted: the split `train` makes and records."""
    order = np.random.default_rng(split_seed).permutation(num)
    num_val = max(1, int(round(val_fraction * num)))
    return np.sort(order[num_val:]), np.sort(order[:num_val])


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
            # Kept open for the worker's life: each item reads one map from the file.
            self._fields = field_array(open_store(self.path), self.path, DATASET, RANKS)
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
            raise ValueError(f"val_fraction must be in (0, 1), got {hp.val_fraction}")
        with open_file(hp.path) as store:
            fields = field_array(store, hp.path, DATASET, RANKS)
            num = fields.shape[0]
            if num < 2:
                raise TrainingDataError(hp.path, f"needs at least 2 maps, has {num}", DATASET)
            self.train_indices, self.val_indices = train_val_split(
                num, hp.val_fraction, hp.split_seed
            )
            shape = tuple(int(n) for n in fields.shape[1:])
            self.field_shape = shape if len(shape) == 3 else (1, *shape)
            self.statistics = field_statistics(fields, self.train_indices, hp.path)
            self.attrs = {str(k): plain_attr(v) for k, v in store.attrs.items()}
            self.theta = read_theta(store, hp.path, num)
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
            "fixed_mean": self.statistics["fixed_mean"],
            "data_std": self.statistics["std"],
            "training_power": self.statistics["power"],
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
