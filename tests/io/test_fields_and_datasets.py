"""Observation and field files in, result datasets out: validation messages, round trips, atomic
writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr

from posterior_diffusion.io import (
    FieldFileError,
    Observation,
    ObservationError,
    atomic_path,
    read_fields,
    read_observation,
    write_dataset,
    write_fields,
    write_observation,
)
from posterior_diffusion.io.attrs import portable_attrs
from posterior_diffusion.io.fields import open_file, read_theta

H, W = 16, 24


def write_h5(path, attrs=None, **datasets):
    """An HDF5 file written by hand, bypassing write_observation's checks."""
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f.create_dataset(name, data=data)
        f.attrs.update(attrs or {})
    return path


def good_arrays(rng):
    mask = np.ones((H, W))
    mask[:4, :5] = 0
    return {
        "y": rng.normal(size=(2, H, W)),
        "mask": mask,
        "noise_std": np.full((2, 1, 1), 0.3),
        "truth": rng.normal(size=(1, H, W)),
    }


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = good_arrays(rng)
    psf = rng.random((5, 5))
    attrs = {"forward_model": "lensing", "sigma_e": 0.26, "n": 3, "flags": [1, 2], "meta": {"a": 1}}
    path = tmp_path / "obs.h5"
    write_observation(path, attrs=attrs, psf=psf, **arrays)
    obs = read_observation(path)
    assert obs.path == path
    assert obs.y.dtype == np.float64 and obs.y.shape == (2, H, W)
    np.testing.assert_array_equal(obs.y, arrays["y"])
    np.testing.assert_array_equal(obs.mask, arrays["mask"])
    np.testing.assert_array_equal(obs.noise_std, arrays["noise_std"])
    np.testing.assert_array_equal(obs.truth, arrays["truth"])
    np.testing.assert_array_equal(obs.arrays["psf"], psf)
    assert set(obs.arrays) == {"psf"}
    assert obs.forward_model == "lensing"
    assert obs.attrs["sigma_e"] == 0.26 and type(obs.attrs["sigma_e"]) is float
    assert obs.attrs["n"] == 3 and type(obs.attrs["n"]) is int
    assert obs.attrs["flags"] == [1, 2]
    assert json.loads(obs.attrs["meta"]) == {"a": 1}  # nested values are stored as JSON


def test_two_dimensional_y_and_truth_become_single_channel(tmp_path):
    path = write_h5(tmp_path / "obs.h5", y=np.ones((H, W), np.float32), truth=np.zeros((H, W)))
    obs = read_observation(path)
    assert obs.y.shape == (1, H, W) and obs.y.dtype == np.float64
    assert obs.truth.shape == (1, H, W)


def test_attributes_become_plain_python(tmp_path):
    attrs = {"name": np.bytes_(b"lensing"), "scale": np.float32(0.5), "shape": np.array([3, 4])}
    obs = read_observation(write_h5(tmp_path / "obs.h5", attrs=attrs, y=np.ones((H, W))))
    assert obs.attrs["name"] == "lensing" and type(obs.attrs["name"]) is str
    assert type(obs.attrs["scale"]) is float
    assert obs.attrs["shape"] == [3, 4] and all(type(v) is int for v in obs.attrs["shape"])


def test_zero_noise_on_unobserved_pixels_only_is_fine(tmp_path):
    mask = np.ones((H, W))
    mask[0, 0] = 0
    noise_std = np.ones((H, W))
    noise_std[0, 0] = 0.0
    path = write_h5(tmp_path / "obs.h5", y=np.ones((H, W)), mask=mask, noise_std=noise_std)
    assert read_observation(path).noise_std[0, 0] == 0.0


def _nan_y():
    y = np.ones((H, W))
    y[0, :2] = np.nan
    y[3, 3] = np.inf
    return y


