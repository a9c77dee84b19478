"""The PF-ODE log-likelihood against the analytic log-density of a Gaussian prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posterior_diffusion.networks import UNet
from posterior_diffusion.networks.edm import EDMPrecond
from posterior_diffusion.prior_density import log_likelihood
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.priors.network import NetworkPrior

SHAPE = (1, 16, 16)


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior(default_power_spectrum(), SHAPE)


def fields(prior: GaussianPrior, num: int, seed: int) -> torch.Tensor:
    """`num` prior draws and one white-noise field of the same pixel variance."""
    generator = torch.Generator().manual_seed(seed)
    draws = prior.sample(num, generator)
    white = torch.randn((1, *SHAPE), generator=generator, dtype=torch.float64) * draws.std()
    return torch.cat([draws, white])


def test_gaussian_log_density_matches_dense_algebra(prior):
    """The analytic value the tests compare with: log N(x; 0, C + s^2 I), C built densely from
    the prior's covariance products."""
    x = fields(prior, 2, seed=1)[:, :, :8, :8]
    small = GaussianPrior(default_power_spectrum(), (1, 8, 8))
    basis = torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)
    dense = small.covariance_apply(basis).reshape(64, 64) + 0.01**2 * torch.eye(64)
    expected = torch.distributions.MultivariateNormal(torch.zeros(64), dense).log_prob(
        x.reshape(3, 64)
    )
    torch.testing.assert_close(small.log_density(x, 0.01), expected, rtol=1e-7, atol=0)


def test_exact_trace_agrees_with_the_analytic_log_density(prior):
    """With the trace summed exactly, only the ODE solver's error remains: 0.003 nats of ~570
    at rtol 1e-5 (measured), so 0.02 bounds it."""
    x = fields(prior, 2, seed=2)
    result = log_likelihood(prior, x, probes="exact", rtol=1e-5)
    expected = prior.log_density(x, prior.sigma_min())
    assert torch.all(result.standard_error == 0)
    torch.testing.assert_close(result.log_density, expected, rtol=0, atol=0.02)
    # Model checking: white noise of the field's variance is far less plausible than a draw.
    assert result.log_density[-1] < result.log_density[:-1].min() - 50


def test_hutchinson_estimate_is_within_its_error_bars(prior):
    """16 Rademacher probes per field: (estimate - exact) / standard error is Student-t with 15
    degrees of freedom (std 1.07). Over 24 fields each |t| < 4.5 (chance of any exceeding it
    about 1%) and the spread of t lies in [0.6, 1.6] (its sampling error is about 15%)."""
    x = fields(prior, 23, seed=3)
    result = log_likelihood(prior, x, probes=16, seed=0, rtol=1e-5)
    expected = prior.log_density(x, prior.sigma_min())
    t = ((result.log_density - expected) / result.standard_error).numpy()
    assert np.all(np.abs(t) < 4.5), t
    assert 0.6 < t.std() < 1.6, t
    assert torch.all(result.standard_error > 0)
    assert torch.all(result.standard_error < 0.02 * result.log_density.abs())


def network_prior(perturb: float) -> NetworkPrior:
    """A tiny U-Net prior. Unperturbed, its output layer is zero, so D = c_skip x: exactly the
    denoiser of white noise of variance data_std^2."""
    torch.manual_seed(0)
    net = UNet(channels=1, base_channels=8, channel_mults=(1, 2), blocks_per_level=1)
    with torch.no_grad():
        for weight in net.parameters():
            weight.add_(perturb * torch.randn_like(weight))
    precond = EDMPrecond(net)
    precond.set_normalisation([0.0], 0.5)
    meta = {"field_shape": [1, 8, 8], "data_std": 0.5, "hybrid": False, "network": {}}
    return NetworkPrior(precond, meta, source="test", checksum="0")


