"""Galaxy counts must be counts: negative or non-integer data are refused in one line naming the
file and the dataset, before anything is written; valid counts run."""

from __future__ import annotations

import shutil

import h5py
import pytest

from posterior_diffusion.cli import main

PREFIX = "posterior-diffusion: error: "


@pytest.fixture(scope="module")
def counts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("obs") / "counts.h5"
    assert main(["simulate-obs", str(path), "--forward-model", "galaxy_counts", "--shape", "12",
                 "12", "--prior", "gaussian", "--seed", "1"]) == 0  # fmt: skip
    return path


def reconstruct(observation, output) -> int:
    return main(["reconstruct", str(observation), "--prior", "gaussian", "--num-samples", "2",
                 "--steps", "4", "--no-progress", "-o", str(output)])  # fmt: skip


@pytest.mark.parametrize(("value", "shown"), [(-1.0, "-1"), (2.5, "2.5")])
def test_counts_that_are_not_counts_are_refused(counts_file, tmp_path, capsys, value, shown):
    bad = tmp_path / "bad.h5"
    shutil.copy(counts_file, bad)
    with h5py.File(bad, "r+") as f:
        y = f["y"][...]
        y.reshape(-1)[0] = value
        f["y"][...] = y
    out = tmp_path / "out" / "post.h5"
    out.parent.mkdir()
    assert reconstruct(bad, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{PREFIX}{bad}: dataset 'y': Poisson counts must be non-negative")
    assert f"e.g. {shown}" in err
    assert not any(out.parent.iterdir())


def test_valid_counts_run(counts_file, tmp_path):
    assert reconstruct(counts_file, tmp_path / "post.h5") == 0
