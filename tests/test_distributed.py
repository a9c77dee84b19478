"""Sharded sampling: 2 CPU processes (gloo, launched by Lightning Fabric) give the same ensemble as
one, member by member; a sharded run resumes after SIGKILL and with another number of ranks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from posterior_diffusion.distributed import Ranks, check_layout
from posterior_diffusion.io.journal import journal_path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "posterior-diffusion: error: "
N = 16
SAMPLES = 7  # odd, so the two ranks' shares differ in size


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "posterior_diffusion.cli", *map(str, args)]


def reconstruct(folder: Path, output, *extra, prior="gaussian") -> subprocess.CompletedProcess:
    """`reconstruct` of the lensing observation with dps (fresh noise every step)."""
    return subprocess.run(
        cli("reconstruct", "lensing.h5", "--sampler", "dps", "--steps", 12, "--num-samples",
            SAMPLES, "--seed", 9, "--batch-size", 2, "-o", output, "--no-progress",
            "--prior", prior, *extra),
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def samples(path: Path) -> np.ndarray:
    return xr.load_dataset(path, engine="h5netcdf")["samples"].values


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A lensing observation and the one-process ensemble every sharded run must reproduce."""
    folder = tmp_path_factory.mktemp("sharded")
    made = subprocess.run(
        cli("simulate-obs", "lensing.h5", "--forward-model", "lensing", "--shape", N, N,
            "--seed", 4, "--prior", "gaussian"),
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    one = reconstruct(folder, "one.h5")
    assert one.returncode == 0, one.stderr
    return folder


def test_ranks_share_members_evenly():
    members = list(range(11))
    shares = [Ranks(r, 3, torch.device("cpu")).share(members) for r in range(3)]
    assert sorted(sum(shares, [])) == members
    assert [len(s) for s in shares] == [4, 4, 3]


def test_two_processes_give_the_one_process_ensemble(folder, tmp_path):
    """Analytic prior, float64 throughout: equal to round-off, member by member (each rank
    evaluates other batches than the single process does)."""
    done = reconstruct(folder, tmp_path / "two.h5", "--devices", 2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {SAMPLES} samples to {tmp_path / 'two.h5'}"
    one, two = samples(folder / "one.h5"), samples(tmp_path / "two.h5")
    assert one.shape == two.shape == (SAMPLES, N, N)
    np.testing.assert_allclose(two, one, rtol=1e-10, atol=1e-12)
    assert not np.allclose(two[0], two[1])
    ds = xr.load_dataset(tmp_path / "two.h5", engine="h5netcdf")
    info = json.loads(ds.attrs["sampler_settings"])
    alone = json.loads(
        xr.load_dataset(folder / "one.h5", engine="h5netcdf").attrs["sampler_settings"]
    )
    assert info["world_size"] == 2 and info["members_per_rank"] == [4, 3]
    assert info["nfe_per_sample"] == alone["nfe_per_sample"] == 24  # dps: a pass and a VJP a step
    assert "--devices 2" in ds.attrs["command"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.h5"]  # no journal left


def test_two_processes_with_the_network_prior(folder, tmp_path):
    """The shipped U-Net runs in float32, whose results depend on the threads per process (2
    here for one process, 1 per rank) and on the batch a member shares: differences of about
    1e-5 of the ensemble spread, as when one process runs with another OMP_NUM_THREADS.
    Members must agree to 1e-4 of the spread: a different draw differs by about the spread."""
    one = reconstruct(folder, tmp_path / "one.h5", prior="default")
    two = reconstruct(folder, tmp_path / "two.h5", "--devices", 2, prior="default")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = samples(tmp_path / "one.h5"), samples(tmp_path / "two.h5")
    spread = a.std(axis=0).mean()
    assert np.abs(a - b).max() < 1e-4 * spread
    assert np.abs(a[0] - a[1]).max() > 0.5 * spread


def test_resume_on_two_processes_after_one(folder, tmp_path):
    """Members 0-2 drawn by one process (the API leaves its journal in place), the rest shared
    out between two ranks: the ensemble is the uninterrupted one-process ensemble."""
    from posterior_diffusion.api import reconstruct as api_reconstruct

    output = tmp_path / "post.h5"
    api_reconstruct(
        folder / "lensing.h5", prior="gaussian", sampler="dps", steps=12, num_samples=3, seed=9,
        batch_size=2, progress=False, journal_for=output,
    )  # fmt: skip
    assert journal_path(output).is_dir()
    done = reconstruct(folder, output, "--devices", 2, "--resume")
    assert done.returncode == 0, done.stderr
    assert (
        f"wrote {SAMPLES} samples to {output} (3 of them from the interrupted run)" in done.stdout
    )
    np.testing.assert_allclose(samples(output), samples(folder / "one.h5"), rtol=1e-10, atol=1e-12)
    assert not journal_path(output).exists()


# A run stopped part-way: 32 members of 400 dps steps take about 4 s on two ranks after the
# first two are saved, so the signal arrives while they sample even on a loaded machine (with 64
# members of 12 steps the whole run took under a second and sometimes finished first).
MANY, SLOW_STEPS = 32, 400


@pytest.fixture(scope="module")
def slow_reference(folder) -> np.ndarray:
    """The first SAMPLES members of a one-process run with SLOW_STEPS (member i is the same
    draw whatever the ensemble size)."""
    from posterior_diffusion.api import reconstruct as api_reconstruct

    ds = api_reconstruct(folder / "lensing.h5", prior="gaussian", sampler="dps",
                         steps=SLOW_STEPS, num_samples=SAMPLES, seed=9, batch_size=2,
                         progress=False)  # fmt: skip
    return ds["samples"].values


def stopped_run(folder: Path, output: Path, how: signal.Signals) -> tuple[int, str, int]:
    """A 2-rank run of MANY members sent `how` (to both ranks: their process group) once 2
    members are saved. Returns (exit status, stderr, members saved)."""
    store = journal_path(output) / "samples.zarr"
    args = cli("reconstruct", "lensing.h5", "--sampler", "dps", "--steps", SLOW_STEPS,
               "--num-samples", MANY, "--seed", 9, "--batch-size", 1, "-o", output, "--no-progress",
               "--prior", "gaussian", "--devices", 2)  # fmt: skip
    # A shell's background jobs (CI) inherit SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the run the default disposition.
    proc = subprocess.Popen(args, cwd=folder, start_new_session=True, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip

    def saved() -> int:
        return len([n for n in os.listdir(store) if n[0].isdigit()]) if store.exists() else 0

    # Waits for the journal, not for a clock: a loaded machine only makes this slower.
    while saved() < 2:
        assert proc.poll() is None, f"the run ended before 2 members were saved: {proc.stderr}"
        time.sleep(0.01)
    os.killpg(proc.pid, how)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, saved()


def resumed_run(folder: Path, output: Path, reference: np.ndarray) -> re.Match:
    """--resume of a stopped_run on 2 ranks; its first SAMPLES members must be the one-process
    ensemble's."""
    done = reconstruct(folder, output, "--devices", 2, "--resume", "--num-samples", MANY,
                       "--steps", SLOW_STEPS)  # fmt: skip
    assert done.returncode == 0, done.stderr
    match = re.search(rf"wrote {MANY} samples to .* \((\d+) of them from", done.stdout)
    assert match, done.stdout
    np.testing.assert_allclose(samples(output)[:SAMPLES], reference, rtol=1e-10, atol=1e-12)
    return match


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGKILL on Windows")
def test_sharded_run_killed_then_resumed(folder, slow_reference, tmp_path):
    """SIGKILL to both ranks: no output, the members stay in the shared store; --resume on 2
    ranks draws only the rest."""
    output = tmp_path / "post.h5"
    status, _, killed_at = stopped_run(folder, output, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert 2 <= killed_at < MANY
    assert not output.exists()
    match = resumed_run(folder, output, slow_reference)
    assert int(match.group(1)) >= killed_at - 2  # a chunk per rank may be cut short


def test_a_bad_journal_is_reported_once(folder, tmp_path):
    """Rank 0 alone checks the journal; every rank stops, and the error is printed once."""
    output = tmp_path / "post.h5"
    journal_path(output).mkdir()
    (journal_path(output) / "run.json").write_text('{"seed": 1}')
    done = reconstruct(folder, output, "--devices", 2, "--resume")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith(PREFIX)]
    assert len(errors) == 1 and "other settings" in errors[0] and "seed" in errors[0]
    assert "Traceback" not in done.stderr
    assert not output.exists()


def test_impossible_layouts_are_refused(folder, tmp_path):
    done = reconstruct(folder, tmp_path / "x.h5", "--devices", 0)
    assert done.returncode == 2
    assert done.stderr == f"{PREFIX}devices and num_nodes must be >= 1, got 0 and 1\n"
    with pytest.raises(ValueError, match="names one GPU"):
        check_layout(2, 1, "cuda:1")
    check_layout(4, 2, "cuda")


def test_a_failing_rank_stops_every_rank(folder, tmp_path):
    """Through the Python API, as a script that Fabric runs once per rank: rank 1's sampler
    diverges; both ranks stop with rank 1's message instead of waiting for each other."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, torch
        from posterior_diffusion.api import reconstruct
        from posterior_diffusion.priors import GaussianPrior, default_power_spectrum

        class Diverging(GaussianPrior):
            def linearize(self, x, sigma):
                mean, cov = super().linearize(x, sigma)
                if os.environ.get("LOCAL_RANK") == "1":
                    mean = mean * float("nan")
                return mean, cov

        prior = Diverging(default_power_spectrum(), ({1}, {N}, {N}))
        try:
            reconstruct({str(folder / "lensing.h5")!r}, prior=prior, sampler="dps", steps=4,
                        num_samples=4,
                        progress=False, journal_for={str(tmp_path / "out.h5")!r}, devices=2)
        except RuntimeError as err:
            # one file per rank: both ranks printing to one pipe interleave their words
            with open(f"stopped_{{os.environ.get('LOCAL_RANK', '0')}}.txt", "w") as file:
                file.write(str(err))
            sys.exit(3)
    """)
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 3, done.stderr
    for rank in (0, 1):
        message = (tmp_path / f"stopped_{rank}.txt").read_text()
        assert re.match(r"rank 1 of 2: sampler 'dps' diverged \(NaN/inf\)", message), message


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo test on Linux/macOS")
def test_ranks_started_by_slurm(folder, tmp_path):
    """Ranks that srun started (here: 2 processes with the variables srun sets): Fabric launches
    nothing and takes each rank from SLURM_PROCID; rank 0 alone writes, and the ensemble is the
    one-process one."""
    output = tmp_path / "slurm.h5"
    port = str(free_port())
    args = cli("reconstruct", "lensing.h5", "--sampler", "dps", "--steps", 12, "--num-samples",
               SAMPLES, "--seed", 9, "--batch-size", 2, "-o", output, "--no-progress",
               "--prior", "gaussian", "--devices", 2)  # fmt: skip
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2",
               "SLURM_NNODES": "1", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
               "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1", "SLURM_JOB_ID": "4242",
               "SLURM_JOB_NAME": "pd-test", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}  # fmt: skip
        procs.append(subprocess.Popen(args, cwd=folder, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    (out0, err0), (out1, err1) = (p.communicate(timeout=300) for p in procs)
    assert [p.returncode for p in procs] == [0, 0], err0 + err1
    assert out0.strip() == f"wrote {SAMPLES} samples to {output}" and out1 == ""
    np.testing.assert_allclose(samples(output), samples(folder / "one.h5"), rtol=1e-10, atol=1e-12)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in err1  # rank 1 came from SLURM_PROCID, not a launch


@pytest.mark.skipif(sys.platform == "win32", reason="no process groups on Windows")
def test_ctrl_c_stops_every_rank_and_keeps_their_members(folder, slow_reference, tmp_path):
    """Ctrl-C reaches both ranks (one terminal process group): one message from rank 0, exit
    130, no output; --resume finishes the run."""
    output = tmp_path / "post.h5"
    status, err, saved = stopped_run(folder, output, signal.SIGINT)
    assert status == 130, err
    ours = [line for line in err.splitlines() if line.startswith("posterior-diffusion:")]
    assert len(ours) == 1 and "Traceback" not in err, err
    match = re.fullmatch(
        rf"posterior-diffusion: interrupted; (\d+) of {MANY} samples are saved in \S+resume; "
        r"add --resume to the same command to finish the run",
        ours[0],
    )
    assert match and 2 <= int(match.group(1)) < MANY, ours[0]
    assert not output.exists()
    # A rank may finish the member it was writing after rank 0 counted.
    assert int(resumed_run(folder, output, slow_reference).group(1)) >= int(match.group(1))
