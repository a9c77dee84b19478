"""Component weights above the dense limit: stationary components behind a stationary forward
model get their exact evidence from a kernel over the observed data entries, with any noise map;
a forward model that is not translation invariant still warns and samples blind."""

from __future__ import annotations

import warnings

import pytest
import torch

from forward_models.base import ForwardModel
from forward_models.blur import Blur
from forward_models.compose import Compose
from forward_models.lensing import Shear
from forward_models.mask import Mask
from forward_models.noise import GaussianNoise
from posterior_diffusion.likelihood import WhitenedLinearGaussian
from posterior_diffusion.references.mixture import mixture_exact_posterior
from posterior_diffusion.references.problems import (
    draw_observations,
    mixture_prior,
    mixture_problem,
)
from posterior_diffusion.samplers import evidence, stationary_evidence
from posterior_diffusion.samplers.evidence import ComponentWeightsWarning, latent_component_weights

SHAPE = (12, 16)


def noise_map_problem(operator: str):
    """The amplitude mixture behind a mask, with a noise std that varies 3x across the map."""
    h, w = SHAPE
    prior = mixture_prior("amplitude", SHAPE)
    mask = torch.ones(SHAPE, dtype=torch.float64)
    mask[3:6, 4:9] = 0
    mask[:, -1] = 0
    ramp = torch.linspace(0.5, 1.5, w, dtype=torch.float64).expand(h, w)
    sigma = ramp * prior.pixel_variance() ** 0.5
    if operator == "lensing":
        model = ForwardModel(
            Compose(Shear(SHAPE), Mask(mask)), GaussianNoise(sigma, mask), (1, h, w), name="l"
        )
    else:  # an asymmetric PSF, so the transfer function is complex
        psf = torch.tensor([[0.1, 0.3, 0.1], [0.2, 1.0, 0.05], [0.0, 0.2, 0.1]])
        model = ForwardModel(
            Compose(Blur(psf / psf.sum(), SHAPE), Mask(mask)),
            GaussianNoise(sigma, mask),
            (1, h, w),
            name="b",
        )
    return prior, model


@pytest.mark.parametrize("operator", ["lensing", "blur"])
def test_stationary_weights_are_the_exact_ones_with_a_noise_map(monkeypatch, operator):
    prior, model = noise_map_problem(operator)
    monkeypatch.setattr(evidence, "MAX_DENSE", 10)  # force the stationary route
    for _, y in draw_observations(prior, model, 3, seed=2):
        found = latent_component_weights(prior, WhitenedLinearGaussian(model, y))
        exact = mixture_exact_posterior(prior, model, y).weights
        assert found.stationary_departure == pytest.approx(0, abs=1e-10)
        assert torch.allclose(found.weights, exact, rtol=0, atol=1e-9), (found.weights, exact)
        assert "power spectrum" in found.as_dict()["evidence"]


@pytest.mark.parametrize("kind", ["mask", "lensing"])
def test_stationary_log_evidence_matches_the_dense_one(monkeypatch, kind):
    prior, model = mixture_problem("slope", kind, SHAPE, noise=1.5)
    _, y = draw_observations(prior, model, 1, seed=3)[0]
    likelihood = WhitenedLinearGaussian(model, y)
    dense = latent_component_weights(prior, likelihood)
    monkeypatch.setattr(evidence, "MAX_DENSE", 10)
    stationary = latent_component_weights(prior, likelihood)
    assert torch.allclose(stationary.log_evidence, dense.log_evidence, rtol=0, atol=1e-8)


