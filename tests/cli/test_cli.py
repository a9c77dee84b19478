"""The real command line, end to end on 16 x 16 grids: outputs, provenance, errors, interrupts."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
import xarray as xr

from posterior_diffusion.io import read_observation

N = 16
PREFIX = "posterior-diffusion: error: "


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "posterior_diffusion.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        # a guard against a hang, not a deadline: the lensing runs take ~20 s alone and went past
        # 300 s on a 2-core machine shared with two other jobs
        timeout=900,
    )


def open_result(path):
    engine = "zarr" if str(path).endswith(".zarr") else "h5netcdf"
    return xr.load_dataset(path, engine=engine)


@pytest.fixture(scope="module")
def obs_dir(tmp_path_factory):
    """Observations made by `simulate-obs`, once for the whole module."""
    folder = tmp_path_factory.mktemp("obs")
    runs = {
        "noise.h5": ["--forward-model", "noise", "--noise-std", "0.05", "--seed", "3"],
        "lensing.h5": ["--forward-model", "lensing", "--seed", "4"],
    }
    for name, flags in runs.items():
        done = run_cli("simulate-obs", name, "--shape", N, N, *flags, cwd=folder)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"wrote a simulated '{flags[1]}' observation to {name}"
    return folder


def test_simulated_noise_observation(obs_dir):
    obs = read_observation(obs_dir / "noise.h5")
    assert obs.forward_model == "noise"
    assert obs.y.shape == (1, N, N) and obs.truth.shape == (1, N, N)
    assert obs.mask is None and float(obs.noise_std) == 0.05
    residual = (obs.y - obs.truth).ravel()
    # 256 draws of N(0, 0.05^2): the sample std is within 20% of 0.05 with overwhelming odds.
    assert 0.04 < residual.std() < 0.06
    assert obs.attrs["seed"] == 3 and "simulate-obs" in obs.attrs["command"]


def test_simulated_lensing_observation_has_realistic_defaults(obs_dir):
    obs = read_observation(obs_dir / "lensing.h5")
    assert obs.forward_model == "lensing"
    assert obs.y.shape == (2, N, N) and obs.truth.shape == (1, N, N)
    assert obs.attrs["sigma_e"] == 0.26
    assert obs.attrs["n_gal_per_arcmin2"] == 30.0
    assert obs.attrs["pixel_scale_arcmin"] == 1.0
    # Default mask: a one-pixel border (16 // 16) plus holes over about 10% of the rest.
    assert obs.mask[0].sum() == obs.mask[-1].sum() == 0
    assert obs.mask[:, 0].sum() == obs.mask[:, -1].sum() == 0
    assert 0.05 < 1 - obs.mask[1:-1, 1:-1].mean() < 0.4
    assert np.all(obs.y[:, obs.mask == 0] == 0)


def check_provenance(ds, obs_path, sampler, steps, seed, forward_model):
    attrs = ds.attrs
    assert attrs["sampler"] == sampler
    assert json.loads(attrs["sampler_settings"])["steps"] == steps
    assert attrs["seed"] == seed
    assert attrs["forward_model"] == forward_model
    assert json.loads(attrs["forward_model_params"])["name"] == forward_model
    prior = json.loads(attrs["prior"])
    # The default prior: the shipped network, named by its file and checksum.
    assert prior["name"] == "network" and attrs["prior_checksum"] == prior["checksum"]
    assert prior["file"] == "posterior_diffusion/data/default_prior.pt"
    assert re.fullmatch(r"[0-9a-f]{64}", attrs["prior_checksum"])
    assert attrs["input_file"] == str(obs_path)
    assert attrs["input_sha256"] == hashlib.sha256(obs_path.read_bytes()).hexdigest()
    assert attrs["command"].startswith("posterior-diffusion reconstruct ")
    assert attrs["posterior_diffusion_version"] == "0.1.0"
    assert attrs["interrupted"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", attrs["created_utc"])


def check_summaries(ds):
    samples = ds["samples"].values
    np.testing.assert_allclose(ds["mean"].values, samples.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(ds["std"].values, samples.std(axis=0, ddof=1), rtol=1e-12, atol=0)


def test_reconstruct_noise_default_output_and_netcdf(obs_dir, tmp_path):
    obs_path = obs_dir / "noise.h5"
    done = run_cli("reconstruct", obs_path, "--num-samples", 3, "--steps", 4, "--seed", 5,
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote 3 samples to posterior.h5"
    assert "step" in done.stderr  # the progress bar is on stderr, stdout stays clean
    ds = open_result(tmp_path / "posterior.h5")
    assert set(ds.data_vars) == {"samples", "mean", "std", "observation", "truth"}
    assert ds["samples"].dims == ("sample", "y", "x")
    assert ds["samples"].shape == (3, N, N)
    for name in ("mean", "std", "truth", "observation"):
        assert ds[name].dims == ("y", "x")
    np.testing.assert_array_equal(ds["observation"].values, read_observation(obs_path).y[0])
    check_provenance(ds, obs_path, "guided", 4, 5, "noise")
    check_summaries(ds)
    assert ds.attrs["num_samples_completed"] == 3

    # .nc output; member i depends only on (seed, i), so batch size 1 gives the same ensemble.
    done = run_cli("reconstruct", obs_path, "--num-samples", 3, "--steps", 4, "--seed", 5,
                   "--batch-size", 1, "--no-progress", "-o", "post.nc", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    again = open_result(tmp_path / "post.nc")
    # Equal up to the float32 network's round-off, which depends on how many maps share a batch
    # (measured 7e-7 on fields of std 0.03).
    np.testing.assert_allclose(again["samples"].values, ds["samples"].values, rtol=0, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.nc", "posterior.h5"]


def test_stochastic_flag_reaches_the_sampler_and_the_provenance(obs_dir, tmp_path):
    done = run_cli("reconstruct", obs_dir / "noise.h5", "--prior", "gaussian", "--num-samples", 2,
                   "--steps", 6, "--stochastic", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = json.loads(open_result(tmp_path / "posterior.h5").attrs["sampler_settings"])
    assert info["options"] == {"stochastic": True}


@pytest.mark.parametrize("flag, stochastic", [(None, True), ("--no-stochastic", False)])
def test_the_trained_default_prior_takes_the_reverse_sde_unless_told(obs_dir, tmp_path, flag,
                                                                     stochastic):  # fmt: skip
    done = run_cli("reconstruct", obs_dir / "noise.h5", "--num-samples", 2, "--steps", 3,
                   "--no-progress", *([flag] if flag else []), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = json.loads(open_result(tmp_path / "posterior.h5").attrs["sampler_settings"])
    assert info["options"] == {"stochastic": stochastic}


def test_corrector_flags_reach_the_sampler_and_the_provenance(obs_dir, tmp_path):
    done = run_cli("reconstruct", obs_dir / "noise.h5", "--prior", "gaussian", "--num-samples", 2,
                   "--steps", 6, "--corrector-steps", 2, "--snr", 0.1, "--no-progress",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = json.loads(open_result(tmp_path / "posterior.h5").attrs["sampler_settings"])
    assert info["options"] == {"corrector_steps": 2, "snr": 0.1}
    # 6 predictor steps (one ends at 0) and 2 corrector steps at each of the 5 levels above 0.
    assert info["denoiser_calls_per_sample"] == 6 + 2 * 5
    refused = run_cli("reconstruct", obs_dir / "noise.h5", "--sampler", "dps",
                      "--corrector-steps", 1, "-o", "dps.h5", cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == (
        f"{PREFIX}sampler 'dps' has no option corrector_steps (its options: zeta, beta_min, "
        "beta_max)\n"
    )


def test_reconstruct_lensing_zarr(obs_dir, tmp_path):
    obs_path = obs_dir / "lensing.h5"
    done = run_cli("reconstruct", obs_path, "--num-samples", 2, "--steps", 4, "--seed", 1,
                   "--no-progress", "-o", "post.zarr", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ds = open_result(tmp_path / "post.zarr")
    assert set(ds.data_vars) == {"samples", "mean", "std", "observation", "truth", "mask"}
    assert ds["samples"].dims == ("sample", "y", "x") and ds["samples"].shape == (2, N, N)
    assert ds["observation"].dims == ("data_channel", "y", "x")
    assert ds["observation"].shape == (2, N, N)
    assert ds["mask"].dims == ("y", "x") and ds["truth"].dims == ("y", "x")
    np.testing.assert_array_equal(ds["mask"].values, read_observation(obs_path).mask)
    check_provenance(ds, obs_path, "guided", 4, 1, "lensing")
    check_summaries(ds)
    # the default prior behind shear: refined by default where plain guided was measured off
    # (docs/samplers.md), so no warning, and the file says what ran
    assert "warning: sampler 'guided'" not in done.stderr, done.stderr
    settings = json.loads(ds.attrs["sampler_settings"])
    assert settings["options"]["refine_moves"] == 100, settings
    assert settings["sampler_diagnostics"]["refinement"]["moves"] == 100, settings


def test_reconstruct_lensing_without_refinement_warns_once(obs_dir, tmp_path):
    done = run_cli("reconstruct", obs_dir / "lensing.h5", "--num-samples", 2, "--steps", 4,
                   "--refine-moves", 0, "--no-progress", "-o", "post.h5",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "warning: sampler 'guided'" in line]
    assert len(lines) == 1, done.stderr
    ds = open_result(tmp_path / "post.h5")
    diagnostics = json.loads(ds.attrs["sampler_settings"])["sampler_diagnostics"]
    assert diagnostics["global_statistics_warning"] in lines[0]


def write_bad(folder, name, **datasets):
    attrs = {"forward_model": datasets.pop("forward_model", "noise")}
    with h5py.File(folder / name, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
        f.attrs.update(attrs)


def _with_nan():
    y = np.ones((N, N))
    y[2, 3] = np.nan
    return y


GOOD = {"y": np.ones((N, N)), "noise_std": 0.1}
BAD_INPUTS = {
    # case: (file's datasets, extra flags, what the message must name)
    "missing y": ({"noise_std": 0.1}, [], ["bad.h5", "dataset 'y'", "missing"]),
    "NaN": ({"y": _with_nan(), "noise_std": 0.1}, [], ["bad.h5", "dataset 'y'", "1 NaN/inf"]),
    "mask shape": (
        {**GOOD, "mask": np.ones((N, N + 2))},
        [],
        ["bad.h5", "dataset 'mask'", "(16, 18)"],
    ),
    "negative noise": (
        {"y": np.ones((N, N)), "noise_std": -0.1},
        [],
        ["bad.h5", "dataset 'noise_std'", "negative"],
    ),
    "unknown forward model": (
        GOOD,
        ["--forward-model", "nosuchmodel"],
        ["bad.h5", "unknown forward model 'nosuchmodel'"],
    ),
    "unknown sampler": (GOOD, ["--sampler", "nosuchsampler"], ["unknown sampler 'nosuchsampler'"]),
    "unreadable file": ("text", [], ["bad.h5", "not an HDF5 file"]),
    "missing file": ("none", [], ["bad.h5", "no such file"]),
    "bad output suffix": (GOOD, ["-o", "post.txt"], ["post.txt", "unsupported output format"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    datasets, flags, expected = BAD_INPUTS[case]
    if datasets == "text":
        (tmp_path / "bad.h5").write_text("not hdf5\n")
    elif datasets != "none":
        write_bad(tmp_path, "bad.h5", **datasets)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run_cli("reconstruct", "bad.h5", "--num-samples", 2, "--steps", 2, "--no-progress",
                   *flags, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(PREFIX)
    for part in expected:
        assert part in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no leftovers


def test_simulate_obs_errors(tmp_path, monkeypatch, capsys):
    done = run_cli("simulate-obs", "obs.txt", "--forward-model", "noise", cwd=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"{PREFIX}obs.txt: observation files are HDF5: use a .h5 or .hdf5 suffix"
    )
    # In-process from here on: the same main(), without paying for another torch import.
    from posterior_diffusion import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["simulate-obs", "obs.h5", "--forward-model", "noise"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(PREFIX) and "--noise-std" in err and len(err.splitlines()) == 1
    np.save(tmp_path / "mask.npy", np.ones((4, 4)))
    args = ["simulate-obs", "obs.h5", "--forward-model", "inpainting", "--noise-std", "0.1"]
    assert cli.main([*args, "--mask", "mask.npy", "--shape", "8", "8"]) == 2
    expected = "simulation: dataset 'mask': has shape (4, 4); expected (H, W) = (8, 8) of 'y'"
    assert capsys.readouterr().err == f"{PREFIX}{expected}\n"
    assert cli.main([*args, "--mask", "mask.npy", "--mask-border", "1"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.npy"]


def test_forward_model_flags_come_from_the_registry(capsys):
    """One flag per registry parameter (its attribute is the dest), on simulate-obs and calibrate."""
    from forward_models.registry import parameter_table
    from posterior_diffusion.cli.parser import build_parser, forward_model_attrs

    parser = build_parser()
    model_flags = ["--forward-model", "lensing", "--sigma-e", "0.3", "--downsample-factor", "4"]
    for command in (["simulate-obs", "o.h5"], ["calibrate", "--from-prior", "--num-tests", "1"]):
        attrs = forward_model_attrs(parser.parse_args([*command, *model_flags]))
        assert attrs == {"sigma_e": 0.3, "downsample_factor": 4}
        assert type(attrs["downsample_factor"]) is int
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate-obs", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--n-gal-per-arcmin2 N lensing: source galaxy density [arcmin^-2] (30)" in text
    assert all(f"--{name.replace('_', '-')}" in text for name in parameter_table())


def test_interrupt_writes_completed_members(obs_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C during sampling, as sample_posterior reports it: the completed members are kept."""
    import torch

    from posterior_diffusion import cli, reconstruction
    from posterior_diffusion.samplers.run import SamplingInterrupted

    completed = torch.arange(2 * N * N, dtype=torch.float64).reshape(2, 1, N, N)

    def interrupted(*args, **kwargs):
        raise SamplingInterrupted(completed, {"sampler": "guided", "steps": 4, "seed": 0})

    monkeypatch.setattr(reconstruction, "sample_posterior", interrupted)
    out = tmp_path / "post.h5"
    code = cli.main(
        ["reconstruct", str(obs_dir / "noise.h5"), "--num-samples", "8", "-o", str(out)]
    )
    assert code == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        "posterior-diffusion: interrupted after 2 of 8 samples; "
        f"wrote those to {out} (attribute interrupted=1); add --resume to the same command to "
        "finish the run"
    )
    ds = open_result(out)
    assert ds.attrs["interrupted"] == 1 and ds.attrs["num_samples_completed"] == 2
    assert ds.attrs["num_samples_requested"] == 8
    np.testing.assert_array_equal(ds["samples"].values, completed[:, 0].numpy())

    completed = completed[:0]
    code = cli.main(["reconstruct", str(obs_dir / "noise.h5"), "-o", str(tmp_path / "b.h5")])
    assert code == 130
    assert "nothing written" in capsys.readouterr().err
    # Nothing of b.h5, not even an empty journal; post.h5 and its journal stay.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".post.h5.resume", "post.h5"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_real_ctrl_c_keeps_completed_members(obs_dir, tmp_path):
    """SIGINT to the running CLI once two members are done: exit 130 with those in OUT."""
    steps = 3
    proc = subprocess.Popen(
        [sys.executable, "-m", "posterior_diffusion.cli", "reconstruct", str(obs_dir / "noise.h5"),
         "--num-samples", "100000", "--batch-size", "1", "--steps", str(steps), "-o", "post.h5",
         # The run is meant to be long; without this a loaded machine's timing can cross the
         # long-run guard's limit and the CLI refuses to start (exit 2), as it did in CI.
         "--allow-long-run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # A shell's background jobs inherit SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: restore the default so the test holds however it is run.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    progress = bytearray()

    def read_stderr():
        while chunk := os.read(proc.stderr.fileno(), 4096):
            progress.extend(chunk)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    # Waits for the progress bar, not for a clock: a loaded machine only makes this slower.
    while True:
        assert proc.poll() is None, "the run ended before two members were done"
        counts = re.findall(rb"(\d+)/\d+ \[", bytes(progress))
        if counts and int(counts[-1]) >= 2 * steps + 1:  # two members done, the third started
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=900)  # a guard against a hang, not a deadline: load only slows this
    reader.join(timeout=60)
    assert proc.returncode == 130, bytes(progress).decode()
    message = bytes(progress).decode().splitlines()[-1]
    assert re.fullmatch(
        r"posterior-diffusion: interrupted after \d+ of 100000 samples; wrote those to post\.h5 "
        r"\(attribute interrupted=1\); add --resume to the same command to finish the run",
        message,
    )
    ds = open_result(tmp_path / "post.h5")
    assert ds.attrs["interrupted"] == 1
    assert ds.sizes["sample"] == ds.attrs["num_samples_completed"] >= 2
    assert np.all(np.isfinite(ds["samples"].values))
    # The output and the journal that --resume continues from; no temporary files.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".post.h5.resume", "post.h5"]


def reconstruct_args(obs_dir, output: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "posterior_diffusion.cli", "reconstruct",
            str(obs_dir / "noise.h5"), "--num-samples", "16", "--batch-size", "1", "--steps", "16",
            "--seed", "5", "-o", output, "--no-progress", *extra]  # fmt: skip


def journal_members(folder) -> int:
    from posterior_diffusion.io.journal import journal_path

    store = journal_path(folder / "post.zarr") / "samples.zarr"
    return len([n for n in os.listdir(store) if n[0].isdigit()]) if store.exists() else 0


# The run under test, paused for good once 3 members are in the journal (the flag file says so):
# the kill then hits a known state however slow the machine is, with no clock in the test.
PAUSE_AFTER_THREE = """
import sys, time
from pathlib import Path
from posterior_diffusion.io.journal import SampleJournal
record = SampleJournal.record
def record_then_pause(self, members, samples, num_samples):
    record(self, members, samples, num_samples)
    if self.count() >= 3:
        Path(sys.argv[1]).write_text("3")
        while True:
            time.sleep(1)
SampleJournal.record = record_then_pause
from posterior_diffusion.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGKILL on Windows")
def test_sigkill_then_resume_gives_the_uninterrupted_ensemble(obs_dir, tmp_path):
    """A run killed with SIGKILL (no handler runs) leaves no output but its finished members;
    --resume draws only the rest, and the ensemble equals an uninterrupted run's."""
    flag = tmp_path.parent / f"{tmp_path.name}.paused"
    args = reconstruct_args(obs_dir, "post.zarr")[3:]  # the CLI arguments
    proc = subprocess.Popen([sys.executable, "-c", PAUSE_AFTER_THREE, str(flag), *args],
                            cwd=tmp_path)  # fmt: skip
    while not flag.exists():
        assert proc.poll() is None, "the run ended before 3 members were saved"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = journal_members(tmp_path)
    assert killed_at == 3
    assert not (tmp_path / "post.zarr").exists()

    again = subprocess.run(reconstruct_args(obs_dir, "post.zarr"), cwd=tmp_path,
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 2 and "add --resume" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    resumed = subprocess.run(reconstruct_args(obs_dir, "post.zarr", "--resume"), cwd=tmp_path,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    match = re.search(r"wrote 16 samples to post\.zarr \((\d+) of them from", resumed.stdout)
    assert match and int(match.group(1)) == killed_at
    whole = subprocess.run(reconstruct_args(obs_dir, "whole.zarr"), cwd=tmp_path,
                           capture_output=True, text=True)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    a, b = open_result(tmp_path / "post.zarr"), open_result(tmp_path / "whole.zarr")
    assert np.array_equal(a["samples"].values, b["samples"].values)
    assert a.attrs["resumed_members"] == int(match.group(1)) and b.attrs["resumed_members"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.zarr", "whole.zarr"]


def test_resume_refuses_other_settings(obs_dir, tmp_path):
    from posterior_diffusion.io.journal import journal_path

    journal = journal_path(tmp_path / "post.zarr")
    journal.mkdir()
    (journal / "run.json").write_text(json.dumps({"seed": 4}))
    done = subprocess.run(reconstruct_args(obs_dir, "post.zarr", "--resume"), cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "other settings" in line and "seed" in line
    assert not (tmp_path / "post.zarr").exists()
