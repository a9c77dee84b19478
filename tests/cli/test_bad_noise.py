"""Noise so small that float64 cannot carry the whitened data is refused in one line naming the
file and dataset; small but representable noise runs and fits the data."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from posterior_diffusion.cli import main

PREFIX = "posterior-diffusion: error: "


@pytest.fixture(scope="module")
def noise_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("obs") / "noise.h5"
    assert main(["simulate-obs", str(path), "--forward-model", "noise", "--shape", "12", "12",
                 "--prior", "gaussian", "--noise-std", "0.5", "--seed", "1"]) == 0  # fmt: skip
    return path


def with_noise(source, target, value: float):
    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        f["noise_std"][...] = np.full_like(f["noise_std"][...], value)
    return target


def reconstruct(observation, output) -> int:
    return main(["reconstruct", str(observation), "--prior", "gaussian", "--num-samples", "2",
                 "--steps", "8", "--no-progress", "-o", str(output)])  # fmt: skip


def test_noise_below_float64_reach_is_refused(noise_file, tmp_path, capsys):
    bad = with_noise(noise_file, tmp_path / "tiny.h5", 1e-100)
    out = tmp_path / "out" / "post.h5"
    out.parent.mkdir()
    assert reconstruct(bad, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{PREFIX}{bad}: dataset 'noise_std': noise std 1e-100 is below 1e-30")
    assert not any(out.parent.iterdir())


def test_small_representable_noise_fits_the_data(noise_file, tmp_path):
    exact = with_noise(noise_file, tmp_path / "exact.h5", 1e-12)
    out = tmp_path / "post.h5"
    assert reconstruct(exact, out) == 0
    with h5py.File(out) as f, h5py.File(exact) as g:
        error = np.abs(f["mean"][...] - g["y"][...].reshape(f["mean"].shape)).max()
    assert error < 1e-6, error
