"""The LightningModule that trains a score prior: EDM loss, EMA weights, prior-file metadata."""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from posterior_diffusion.networks.flow_matching import OBJECTIVES
from posterior_diffusion.priors.gaussian import GaussianPrior
from posterior_diffusion.priors.prior_file import make_record
from posterior_diffusion.rng import member_seed

from .data import TrainingDataError

# Fixed noise levels (in data standard deviations) of the validation loss, so epochs compare.
VALIDATION_SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def validation_losses(denoiser, batch: Tensor, theta=None, seed: int = 0) -> list[Tensor]:
    """The weighted EDM loss of `denoiser` (a preconditioned network) on `batch` at each of
    VALIDATION_SIGMAS, with noise drawn from `seed`: the validation loss `train` logs, so a prior
    file can be scored after training on the same footing (benchmarks/validation_loss.py)."""
    generator = torch.Generator(device=batch.device).manual_seed(seed)
    std = denoiser.data_std.to(batch.dtype)
    losses = []
    for sigma_n in VALIDATION_SIGMAS:
        noise = torch.randn(batch.shape, generator=generator, device=batch.device)
        noisy = batch + sigma_n * std * noise.to(batch.dtype)
        denoised = denoiser(noisy, sigma_n * std, theta)
        weight = (sigma_n**2 + denoiser.sigma_data**2) / (sigma_n * denoiser.sigma_data) ** 2
        losses.append(weight * ((denoised - batch) / std).square().mean())
    return losses


