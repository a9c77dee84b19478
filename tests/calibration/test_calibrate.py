"""The `calibrate` command end to end on 16 x 16 grids: every output, resuming, refusals.

The statistics of the diagnostics themselves are tested in test_diagnostics.py; here only that
the command runs them, saves per-test results as they finish, and reuses them on a rerun.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from posterior_diffusion.calibration import ResultStore
from posterior_diffusion.cli import main

N = 16
PREFIX = "posterior-diffusion: error: "
SPECTRUM = "examples/data/field_power_spectrum.txt"
REPORT_FILES = (
    "report.pdf",
    "index.html",
    "summary.json",
    "coverage.csv",
    "tarp.csv",
    "sbc_histograms.csv",
    "sbc_pvalues.csv",
    "spectra.csv",
    "one_point_pdf.csv",
    "zscores.csv",
    "tests.csv",
)
FIGURES = ("panels", "coverage", "coverage_map", "tarp", "sbc", "spectra", "one_point")


def calibrate_args(out, num_tests, *extra):
    return [
        "calibrate",
        "--prior", "gaussian",
        "--power-spectrum", SPECTRUM,
        "--forward-model", "inpainting",
        "--from-prior",
        "--num-tests", str(num_tests),
        "--num-samples", "8",
        "--steps", "8",
        "--shape", str(N), str(N),
        "--noise-std", "0.1",
        "--no-progress",
        "-o", str(out),
        *extra,
    ]  # fmt: skip


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith(PREFIX) and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A 2-test run, then the same command with 3 tests: the second computes only test 2."""
    out = tmp_path_factory.mktemp("cal") / "report"
    assert main(calibrate_args(out, 2)) == 0
    first = {i: (out / "tests" / f"test_{i:04d}.npz").stat().st_mtime_ns for i in range(2)}
    assert main(calibrate_args(out, 3)) == 0
    return out, first


def test_writes_every_output(resumed):
    out, _ = resumed
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name
    assert (out / "figures" / "peaks.png").is_file()  # peaks for every field
    assert not (out / "figures" / "eb_modes.png").exists()  # shear data only
    html = (out / "index.html").read_text()
    assert all(f'src="figures/{name}.png"' in html for name in FIGURES)
    assert "posterior-diffusion calibrate" in html  # provenance on the page
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    assert not list(out.rglob(".*partial*"))  # no temporary files left behind


