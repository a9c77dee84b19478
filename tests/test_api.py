"""The Python API in-process: dataset layout per forward model, and checks made before sampling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from forward_models.registry import ForwardModelError
from posterior_diffusion import reconstruct, simulate_observation
from posterior_diffusion.io import Observation, ObservationError, write_observation
from posterior_diffusion.priors import PowerSpectrumError

N = 16


def noise_obs(shape=(N, N), **kwargs):
    return simulate_observation("noise", shape, noise_std=0.1, seed=1, **kwargs)


def test_importing_the_package_does_not_load_torch():
    code = "import sys, posterior_diffusion; assert 'torch' not in sys.modules, 'torch loaded'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_downsampled_data_get_their_own_dims():
    obs = simulate_observation("downsample", (N, N), attrs={"downsample_factor": 2}, noise_std=0.05)
    assert obs.y.shape == (1, N // 2, N // 2) and obs.truth.shape == (1, N, N)
    ds = reconstruct(obs, num_samples=2, steps=4, progress=False)
    assert ds["samples"].dims == ("sample", "y", "x") and ds["samples"].shape == (2, N, N)
    assert ds["observation"].dims == ("data_y", "data_x")
    assert ds["observation"].shape == (N // 2, N // 2)
    assert ds.attrs["command"] == "(Python API)" and "input_file" not in ds.attrs


def test_channels_are_kept_when_there_are_several():
    # The default prior describes 1-channel convergence maps: two channels need another prior.
    obs = noise_obs((2, N, N), prior="gaussian")
    with pytest.raises(ValueError, match="default prior cannot describe these fields"):
        reconstruct(obs, num_samples=2, steps=4, progress=False)
    ds = reconstruct(obs, prior="gaussian", num_samples=2, steps=4, progress=False)
    assert ds["samples"].dims == ("sample", "channel", "y", "x")
    assert ds["samples"].shape == (2, 2, N, N)
    assert ds["observation"].dims == ds["truth"].dims == ("channel", "y", "x")


def test_single_sample_has_nan_std():
    ds = reconstruct(noise_obs(), num_samples=1, steps=4, progress=False)
    assert np.isnan(ds["std"].values).all()
    np.testing.assert_array_equal(ds["mean"].values, ds["samples"].values[0])


def test_nonlinear_model_defaults_to_linearized_and_rejects_guided():
    obs = simulate_observation("galaxy_counts", (N, N), seed=2)
    with pytest.raises(ValueError, match="sampler 'guided' needs a linear forward model"):
        reconstruct(obs, sampler="guided", num_samples=1, steps=2, progress=False)
    ds = reconstruct(obs, num_samples=1, steps=8, progress=False)
    assert ds.attrs["sampler"] == "linearized"


def test_truth_must_match_the_field_shape():
    obs = noise_obs()
    obs.truth = np.zeros((1, N // 2, N // 2))
    with pytest.raises(ObservationError, match=r"dataset 'truth': has shape \(1, 8, 8\)"):
        reconstruct(obs, num_samples=1, progress=False)


def test_forward_model_is_needed():
    obs = Observation(y=np.zeros((N, N)), noise_std=np.array(0.1))
    with pytest.raises(ObservationError, match="no root attribute 'forward_model'"):
        reconstruct(obs, num_samples=1, progress=False)
    # ... unless it is given
    ds = reconstruct(obs, forward_model="noise", num_samples=1, steps=2, progress=False)
    assert ds.attrs["forward_model"] == "noise"


def test_unknown_forward_model_names_the_file(tmp_path):
    path = tmp_path / "obs.h5"
    write_observation(path, np.zeros((N, N)), noise_std=0.1, attrs={"forward_model": "nosuch"})
    with pytest.raises(ForwardModelError, match=rf"^{path}: unknown forward model 'nosuch'"):
        reconstruct(path, num_samples=1, progress=False)


@pytest.mark.parametrize(
    "prior, match",
    [("nosuch.pt", "nosuch.pt: prior file not found"), ("unet-v2", "unknown prior 'unet-v2'")],
)
def test_prior_specs(prior, match):
    with pytest.raises(ValueError, match=match):
        reconstruct(noise_obs(), prior=prior, num_samples=1, progress=False)


def test_gaussian_prior_without_a_table_uses_the_default_spectrum():
    ds = reconstruct(noise_obs(), prior="gaussian", num_samples=1, progress=False)
    identity = json.loads(ds.attrs["prior"])
    assert identity["name"] == "gaussian"
    assert identity["power_spectrum"].endswith("default_power_spectrum.txt")


def test_bad_power_spectrum_file_is_named(tmp_path):
    table = tmp_path / "pk.txt"
    table.write_text("0.0 1.0\n0.1 0.5\n")  # stops far short of the grid's corner
    with pytest.raises(PowerSpectrumError, match=r"pk\.txt"):
        reconstruct(noise_obs(), power_spectrum=table, num_samples=1, progress=False)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"num_samples": 0}, "number of samples must be >= 1"),
        ({"steps": 0}, "number of steps must be >= 1"),
        ({"batch_size": 0}, "batch size must be >= 1"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*63\)"),
        ({"device": "toaster"}, "unknown device 'toaster'"),
        ({"sampler": "nosuch"}, "unknown sampler 'nosuch'"),
    ],
)
def test_run_settings_are_checked(settings, match):
    with pytest.raises(ValueError, match=match):
        reconstruct(noise_obs(), progress=False, **{"num_samples": 1, **settings})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        reconstruct(noise_obs(), device="cuda", num_samples=1, progress=False)


def test_simulation_is_reproducible_and_seeded():
    a, b, c = noise_obs(), noise_obs(), simulate_observation("noise", (N, N), noise_std=0.1, seed=2)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert not np.allclose(a.truth, c.truth)


def test_simulation_mask_is_on_the_data_grid():
    obs = simulate_observation(
        "inpainting", (N, 2 * N), noise_std=0.1, mask_fraction=0.2, mask_border=2, seed=3
    )
    assert obs.mask.shape == (N, 2 * N)
    assert obs.mask[:2].sum() == 0 and obs.mask[:, -2:].sum() == 0
    assert np.all(obs.y[0][obs.mask == 0] == 0)
    observed = obs.mask == 1
    assert not np.any(obs.y[0][observed] == obs.truth[0][observed])  # noise was added


def test_a_simulation_mask_of_none_is_the_forward_models_default():
    # The lensing default: a border of min(H, W) // 16 pixels and holes over about 10% of the rest.
    obs = simulate_observation(
        "lensing", (N, N), prior="gaussian", mask_fraction=None, mask_border=None, seed=4
    )
    assert obs.mask[0].sum() == obs.mask[-1].sum() == obs.mask[:, 0].sum() == 0
    assert 0.05 < 1 - obs.mask[1:-1, 1:-1].mean() < 0.4
    # Explicit values are kept, None or not: no holes, no border, no mask.
    assert simulate_observation("lensing", (N, N), prior="gaussian", seed=4).mask is None
    bordered = simulate_observation(
        "lensing", (N, N), prior="gaussian", mask_fraction=0.0, mask_border=None, seed=4
    )
    assert bordered.mask[1:-1, 1:-1].all() and not bordered.mask[0].any()


@pytest.mark.parametrize("module", ["calibration", "reconstruction", "observing"])
def test_lower_floors_do_not_import_the_api(module):
    code = (
        f"import sys, posterior_diffusion.{module}; "
        "assert 'posterior_diffusion.api' not in sys.modules, 'api loaded'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
