"""A conditional prior marginalised over a theta grid: its components are the conditioned
priors, `guided` weighs them by their evidence computed through the network's own Jacobian, and
on a network that is exactly the Gaussian denoiser of each theta the weights and the posterior
are the exact mixture's. Control: the same network without theta (for this oracle, the Gaussian
at the box centre; for a trained one, the marginal over its training box: in neither case this
grid's mixture) fails the component check."""

from __future__ import annotations

import pytest
import torch
from oracle_conditional import SHAPE, oracle_prior

from forward_models import ForwardModel, GaussianNoise, Mask
from posterior_diffusion.likelihood import WhitenedLinearGaussian
from posterior_diffusion.masks import survey_mask
from posterior_diffusion.priors import GaussianPrior
from posterior_diffusion.priors.mixture import GaussianMixturePrior
from posterior_diffusion.priors.parameter_grid import MAX_GRID_POINTS, ParameterGridPrior
from posterior_diffusion.priors.power_spectrum import PowerLawSpectrum
from posterior_diffusion.priors.prior_file import PriorFileError
from posterior_diffusion.references.compare import component_tv_tolerance
from posterior_diffusion.references.mixture import mixture_exact_posterior
from posterior_diffusion.references.problems import draw_observations
from posterior_diffusion.samplers.evidence import latent_component_weights
from posterior_diffusion.samplers.run import sample_posterior

THETAS = [(0.6, -1.75), (1.0, -1.75), (1.7, -1.75)]
N = 256


@pytest.fixture(scope="module")
def problem():
    exact_prior = GaussianMixturePrior(
        [GaussianPrior(PowerLawSpectrum(*t), SHAPE) for t in THETAS], [1.0] * len(THETAS)
    )
    mask = torch.from_numpy(survey_mask(SHAPE[1:], hole_fraction=0.25, seed=0))
    model = ForwardModel(Mask(mask), GaussianNoise(0.6, mask), SHAPE, name="inpainting")
    observations = draw_observations(exact_prior, model, 4, seed=2)
    return exact_prior, model, observations


def test_grid_weights_from_the_network_jacobian_are_the_exact_evidence_weights(problem):
    exact_prior, model, observations = problem
    grid = ParameterGridPrior(oracle_prior(), THETAS)
    spread = []
    for _, y in observations:
        found = latent_component_weights(grid, WhitenedLinearGaussian(model, y)).weights
        exact = mixture_exact_posterior(exact_prior, model, y).weights
        torch.testing.assert_close(found, exact, rtol=0, atol=1e-6)
        spread.append(float(exact.max()))
    assert min(spread) < 0.9  # the data leave theta uncertain in some observation


def test_grid_prior_samples_the_mixture_posterior_and_the_marginal_does_not(problem):
    exact_prior, model, observations = problem
    network = oracle_prior()
    tvs = {"grid": [], "marginal": []}
    for k, (_, y) in enumerate(observations):
        exact = mixture_exact_posterior(exact_prior, model, y)
        tolerance = component_tv_tolerance(exact.weights, N)
        for name, prior in (("grid", ParameterGridPrior(network, THETAS)), ("marginal", network)):
            samples, info = sample_posterior(prior, model, y, N, seed=k, progress=False)
            tvs[name].append(exact.component_tv(samples) / tolerance)
        assert info["sampler"] == "guided"
    assert max(tvs["grid"]) <= 1, tvs
    assert max(tvs["marginal"]) > 1, tvs  # control: without the grid the check fails


def test_grid_is_checked_and_recorded():
    network = oracle_prior()
    grid = ParameterGridPrior.from_ranges(
        network, {"slope": (-2.0, -1.5, 2), "amplitude": (0.5, 1.5, 3)}
    )
    assert grid.thetas[:2] == [[0.5, -2.0], [0.5, -1.5]] and len(grid.thetas) == 6
    assert grid.identity()["theta_grid"]["weights"] == pytest.approx([1 / 6] * 6)
    assert grid.identity()["checksum"] == network.identity()["checksum"]
    with pytest.raises(ValueError, match="a range for each of amplitude, slope"):
        ParameterGridPrior.from_ranges(network, {"amplitude": (0.5, 1.5, 3)})
    with pytest.raises(ValueError, match="need low <= high"):
        ParameterGridPrior.from_ranges(network, {"amplitude": (2, 1, 3), "slope": (-2, -1, 2)})
    with pytest.raises(ValueError, match=f"1 to {MAX_GRID_POINTS} points"):
        ParameterGridPrior(network, [])
    with pytest.raises(ValueError, match="one finite weight > 0 per grid point"):
        ParameterGridPrior(network, THETAS, weights=[1, 0, 1])
    unconditional = oracle_prior()
    unconditional.metadata = {**unconditional.metadata, "condition": None}
    with pytest.raises(PriorFileError, match="trained without parameters"):
        ParameterGridPrior(unconditional, THETAS)