BAD_DATASETS = {
    "missing y": ({"mask": np.ones((H, W))}, "y", "missing"),
    "1-D y": ({"y": np.ones(H)}, "y", "expected (H, W) or (C, H, W)"),
    "4-D y": ({"y": np.ones((1, 2, H, W))}, "y", "expected (H, W) or (C, H, W)"),
    "empty y": ({"y": np.ones((0, W))}, "y", "empty"),
    "NaN y": ({"y": _nan_y()}, "y", "contains 3 NaN/inf values"),
    "complex y": ({"y": np.ones((H, W), complex)}, "y", "complex"),
    "string y": ({"y": np.array([b"a", b"b"])}, "y", "non-numeric"),
    "mask shape": ({"y": np.ones((2, H, W)), "mask": np.ones((H, W + 1))}, "mask", "(H, W)"),
    "mask 3-D": ({"y": np.ones((2, H, W)), "mask": np.ones((2, H, W))}, "mask", "(H, W)"),
    "mask values": ({"y": np.ones((H, W)), "mask": np.full((H, W), 0.5)}, "mask", "0 and 1"),
    "mask empty": ({"y": np.ones((H, W)), "mask": np.zeros((H, W))}, "mask", "no observed"),
    "mask NaN": ({"y": np.ones((H, W)), "mask": np.full((H, W), np.nan)}, "mask", "NaN/inf"),
    "noise negative": ({"y": np.ones((H, W)), "noise_std": -1.0}, "noise_std", "negative"),
    "noise zero": ({"y": np.ones((H, W)), "noise_std": 0.0}, "noise_std", "is 0 on"),
    "noise shape": ({"y": np.ones((H, W)), "noise_std": np.ones(3)}, "noise_std", "broadcast"),
    "noise inf": ({"y": np.ones((H, W)), "noise_std": np.inf}, "noise_std", "NaN/inf"),
    "truth 1-D": ({"y": np.ones((H, W)), "truth": np.ones(W)}, "truth", "expected (H, W)"),
    "truth NaN": ({"y": np.ones((H, W)), "truth": np.full((H, W), np.nan)}, "truth", "NaN/inf"),
    "psf NaN": ({"y": np.ones((H, W)), "psf": np.full((3, 3), np.nan)}, "psf", "NaN/inf"),
}


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_bad_dataset_is_named_in_one_line(tmp_path, case):
    datasets, name, problem = BAD_DATASETS[case]
    path = write_h5(tmp_path / "bad_obs.h5", **datasets)
    with pytest.raises(ObservationError) as info:
        read_observation(path)
    message = str(info.value)
    assert message.startswith(f"{path}: dataset '{name}': ")
    assert problem in message
    assert "\n" not in message
    assert info.value.dataset == name


