"""The `report` command on posterior files from `reconstruct`: figures, numbers, refusals."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from posterior_diffusion.api import reconstruct, simulate_observation
from posterior_diffusion.cli import main
from posterior_diffusion.io import write_dataset

N = 16
PREFIX = "posterior-diffusion: error: "


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith(PREFIX) and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def posteriors(tmp_path_factory):
    """A lensing posterior with truth (.h5) and the same without truth (.zarr)."""
    folder = tmp_path_factory.mktemp("post")
    obs = simulate_observation(
        "lensing", shape=(N, N), prior="gaussian", mask_fraction=0.1, mask_border=1, seed=5
    )
    ds = reconstruct(
        obs, prior="gaussian", num_samples=8, steps=8, seed=0, progress=False, command="test"
    )
    write_dataset(ds, folder / "with_truth.h5")
    write_dataset(ds.drop_vars("truth"), folder / "no_truth.zarr")
    return folder, ds


def test_report_with_truth(posteriors, capsys):
    folder, ds = posteriors
    assert main(["report", str(folder / "with_truth.h5")]) == 0
    out = folder / "with_truth_report"  # the default: next to the file
    assert str(out) in capsys.readouterr().out
    for name in ("panels", "coverage", "spectra", "one_point", "eb_modes"):  # lensing: E/B
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name
    files = ("report.pdf", "index.html", "summary.json", "coverage.csv", "spectra.csv")
    for name in (*files, "eb_modes.csv"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["statistics"]["num_samples"] == 8
    assert summary["statistics"]["field_shape"] == [1, N, N]
    np.testing.assert_allclose(
        summary["statistics"]["mean_posterior_std"], float(ds["std"].mean()), rtol=1e-10
    )
    assert summary["provenance"]["sampler"] == "guided"
    truth = summary["truth_diagnostics"]
    assert all(0 <= c <= 1 for c in truth["coverage"]["empirical"])
    assert len(truth["spectra"]["k"]) == len(truth["spectra"]["r_mean"]) == N // 2
    assert truth["rmse_of_mean"] > 0


def test_report_without_truth_to_chosen_directory(posteriors, tmp_path):
    folder, _ = posteriors
    out = tmp_path / "rep"
    assert main(["report", str(folder / "no_truth.zarr"), "-o", str(out)]) == 0
    # E/B power of the data residuals needs no truth (lensing only).
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["eb_modes.png", "panels.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert "truth_diagnostics" not in summary and summary["statistics"]["num_samples"] == 8
    assert summary["eb_modes"]["samples_b_over_noise"] > 0


def test_missing_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.h5")]) == 2
    assert "none.h5: no such file" in one_error_line(capsys)


def test_file_without_samples(tmp_path, capsys):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["mean"] = np.zeros((N, N))
    assert main(["report", str(path)]) == 2
    assert "no variable 'samples'" in one_error_line(capsys)
    assert not (tmp_path / "plain_report").exists()


def test_not_an_hdf5_file(tmp_path, capsys):
    path = tmp_path / "text.h5"
    path.write_text("not a posterior")
    assert main(["report", str(path)]) == 2
    assert "text.h5: cannot read as a posterior file" in one_error_line(capsys)
