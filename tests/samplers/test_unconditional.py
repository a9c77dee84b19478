"""prior_ode and prior_sde reproduce a Gaussian prior's pixel variance and power spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forward_models import ForwardModel, GaussianNoise, Identity
from forward_models.fourier import frequency_magnitude
from posterior_diffusion.priors import GaussianPrior
from posterior_diffusion.samplers.run import sample_posterior
from posterior_diffusion.samplers.unconditional import prior_ode, prior_sde

FIELD = (1, 16, 16)


def spectrum(k: np.ndarray) -> np.ndarray:
    """Mildly red with a floor: about 127 effective modes of 256, so sample errors stay small."""
    return 0.05 + 1.0 / (1.0 + (k / 0.15) ** 2) ** 1.5


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior(spectrum, FIELD)


@pytest.fixture(scope="module")
def power(prior) -> np.ndarray:
    return prior.power.numpy()


def draw(prior, sampler: str, num: int, steps: int, seed: int) -> torch.Tensor:
    model = ForwardModel(Identity(), GaussianNoise(1.0), FIELD)  # ignored by these samplers
    y = torch.full(FIELD, float("nan"))  # ... and so are the data
    samples, info = sample_posterior(
        prior,
        model,
        y,
        num,
        sampler=sampler,
        steps=steps,
        seed=seed,
        batch_size=num,
        progress=False,
    )
    assert info["covariance_products_per_sample"] == 0
    return samples


def pixel_variance_se(power: np.ndarray, num: int) -> float:
    """SE of mean(x^2) pooled over `num` fields: sum_r x_r^2 = sum_k |x_hat_k|^2 / N has variance
    2 sum_k P_k^2 for a Gaussian field, so SE = sqrt(2 sum P^2 / num) / N."""
    return math.sqrt(2 * (power**2).sum() / num) / power.size


def binned(samples: torch.Tensor, power: np.ndarray, bins: int = 8):
    """Measured and expected power per |k| bin, and five standard errors of each measurement.

    q_k = |x_hat_k|^2 / N has mean P_k; over a bin (closed under k -> -k) Var(sum q_k) =
    2 sum P_k^2, so the bin average over `num` fields has SE sqrt(2 sum_bin P_k^2 / num) / |bin|.
    """
    num, n = samples.shape[0], power.size
    k = frequency_magnitude(*power.shape).ravel()
    which = np.digitize(k, np.linspace(0, k.max() + 1e-9, bins + 1)) - 1
    q = (torch.fft.fft2(samples[:, 0]).abs() ** 2 / n).reshape(num, n).mean(0).numpy()
    p = power.ravel()
    measured = np.array([q[which == b].mean() for b in range(bins)])
    expected = np.array([p[which == b].mean() for b in range(bins)])
    five_se = np.array(
        [
            5 * math.sqrt(2 * (p[which == b] ** 2).sum() / num) / (which == b).sum()
            for b in range(bins)
        ]
    )
    return measured, expected, five_se


# Discretisation error allowed for each sampler at its default step count, on this spectrum.
# Exact values (from the impulse responses below, no sampling noise): prior_ode at 40 steps
# +2.49% pixel variance (+1.9% to +3.0% per mode); prior_sde at 200 steps +0.13% per mode.
# Measured here with the seeds below: prior_ode pooled variance +2.8% (5 SE = 1.4%), bins +1.0% to
# +4.6% (5 SE up to 5.3%).
CASES = [
    # sampler, steps, allowed bias, samples (5 SE of the pooled variance: 1.4% at 2000, 2% at 1000)
    ("prior_ode", 40, 0.03, 2000),
    ("prior_sde", 200, 0.01, 1000),
]


@pytest.fixture(scope="module", params=CASES, ids=[case[0] for case in CASES])
def ensemble(request, prior):
    sampler, steps, bias, num = request.param
    return draw(prior, sampler, num, steps, seed=1), bias


def test_pixel_variance_matches_the_prior(prior, power, ensemble):
    samples, bias = ensemble
    num = samples.shape[0]
    variance = float(samples.square().mean())
    target = prior.pixel_variance()
    assert abs(variance - target) < bias * target + 5 * pixel_variance_se(power, num), (
        variance / target - 1
    )
    # Pooled mean: Var(mean_r x_r) = P(0) / N per field.
    assert abs(float(samples.mean())) < 5 * math.sqrt(power[0, 0] / power.size / num)
    # Stationarity, pixel by pixel: each pixel's variance has relative SE sqrt(2 / num).
    per_pixel = samples.square().mean(0).numpy()
    assert np.all(np.abs(per_pixel / target - 1) < bias + 5 * math.sqrt(2 / num))


def test_binned_power_spectrum_matches_the_prior(power, ensemble):
    samples, bias = ensemble
    measured, expected, five_se = binned(samples, power)
    assert np.all(np.abs(measured - expected) < bias * expected + five_se), measured / expected


class ImpulseRNG:
    """Stands in for EnsembleRNG: member m receives a unit impulse (pixel 0) on draw m, else zeros.

    The samplers are linear in their draws for a Gaussian prior, so member m's output is the
    response to draw m, and the sampler's exact output variance per Fourier mode is
    sum_m |fft2(output_m)|^2: no sampling noise at all.
    """

    def __init__(self, members: int):
        self.members, self.count = members, 0

    def __len__(self) -> int:
        return self.members

    def randn(self, shape, dtype=torch.float64):
        out = torch.zeros((self.members, *shape), dtype=dtype)
        out[self.count, ..., 0, 0] = 1.0
        self.count += 1
        return out


def exact_mode_variance(prior, sampler, steps: int) -> np.ndarray:
    draws = 1 if sampler is prior_ode else steps  # the start, then one per SDE step but the last
    rng = ImpulseRNG(draws)
    out = sampler(prior, None, None, rng, steps, field_shape=FIELD)
    assert rng.count == draws
    return (torch.fft.fft2(out[:, 0]).abs() ** 2).sum(0).numpy()


def test_prior_ode_exact_variance(prior, power):
    errors = {steps: exact_mode_variance(prior, prior_ode, steps) / power - 1 for steps in (40, 80)}
    assert np.all(np.abs(errors[40]) < 0.03)  # measured +1.9% to +3.0% per mode
    # Heun is second order: doubling the steps divides the error by about 4 (measured 4.3).
    assert np.all(np.abs(errors[80]) < np.abs(errors[40]) / 3)


def test_prior_sde_exact_variance_is_second_order(prior, power):
    errors = {
        steps: exact_mode_variance(prior, prior_sde, steps) / power - 1 for steps in (200, 400)
    }
    assert np.all(np.abs(errors[200]) < 0.005)  # measured +0.13% per mode (50 steps: +2.1%)
    # DPM-Solver++(2M) SDE is second order: doubling the steps divides the error by ~4 (measured 4.0).
    assert np.all(np.abs(errors[400]) < np.abs(errors[200]) / 3)


def test_impulse_responses_agree_with_sampled_variance(prior, power):
    # The exact per-mode variance must be what sample_posterior's random draws produce:
    # guards the impulse method itself (pooled variance, 5 SE as in pixel_variance_se).
    num = 1000
    exact = exact_mode_variance(prior, prior_ode, 40).mean()
    sampled = float(draw(prior, "prior_ode", num, 40, seed=3).square().mean())
    assert abs(sampled - exact) < 5 * pixel_variance_se(power, num)


def test_prior_sde_with_a_langevin_corrector(prior, power):
    """Predictor-corrector (100 steps + 1 Langevin step per level, snr 0.16, 200 evaluations):
    measured whitened variance 1.031 against 1.004 for 200 plain steps at the same cost; the
    corrector's discretisation bias is allowed 0.06 on top of 5 standard errors."""
    samples = draw_with(prior, "prior_sde", 256, 100, {"corrector_steps": 1})
    whitened = torch.fft.fft2(samples, norm="ortho").abs().square() / torch.from_numpy(power)
    # Each |w_k|^2 is Exp(1) and k, -k are one mode of a real field: variance 2 / (num n).
    se = math.sqrt(2 / (256 * power.size))
    assert abs(float(whitened.mean()) - 1) < 0.06 + 5 * se


def draw_with(prior, sampler: str, num: int, steps: int, options: dict) -> torch.Tensor:
    model = ForwardModel(Identity(), GaussianNoise(1.0), FIELD)
    y = torch.full(FIELD, float("nan"))
    samples, _ = sample_posterior(prior, model, y, num, sampler=sampler, steps=steps, seed=1,
                                  batch_size=num, progress=False, options=options)  # fmt: skip
    return samples
