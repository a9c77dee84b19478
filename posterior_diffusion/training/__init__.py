"""Training score priors with Lightning: data, the EDM LightningModule, and prior export."""

from __future__ import annotations

from .data import FieldDataModule, TrainingDataError
from .export import ExportPrior
from .module import ScorePriorModule

__all__ = ["ExportPrior", "FieldDataModule", "ScorePriorModule", "TrainingDataError"]
