"""The lensing E/B-mode section shared by the calibration and posterior reports: its caption,
table and key numbers, from `calibration.aggregate.eb_modes`' results."""

from __future__ import annotations

from typing import Any

import numpy as np

from .tables import columns
from .writer import Table

EB_CAPTION = (
    "Kaiser-Squires E and B power of the residual y - A(x) on the observed pixels, for x the "
    "posterior samples (blue) and the posterior mean (orange), and of the observed shear "
    "(purple, dotted), against the noise level (grey line: sigma^2 times the observed "
    "fraction). Calibrated: the samples' residual follows the noise level in E and B (its "
    "covariance is the noise's); the mean's E residual is lower where the data constrain the "
    "field (it fits part of the noise), its B residual at the noise level. Without a mask the "
    "three B curves coincide (A(x) has no B mode): the data's B power is a null test, noise "
    "only; a mask adds E leaking into B. Above the noise: the samples do not fit the data; "
    "below: they overfit it. Bands: 2 standard errors from the scatter between tests (one "
    "test: the 95% range of one noise map's power)."
)


def eb_table(eb: dict[str, Any]) -> Table:
    """eb_modes.csv: E and B power per k bin of the noise, the data and the residuals."""
    named: dict[str, Any] = {"k": eb["k"], "modes": eb["modes"]}
    for source in ("noise", "data", "mean", "samples"):
        for mode in "eb":
            named[f"{source}_{mode}"] = eb[f"{source}_{mode}"]
            if source != "noise":
                named[f"{source}_{mode}_se"] = eb[f"{source}_{mode}_se"]
    return Table(
        "eb_modes",
        "lensing E/B power (k in cycles/pixel, P in shear^2 pixel^2) of the noise, the data "
        "and the residuals y - A(mean), y - A(samples); se: standard error over tests",
        *columns(**named),
    )


def eb_highlights(eb: dict[str, Any]) -> list[tuple[str, str]]:
    """Key-number rows: residual and data power over the noise power, E and B."""

    def ratio(source: str, mode: str) -> str:
        value, se = eb[f"{source}_{mode}_over_noise"], eb[f"{source}_{mode}_over_noise_se"]
        shown = f"{value:.3f}" if np.isfinite(value) else "n/a"
        return shown + (f" +- {se:.3f}" if np.isfinite(se) else "")

    return [
        (
            "E/B residual power / noise: samples",
            f"E {ratio('samples', 'e')}, B {ratio('samples', 'b')} (calibrated 1)",
        ),
        (
            "E/B residual power / noise: posterior mean",
            f"E {ratio('mean', 'e')} (calibrated < 1), B {ratio('mean', 'b')} (1 without a mask)",
        ),
        ("B power of the data / noise", f"{ratio('data', 'b')} (1 without a mask)"),
    ]
