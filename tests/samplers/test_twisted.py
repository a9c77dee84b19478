"""The experimental `twisted` sampler: calibrated on a mixture prior it cannot split (where
`guided` fails), exact for a Gaussian prior, and ensemble-level reproducibility."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from mixture_checks import amplitude_posterior, assert_calibrated
from resume_checks import kill_at_level

from posterior_diffusion.references.compare import compare_to_reference, component_tv_tolerance
from posterior_diffusion.references.gaussian import exact_posterior
from posterior_diffusion.references.gaussian_problems import compare_to_exact, gaussian_problem
from posterior_diffusion.references.mixture import MarginalDenoiser
from posterior_diffusion.references.problems import problem_from_name
from posterior_diffusion.samplers.run import sample_posterior
from posterior_diffusion.samplers.smc import EnsembleWarning

N = 512


def test_blind_mixture_passes_where_guided_fails(seeded):
    """omega = (0.12, 0.88), components hidden from both samplers (the marginal denoiser only)."""
    prior, model, truth, y, exact = amplitude_posterior()
    blind = MarginalDenoiser(prior)
    samples, info = sample_posterior(blind, model, y, N, sampler="twisted", seed=0, progress=False)
    reference = exact.sample(N, seeded(20))
    assert_calibrated(
        compare_to_reference(samples, reference, truth, exact), reference, truth, exact
    )
    diagnostics = info["sampler_diagnostics"]
    assert 0.5 <= diagnostics["unique_fraction"] <= 1 and 0 < diagnostics["final_ess"] <= 1
    # Control: guided on the same blind prior (measured TV 0.23-0.27, tolerance 0.046).
    guided, _ = sample_posterior(blind, model, y, N, seed=0, progress=False)
    tv, tolerance = exact.component_tv(guided), component_tv_tolerance(exact.weights, N)
    assert tv > tolerance, f"blind guided passed: TV {tv:.3f} <= tolerance {tolerance:.3f}"


def test_a_wiener_twist_keeps_the_blind_mixture_calibrated(seeded):
    """Any twist leaves the method exact if the moves keep the same twisted target: with the
    Wiener filter in the twist's mean above 1 data std, and in the moves' data term there (this
    run resamples once, above it), the check the default passes above still passes."""
    prior, model, truth, y, exact = amplitude_posterior()
    blind = MarginalDenoiser(prior)
    samples, info = sample_posterior(
        blind, model, y, N, sampler="twisted", seed=0, progress=False,
        options={"wiener_twist_above": 1.0},
    )  # fmt: skip
    reference = exact.sample(N, seeded(20))
    assert_calibrated(
        compare_to_reference(samples, reference, truth, exact), reference, truth, exact
    )
    diagnostics = info["sampler_diagnostics"]
    assert diagnostics["wiener_twist_above"] == 1.0
    assert any(s > blind.data_std() for s in diagnostics["resampled_at_sigma"])


def test_gaussian_prior_matches_the_exact_posterior(seeded):
    """psi is exact at every level for a Gaussian prior, so the weights only correct guided's
    discretisation; whitened statistics as in test_against_exact.py (n = 192 modes, N = 256;
    the ESS leaves about 0.6 N distinct members, so the variance allowance is loose)."""
    prior, model = gaussian_problem("P1", (12, 16))
    g = seeded(3)
    y = model.simulate(prior.sample(1, g)[0], g)
    exact = exact_posterior(prior, model, y)
    samples, _ = sample_posterior(prior, model, y, 256, sampler="twisted", seed=1, progress=False)
    found = compare_to_exact(samples, exact)
    assert abs(found.whitened_variance - 1) <= 0.06, found
    # The mean is checked loosely: weights and resampling leave fewer independent members than
    # N (here whitened_mean 5.2: about 50 members' worth of N = 256, for which an unbiased
    # ensemble gives about N / 50); a shift of 0.2 posterior std along every mode would add
    # N 0.04 = 10 to it.
    assert found.whitened_mean <= 6.0, found
    # Control: 10% too narrow about the same members' mean fails the variance check.
    narrow = compare_to_exact(samples.mean(0) + 0.9 * (samples - samples.mean(0)), exact)
    assert abs(narrow.whitened_variance - 1) > 0.06, narrow


def test_ensemble_does_not_depend_on_batch_size_or_on_which_members_are_asked_for(seeded):
    prior, model = gaussian_problem("P1", (8, 8))
    g = seeded(0)
    y = model.simulate(prior.sample(1, g)[0], g)
    kwargs = dict(sampler="twisted", seed=5, progress=False, steps=24)
    full, info = sample_posterior(prior, model, y, 16, **kwargs)
    again, _ = sample_posterior(prior, model, y, 16, batch_size=3, **kwargs)
    some, _ = sample_posterior(prior, model, y, 16, members=[11, 2], **kwargs)
    assert torch.equal(full, again)
    assert torch.equal(full[[11, 2]], some)
    assert info["sampler"] == "twisted" and info["sampler_diagnostics"]["levels"] == 24


def test_a_prior_without_second_moments_is_refused(seeded):
    prior, model = gaussian_problem("P1", (8, 8))
    g = seeded(0)
    y = model.simulate(prior.sample(1, g)[0], g)

    class Unknown(MarginalDenoiser):
        def second_moment_power(self, field_shape):
            return None

    with pytest.raises(ValueError, match="second_moment_power"):
        sample_posterior(Unknown(prior), model, y, 4, sampler="twisted", progress=False)


def test_warns_when_few_members_are_distinct(seeded):
    prior, model = gaussian_problem("P1", (8, 8))
    g = seeded(0)
    y = model.simulate(prior.sample(1, g)[0], g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # never resampled on the way: the final resampling alone faces the accumulated weights
        sample_posterior(prior, model, y, 16, sampler="twisted", steps=8, seed=0, progress=False,
                         options={"resample_below": 1e-12, "cg_max_iter": 1})  # fmt: skip
    assert any(issubclass(w.category, EnsembleWarning) for w in caught)


def test_ensemble_amplitude_recovers_the_scale_of_the_members_spectrum():
    """Draws of the brightest of the eight amplitudes (2.73 x the mixture's mean spectrum),
    noised to sigma: the fit finds their scale where they carry information on it, and stays
    near the prior's own (1) where the noise swamps them."""
    import importlib

    twisted_module = importlib.import_module("posterior_diffusion.samplers.twisted")
    prior, model = problem_from_name("loguniform/mask", (12, 16))
    power = prior.second_moment_power(tuple(model.field_shape))
    expected = float(prior.components[-1].second_moment_power(tuple(model.field_shape)).mean())
    expected /= float(power.mean())
    g = torch.Generator().manual_seed(0)
    x0 = prior.components[-1].sample(64, g)
    equal = torch.zeros(64, dtype=torch.float64)
    for sigma in (0.1, 1.0):
        x = x0 + sigma * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        fitted = twisted_module.ensemble_amplitude(x, equal, power, sigma)
        assert abs(math.log(fitted / expected)) < 0.1, (sigma, fitted, expected)
    swamped = x0 + 1e4 * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    assert abs(math.log(twisted_module.ensemble_amplitude(swamped, equal, power, 1e4))) < 0.5


def test_a_killed_run_resumes_from_its_last_level_with_the_uninterrupted_ensemble(
    tmp_path, monkeypatch
):
    """The whole state (members, weights, the twist's scale, the second-order term, the CG warm
    start, every generator) is saved after each level: a run killed at level 14, after some
    resamplings and moves, resumes at level 15 and ends at the ensemble of a run that was never stopped."""
    import importlib
    import json

    from posterior_diffusion import api
    from posterior_diffusion.io.journal import ENSEMBLE_STATE, journal_path
    from posterior_diffusion.reconstruction import ReconstructionInterrupted

    twisted_module = importlib.import_module("posterior_diffusion.samplers.twisted")
    obs = api.simulate_observation("noise", shape=(8, 8), prior="gaussian", noise_std=0.3,
                                   seed=0)  # fmt: skip
    # resampling (and moving) at nearly every level, so the saved state spans both
    run = dict(prior="gaussian", sampler="twisted", num_samples=12, seed=5, steps=24,
               progress=False, sampler_options={"resample_below": 0.99})  # fmt: skip
    reference = api.reconstruct(obs, **run)
    out = tmp_path / "post.h5"
    levels = kill_at_level(twisted_module, monkeypatch, 14)
    with pytest.raises(ReconstructionInterrupted):
        api.reconstruct_to_file(obs, out, **run)
    saved = journal_path(out) / ENSEMBLE_STATE
    assert not out.exists() and saved.is_file()
    resampled_before = len(torch.load(saved, weights_only=True)["resampled_at"])
    levels.clear()
    resumed = api.reconstruct_to_file(obs, out, resume=True, **run)
    assert levels[0] == 15  # it did not start again
    settings = json.loads(resumed.attrs["sampler_settings"])
    assert settings["resumed_after_level"] == 14
    resampled = len(settings["sampler_diagnostics"]["resampled_at_sigma"])
    assert 0 < resampled_before < resampled, (resampled_before, resampled)
    assert torch.equal(torch.from_numpy(resumed["samples"].values),
                       torch.from_numpy(reference["samples"].values))  # fmt: skip


def test_a_saved_state_of_another_ensemble_is_refused():
    """A checkpoint whose member count or field shape differs from the run's is refused before
    anything is restored (the journal's run identity guards it too; this is the sampler's own
    check)."""
    import importlib

    from posterior_diffusion.rng import EnsembleRNG

    twisted_module = importlib.import_module("posterior_diffusion.samplers.twisted")
    rng = EnsembleRNG(0, range(3))
    state = {"x": torch.zeros(3, 1, 8, 8), "members": rng.get_state()}
    warm: dict = {}

    def denoise_y(*args):
        return None

    denoise_y.warm = warm
    shared = torch.Generator()
    with pytest.raises(ValueError, match="shape"):
        twisted_module.restore_state(state, rng, shared, denoise_y, "cpu", (1, 8, 12))
    with pytest.raises(ValueError, match="members"):
        twisted_module.restore_state(
            state, EnsembleRNG(0, range(4)), shared, denoise_y, "cpu", (1, 8, 8)
        )
