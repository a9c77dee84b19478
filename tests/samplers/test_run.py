"""The ensemble runner sample_posterior: batch-size independence, divergence, interrupts, costs."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
import torch

from forward_models import ForwardModel, GalaxyCounts, GaussianNoise, Mask, PoissonNoise
from posterior_diffusion.priors import GaussianPrior, Prior
from posterior_diffusion.samplers import SAMPLERS
from posterior_diffusion.samplers.run import (
    SamplerDivergence,
    SamplingInterrupted,
    check_run_settings,
    choose_sampler,
    default_batch_size,
    sample_posterior,
)

FIELD = (1, 8, 12)
NOISE_STD = 0.3


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spectrum(k: np.ndarray) -> np.ndarray:
    return 0.01 + 1.0 / (1.0 + (k / 0.1) ** 2)


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior(spectrum, FIELD)


@pytest.fixture(scope="module")
def mask() -> torch.Tensor:
    return torch.rand(FIELD[1:], generator=gen(1)) > 0.3


@pytest.fixture(scope="module")
def model(mask) -> ForwardModel:
    return ForwardModel(Mask(mask), GaussianNoise(NOISE_STD, mask), FIELD)


@pytest.fixture(scope="module")
def y(prior, model) -> torch.Tensor:
    return model.simulate(prior.sample(1, gen(2))[0], gen(3))


class Wrapped(Prior):
    """Defines only denoise (linearize is the base class's autograd one), with hooks for tests."""

    def __init__(self, inner: GaussianPrior, hook=None):
        super().__init__()
        self.inner, self.hook = inner, hook
        self.field_shape = inner.field_shape
        self.calls = 0

    def denoise(self, x, sigma):
        self.calls += 1
        out = self.inner.denoise(x, sigma)
        return out if self.hook is None else self.hook(self, out, sigma)

    def sigma_max(self):
        return self.inner.sigma_max()

    def sigma_min(self):
        return self.inner.sigma_min()


CASES = {
    "guided": {"steps": 8},
    "split_gibbs": {"steps": 4, "options": {"prior_steps": 3}},
    "dps": {"steps": 30},
    "prior_sde": {"steps": 10},
    "prior_ode": {"steps": 6},
}


def run(prior, model, y, sampler, num_samples=8, **kwargs):
    settings = {**CASES[sampler], **kwargs}
    return sample_posterior(
        prior, model, y, num_samples, sampler=sampler, progress=False, **settings
    )


@pytest.mark.parametrize("sampler", list(CASES))
def test_members_do_not_depend_on_batch_size(prior, model, y, sampler):
    reference, info = run(prior, model, y, sampler, batch_size=8, seed=5)
    assert reference.shape == (8, *FIELD) and reference.dtype == torch.float64
    assert torch.isfinite(reference).all()
    assert info["sampler"] == sampler and info["seed"] == 5
    assert info["steps"] == CASES[sampler]["steps"]
    for batch_size in (1, 3):
        samples, _ = run(prior, model, y, sampler, batch_size=batch_size, seed=5)
        np.testing.assert_allclose(samples, reference, rtol=1e-10, atol=1e-10)
    # The members of one run are different draws.
    assert not torch.allclose(reference[0], reference[1])


@pytest.mark.parametrize("sampler", ["guided", "prior_sde", "prior_ode"])
def test_corrector_members_do_not_depend_on_batch_size(prior, model, y, sampler):
    """The Langevin step size comes from each member's own norms, not the batch's."""
    options = {"corrector_steps": 2, "snr": 0.16}
    reference, info = run(prior, model, y, sampler, batch_size=8, seed=5, options=options)
    assert info["options"] == options
    plain, _ = run(prior, model, y, sampler, batch_size=8, seed=5)
    assert not torch.allclose(reference, plain)  # the corrector did something
    samples, _ = run(prior, model, y, sampler, batch_size=3, seed=5, options=options)
    np.testing.assert_allclose(samples, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "options", [{"stochastic": True}, {"stochastic": True, "corrector_steps": 1}]
)
def test_reverse_sde_members_do_not_depend_on_batch_size(prior, model, y, options):
    """`stochastic` draws each step's noise from the member's own stream."""
    reference, info = run(prior, model, y, "guided", batch_size=8, seed=5, options=options)
    assert info["options"] == options
    plain, _ = run(prior, model, y, "guided", batch_size=8, seed=5)
    assert not torch.allclose(reference, plain)  # the SDE is another path
    samples, _ = run(prior, model, y, "guided", batch_size=3, seed=5, options=options)
    np.testing.assert_allclose(samples, reference, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(reference[0], reference[1])


def test_trained_priors_default_to_the_reverse_sde_and_analytic_ones_to_the_ode(prior, model):
    from posterior_diffusion.priors import default_prior

    network = default_prior((1, 16, 16))
    for name in ("guided", "linearized"):
        spec = SAMPLERS[name]
        assert spec.with_defaults({}, network, model) == {"stochastic": True}
        assert spec.with_defaults({"stochastic": False}, network, model) == {"stochastic": False}
        assert spec.with_defaults({}, prior, model) == {}
        assert spec.steps_for(spec.with_defaults({}, network, model)) == 2 * spec.default_steps
    assert SAMPLERS["dps"].with_defaults({}, network, model) == {}  # no such option there


def test_reverse_sde_defaults_to_twice_the_steps(prior, model, y):
    _, info = sample_posterior(prior, model, y, 2, sampler="guided", progress=False,
                               options={"stochastic": True})  # fmt: skip
    assert info["steps"] == 2 * SAMPLERS["guided"].default_steps


@pytest.mark.parametrize(
    "options, message",
    [({"corrector_steps": -1}, "corrector_steps must be an integer >= 0"),
     ({"corrector_steps": 1, "snr": 0}, "snr must be a number > 0")],
)  # fmt: skip
def test_bad_corrector_settings_are_refused(prior, model, y, options, message):
    with pytest.raises(ValueError, match=message):
        run(prior, model, y, "guided", options=options)


@pytest.mark.parametrize("sampler", ["guided", "split_gibbs", "dps"])
def test_different_seeds_give_different_samples(prior, model, y, sampler):
    a, _ = run(prior, model, y, sampler, num_samples=2, seed=0)
    b, _ = run(prior, model, y, sampler, num_samples=2, seed=1)
    again, _ = run(prior, model, y, sampler, num_samples=2, seed=0)
    assert torch.equal(a, again)
    assert (a - b).abs().min() > 0  # every pixel of every member moved


# Denoiser calls per step: guided evaluates D_y (one denoiser call) per step; Heun's method two,
# the second at sigma_next, so a NaN first returned by call c (1-based) surfaces in step
# (c - 1) // calls_per_step.
CALLS_PER_STEP = {"guided": 1, "prior_ode": 2, "prior_sde": 1}


@pytest.mark.parametrize("sampler", list(CALLS_PER_STEP))
def test_nan_denoiser_raises_sampler_divergence_naming_sampler_and_step(prior, model, y, sampler):
    threshold = 0.05
    first_nan = []

    def nan_at_small_sigma(wrapper, out, sigma):
        if float(torch.as_tensor(sigma).max()) >= threshold:
            return out
        first_nan.append(wrapper.calls)
        return out * float("nan")

    with pytest.raises(SamplerDivergence) as err:
        run(Wrapped(prior, nan_at_small_sigma), model, y, sampler, num_samples=2, steps=12)
    message = str(err.value)
    assert f"sampler '{sampler}'" in message and "NaN" in message
    step = (first_nan[0] - 1) // CALLS_PER_STEP[sampler]
    assert 0 < step < 11  # the NaN appears mid-run, not at the start or on the last step
    assert f"at step {step}," in message


def test_split_gibbs_divergence_names_the_sampler(prior, model, y):
    def nan_at_small_sigma(_, out, sigma):
        return out * float("nan") if float(torch.as_tensor(sigma).max()) < 0.05 else out

    with pytest.raises(SamplerDivergence, match=r"sampler 'split_gibbs' diverged .* at step \d+"):
        run(Wrapped(prior, nan_at_small_sigma), model, y, "split_gibbs", num_samples=2)


def test_divergence_is_not_raised_for_finite_runs(prior, model, y):
    samples, _ = run(Wrapped(prior), model, y, "guided", num_samples=2)
    assert torch.isfinite(samples).all()


def interrupting_prior(prior: GaussianPrior, after_calls: int) -> Wrapped:
    def hook(wrapper, out, sigma):
        if wrapper.calls > after_calls:
            raise KeyboardInterrupt
        return out

    return Wrapped(prior, hook)


def test_interrupt_keeps_the_completed_batch(prior, model, y):
    steps, batch_size = CASES["guided"]["steps"], 2
    # guided calls the denoiser once per step (through the base class's linearize), so call
    # steps + 3 is the third step of the second batch.
    with pytest.raises(SamplingInterrupted) as err:
        run(
            interrupting_prior(prior, steps + 2),
            model,
            y,
            "guided",
            num_samples=5,
            batch_size=batch_size,
            seed=7,
        )
    partial = err.value.samples
    assert partial.shape == (batch_size, *FIELD)
    full, _ = run(Wrapped(prior), model, y, "guided", num_samples=5, batch_size=batch_size, seed=7)
    assert torch.equal(partial, full[:batch_size])
    assert err.value.info["sampler"] == "guided"
    assert "2 completed samples" in str(err.value)


def test_interrupt_in_the_first_batch_gives_no_samples(prior, model, y):
    with pytest.raises(SamplingInterrupted) as err:
        run(interrupting_prior(prior, 1), model, y, "guided", num_samples=4, batch_size=2)
    assert err.value.samples.shape == (0, *FIELD)


def test_interrupt_in_the_first_batch_gives_float64_samples(prior, model, y):
    with pytest.raises(SamplingInterrupted) as err:
        run(interrupting_prior(prior, 1), model, y, "guided", num_samples=4, batch_size=2)
    assert err.value.samples.dtype == torch.float64


def test_interrupted_costs_count_completed_samples_only(prior, model, y):
    steps = CASES["guided"]["steps"]
    with pytest.raises(SamplingInterrupted) as err:
        run(interrupting_prior(prior, steps + 2), model, y, "guided", num_samples=5, batch_size=2)
    assert err.value.info["denoiser_calls_per_sample"] == steps


@pytest.mark.parametrize(
    ("sampler", "steps", "calls_per_batch"),
    [
        ("prior_ode", 7, 2 * 7 - 1),  # Heun: two evaluations per step, one on the last (to 0)
        ("prior_sde", 9, 9),
        ("prior_ode", 1, 1),
    ],
)
@pytest.mark.parametrize("batch_size", [2, 5])
def test_nfe_counts_of_the_unconditional_samplers(
    prior, model, y, sampler, steps, calls_per_batch, batch_size
):
    counted = Wrapped(prior)
    _, info = run(counted, model, y, sampler, num_samples=5, steps=steps, batch_size=batch_size)
    batches = -(-5 // batch_size)
    assert counted.calls == calls_per_batch * batches  # our own count of denoiser calls
    assert info["denoiser_calls_per_sample"] == calls_per_batch
    assert info["covariance_products_per_sample"] == 0
    assert info["nfe_per_sample"] == calls_per_batch
    assert info["seconds"] > 0


class CountingGaussian(GaussianPrior):
    """Counts its own denoiser calls and covariance products, independently of the runner."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.linearize_calls = self.products = 0

    def linearize(self, x, sigma):
        self.linearize_calls += 1
        x0_hat, cov = super().linearize(x, sigma)

        def counted(v):
            self.products += 1
            return cov(v)

        return x0_hat, counted


def test_nfe_counts_of_guided_include_covariance_products(model, y):
    counted = CountingGaussian(spectrum, FIELD)
    steps = CASES["guided"]["steps"]
    _, info = run(counted, model, y, "guided", num_samples=4, batch_size=2)
    assert counted.linearize_calls == 2 * steps
    assert counted.products > 2 * steps  # CG products plus one to form D_y, every step
    assert info["denoiser_calls_per_sample"] == steps
    assert info["covariance_products_per_sample"] == counted.products / 2
    assert info["nfe_per_sample"] == steps + counted.products / 2


def test_wrong_data_shape_is_rejected(prior, model, y):
    with pytest.raises(ValueError, match=r"y has shape \(1, 8, 11\)"):
        sample_posterior(prior, model, y[..., :11], 2, progress=False)
    with pytest.raises(ValueError, match="y has shape"):
        sample_posterior(prior, model, y[0], 2, progress=False)


def test_unknown_sampler_is_rejected(prior, model, y):
    with pytest.raises(ValueError, match="unknown sampler 'heun'.*guided"):
        sample_posterior(prior, model, y, 2, sampler="heun", progress=False)


@pytest.mark.parametrize("num_samples", [0, -1])
def test_non_positive_sample_count_is_rejected(prior, model, y, num_samples):
    with pytest.raises(ValueError, match="number of samples must be >= 1"):
        sample_posterior(prior, model, y, num_samples, progress=False)


def test_zero_steps_is_rejected(prior, model, y):
    with pytest.raises(ValueError, match="steps"):
        sample_posterior(prior, model, y, 2, sampler="prior_sde", steps=0, progress=False)


def test_negative_batch_size_is_rejected_by_name(prior, model, y):
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        sample_posterior(
            prior, model, y, 2, sampler="prior_sde", steps=3, batch_size=-1, progress=False
        )


@pytest.fixture(scope="module")
def counts_model() -> ForwardModel:
    return ForwardModel(GalaxyCounts(n_bar=20.0, bias=1.2), PoissonNoise(), FIELD, name="counts")


@pytest.fixture(scope="module")
def counts(prior, counts_model) -> torch.Tensor:
    truth = 0.3 * prior.sample(1, gen(4))[0]
    return counts_model.noise.sample(counts_model.A(truth), gen(5))


@pytest.mark.parametrize("sampler", ["guided", "split_gibbs"])
def test_linear_gaussian_samplers_reject_galaxy_counts(prior, counts_model, counts, sampler):
    with pytest.raises(ValueError, match=f"sampler '{sampler}' needs a linear forward model"):
        sample_posterior(prior, counts_model, counts, 2, sampler=sampler, progress=False)


def test_the_sampler_is_chosen_by_the_model(model, counts_model):
    assert choose_sampler(None, model) == "guided"
    assert choose_sampler(None, counts_model) == "linearized"
    assert choose_sampler("dps", counts_model) == "dps"
    with pytest.raises(ValueError, match=r"'counts' is not \(use --sampler linearized\)"):
        choose_sampler("smc", counts_model)
    with pytest.raises(ValueError, match=r"unknown sampler 'heun' \(available: guided"):
        choose_sampler("heun", model)


@pytest.mark.parametrize(
    "settings, message",
    [
        ((4, None, 0, None, "cpu"), None),
        ((0, None, 0, None, "cpu"), "number of samples must be >= 1"),
        ((4, 0, 0, None, "cpu"), "number of steps must be >= 1"),
        ((4, None, 0, 0, "cpu"), "batch size must be >= 1"),
        ((4, None, -1, None, "cpu"), r"seed must be in \[0, 2\*\*63\)"),
        ((4, None, 2**64, None, "cpu"), r"seed must be in \[0, 2\*\*63\)"),
        ((4, None, 0, None, "toaster"), "unknown device 'toaster'"),
    ],
)
def test_run_settings_are_checked_in_one_place(settings, message):
    if message is None:
        check_run_settings(*settings)
        return
    with pytest.raises(ValueError, match=message):
        check_run_settings(*settings)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_each_sampler_declares_its_function_options_and_default_steps(name):
    spec = SAMPLERS[name]
    parameters = inspect.signature(spec.function).parameters
    keyword_only = [n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    saving = ["checkpoint", "resume"] if spec.checkpoints else []  # supplied by the run
    assert list(spec.options) + list(spec.prepared) + saving == keyword_only
    assert spec.default_steps == parameters["steps"].default


def test_dps_works_with_galaxy_counts(prior, counts_model, counts):
    samples, info = sample_posterior(
        prior, counts_model, counts, 3, sampler="dps", steps=30, progress=False, seed=3
    )
    assert samples.shape == (3, *FIELD) and torch.isfinite(samples).all()
    assert info["nfe_per_sample"] == 60  # a denoiser call and its vector-Jacobian product per step
    assert samples.std() > 0


@pytest.mark.parametrize("poison", ["nan", "huge"])
def test_divergence_names_the_member_step_and_sigma(prior, model, y, poison):
    """One bad member among three: the message names it (its index in the ensemble), the step and
    sigma; NaN and runaway values are both caught."""

    def spoil_second_member(wrapper, out, sigma):
        if float(torch.as_tensor(sigma).max()) >= 0.05:
            return out
        out = out.clone()
        out[1] = float("nan") if poison == "nan" else 1e12
        return out

    with pytest.raises(SamplerDivergence) as err:
        run(Wrapped(prior, spoil_second_member), model, y, "guided", num_samples=6, steps=12,
            batch_size=3)  # fmt: skip
    message = str(err.value)
    assert re.search(r"at step \d+, sigma = [\d.e-]+, in member\(s\) 1 \(1 of 3 in the batch\)$",
                     message), message  # fmt: skip
    assert ("NaN/inf" if poison == "nan" else "|x| >") in message


def test_cpu_runs_are_saved_in_about_eight_batches_by_default(prior, model, y):
    """A kill loses at most one batch: by default a CPU ensemble goes in batches of an eighth of
    it (8 to 64 members), a GPU one in batches of up to 64."""
    assert [default_batch_size(n, "cpu") for n in (1, 5, 64, 256, 4096)] == [1, 5, 8, 32, 64]
    assert [default_batch_size(n, "cuda") for n in (5, 64, 4096)] == [5, 64, 64]
    saved = []
    _, info = sample_posterior(prior, model, y, 24, steps=4, progress=False,
                               on_batch=lambda members, batch: saved.append(members))  # fmt: skip
    assert info["batch_size"] == 8 and saved == [list(range(i, i + 8)) for i in (0, 8, 16)]


@pytest.mark.parametrize(
    "sampler, options, message",
    [
        ("guided", {"cg_max_iter": 0}, "cg_max_iter must be an integer >= 1, got 0"),
        ("guided", {"cg_rtol": float("inf")}, "cg_rtol must be a number > 0, got inf"),
        ("guided", {"corrector_steps": 1.5}, "corrector_steps must be an integer >= 0"),
        ("guided", {"stochastic": 1}, "stochastic must be true or false, got 1"),
        ("smc", {"cess_target": 1.0}, "cess_target must be a number in (0, 1), got 1.0"),
        ("linearized", {"pilot_members": 0}, "pilot_members must be an integer >= 1"),
        ("dps", {"zeta": -1.0}, "zeta must be a number > 0"),
    ],
)
def test_option_values_are_checked_with_the_names(sampler, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SAMPLERS[sampler].check_options(options)


def test_numpy_numbers_are_valid_option_values():
    SAMPLERS["guided"].check_options({"cg_max_iter": np.int64(2), "snr": np.float64(0.1)})


def test_the_progress_bar_counts_refinement_moves(prior, model, y, monkeypatch):
    """The bar's total includes guided's refinement moves (two steps each), a run fills it, and
    it moves after every move, not once per batch's refinement."""
    import posterior_diffusion.samplers.run as run_module

    bars = []

    class Recorder:
        def __init__(self, total=None, **kwargs):
            self.total, self.n, self.updates = total, 0, []
            bars.append(self)

        def update(self, count):
            self.n += count
            self.updates.append(count)

        def refresh(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(run_module, "tqdm", Recorder)
    options = {"refine_moves": 3, "refine_sigma": 0.5}
    run(prior, model, y, "guided", num_samples=4, steps=6, batch_size=2, options=options)
    assert bars[0].total == 4 * (6 + run_module.REFINE_MOVE_STEPS * 3)
    assert bars[0].n == bars[0].total
    per_move = 2 * run_module.REFINE_MOVE_STEPS  # a batch of 2 members
    assert bars[0].updates.count(per_move) == 2 * 3  # 2 batches of 3 moves