def test_missing_file(tmp_path):
    with pytest.raises(ObservationError, match=r"nothere\.h5: no such file$"):
        read_observation(tmp_path / "nothere.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("y = 1, 2, 3\n")
    with pytest.raises(ObservationError, match=r"text\.h5: not an HDF5 file$"):
        read_observation(path)


def test_empty_file_and_directory(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(ObservationError, match=r"empty\.h5: not an HDF5 file"):
        read_observation(tmp_path / "empty.h5")
    (tmp_path / "dir.h5").mkdir()
    with pytest.raises(ObservationError, match=r"dir\.h5: is a directory"):
        read_observation(tmp_path / "dir.h5")


def test_in_memory_observation_is_named_as_such():
    from posterior_diffusion.io import check_observation

    with pytest.raises(ObservationError, match=r"^<observation>: dataset 'y': contains 1 NaN"):
        check_observation(Observation(y=np.array([[np.nan, 1.0]])))


def test_write_observation_refuses_invalid_data_and_writes_nothing(tmp_path):
    path = tmp_path / "obs.h5"
    with pytest.raises(ObservationError, match="dataset 'y': contains 3 NaN/inf"):
        write_observation(path, _nan_y())
    with pytest.raises(ValueError, match=r"use a \.h5 or \.hdf5 suffix"):
        write_observation(tmp_path / "obs.txt", np.ones((H, W)))
    assert list(tmp_path.iterdir()) == []


def _dataset():
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {
            "samples": (("sample", "y", "x"), rng.normal(size=(3, H, W))),
            "mask": (("y", "x"), np.ones((H, W), np.uint8)),
        },
        attrs={"seed": 7, "settings": {"steps": 4}, "flag": True, "name": "noise"},
    )


@pytest.mark.parametrize("suffix", [".h5", ".hdf5", ".nc", ".zarr"])
def test_write_dataset_round_trip(tmp_path, suffix):
    ds = _dataset()
    path = tmp_path / f"post{suffix}"
    write_dataset(ds, path)
    engine = "zarr" if suffix == ".zarr" else "h5netcdf"
    with xr.open_dataset(path, engine=engine) as back:
        np.testing.assert_array_equal(back["samples"].values, ds["samples"].values)
        assert back["samples"].dims == ("sample", "y", "x")
        assert back.attrs["seed"] == 7
        assert json.loads(back.attrs["settings"]) == {"steps": 4}
        assert back.attrs["flag"] == 1 and back.attrs["name"] == "noise"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_write_dataset_replaces_an_existing_zarr_store(tmp_path):
    path = tmp_path / "post.zarr"
    write_dataset(_dataset().isel(sample=[0]), path)
    write_dataset(_dataset(), path)
    with xr.open_dataset(path, engine="zarr") as back:
        assert back.sizes["sample"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["post.zarr"]


@pytest.mark.parametrize("name", ["post.txt", "post", "post.h5.bak"])
def test_unknown_output_suffix_fails_before_any_work(tmp_path, monkeypatch, name):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the writer ran for an unsupported suffix")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", must_not_run)
    monkeypatch.setattr(xr.Dataset, "to_zarr", must_not_run)
    with pytest.raises(FieldFileError, match="unsupported output format"):
        write_dataset(_dataset(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_directory(tmp_path):
    with pytest.raises(FieldFileError, match="output directory .* does not exist"):
        write_dataset(_dataset(), tmp_path / "no" / "post.h5")


def test_failed_netcdf_write_leaves_existing_output_untouched(tmp_path, monkeypatch):
    path = tmp_path / "post.h5"
    path.write_bytes(b"previous result")

    def write_half_then_fail(self, target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"\x89HDF partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", write_half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_dataset(_dataset(), path)
    assert path.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["post.h5"]


def test_failed_zarr_write_leaves_existing_store_untouched(tmp_path, monkeypatch):
    path = tmp_path / "post.zarr"
    write_dataset(_dataset().isel(sample=[0]), path)
    original_to_zarr = xr.Dataset.to_zarr

    def write_then_fail(self, store, *args, **kwargs):
        original_to_zarr(self, store, *args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C right before the rename

    monkeypatch.setattr(xr.Dataset, "to_zarr", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(_dataset(), path)
    with xr.open_dataset(path, engine="zarr") as back:
        assert back.sizes["sample"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["post.zarr"]


def test_failed_observation_write_leaves_no_file(tmp_path, monkeypatch):
    import posterior_diffusion.io.observation as observation

    def fail(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(observation, "portable_attrs", fail)  # fails after the datasets
    with pytest.raises(OSError, match="no space"):
        write_observation(tmp_path / "obs.h5", np.ones((H, W)), attrs={"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.h5"
    path.write_text("old")
    with pytest.raises(ValueError), atomic_path(path) as tmp:
        tmp.write_text("new, half")
        raise ValueError("stop")
    assert path.read_text() == "old"
    with atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


def test_a_write_removes_what_a_killed_writer_left_and_keeps_a_live_one_s(tmp_path):
    """SIGKILL during a final write leaves `.NAME.partial-PID-*`; the next successful write of
    NAME (a --resume, say) removes it, but not the temporary of a process still running."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "out[1].zarr"  # glob characters in the name are taken literally
    leftovers = [
        tmp_path / f".{path.name}.partial-{dead.pid}-0a1b2c3d",
        tmp_path / f".{path.name}.old-{dead.pid}-0a1b2c3d",
    ]
    leftovers[0].mkdir()
    (leftovers[0] / "chunk").write_text("half")
    leftovers[1].write_text("old")
    live = tmp_path / f".{path.name}.partial-{os.getppid()}-0a1b2c3d"
    live.write_text("another process is writing")
    unrelated = tmp_path / ".other.h5.partial-1-0a1b2c3d"
    unrelated.write_text("not ours")
    with atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert not any(p.exists() for p in leftovers)
    assert live.exists() and unrelated.exists()


def test_portable_attrs():
    class Version(str):  # like torch.__version__, which h5py cannot store
        pass

    out = portable_attrs(
        {"v": Version("2.1"), "b": np.bool_(True), "n": None, "d": {"k": [1, 2]}, "a": (1, 2)}
    )
    assert type(out["v"]) is str and out["b"] == 1 and "n" not in out
    assert json.loads(out["d"]) == {"k": [1, 2]}
    np.testing.assert_array_equal(out["a"], [1, 2])


@pytest.mark.parametrize("suffix", [".h5", ".nc", ".zarr"])
def test_field_file_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(2)
    fields, theta = rng.normal(size=(3, H, W)).astype(np.float32), rng.normal(size=(3, 2))
    path = write_fields(tmp_path / f"sims{suffix}", fields, {"kind": "grf", "seed": 4}, theta)
    back, dataset = read_fields(path)
    assert dataset == "fields" and back.shape == (3, 1, H, W) and back.dtype == np.float64
    np.testing.assert_array_equal(back[:, 0], fields)
    with open_file(path) as store:
        np.testing.assert_array_equal(read_theta(store, path, 3), theta)
        assert int(store.attrs["seed"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_read_fields_closes_the_file_even_when_it_refuses_it(tmp_path):
    path = write_h5(tmp_path / "f.h5", samples=np.full((2, H, W), np.nan))
    with pytest.raises(FieldFileError) as err:
        read_fields(path)
    # The error's traceback keeps the reader's frame alive; HDF5 refuses to truncate a file
    # that is still open there.
    assert err.value.__traceback__ is not None
    with h5py.File(path, "w"):
        pass


@pytest.mark.parametrize(
    "name, datasets, dataset, message",
    [
        ("none.h5", None, None, "none.h5: no such file"),
        ("f.npy", {}, None, "f.npy: unsupported file format ('.npy')"),
        ("text.h5", None, None, "text.h5: not a readable .h5 file"),
        ("f.h5", {"other": np.ones((2, H, W))}, None, "none of the datasets fields, samples"),
        ("f.h5", {"fields": np.ones((2, H, W))}, "mean", "no dataset 'mean' (found: fields)"),
        ("f.h5", {"fields": np.ones((2, H, W), np.int32)}, None, "'fields' must hold floating"),
        ("f.h5", {"fields": np.ones((0, H, W))}, None, "dataset 'fields' is empty"),
        ("f.h5", {"truth": np.ones((2, 1, 1, H, W))}, None, "(num, C, H, W) fields, got float64"),
        ("f.h5", {"fields": np.array([[[1.0]], [[np.inf]]])}, None, "'fields' map 1 has NaN"),
    ],
)
def test_bad_field_file_is_named_in_one_line(tmp_path, name, datasets, dataset, message):
    path = tmp_path / name
    if datasets is not None:
        write_h5(path, **datasets)
    elif name.startswith("text"):
        path.write_text("not HDF5")
    with pytest.raises(FieldFileError) as err:
        read_fields(path, dataset)
    assert message in str(err.value) and str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)
