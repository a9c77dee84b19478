"""A trained denoiser behind the `Prior` contract, loaded from a prior file (weights_only).

The network is standardised by EDM preconditioning (`networks/edm.py`); samplers see the same
denoiser, score and Tweedie covariance products as for the analytic Gaussian prior. Fully
convolutional networks run on maps of other sizes than they were trained on: valid for
statistically homogeneous fields whose correlation length is well inside the training map, and
only for map sides that divide by the network's size multiple. Hybrid priors are tied to their
Gaussian part's grid, so to the training size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import DRAW_STEPS, Prior
from .draw import draw_fields
from .gaussian import GaussianPrior
from .power_spectrum import PowerSpectrumError, TabulatedPowerSpectrum, power_on_grid
from .prior_file import PriorFileError, load_record

# Sampling range in units of the data's standard deviation. 40 std is not pure noise for the
# largest modes of a red spectrum (the default one has P_max = 213 x the pixel variance on 64 x 64,
# so P_max / sigma^2 = 0.13), but training still sees such noise levels, and on P2 at 32 x 32 the
# guided sampler with the exact denoiser (through autograd) gave a median std ratio of 1.003
# starting there, against 1.02 from 1460 std (one observation, 256 samples each). Below 1e-3 std
# D is the identity to well under the data's precision.
SIGMA_MAX_IN_STD = 40.0
SIGMA_MIN_IN_STD = 1e-3
PRECISIONS = ("fp32", "bf16")


# Largest channel count or map side a prior file's metadata may declare.
MAX_FIELD_SIDE = 65536


# Longest power-spectrum table a prior file's metadata may hold (rows per channel).
MAX_POWER_ROWS = 65536


def power_tables(record: Any, channels: int) -> list[TabulatedPowerSpectrum] | None:
    """One `TabulatedPowerSpectrum` per channel from metadata {"k": [...], "power": [[...]]}
    (None when absent). Raises PowerSpectrumError (one line) when malformed."""
    if record is None:
        return None
    if not isinstance(record, dict) or set(record) != {"k", "power"}:
        raise PowerSpectrumError("must be {'k': [...], 'power': [[...] per channel]}")
    k, power = record["k"], record["power"]
    if not (isinstance(k, list) and 2 <= len(k) <= MAX_POWER_ROWS):
        raise PowerSpectrumError(f"k must be a list of 2 to {MAX_POWER_ROWS} numbers")
    if not (isinstance(power, list) and len(power) == channels):
        raise PowerSpectrumError(f"power must hold one row list per channel ({channels})")
    if not all(isinstance(row, list) and len(row) == len(k) for row in power):
        raise PowerSpectrumError(f"each channel's power must have {len(k)} numbers, as k")
    try:
        k_rows = np.asarray(k, dtype=np.float64)
        rows = [np.asarray(row, dtype=np.float64) for row in power]
    except (TypeError, ValueError):
        raise PowerSpectrumError("k and power must be numbers") from None
    if not (k_rows[0] == 0 and k_rows[-1] >= 0.5**0.5):  # any grid's |k| lies in [0, sqrt(1/2)]
        raise PowerSpectrumError("k must run from 0 to at least sqrt(1/2) cycles/pixel")
    return [TabulatedPowerSpectrum(k_rows, row, f"channel {c}") for c, row in enumerate(rows)]


def _check_numbers(metadata: dict[str, Any], channels: int, path) -> None:
    """The normalisation numbers a sampler relies on: finite, and positive where they are
    scales, so that a damaged or edited file fails here in one line, not as a divergence."""
    for key in ("data_std", "sigma_data"):
        value = metadata[key]
        if not (isinstance(value, int | float) and not isinstance(value, bool)):
            raise PriorFileError(f"{path}: metadata {key} must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise PriorFileError(f"{path}: metadata {key} must be finite and > 0, got {value!r}")
    for key in ("data_mean", "fixed_mean"):
        mean = metadata.get(key)
        if mean is not None and not (
            isinstance(mean, list)
            and len(mean) == channels
            and all(isinstance(m, int | float) and math.isfinite(m) for m in mean)
        ):
            raise PriorFileError(
                f"{path}: metadata {key} must be {channels} finite number(s), got {mean!r}"
            )


class NetworkPrior(Prior):
    """D(x, sigma) from an `EDMPrecond` (or flow-matching) network, with its training metadata.

    Args:
        precond: the preconditioned network (weights loaded).
        metadata: the prior file's metadata (field shape, normalisation, data checksum, ...).
        source: where it came from, for provenance.
        checksum: the prior file's checksum.
    """

    can_sample = True
    learned = True

    def __init__(
        self, precond: torch.nn.Module, metadata: dict[str, Any], source: str, checksum: str
    ):
        super().__init__()
        self.precond = precond.eval().requires_grad_(False)
        self.metadata = dict(metadata)
        self.source, self.checksum = source, checksum
        self.trained_shape = tuple(int(n) for n in metadata["field_shape"])
        self.field_shape = self.trained_shape if metadata["hybrid"] else None
        self.precision = "fp32"
        self.compiled = False
        self.power_tables = power_tables(metadata.get("training_power"), self.trained_shape[0])
        fixed = metadata.get("fixed_mean")
        self.fixed_mean = None if fixed is None else torch.tensor(fixed, dtype=torch.float64)
        self._power_grids: dict[tuple[int, int], Tensor] = {}

    def configure(
        self, precision: str = "fp32", channels_last: bool = False, compile: bool | str = False
    ) -> NetworkPrior:
        """Speed settings of the network; returns self.

        precision "bf16" runs the network's convolutions and matrix products under bfloat16
        autocast (the preconditioning and everything outside the network stay in the sampler's
        dtype); `channels_last` stores its weights NHWC; `compile` (True, or a torch.compile mode
        such as "reduce-overhead", which adds CUDA graphs) compiles it for fixed shapes, so each
        new batch or map shape compiles anew (about 70 s on an H100). Measured effects on speed
        and calibration: benchmarks/README.md.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
        self.precision = precision
        if channels_last:
            self.precond.net.to(memory_format=torch.channels_last)
        if compile and not self.compiled:
            mode = compile if isinstance(compile, str) else None
            self.precond.net.compile(dynamic=False, mode=mode)
            self.compiled = True
        return self

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> NetworkPrior:
        """Load and validate a prior file or a training checkpoint.

        Raises:
            PriorFileError: one line naming the file and what is wrong with it.
        """
        from posterior_diffusion.networks import NETWORKS
        from posterior_diffusion.networks.flow_matching import OBJECTIVES

        metadata, state, checksum = load_record(path)
        network = metadata["network"]
        name = network.get("name") if isinstance(network, dict) else None
        if name not in NETWORKS:
            raise PriorFileError(
                f"{path}: unknown network '{name}' (this version builds: {', '.join(NETWORKS)})"
            )
        objective = metadata.get("objective", "edm")  # files before flow matching are EDM
        if objective not in OBJECTIVES:
            raise PriorFileError(
                f"{path}: unknown training objective '{objective}' (this version knows: "
                f"{', '.join(OBJECTIVES)})"
            )
        shape = metadata["field_shape"]
        if not (
            isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(n, int) and 0 < n <= MAX_FIELD_SIDE for n in shape)
        ):
            raise PriorFileError(
                f"{path}: metadata field_shape must be [C, H, W] of positive integers up to "
                f"{MAX_FIELD_SIDE}, got {shape!r}"
            )
        _check_numbers(metadata, int(shape[0]), path)
        try:
            # Built on the meta device first: a config asking for a network far larger than the
            # file's weights is refused before anything is allocated.
            with torch.device("meta"):
                sized = NETWORKS[name](**network.get("config", {}))
            wanted = sum(t.numel() for t in sized.state_dict().values())
            stored = sum(t.numel() for k, t in state.items() if k.startswith("net."))
            if wanted != stored:
                raise ValueError(
                    f"its config asks for {wanted} numbers, the file holds {stored} network weights"
                )
            net = NETWORKS[name](**network.get("config", {}))
            base = None
            if metadata["hybrid"]:
                base = GaussianPrior.from_power_grid(
                    state["base.power"], int(metadata["channels"]), name=f"{Path(path).name}:base"
                )
            precond = OBJECTIVES[objective](net, float(metadata["sigma_data"]), base=base)
            precond.load_state_dict(state, strict=True)
        except (TypeError, KeyError, RuntimeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0][:200]
            raise PriorFileError(
                f"{path}: weights do not fit network '{name}' ({reason})"
            ) from None
        try:
            return cls(precond, metadata, source=str(path), checksum=checksum)
        except PowerSpectrumError as err:
            raise PriorFileError(f"{path}: metadata training_power: {err}") from None

    def check_fields(
        self,
        field_shape: tuple[int, ...],
        pixel_scale_arcmin: float | None = None,
        where: str = "observation",
    ) -> None:
        """Refuse fields this prior cannot describe: channels, map size, pixel scale.

        Raises:
            PriorFileError: one line naming the prior file and the mismatch.
        """
        channels, height, width = (1, *field_shape) if len(field_shape) == 2 else field_shape
        trained_c, trained_h, trained_w = self.trained_shape
        if channels != trained_c:
            raise PriorFileError(
                f"{self.source}: prior has {trained_c} channel(s), the {where} {channels}"
            )
        if self.metadata["hybrid"] and (height, width) != (trained_h, trained_w):
            raise PriorFileError(
                f"{self.source}: hybrid prior is for {trained_h} x {trained_w} maps, the {where} "
                f"is {height} x {width}"
            )
        multiple = int(self.precond.net.size_multiple())
        if height % multiple or width % multiple:
            raise PriorFileError(
                f"{self.source}: this network needs map sides that are multiples of {multiple}, "
                f"the {where} is {height} x {width}"
            )
        trained_scale = self.metadata.get("pixel_scale_arcmin")
        if trained_scale is not None and pixel_scale_arcmin is not None:
            if abs(float(trained_scale) - float(pixel_scale_arcmin)) > 1e-6 * float(trained_scale):
                raise PriorFileError(
                    f"{self.source}: prior trained at {trained_scale} arcmin per pixel, the "
                    f"{where} has {pixel_scale_arcmin}"
                )

    def stationary_power(self, field_shape: tuple[int, ...]) -> Tensor | None:
        """The training maps' power spectrum (metadata `training_power`) on this grid, per
        channel; None for files trained before it was recorded."""
        if self.power_tables is None:
            return None
        height, width = (int(n) for n in field_shape[-2:])
        if (height, width) not in self._power_grids:
            grids = [power_on_grid(table, height, width) for table in self.power_tables]
            self._power_grids[height, width] = torch.from_numpy(np.stack(grids))
        return self._power_grids[height, width]

    @property
    def condition(self) -> dict[str, Any] | None:
        """Names, training mean/std/range and dropout of theta for a conditional prior, else None."""
        return self.metadata.get("condition") or None

    def denoise(
        self, x: Tensor, sigma: Tensor | float, condition: Sequence[float] | None = None
    ) -> Tensor:
        """D(x, sigma), or D(x, sigma | theta) with `condition` theta of a conditional prior (for
        which the plain call gives the unconditional denoiser, of the marginal prior)."""
        batch_shape = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        sigma = sigma.expand(batch_shape).reshape(-1) if sigma.ndim else sigma
        if self.fixed_mean is not None:
            flat = self.with_fixed_mean(flat)
        bf16 = self.precision == "bf16"
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            denoised = self.precond(flat, sigma, condition)
        if self.fixed_mean is not None:
            denoised = self.with_fixed_mean(denoised)
        return denoised.reshape(x.shape)

    def with_fixed_mean(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) with each map's mean set to the prior's fixed one, per channel.

        Every training map had this mean (metadata `fixed_mean`, e.g. the density contrast of a
        periodic box), so the exact denoiser's output has it, and its input's mean is pure noise
        that it ignores: D(x) = m + P D(P x + m), with P removing each map's mean. Projecting
        both sides keeps the Jacobian P J P symmetric, so the guidance's vector-Jacobian products
        cannot move the mean either. Without it the shipped density prior's maps had means
        scattering by 0.005 rms about the simulations' exact 0 (docs/density_prior.md).
        """
        mean = self.fixed_mean.to(device=x.device, dtype=x.dtype)[:, None, None]
        return x - x.mean(dim=(-2, -1), keepdim=True) + mean

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        field_shape: tuple[int, ...] | None = None,
        steps: int = DRAW_STEPS,
    ) -> Tensor:
        """`num` fields drawn by the reverse SDE (priors.draw), shape (num, C, H, W): of
        `field_shape` ((H, W) means one channel), or of the training shape."""
        shape = self.draw_shape(field_shape)
        return draw_fields(self, num, generator, shape, steps, self.device).to(dtype)

    def draw_shape(self, field_shape: tuple[int, ...] | None) -> tuple[int, int, int]:
        """(C, H, W) of fields to draw: `field_shape` checked as for an observation, or the
        training shape."""
        shape = self.trained_shape if field_shape is None else tuple(field_shape)
        shape = (1, *shape) if len(shape) == 2 else shape
        self.check_fields(shape, where="requested field")
        return shape

    @property
    def device(self) -> torch.device:
        """Where the network's weights are, so where its draws' random streams run."""
        return self.precond.data_std.device

    def data_std(self) -> float:
        return float(self.metadata["data_std"])

    def sigma_max(self) -> float:
        return SIGMA_MAX_IN_STD * self.data_std()

    def sigma_min(self) -> float:
        return SIGMA_MIN_IN_STD * self.data_std()

    def identity(self) -> dict[str, Any]:
        keys = (
            "field_shape",
            "pixel_scale_arcmin",
            "data_kind",
            "data_file",
            "data_checksum",
            "training_steps",
            "posterior_diffusion_version",
            "hybrid",
            "fixed_mean",
        )
        extra = {"training_power_spectrum": self.power_tables is not None}
        extra.update({"precision": self.precision} if self.precision != "fp32" else {})
        objective = self.metadata.get("objective", "edm")
        extra.update({"objective": objective} if objective != "edm" else {})
        if self.condition:  # called without theta: the marginal prior (ConditionedPrior adds it)
            extra.update(conditioned_on=self.condition["names"], theta=None)
        return {
            "name": "hybrid" if self.metadata["hybrid"] else "network",
            "file": self.source,
            "checksum": self.checksum,
            "network": self.metadata["network"].get("name"),
            **{k: self.metadata.get(k) for k in keys},
            **extra,
        }
