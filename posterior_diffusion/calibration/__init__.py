"""Calibration runs: held-out (truth, observation) pairs, posterior sampling, per-test diagnostics,
saved as they finish so that a killed run resumes (docs/calibration.md)."""

from .runner import CalibrationInterrupted, CalibrationRun, run_calibration
from .settings import CalibrationRequest
from .store import ResultStore, ResumeError
from .truths import SimulationsError, SimulationsFile

__all__ = [
    "CalibrationInterrupted",
    "CalibrationRequest",
    "CalibrationRun",
    "ResultStore",
    "ResumeError",
    "SimulationsError",
    "SimulationsFile",
    "run_calibration",
]
