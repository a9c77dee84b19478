"""What every sampler shares: the step callback that exposes its trajectory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

StepCallback = Callable[[dict[str, Any]], None]


def report(callback: StepCallback | None, **state: Any) -> None:
    """Hand the step's state ({'i', 'sigma', 'x', 'denoised'}) to the callback, if any."""
    if callback is not None:
        callback(state)
