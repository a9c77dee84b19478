"""Where plain `guided` was measured off (a learned non-Gaussian prior behind shear,
docs/samplers.md) it refines by default, and warns only when told not to; elsewhere neither."""

from __future__ import annotations

import warnings

import pytest
import torch

from posterior_diffusion.priors import GaussianPrior, default_prior
from posterior_diffusion.references.gold_standard import lognormal_problem
from posterior_diffusion.samplers import SAMPLERS
from posterior_diffusion.samplers.guided import (
    REFINE_BEHIND_SHEAR,
    GlobalStatisticsWarning,
    prepare_guided,
)

SHAPE = (12, 16)


def options_and_diagnostics(prior, kind: str, options: dict) -> tuple[dict, dict]:
    """guided's options with the problem's defaults, and the run's diagnostics from
    `prepare_guided`, on the R2 problem `kind`."""
    model = lognormal_problem(kind, SHAPE).model
    options = SAMPLERS["guided"].with_defaults(options, prior, model)
    y = torch.zeros(model.data_shape)
    return options, prepare_guided(prior, model, y, 0, 96, options)[1]


def test_a_learned_convergence_prior_behind_shear_is_refined_by_default():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GlobalStatisticsWarning)
        options, diagnostics = options_and_diagnostics(default_prior((1, *SHAPE)), "lensing", {})
    assert options == {"stochastic": True, **REFINE_BEHIND_SHEAR}
    assert diagnostics == {}


def test_turning_the_refinement_off_there_warns_and_the_run_keeps_it():
    with pytest.warns(GlobalStatisticsWarning, match="convergence fields behind shear") as seen:
        options, diagnostics = options_and_diagnostics(
            default_prior((1, *SHAPE)), "lensing", {"refine_moves": 0}
        )
    assert options["refine_moves"] == 0
    assert diagnostics == {"global_statistics_warning": str(seen[0].message)}


@pytest.mark.parametrize(
    "learned, kind", [(True, "mask"), (False, "lensing")],
    ids=["learned prior, mask + noise", "Gaussian prior, shear"],
)  # fmt: skip
def test_problems_measured_to_pass_keep_plain_guided_and_do_not_warn(learned, kind):
    if learned:
        prior = default_prior((1, *SHAPE))
    else:
        prior = GaussianPrior(lambda k: 1.0 / (1e-3 + k**2), (1, *SHAPE))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GlobalStatisticsWarning)
        options, diagnostics = options_and_diagnostics(prior, kind, {})
    assert "refine_moves" not in options
    assert diagnostics == {}