def test_network_prior_through_the_ode(seeded):
    """The network path (linearisation by autograd, traces by vector-Jacobian products) on the
    zero-output U-Net, whose prior is N(0, 0.5^2 I): the analytic log-density to 0.02 nats."""
    prior = network_prior(perturb=0.0)
    x = 0.5 * torch.randn((3, 1, 8, 8), generator=seeded(1), dtype=torch.float64)
    result = log_likelihood(prior, x, probes=2, rtol=1e-5)
    variance = 0.5**2 + prior.sigma_min() ** 2
    expected = torch.distributions.Normal(0.0, variance**0.5).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(result.log_density, expected, rtol=0, atol=0.02)


def test_hutchinson_trace_of_a_network_jacobian(seeded):
    """A perturbed U-Net's Jacobian is neither diagonal nor symmetric; 1000 Rademacher probes
    estimate its trace within 4.5 standard errors of the exact sum over the 64 pixels."""
    from posterior_diffusion.prior_density import _exact_trace, hutchinson_trace

    prior = network_prior(perturb=0.05)
    x = 0.5 * torch.randn((1, 1, 8, 8), generator=seeded(2), dtype=torch.float64)
    _, cov = prior.linearize(x, 0.4)
    exact = _exact_trace(cov, x)
    signs = torch.randint(0, 2, (1000, *x.shape), generator=seeded(3))
    estimates = hutchinson_trace(cov, (2 * signs - 1).to(x.dtype))[0]
    error = estimates.std() / len(estimates) ** 0.5
    assert abs(estimates.mean() - exact[0]) < 4.5 * error
    assert error < 0.05 * exact[0].abs()  # a real test: the error bar is tight


def test_bad_arguments_are_refused(prior):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        log_likelihood(prior, torch.zeros(SHAPE, dtype=torch.float64))
    with pytest.raises(ValueError, match="probes must be"):
        log_likelihood(prior, torch.zeros((1, *SHAPE), dtype=torch.float64), probes=1)


def test_model_check_command_ranks_fields_among_prior_draws(prior, tmp_path):
    """`log-likelihood` on a file: the values equal the API's, prior draws rank mid-pack and a
    white-noise field of the same variance ranks below every prior draw; the JSON output has
    the values and provenance."""
    import json

    import h5py

    from posterior_diffusion.cli import main

    x = fields(prior, 2, seed=5)
    path = tmp_path / "fields.h5"
    with h5py.File(path, "w") as f:
        f["fields"] = x[:, 0].numpy()
    out = tmp_path / "check.json"
    argv = ["log-likelihood", str(path), "--prior", "gaussian", "--probes", "exact",
            "--reference", "16", "--no-progress", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    expected = log_likelihood(prior, x, probes="exact").log_density
    np.testing.assert_allclose(result["log_density"], expected.numpy(), rtol=0, atol=1e-9)
    below = result["fraction_of_prior_draws_below"]
    assert below[2] == 0.0  # white noise: less likely than all 16 prior draws
    assert 0 < below[0] < 1 or 0 < below[1] < 1  # a prior draw is rarely ranked at an end twice
    assert len(result["reference_log_density"]) == 16
    assert result["provenance"]["prior_checksum"] == prior.identity()["checksum"]
    assert "log-likelihood" in result["provenance"]["command"]


def test_model_check_command_refuses_bad_input(tmp_path, capsys):
    import h5py

    from posterior_diffusion.cli import main

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["other"] = np.zeros((2, 16, 16))
        f["ints"] = np.zeros((2, 16, 16), dtype=np.int32)
    cases = [
        ([str(tmp_path / "missing.h5")], "missing.h5: no such file"),
        ([str(path)], "none of the datasets fields, samples, truth (found: ints, other)"),
        ([str(path), "--dataset", "ints"], "dataset 'ints' must hold floating-point"),
        ([str(path), "--dataset", "other", "--reference", "-1"], "--reference must be >= 0"),
        ([str(path), "--dataset", "other", "-o", "x.txt"], "x.txt: the result is written as JSON"),
    ]
    for argv, message in cases:
        assert main(["log-likelihood", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
