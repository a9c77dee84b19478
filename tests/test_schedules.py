"""Noise-level schedules: lengths, order, endpoints, the trailing 0, and rejected inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posterior_diffusion.schedules import geometric_sigmas, karras_sigmas, log_uniform_sigmas

SIGMA_MIN, SIGMA_MAX = 2e-3, 80.0


def assert_strictly_decreasing(sigmas: torch.Tensor) -> None:
    assert torch.all(sigmas[1:] < sigmas[:-1]), sigmas


@pytest.mark.parametrize("steps", [2, 3, 18, 40])
def test_karras_sigmas(steps):
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    assert sigmas.dtype == torch.float64 and sigmas.ndim == 1
    assert len(sigmas) == steps + 1
    assert sigmas[-1] == 0.0
    assert_strictly_decreasing(sigmas)
    np.testing.assert_allclose(sigmas[0], SIGMA_MAX, rtol=1e-14)
    np.testing.assert_allclose(sigmas[-2], SIGMA_MIN, rtol=1e-12)


def test_karras_sigmas_follow_eq5_of_karras_et_al():
    # sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, written out.
    steps, rho = 7, 5.0
    sigmas = karras_sigmas(steps, 0.01, 10.0, rho=rho)
    expected = [
        (10.0 ** (1 / rho) + i / (steps - 1) * (0.01 ** (1 / rho) - 10.0 ** (1 / rho))) ** rho
        for i in range(steps)
    ]
    np.testing.assert_allclose(sigmas[:-1], expected, rtol=1e-13)
    # rho = 1 is a linear ramp.
    linear = karras_sigmas(5, 1.0, 5.0, rho=1.0)
    np.testing.assert_allclose(linear[:-1], [5, 4, 3, 2, 1], rtol=1e-14)


def test_karras_sigmas_single_step_is_sigma_max_then_zero():
    sigmas = karras_sigmas(1, SIGMA_MIN, SIGMA_MAX)
    np.testing.assert_allclose(sigmas, [SIGMA_MAX, 0.0], rtol=1e-14)


@pytest.mark.parametrize("steps", [2, 3, 40])
def test_log_uniform_sigmas(steps):
    sigmas = log_uniform_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    assert sigmas.dtype == torch.float64 and len(sigmas) == steps + 1
    assert sigmas[-1] == 0.0
    assert_strictly_decreasing(sigmas)
    np.testing.assert_allclose(sigmas[0], SIGMA_MAX, rtol=1e-14)
    np.testing.assert_allclose(sigmas[-2], SIGMA_MIN, rtol=1e-14)
    # Uniform in log sigma: constant ratio between neighbours.
    ratios = sigmas[1:-1] / sigmas[:-2]
    np.testing.assert_allclose(ratios, (SIGMA_MIN / SIGMA_MAX) ** (1 / (steps - 1)), rtol=1e-12)


@pytest.mark.parametrize("steps", [2, 5, 30])
def test_geometric_sigmas_decreasing(steps):
    sigmas = geometric_sigmas(steps, 4.0, 0.01)
    assert sigmas.dtype == torch.float64 and len(sigmas) == steps  # no trailing 0
    assert sigmas[-1] > 0
    assert_strictly_decreasing(sigmas)
    ratios = sigmas[1:] / sigmas[:-1]
    np.testing.assert_allclose(ratios, (0.01 / 4.0) ** (1 / (steps - 1)), rtol=1e-12)
    np.testing.assert_allclose([sigmas[0], sigmas[-1]], [4.0, 0.01], rtol=1e-12)


def test_geometric_sigmas_single_step_is_the_end_value():
    np.testing.assert_allclose(geometric_sigmas(1, 4.0, 0.01), [0.01], rtol=1e-15)


def test_geometric_sigmas_constant_when_start_equals_end():
    np.testing.assert_allclose(geometric_sigmas(4, 0.3, 0.3), [0.3] * 4, rtol=1e-12)


def test_geometric_sigmas_endpoints_are_exact_in_float64():
    sigmas = geometric_sigmas(5, 0.3, 0.0017)
    np.testing.assert_allclose([sigmas[0], sigmas[-1]], [0.3, 0.0017], rtol=1e-13)


@pytest.mark.parametrize(
    ("schedule", "args", "match"),
    [
        (karras_sigmas, (0, SIGMA_MIN, SIGMA_MAX), "steps"),
        (karras_sigmas, (-3, SIGMA_MIN, SIGMA_MAX), "steps"),
        (karras_sigmas, (10, 0.0, SIGMA_MAX), "sigma_min"),
        (karras_sigmas, (10, -1.0, SIGMA_MAX), "sigma_min"),
        (karras_sigmas, (10, SIGMA_MAX, SIGMA_MIN), "sigma_min < sigma_max"),
        (karras_sigmas, (10, 1.0, 1.0), "sigma_min < sigma_max"),
        (karras_sigmas, (10, math.nan, SIGMA_MAX), "sigma_min"),
        (log_uniform_sigmas, (1, SIGMA_MIN, SIGMA_MAX), "steps"),
        (log_uniform_sigmas, (0, SIGMA_MIN, SIGMA_MAX), "steps"),
        (log_uniform_sigmas, (10, 0.0, SIGMA_MAX), "sigma_min"),
        (log_uniform_sigmas, (10, SIGMA_MAX, SIGMA_MIN), "sigma_min < sigma_max"),
        (log_uniform_sigmas, (10, SIGMA_MIN, math.nan), "sigma_min"),
        (geometric_sigmas, (0, 1.0, 0.1), "steps"),
        (geometric_sigmas, (-1, 1.0, 0.1), "steps"),
    ],
)
def test_bad_arguments_raise_value_error(schedule, args, match):
    with pytest.raises(ValueError, match=match):
        schedule(*args)


@pytest.mark.parametrize("schedule", [karras_sigmas, log_uniform_sigmas])
def test_infinite_sigma_max_is_rejected(schedule):
    with pytest.raises(ValueError):
        schedule(10, SIGMA_MIN, math.inf)


@pytest.mark.parametrize("args", [(3, 0.0, 1.0), (3, 1.0, -0.1), (3, 1.0, 0.0)])
def test_geometric_sigmas_rejects_non_positive_levels(args):
    with pytest.raises(ValueError):
        geometric_sigmas(*args)


def test_karras_sigmas_rejects_zero_rho():
    with pytest.raises(ValueError):
        karras_sigmas(10, SIGMA_MIN, SIGMA_MAX, rho=0.0)
