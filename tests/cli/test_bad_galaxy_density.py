"""A lensing observation's galaxy density (dataset or attribute n_gal_per_arcmin2) of the wrong
shape, negative or not a number is refused in one line naming the file and where it sits, before
any journal or output exists."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from posterior_diffusion.cli import main

PREFIX = "posterior-diffusion: error: "


@pytest.fixture(scope="module")
def lensing_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("obs") / "shear.h5"
    assert main(["simulate-obs", str(path), "--forward-model", "lensing", "--shape", "12", "12",
                 "--prior", "gaussian", "--seed", "1"]) == 0  # fmt: skip
    with h5py.File(path) as f:
        assert "n_gal_per_arcmin2" in f.attrs  # the density the test then breaks
    return path


CASES = {
    "dataset of another shape": (
        lambda f: f.create_dataset("n_gal_per_arcmin2", data=np.ones((3, 5))),
        "dataset 'n_gal_per_arcmin2': has shape (3, 5); expected one number or (H, W) = (12, 12)",
    ),
    "negative dataset": (
        lambda f: f.create_dataset("n_gal_per_arcmin2", data=-np.ones((12, 12))),
        "dataset 'n_gal_per_arcmin2': has 144 negative values",
    ),
    "attribute of another shape": (
        lambda f: f.attrs.__setitem__("n_gal_per_arcmin2", np.array([1.0, 2.0])),
        "attribute 'n_gal_per_arcmin2' has shape (2,); expected one number",
    ),
    "text attribute": (
        lambda f: f.attrs.__setitem__("n_gal_per_arcmin2", "many"),
        "attribute 'n_gal_per_arcmin2' has non-numeric dtype",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_galaxy_density_is_one_line_before_any_side_effect(
    lensing_file, tmp_path, capsys, case
):
    edit, message = CASES[case]
    bad = tmp_path / "bad.h5"
    shutil.copy(lensing_file, bad)
    with h5py.File(bad, "r+") as f:
        edit(f)
    out = tmp_path / "out" / "post.h5"
    out.parent.mkdir()
    code = main(["reconstruct", str(bad), "--prior", "gaussian", "--num-samples", "2",
                 "--steps", "4", "--no-progress", "-o", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"{PREFIX}{bad}: {message}"), err
    assert not any(out.parent.iterdir())  # no output, no journal
