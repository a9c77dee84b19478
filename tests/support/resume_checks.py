"""Killing an ensemble sampler mid-run, for the resume tests of `smc` and `twisted`."""

from __future__ import annotations


def kill_at_level(module, monkeypatch, level: int) -> list[int]:
    """Make `module`'s per-level `report` raise KeyboardInterrupt at `level` (the final report,
    which carries the diagnostics, never); returns the list that every reported level is
    appended to, to see where a resumed run started."""
    report, levels = module.report, []

    def killed(callback, **state):
        levels.append(state["i"])
        if state["i"] == level and "diagnostics" not in state:
            raise KeyboardInterrupt
        report(callback, **state)

    monkeypatch.setattr(module, "report", killed)
    return levels