class ScorePriorModule(L.LightningModule):
    """EDM denoising score matching for one network; its EMA copy (or, on request, the network
    itself: `export_weights`) is the prior that ships.

    Args:
        net: the network F(x, c_noise), injected by class_path (e.g. posterior_diffusion.networks.UNet).
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up [optimizer steps].
        lr_decay_steps: if > 0, the learning rate then falls linearly to 0 at this step (set
            `--trainer.max_steps` to the same number); 0 keeps it constant.
        ema_decay: EMA decay per step (ramped up as (1 + step) / (10 + step) early on).
        export_weights: "ema" (the moving average) or "live" (the trained weights themselves)
            in the prior file, and in the validation loss. With a learning rate that falls to 0
            the live weights drew 3-4.5% more power per k bin than their average on the default
            prior (docs/default_prior.md, "The averaged weights are the lag").
        log_sigma_mean: mean of ln(sigma / data std) drawn in training (EDM's P_mean).
        log_sigma_std: its standard deviation (EDM's P_std).
        sigma_data: standard deviation of the standardised data.
        hybrid_power_spectrum: a power-spectrum table (k [cycles/pixel], P): train the residual
            on top of this analytic Gaussian prior (hybrid prior) instead of the full denoiser.
        objective: "edm" (denoising score matching, Karras et al. 2022) or "flow_matching"
            (linear paths, Lipman et al. 2022; networks/flow_matching.py). Both give a denoiser,
            so every sampler takes either; the log_sigma_* settings are EDM's only.
        condition_dropout: for a conditional network (`condition_dim` > 0, data with a `theta`
            dataset): the probability that a map's theta is dropped in a training step, so the
            one network also learns the unconditional denoiser classifier-free guidance needs.
    """

    def __init__(
        self,
        net: nn.Module,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 200,
        lr_decay_steps: int = 0,
        ema_decay: float = 0.999,
        export_weights: str = "ema",
        log_sigma_mean: float = -1.2,
        log_sigma_std: float = 1.2,
        sigma_data: float = 1.0,
        hybrid_power_spectrum: str | None = None,
        objective: str = "edm",
        condition_dropout: float = 0.1,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        if not hasattr(net, "config"):
            raise TypeError(f"{type(net).__name__} must have config() to be saved in a prior file")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got '{objective}'")
        if hybrid_power_spectrum and objective != "edm":
            raise ValueError("a hybrid prior (hybrid_power_spectrum) needs objective 'edm'")
        if export_weights not in ("ema", "live"):
            raise ValueError(f"export_weights must be 'ema' or 'live', got '{export_weights}'")
        if lr_decay_steps < 0:
            raise ValueError(f"lr_decay_steps must be >= 0, got {lr_decay_steps}")
        if not 0 <= condition_dropout < 1:
            raise ValueError(f"condition_dropout must be in [0, 1), got {condition_dropout}")
        self.model = OBJECTIVES[objective](net, sigma_data)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.data_description: dict[str, Any] = {}

    # -- set-up from the data ---------------------------------------------------------------
    def setup(self, stage: str) -> None:
        check_strategy(self.trainer.strategy)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule, "statistics", None) is None:
            return
        description = datamodule.describe()
        channels = self.model.net.config()["channels"]
        if description["channels"] != channels:
            raise TrainingDataError(
                datamodule.hparams.path,
                f"holds {description['channels']} channel(s), the network {channels}",
                "fields",
            )
        description["condition"] = self._check_condition(description.get("condition"), datamodule)
        self.data_description = description
        for model in (self.model, self.ema):
            model.set_normalisation(description["data_mean"], description["data_std"])
            if description["condition"]:
                condition = description["condition"]
                model.set_condition_normalisation(condition["mean"], condition["std"])
        if self.hparams.hybrid_power_spectrum and self.model.base is None:
            base = GaussianPrior.from_file(
                self.hparams.hybrid_power_spectrum, tuple(description["field_shape"])
            )
            self.model.base, self.ema.base = base, copy.deepcopy(base)

    def _check_condition(self, condition: dict | None, datamodule: Any) -> dict | None:
        """The prior file's `condition` entry: the data's theta statistics when the network is
        conditional; refuses a conditional network without theta, or with another count."""
        wanted = self.model.condition_dim
        path = datamodule.hparams.path
        if not wanted:
            if condition:
                import warnings

                warnings.warn(
                    f"{path} has a 'theta' dataset but the network has condition_dim 0: training "
                    "an unconditional prior (set --model.net.init_args.condition_dim "
                    f"{len(condition['names'])} for p(x | theta))",
                    stacklevel=2,
                )
            return None
        if not condition:
            raise TrainingDataError(
                path,
                f"the network is conditioned on {wanted} parameter(s) (condition_dim) but the "
                "file has no 'theta' dataset",
            )
        if len(condition["names"]) != wanted:
            raise TrainingDataError(
                path,
                f"has {len(condition['names'])} parameter(s), the network's condition_dim is "
                f"{wanted}",
                "theta",
            )
        return {**condition, "dropout": self.hparams.condition_dropout}

    def _fields_and_theta(self, batch: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Any]:
        fields, theta = batch if isinstance(batch, list | tuple) else (batch, None)
        return fields, theta if self.model.condition_dim else None

    # -- training ---------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # seed_everything gives every DDP rank the same seed, so without this all ranks would
        # draw the same noise levels, noise and augmentations each step (on other maps). One
        # process keeps its seed; rank r > 0 continues from the stream (seed, r).
        rank = self.trainer.global_rank
        if rank > 0:
            torch.manual_seed(member_seed(torch.initial_seed(), rank))

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        fields, theta = self._fields_and_theta(batch)
        hp = self.hparams
        loss = self.model.loss(
            fields, hp.log_sigma_mean, hp.log_sigma_std, theta, hp.condition_dropout
        )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                ema.lerp_(live.detach(), 1.0 - decay)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """EMA denoiser's weighted loss at fixed noise levels, with noise fixed per batch (a
        conditional prior's with every map's theta)."""
        batch, theta = self._fields_and_theta(batch)
        losses = validation_losses(self.exported(), batch, theta, seed=batch_idx)
        for sigma_n, value in zip(VALIDATION_SIGMAS, losses, strict=True):
            self.log(f"val/loss_sigma_{sigma_n:g}", value, batch_size=len(batch), sync_dist=True)
        loss = torch.stack(losses).mean()
        # sync_dist: under DDP each rank validates its share of the maps; the epoch value is the
        # mean over every rank's maps (Lightning all-reduces the running sums at epoch end).
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch), sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        hp = self.hparams
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, hp.warmup_steps, hp.lr_decay_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- what is saved ----------------------------------------------------------------------
    def exported(self) -> nn.Module:
        """The weights that ship: the EMA copy, or the trained network (`export_weights`)."""
        return self.model if self.hparams.export_weights == "live" else self.ema

    def prior_record(self) -> dict[str, Any]:
        """The exported prior as a prior-file record (see priors/prior_file.py)."""
        from posterior_diffusion.version import __version__

        exported = self.exported()
        net = exported.net
        metadata = {
            **self.data_description,
            "network": {"name": type(net).__name__, "config": net.config()},
            "sigma_data": exported.sigma_data,
            "hybrid": exported.base is not None,
            "hybrid_power_spectrum": self.hparams.hybrid_power_spectrum,
            "objective": self.hparams.objective,
            "exported_weights": self.hparams.export_weights,
            "ema_decay": self.hparams.ema_decay,
            "lr_decay_steps": self.hparams.lr_decay_steps,
            "training_steps": int(self.global_step),
            "training_loss": _float_or_none(self.trainer.callback_metrics.get("train/loss"))
            if self._trainer is not None
            else None,
            "validation_loss": _float_or_none(self.trainer.callback_metrics.get("val/loss"))
            if self._trainer is not None
            else None,
            "log_sigma_mean": self.hparams.log_sigma_mean,
            "log_sigma_std": self.hparams.log_sigma_std,
            "posterior_diffusion_version": __version__,
            "torch_version": torch.__version__,
        }
        return make_record(exported.state_dict(), metadata)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.data_description:
            checkpoint["prior"] = self.prior_record()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Keep what the data were, so a prior file saved later in a resumed run still says it.
        prior = checkpoint.get("prior")
        if prior is not None:
            import json

            saved = json.loads(prior["metadata_json"])
            self.data_description = {k: saved[k] for k in saved if k in _DATA_KEYS}


def lr_factor(step: int, warmup_steps: int, decay_steps: int) -> float:
    """The learning rate's multiplier at `step`: linear warm-up, then constant, or with
    `decay_steps` > 0 falling linearly to 0 at that step."""
    factor = min(1.0, (step + 1) / max(1, warmup_steps))
    if decay_steps > 0:
        factor *= max(0.0, 1.0 - step / decay_steps)
    return factor


def check_strategy(strategy: Any) -> None:
    """Refuse strategies that shard parameters (FSDP, DeepSpeed, model parallel): the EMA update
    and the exported prior need whole weights on every rank, and networks this small (under a
    few million parameters) gain nothing from sharding. One process or DDP (docs/scaling.md)."""
    from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

    if not isinstance(strategy, DDPStrategy | SingleDeviceStrategy):
        raise TrainingStrategyError(
            f"training strategy {type(strategy).__name__} is not supported: it shards the "
            "network's weights, which the EMA prior needs whole; use --trainer.strategy ddp"
        )


class TrainingStrategyError(ValueError):
    """A Lightning strategy the trainer cannot use (one line)."""


_DATA_KEYS = (
    "field_shape",
    "channels",
    "pixel_scale_arcmin",
    "data_kind",
    "data_parameters",
    "data_file",
    "data_checksum",
    "data_mean",
    "fixed_mean",
    "data_std",
    "training_power",
    "periodic",
    "num_train_maps",
    "condition",
)


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
