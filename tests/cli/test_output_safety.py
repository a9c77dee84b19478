"""Nothing the user made is lost: `reconstruct` refuses, in one line and before any work, an
output that is its own observation, a directory where a file goes, a file where a .zarr store
goes, and an existing result without --overwrite; with --overwrite the result is replaced."""

from __future__ import annotations

import hashlib

import pytest

from posterior_diffusion.cli import main

PREFIX = "posterior-diffusion: error: "


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    path = tmp_path_factory.mktemp("obs") / "obs.h5"
    assert main(["simulate-obs", str(path), "--forward-model", "noise", "--shape", "12", "12",
                 "--prior", "gaussian", "--noise-std", "0.5", "--seed", "1"]) == 0  # fmt: skip
    return path


def reconstruct(observation, output, *flags) -> int:
    return main(["reconstruct", str(observation), "--prior", "gaussian", "--num-samples", "2",
                 "--steps", "4", "--no-progress", "-o", str(output), *flags])  # fmt: skip


def refused(capsys, message: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(PREFIX) and message in err, err


def test_the_observation_is_never_the_output(observation, capsys):
    before = digest(observation)
    for flags in ([], ["--overwrite"]):
        assert reconstruct(observation, observation, *flags) == 2
        refused(capsys, "is this run's input")
    assert digest(observation) == before


def test_an_existing_directory_is_not_replaced_by_a_file(observation, tmp_path, capsys):
    folder = tmp_path / "out.h5"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert reconstruct(observation, folder, "--overwrite") == 2
    refused(capsys, "is an existing directory")
    assert (folder / "notes.txt").read_text() == "mine"


def test_an_existing_file_is_not_replaced_by_a_store(observation, tmp_path, capsys):
    path = tmp_path / "out.zarr"
    path.write_text("mine")
    assert reconstruct(observation, path, "--overwrite") == 2
    refused(capsys, "is an existing file")
    assert path.read_text() == "mine"


def test_an_existing_result_needs_overwrite(observation, tmp_path, capsys):
    out = tmp_path / "post.h5"
    assert reconstruct(observation, out, "--seed", "1") == 0
    first = digest(out)
    assert reconstruct(observation, out, "--seed", "2") == 2
    refused(capsys, "already exists; add --overwrite")
    assert digest(out) == first and sorted(p.name for p in tmp_path.iterdir()) == ["post.h5"]
    assert reconstruct(observation, out, "--seed", "2", "--overwrite") == 0
    assert digest(out) != first


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--snr", "nan"], "sampler option snr must be a number > 0, got nan"),
        (["--corrector-steps", "-1"], "sampler option corrector_steps must be an integer >= 0"),
    ],
)
def test_a_bad_sampler_option_value_is_refused_before_any_file(
    observation, tmp_path, capsys, flags, message
):
    """Option values are checked with their names before the journal or any file exists, so
    the corrected command runs without being told to --resume."""
    out = tmp_path / "post.h5"
    assert reconstruct(observation, out, *flags) == 2
    refused(capsys, message)
    assert list(tmp_path.iterdir()) == []
    assert reconstruct(observation, out) == 0


def test_an_ensemble_too_large_for_memory_is_refused_before_sampling(observation, tmp_path, capsys):
    out = tmp_path / "post.h5"
    assert reconstruct(observation, out, "--num-samples", str(10**12)) == 2
    refused(capsys, "GiB of memory for the output; this machine has")
    assert list(tmp_path.iterdir()) == []


def test_a_run_estimated_to_take_weeks_is_refused_unless_allowed(
    observation, tmp_path, capsys, monkeypatch
):
    """The bounds are lowered so that a tiny run counts as long: no timing is asserted, only
    that the estimate is made, stated in one line, and that --allow-long-run overrides it."""
    import posterior_diffusion.reconstruction as reconstruction

    monkeypatch.setattr(reconstruction, "TIMED_ABOVE_EVALUATIONS", 1)
    monkeypatch.setattr(reconstruction, "LONG_RUN_SECONDS", 0.0)
    out = tmp_path / "out" / "post.h5"
    out.parent.mkdir()
    assert reconstruct(observation, out) == 2
    refused(capsys, "2 samples would take about")
    assert not any(out.parent.iterdir())
    assert reconstruct(observation, out, "--allow-long-run") == 0 and out.exists()


def other_commands(folder, observation) -> dict[str, tuple[list[str], object, bool]]:
    """command -> (arguments writing OUT, OUT, whether OUT is a directory)."""
    fields = folder / "fields.h5"
    if not fields.exists():
        assert main(["simulate", "grf", str(fields), "--num", "2", "--shape", "8", "8"]) == 0
    posterior = folder / "post.h5"
    if not posterior.exists():
        assert reconstruct(observation, posterior) == 0
    return {
        "simulate-obs": (["simulate-obs", str(folder / "o.h5"), "--forward-model", "noise",
                          "--shape", "8", "8", "--prior", "gaussian", "--noise-std", "0.5"],
                         folder / "o.h5", False),
        "simulate": (["simulate", "grf", str(folder / "s.h5"), "--num", "2", "--shape", "8", "8"],
                     folder / "s.h5", False),
        "simulate .zarr": (["simulate", "grf", str(folder / "s.zarr"), "--num", "2", "--shape",
                            "8", "8"], folder / "s.zarr", True),
        "log-likelihood": (["log-likelihood", str(fields), "--prior", "gaussian", "--reference",
                            "0", "--probes", "exact", "--no-progress", "-o", str(folder / "l.json")],
                           folder / "l.json", False),
        "report": (["report", str(posterior), "-o", str(folder / "rep")], folder / "rep", True),
        "report (default folder)": (["report", str(posterior)], folder / "post_report", True),
    }  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["simulate-obs", "simulate", "simulate .zarr", "log-likelihood", "report",
     "report (default folder)"],
)  # fmt: skip
def test_every_command_refuses_to_replace_an_existing_output(observation, tmp_path, capsys, name):
    """What the user has is kept: a second run on an existing output is refused in one line
    (exit 2), its content untouched, until --overwrite; an input is never the output."""
    args, out, directory = other_commands(tmp_path, observation)[name]
    assert main(args) == 0
    marker = (out / "index.html") if directory and name.startswith("report") else out
    if not directory:
        before = digest(marker)
    capsys.readouterr()
    assert main(args) == 2
    refused(capsys, f"{out}: already exists; add --overwrite to replace it")
    if not directory:
        assert digest(marker) == before
    assert main([*args, "--overwrite"]) == 0