def test_summary_holds_numbers_and_provenance(resumed):
    out, _ = resumed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_tests"] == 3 and summary["num_samples"] == 8
    prov = summary["provenance"]
    assert prov["sampler"] == "guided" and prov["sampler_settings"]["steps"] == 8
    assert prov["seed"] == 0 and prov["prior"]["name"] == "gaussian"
    assert prov["forward_model_params"]["name"] == "inpainting"
    assert "--num-tests 3" in prov["command"] and prov["posterior_diffusion_version"]
    cov = summary["coverage"]
    assert len(cov["levels"]) == len(cov["empirical"]) == len(cov["band_low"])
    assert all(0 <= c <= 1 for c in cov["empirical"])
    assert len(summary["tarp"]["ecp"]) == len(summary["tarp"]["alpha"])
    assert set(summary["sbc"]["families"]) == {"pixels", "projections", "power", "peaks"}
    assert summary["sbc"]["families"]["pixels"]["num_statistics"] == N * N
    # Gaussian prior, linear-Gaussian model, small grid: compared with the exact posterior.
    exact = summary["exact_posterior"]
    assert exact["std_ratio"]["mean"] > 0 and exact["w2"]["mean"] > 0
    assert [t["index"] for t in summary["tests"]] == [0, 1, 2]
    rows = (out / "tests.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("test,observation_seed,sampler_seed")


def test_rerun_computes_only_the_new_test(resumed, capsys):
    out, first = resumed
    for i, mtime in first.items():  # finished tests were loaded, not rewritten
        assert (out / "tests" / f"test_{i:04d}.npz").stat().st_mtime_ns == mtime
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tests_computed_by_this_run"] == 1
    seeds = {t["observation_seed"] for t in summary["tests"]}
    assert len(seeds) == 3  # test i has its own stream


def test_resumed_tests_equal_fresh_ones(resumed, tmp_path):
    """A test's result depends on (seed, i) only, not on the run that computed it."""
    out, _ = resumed
    fresh = tmp_path / "fresh"
    assert main(calibrate_args(fresh, 3)) == 0
    settings = json.loads((out / "tests" / "settings.json").read_text())
    old, new = ResultStore(out / "tests", settings), ResultStore(fresh / "tests", settings)
    for i in range(3):
        a, b = old.load(i)[0], new.load(i)[0]
        for key in ("truth", "y", "mean", "coverage", "rank_pixels", "tarp_f", "p_samples"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"test {i}: {key}")


def test_mismatched_settings_are_refused(resumed, capsys):
    out, _ = resumed
    before = sorted(p.name for p in (out / "tests").iterdir())
    code = main(calibrate_args(out, 3)[:-2] + ["-o", str(out), "--num-samples", "6"])
    assert code == 2
    err = one_error_line(capsys)
    assert "other settings" in err and "num_samples: 8 there, 6 now" in err
    assert sorted(p.name for p in (out / "tests").iterdir()) == before


def test_stochastic_flag_reaches_the_sampler_settings_and_resume_check(resumed, tmp_path, capsys):
    """`--stochastic` runs the reverse SDE (twice the default steps), is recorded, and a rerun
    without it is refused rather than mixing the two samplers' tests."""
    out = tmp_path / "report"
    args = calibrate_args(out, 1, "--stochastic")
    at = args.index("--steps")
    del args[at : at + 2]  # the default: twice the ODE's
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["sampler_options"] == {"stochastic": True}
    assert summary["settings"]["steps"] == 96
    assert summary["provenance"]["sampler_settings"]["stochastic"] is True
    plain_settings = json.loads((resumed[0] / "summary.json").read_text())["settings"]
    plain = ResultStore(resumed[0] / "tests", plain_settings).load(0)[0]
    sde = ResultStore(out / "tests", summary["settings"]).load(0)[0]
    np.testing.assert_array_equal(sde["truth"], plain["truth"])  # same test, other sampler
    assert not np.allclose(sde["mean"], plain["mean"])
    capsys.readouterr()
    assert main([a for a in args if a != "--stochastic"]) == 2
    assert "other settings" in one_error_line(capsys)


def test_shards_share_one_directory_and_the_last_writes_the_report(resumed, tmp_path, capsys):
    """Shard 1/2 computes tests 0, 1 and 3 and writes no report; shard 0/2 then computes only
    test 2 and writes it. Each test equals the unsharded run's."""
    out = tmp_path / "report"
    assert main(calibrate_args(out, 4, "--shard", "1/2")) == 0
    assert "shard 1/2: computed 3 tests; 3 of 4 finished" in capsys.readouterr().out
    assert not (out / "summary.json").exists()
    assert main(calibrate_args(out, 4, "--shard", "0/2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_tests"] == 4 and summary["tests_computed_by_this_run"] == 1
    plain = ResultStore(resumed[0] / "tests", summary["settings"])
    sharded = ResultStore(out / "tests", summary["settings"])
    for i in range(3):
        a, b = plain.load(i)[0], sharded.load(i)[0]
        for key in ("truth", "mean", "rank_pixels", "pdf_edges", "pdf_samples"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"test {i}: {key}")


@pytest.mark.parametrize("shard", ["2/2", "1", "a/b", "3/2", "0/0"])
def test_a_bad_shard_is_refused_in_one_line(shard, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(calibrate_args(tmp_path / "r", 2, "--shard", shard))
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "expected I/N with 0 <= I < N" in errors[0]  # after the usage
    assert not any(tmp_path.iterdir())


def test_a_second_copy_of_a_test_keeps_the_first(tmp_path):
    store = ResultStore(tmp_path, {"seed": 1})
    store.prepare()
    store.save(0, {"x": np.zeros(2)}, {}, keep_existing=True)
    store.save(0, {"x": np.ones(2)}, {}, keep_existing=True)
    np.testing.assert_array_equal(store.load(0)[0]["x"], np.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json", "test_0000.npz"]


def test_interrupted_run_keeps_finished_tests(tmp_path, monkeypatch, capsys):
    """Ctrl-C during test 1: test 0 stays on disk and a rerun computes only test 1."""
    import posterior_diffusion.calibration.runner as runner

    real = runner._run_test

    def stop_at_test_1(plan, index, edges):
        if index == 1:
            raise KeyboardInterrupt
        return real(plan, index, edges)

    out = tmp_path / "report"
    monkeypatch.setattr(runner, "_run_test", stop_at_test_1)
    assert main(calibrate_args(out, 2)) == 130
    assert "1 of 2 tests finished" in capsys.readouterr().err
    assert [p.name for p in sorted((out / "tests").glob("test_*.npz"))] == ["test_0000.npz"]
    assert not (out / "summary.json").exists()

    computed = []

    def count(plan, index, edges):
        computed.append(index)
        return real(plan, index, edges)

    monkeypatch.setattr(runner, "_run_test", count)
    assert main(calibrate_args(out, 2, "--no-keep-tests")) == 0
    assert computed == [1]
    assert (out / "summary.json").is_file() and not (out / "tests").exists()


def test_lensing_from_simulations_file(tmp_path):
    """Truths read in order from a `simulate` file; lensing adds peak counts and E/B power."""
    sims = tmp_path / "kappa.h5"
    assert main(["simulate", "grf", str(sims), "--num", "3", "--shape", str(N), str(N)]) == 0
    out = tmp_path / "report"
    args = [
        "calibrate", "--forward-model", "lensing", "--simulations", str(sims), "--prior", "gaussian",
        "--num-tests", "2", "--num-samples", "8", "--steps", "8", "--no-progress",
        "--mask-fraction", "0", "--mask-border", "0", "-o", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert (out / "figures" / "peaks.png").is_file() and (out / "peaks.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert "peaks" in summary["sbc"]["families"]
    assert (out / "figures" / "eb_modes.png").stat().st_size > 1000
    assert 'src="figures/eb_modes.png"' in (out / "index.html").read_text()
    header, *rows = (out / "eb_modes.csv").read_text().splitlines()
    assert header.startswith("k,modes,noise_e,noise_b,data_e") and len(rows) == N // 2
    assert "eb_samples_e_over_noise" in (out / "tests.csv").read_text().splitlines()[0]
    eb = summary["eb_modes"]
    assert eb["noise_e"][1:] == pytest.approx([eb["noise_e"][1]] * (N // 2 - 1))  # white
    for name in ("samples_e", "samples_b", "mean_b", "data_b"):
        assert 0.5 < eb[f"{name}_over_noise"] < 2, name
    # Unmasked, A(x) is pure E: the residuals' B power is the data's.
    np.testing.assert_allclose(eb["mean_b"], eb["data_b"], rtol=1e-8, atol=1e-20)
    with h5py.File(sims) as f:
        fields = f["fields"][:2]
    store = ResultStore(out / "tests", summary["settings"])
    for i in range(2):
        np.testing.assert_array_equal(store.load(i)[0]["truth"][0], fields[i])


@pytest.mark.parametrize("prior", ["gaussian", "default"])
def test_runs_on_each_device(device, prior, tmp_path):
    """--device cuda once failed at the first test: its TARP reference came back on the GPU."""
    out = tmp_path / "report"
    args = calibrate_args(out, 2, "--device", device)
    if prior == "default":
        at = args.index("--power-spectrum")
        args[at - 2 : at + 2] = ["--prior", "default"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["device"] == device and summary["num_tests"] == 2


@pytest.mark.parametrize(
    "change, message",
    [
        (["--simulations", "missing.h5"], "missing.h5: no such file"),
        (["--simulations", "{obs}"], "no dataset 'fields'"),
        (["--simulations", "{sims}", "--num-tests", "5"], "holds 2 maps, fewer than the 5 tests"),
        (["--from-prior", "--num-tests", "0"], "number of tests must be >= 1"),
        (["--from-prior", "--num-samples", "1"], ">= 2 samples per test"),
        (["--from-prior", "--sampler", "nope"], "unknown sampler 'nope'"),
        (["--from-prior", "--sampler", "dps", "--stochastic"], "'dps' has no option stochastic"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, change, message):
    obs = tmp_path / "obs.h5"
    assert main(["simulate-obs", str(obs), "--forward-model", "noise", "--noise-std", "0.1",
                 "--prior", "gaussian", "--shape", str(N), str(N)]) == 0  # fmt: skip
    sims = tmp_path / "sims.h5"
    assert main(["simulate", "grf", str(sims), "--num", "2", "--shape", str(N), str(N)]) == 0
    capsys.readouterr()
    change = [c.format(obs=obs, sims=sims) for c in change]
    args = ["calibrate", "--forward-model", "noise", "--prior", "gaussian", "--noise-std", "0.1",
            "--num-tests", "1",
            "--num-samples", "4", "--steps", "4", "--no-progress", "-o", str(tmp_path / "r"),
            *change]  # fmt: skip
    assert main(args) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "r" / "tests").exists()  # nothing written
