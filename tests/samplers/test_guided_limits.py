"""Where plain `guided` was measured off (a learned non-Gaussian prior behind shear,
docs/samplers.md) it refines by default, and warns only when told not to; elsewhere neither. The
same holds for `linearized` (reduced shear), whose final run is `guided`."""

from __future__ import annotations

import warnings

import pytest
import torch

from posterior_diffusion.priors import GaussianPrior, default_prior
from posterior_diffusion.references.gold_standard import lognormal_problem
from posterior_diffusion.samplers import SAMPLERS
from posterior_diffusion.samplers.guided import (
    GlobalStatisticsWarning,
    prepare_guided,
    refine_moves_for,
)
from posterior_diffusion.samplers.linearized import prepare_linearized
from posterior_diffusion.samplers.run import sample_posterior

SHAPE = (12, 16)
# the default refinement on maps up to 32 x 32 (these tests' grids)
REFINE_SMALL_MAPS = {"refine_moves": 100, "refine_sigma": 1.0}


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
    assert options == {"stochastic": True, **REFINE_SMALL_MAPS}
    assert diagnostics == {}


@pytest.mark.parametrize(
    "shape, moves",
    [((1, 24, 32), 100), ((1, 32, 32), 100), ((1, 48, 48), 150), ((1, 64, 64), 200),
     ((1, 256, 256), 200)],
)  # fmt: skip
def test_the_default_number_of_moves_grows_with_the_map_between_the_measured_sizes(shape, moves):
    assert refine_moves_for(shape) == moves


def test_the_shipped_64_by_64_prior_behind_shear_gets_the_larger_maps_moves():
    model = lognormal_problem("lensing", (64, 64)).model
    options = SAMPLERS["guided"].with_defaults({}, default_prior((1, 64, 64)), model)
    assert options["refine_moves"] == 200 and options["refine_sigma"] == 1.0


def test_turning_the_refinement_off_there_warns_and_the_run_keeps_it():
    with pytest.warns(GlobalStatisticsWarning, match="behind shear.*--refine-moves 100") as seen:
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


# Small pilots on a grid the shipped U-Net runs on: these tests check the plumbing.
PILOTS = {"iterations": 1, "pilot_members": 4}
RUN_SHAPE = (16, 16)


def test_linearized_on_reduced_shear_is_refined_by_default():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GlobalStatisticsWarning)
        problem = lognormal_problem("reduced", RUN_SHAPE)
        prior = default_prior((1, *RUN_SHAPE))
        options = SAMPLERS["linearized"].with_defaults(PILOTS, prior, problem.model)
        assert options == {"stochastic": True, **PILOTS, **REFINE_SMALL_MAPS}
        _, info = sample_posterior(prior, problem.model, problem.y, 2, sampler="linearized",
                                   seed=0, steps=8, progress=False,
                                   options={**PILOTS, "refine_moves": 3})  # fmt: skip
    refinement = info["sampler_diagnostics"]["refinement"]
    assert refinement["moves"] == 3 and 0 < refinement["acceptance"] <= 1, refinement


def test_linearized_without_the_refinement_on_reduced_shear_warns():
    problem = lognormal_problem("reduced", RUN_SHAPE)
    prior = default_prior((1, *RUN_SHAPE))
    with pytest.warns(GlobalStatisticsWarning, match="'linearized' without") as seen:
        _, diagnostics = prepare_linearized(
            prior, problem.model, problem.y, 0, 8, {**PILOTS, "refine_moves": 0}
        )
    assert diagnostics == {"global_statistics_warning": str(seen[0].message)}
