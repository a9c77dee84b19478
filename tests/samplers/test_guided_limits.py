"""`guided` warns where its global statistics were measured off (docs/samplers.md), and only there."""

from __future__ import annotations

import warnings

import pytest
import torch

from posterior_diffusion.priors import GaussianPrior, default_prior
from posterior_diffusion.references.gold_standard import lognormal_problem
from posterior_diffusion.samplers.guided import GlobalStatisticsWarning, prepare_guided

SHAPE = (12, 16)


def prepare(prior, kind: str) -> dict:
    """The run's diagnostics from `prepare_guided` on the R2 problem `kind`."""
    model = lognormal_problem(kind, SHAPE).model
    return prepare_guided(prior, model, torch.zeros(model.data_shape), 0, 48, {})[1]


def test_a_learned_convergence_prior_behind_shear_warns_and_the_run_keeps_it():
    with pytest.warns(GlobalStatisticsWarning, match="convergence fields behind shear") as seen:
        diagnostics = prepare(default_prior((1, *SHAPE)), "lensing")
    assert diagnostics == {"global_statistics_warning": str(seen[0].message)}


@pytest.mark.parametrize(
    "learned, kind", [(True, "mask"), (False, "lensing")],
    ids=["learned prior, mask + noise", "Gaussian prior, shear"],
)  # fmt: skip
def test_problems_measured_to_pass_do_not_warn(learned, kind):
    if learned:
        prior = default_prior((1, *SHAPE))
    else:
        prior = GaussianPrior(lambda k: 1.0 / (1e-3 + k**2), (1, *SHAPE))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GlobalStatisticsWarning)
        assert prepare(prior, kind) == {}