@pytest.mark.parametrize(("kind", "model_kind"), [("amplitude", "lensing"), ("slope", "mask")])
def test_with_homogeneous_noise_the_unobserved_entries_suffice(monkeypatch, kind, model_kind):
    """Too many observed entries for the observed route, few enough unobserved ones: the
    complement identity gives the exact weights from a matrix over the unobserved entries."""
    prior, model = mixture_problem(kind, model_kind, SHAPE, noise=1.5)
    monkeypatch.setattr(evidence, "MAX_DENSE", 10)
    for _, y in draw_observations(prior, model, 3, seed=5):
        likelihood = WhitenedLinearGaussian(model, y)
        operator = stationary_evidence.stationary_operator(likelihood)
        unobserved = int((operator[1] == 0).sum())
        assert unobserved < int((operator[1] != 0).sum())
        monkeypatch.setattr(stationary_evidence, "MAX_OBSERVED", unobserved)
        assert stationary_evidence.stationary_route(operator) == "unobserved"
        found = latent_component_weights(prior, likelihood)
        exact = mixture_exact_posterior(prior, model, y)
        assert torch.allclose(found.weights, exact.weights, rtol=0, atol=1e-9)


def test_a_forward_model_that_is_not_translation_invariant_still_warns(monkeypatch):
    h, w = SHAPE
    prior = mixture_prior("amplitude", SHAPE)
    mask = torch.ones(SHAPE, dtype=torch.float64)
    mask[2:5, 3:7] = 0
    # The mask acts on the field before the shear: B is not a Fourier multiplier.
    model = ForwardModel(Compose(Mask(mask), Shear(SHAPE)), GaussianNoise(0.3), (1, h, w))
    _, y = draw_observations(prior, model, 1, seed=0)[0]
    monkeypatch.setattr(evidence, "MAX_DENSE", 10)
    with pytest.warns(ComponentWeightsWarning, match="not a Fourier multiplier"):
        assert latent_component_weights(prior, WhitenedLinearGaussian(model, y)) is None


def test_too_many_observed_entries_for_the_kernel_route_warn(monkeypatch):
    prior, model = noise_map_problem("lensing")
    _, y = draw_observations(prior, model, 1, seed=0)[0]
    monkeypatch.setattr(evidence, "MAX_DENSE", 10)
    monkeypatch.setattr(stationary_evidence, "MAX_OBSERVED", 20)
    with pytest.warns(ComponentWeightsWarning, match="above the 20 up to which"):
        assert latent_component_weights(prior, WhitenedLinearGaussian(model, y)) is None


def test_evidence_that_does_not_fit_in_memory_warns_instead_of_allocating(monkeypatch):
    prior, model = noise_map_problem("lensing")
    _, y = draw_observations(prior, model, 1, seed=0)[0]
    monkeypatch.setattr(evidence, "MAX_DENSE", 10)
    likelihood = WhitenedLinearGaussian(model, y)
    needed = stationary_evidence.dense_bytes(stationary_evidence.stationary_operator(likelihood))
    n = int(likelihood.observed().sum())
    assert needed == 2 * n * n * 8  # the float64 matrix and its Cholesky factor
    free = needed / evidence.MEMORY_FRACTION
    monkeypatch.setattr(evidence, "available_bytes", lambda device: free)  # just enough
    assert latent_component_weights(prior, likelihood) is not None
    monkeypatch.setattr(evidence, "available_bytes", lambda device: free - 1)
    with pytest.warns(ComponentWeightsWarning, match="MiB free"):
        assert latent_component_weights(prior, likelihood) is None


class _Trained:
    """A component that says what its network was trained on (as `NetworkPrior.identity` does)."""

    def __init__(self, kind: str):
        self.kind = kind

    def identity(self) -> dict:
        return {"name": "network", "data_kind": self.kind}


def test_components_trained_on_non_gaussian_fields_warn():
    with pytest.warns(ComponentWeightsWarning, match="convergence fields, which are not Gaussian"):
        evidence.warn_if_not_gaussian([_Trained("grf"), _Trained("convergence")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evidence.warn_if_not_gaussian([_Trained("grf"), _Trained("grf")])
        latent_component_weights(*_gaussian_problem())  # analytic components: no warning


def _gaussian_problem():
    prior, model = mixture_problem("amplitude", "mask", SHAPE, noise=1.5)
    _, y = draw_observations(prior, model, 1, seed=0)[0]
    return prior, WhitenedLinearGaussian(model, y)
