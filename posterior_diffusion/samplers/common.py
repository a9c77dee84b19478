"""What every sampler shares: the step callback that exposes its trajectory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Called with each step's state ({'i', 'sigma', 'x', 'denoised'}); `guided`'s refinement also
# calls it after each of its moves with {'refine_move': True, 'x'} (progress only).
StepCallback = Callable[[dict[str, Any]], None]


def report(callback: StepCallback | None, **state: Any) -> None:
    """Hand the step's state ({'i', 'sigma', 'x', 'denoised'}) to the callback, if any."""
    if callback is not None:
        callback(state)
