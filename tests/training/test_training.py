"""Training: the EDM loss goes down, the real train CLI runs, data are read and augmented right."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from training_helpers import adam_steps, fixed_noise_loss, tiny_net, train_args

from forward_models.fourier import frequency_magnitude
from posterior_diffusion.cli import main
from posterior_diffusion.networks.edm import EDMPrecond
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.power_spectrum import power_on_grid, radial_table
from posterior_diffusion.simulators import write_dataset_file
from posterior_diffusion.training import FieldDataModule, TrainingDataError
from posterior_diffusion.training.cli import intact
from posterior_diffusion.training.data import STATS_BLOCK, augment, field_statistics
from posterior_diffusion.training.module import ScorePriorModule, lr_factor

ROOT = Path(__file__).resolve().parents[2]


def live_weights(checkpoint: Path) -> torch.Tensor:
    """The trained (non-EMA) network weights of a Lightning checkpoint, flattened."""
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return torch.cat([v.flatten() for k, v in sorted(state.items()) if k.startswith("model.net.")])


def test_a_few_steps_lower_the_loss(grf_file):
    torch.manual_seed(0)
    fields = torch.from_numpy(np.asarray(h5py.File(grf_file)["fields"][:], dtype=np.float32))
    scale = float(fields.std())
    x = (fields / scale)[:, None]
    exact = GaussianPrior(default_power_spectrum(), (1, 16, 16))  # what the maps were drawn from

    def exact_denoiser(noisy, sigma):
        return (exact.denoise(noisy.double() * scale, sigma * scale) / scale).float()

    model = EDMPrecond(tiny_net())
    before = fixed_noise_loss(model, x[:32])
    optimal = fixed_noise_loss(exact_denoiser, x[:32])
    adam_steps(model, x)
    after = fixed_noise_loss(model, x[:32])
    # At initialisation D = c_skip x, whose weighted loss is 1 at every sigma; the exact
    # denoiser reaches 0.83 here. Measured: 40 steps close 43% of that gap, 200 steps 93%.
    assert before == pytest.approx(1.0, abs=0.05)
    assert after < before - 0.4 * (before - optimal)
    assert after > optimal - 0.02


def test_train_cli_fast_dev_run(grf_file, tmp_path):
    code = main(
        [
            *train_args(grf_file, tmp_path),
            "--trainer.fast_dev_run",
            "true",
        ]
    )
    assert code == 0


def test_train_writes_prior_and_resumes(grf_file, tmp_path):
    args = train_args(grf_file, tmp_path)
    assert main([*args, "--trainer.max_steps", "4"]) == 0
    first = next(tmp_path.glob("lightning_logs/version_0/prior.pt"))
    prior = NetworkPrior.from_file(first)
    assert prior.metadata["training_steps"] == 4
    assert prior.metadata["data_kind"] == "grf"
    assert prior.metadata["field_shape"] == [1, 16, 16]
    assert len(prior.metadata["data_checksum"]) == 64
    assert prior.stationary_power((1, 32, 16)).shape == (1, 32, 16)  # from training_power
    # Resume for one more step under another seed. Restored weights move by about one Adam step
    # (<= ~lr = 1e-3 per weight); a run that started afresh would sit at other initial weights.
    assert (
        main([*args, "--trainer.max_steps", "5", "--ckpt_path", "last", "--seed_everything", "123"])
        == 0
    )
    resumed = NetworkPrior.from_file(next(tmp_path.glob("lightning_logs/version_1/prior.pt")))
    assert resumed.metadata["training_steps"] == 5

    step4 = live_weights(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")
    step5 = live_weights(tmp_path / "lightning_logs/version_1/checkpoints/last.ckpt")
    fresh_args = train_args(grf_file, tmp_path / "fresh")
    assert main([*fresh_args, "--trainer.max_steps", "5", "--seed_everything", "123"]) == 0
    fresh = live_weights(tmp_path / "fresh/lightning_logs/version_0/checkpoints/last.ckpt")
    assert (step5 - step4).abs().max() < 3e-3
    assert (fresh - step4).abs().max() > 3e-2


def test_the_learning_rate_can_fall_to_zero():
    assert lr_factor(0, 4, 0) == pytest.approx(0.25)  # warm-up
    assert lr_factor(100, 4, 0) == 1.0  # constant
    assert [lr_factor(s, 1, 10) for s in (0, 5, 10, 12)] == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_the_live_weights_can_be_exported(grf_file, tmp_path):
    args = [*train_args(grf_file, tmp_path), "--trainer.max_steps", "4"]
    assert main([*args, "--model.export_weights", "live", "--model.lr_decay_steps", "4"]) == 0
    prior = NetworkPrior.from_file(next(tmp_path.glob("lightning_logs/version_0/prior.pt")))
    assert prior.metadata["exported_weights"] == "live"
    assert prior.metadata["lr_decay_steps"] == 4
    state = prior.precond.state_dict()
    exported = torch.cat([v.flatten() for k, v in sorted(state.items()) if k.startswith("net.")])
    checkpoint = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    assert torch.equal(exported, live_weights(checkpoint))
    # the default exports the average, which after 4 steps differs from the live weights
    assert main([*train_args(grf_file, tmp_path / "ema"), "--trainer.max_steps", "4"]) == 0
    ema = NetworkPrior.from_file(next((tmp_path / "ema").glob("lightning_logs/version_0/prior.pt")))
    assert ema.metadata["exported_weights"] == "ema"
    state = ema.precond.state_dict()
    averaged = torch.cat([v.flatten() for k, v in sorted(state.items()) if k.startswith("net.")])
    live = live_weights(tmp_path / "ema/lightning_logs/version_0/checkpoints/last.ckpt")
    assert not torch.equal(averaged, live)


def test_an_unknown_export_is_refused():
    with pytest.raises(ValueError, match="export_weights"):
        ScorePriorModule(tiny_net(), export_weights="best")


def test_resume_without_checkpoint_is_refused(grf_file, tmp_path, capsys):
    code = main(
        [
            *train_args(grf_file, tmp_path),
            "--ckpt_path",
            "last",
        ]
    )
    assert code == 2
    assert "no intact checkpoint to resume from" in capsys.readouterr().err


def test_train_cli_bad_data_is_one_line(tmp_path, capsys):
    code = main(
        [
            *train_args(tmp_path / "no.h5", tmp_path),
            "--trainer.fast_dev_run",
            "true",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("posterior-diffusion: error:") and "no.h5" in err
    assert len(err.splitlines()) == 1


def write_fields(path: Path, data: np.ndarray, name: str = "fields") -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=data)
    return path


@pytest.mark.parametrize(
    "case, data, message",
    [
        ("no_dataset", None, "no dataset 'fields' (found: maps)"),
        ("ints", np.ones((4, 8, 8), dtype=np.int32), "'fields' must hold floating-point"),
        ("rank", np.ones((4, 8), dtype=np.float32), "(num, H, W) or (num, C, H, W) fields"),
        ("empty", np.ones((0, 8, 8)), "dataset 'fields' is empty"),
        ("one", np.ones((1, 8, 8)), "dataset 'fields' needs at least 2 maps, has 1"),
        ("nan", np.where(np.arange(4 * 64).reshape(4, 8, 8) == 70, np.nan, 1.0), "map 1 has NaN"),
        ("constant", np.ones((4, 8, 8)), "dataset 'fields' is constant (zero variance)"),
    ],
)
def test_bad_training_files(tmp_path, case, data, message):
    path = tmp_path / f"{case}.h5"
    if data is None:
        write_fields(path, np.ones((4, 8, 8)), name="maps")
    else:
        write_fields(path, data)
    with pytest.raises(TrainingDataError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        FieldDataModule(str(path), val_fraction=0.25).setup("fit")


@pytest.mark.parametrize(
    "name, message",
    [("none.h5", "no such file"), ("maps.npy", "unsupported file format ('.npy')")],
)
def test_missing_or_unknown_training_file(tmp_path, name, message):
    with pytest.raises(TrainingDataError, match=re.escape(f"{tmp_path / name}: {message}")):
        FieldDataModule(str(tmp_path / name)).setup("fit")


def test_statistics_and_split(grf_file, tmp_path):
    zarr_path = tmp_path / "same.zarr"
    fields = np.asarray(h5py.File(grf_file)["fields"][:])
    write_dataset_file(zarr_path, fields, {"kind": "grf"})
    modules = [FieldDataModule(str(p), val_fraction=0.25) for p in (grf_file, zarr_path)]
    for module in modules:
        module.setup("fit")
    h5, zr = modules
    assert set(h5.train_indices).isdisjoint(h5.val_indices)
    assert len(h5.train_indices) + len(h5.val_indices) == 96
    train = fields[h5.train_indices].astype(np.float64)
    assert h5.statistics["mean"][0] == pytest.approx(train.mean(), rel=1e-9, abs=1e-12)
    assert h5.statistics["std"] == pytest.approx(train.std(), rel=1e-9)
    # The checksum names the numbers, not the container.
    assert h5.statistics["checksum"] == zr.statistics["checksum"]
    assert h5.describe()["data_kind"] == "grf"


def test_training_power_is_the_spectrum_of_the_mean_subtracted_maps(grf_file, tmp_path):
    """The recorded table matches the simulations' spectrum within its sampling error (bins of
    n modes over M maps: relative std sqrt(2 / (n M)) or better), and a constant offset on
    every map changes nothing."""
    module = FieldDataModule(str(grf_file), val_fraction=0.25)
    module.setup("fit")
    table = module.describe()["training_power"]
    k, measured = np.asarray(table["k"]), np.asarray(table["power"][0])
    expected_k, expected = radial_table(power_on_grid(default_power_spectrum(), 16, 16))
    np.testing.assert_allclose(k, expected_k)
    which = np.floor(frequency_magnitude(16, 16) * 16 + 0.5)
    modes = np.array([1] + [int((which == b).sum()) for b in range(1, len(k) - 1)])
    modes = np.append(modes, modes[-1])  # the corner row repeats the last bin
    tolerance = 5 * np.sqrt(2 / (modes * len(module.train_indices)))
    assert np.all(np.abs(measured / expected - 1) < tolerance)
    # Control: a spectrum 30% off fails the same check.
    assert not np.all(np.abs(measured / (1.3 * expected) - 1) < tolerance)
    shifted = tmp_path / "shifted.h5"
    fields = np.asarray(h5py.File(grf_file)["fields"][:], dtype=np.float64)
    write_dataset_file(shifted, (fields + 0.5).astype(np.float32), {"kind": "grf"})
    module = FieldDataModule(str(shifted), val_fraction=0.25)
    module.setup("fit")
    moved = np.asarray(module.describe()["training_power"]["power"][0])
    np.testing.assert_allclose(moved, measured, rtol=1e-3)


def test_a_mean_every_training_map_shares_is_recorded_as_fixed(grf_file, tmp_path):
    """Maps with exactly one mean (the density contrast of a periodic box) record it as
    `fixed_mean`; the simulated GRF maps, whose means scatter, record none (the control)."""
    module = FieldDataModule(str(grf_file), val_fraction=0.25)
    module.setup("fit")
    assert module.describe()["fixed_mean"] is None
    fields = np.asarray(h5py.File(grf_file)["fields"][:], dtype=np.float64)
    centred = fields - fields.mean(axis=(-2, -1), keepdims=True) + 0.25
    path = tmp_path / "centred.h5"
    write_dataset_file(path, centred.astype(np.float32), {"kind": "grf"})
    module = FieldDataModule(str(path), val_fraction=0.25)
    module.setup("fit")
    assert module.describe()["fixed_mean"] == pytest.approx([0.25], abs=1e-6)
    # Read in blocks of STATS_BLOCK maps, some of which may hold no training map.
    many = np.random.default_rng(0).standard_normal((STATS_BLOCK + 8, 4, 4))
    many -= many.mean(axis=(-2, -1), keepdims=True)
    later = np.arange(STATS_BLOCK, STATS_BLOCK + 8)
    assert field_statistics(many, later, "many")["fixed_mean"] == pytest.approx([0.0], abs=1e-12)


def test_augmentation_is_a_symmetry_of_the_grid():
    torch.manual_seed(1)
    x = torch.randn(1, 8, 8)
    for _ in range(20):
        y = augment(x, periodic=True)
        assert y.shape == x.shape
        assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)
    # Without periodicity no shift is applied: the corner pixel stays a corner pixel.
    corners = {float(x[0, i, j]) for i in (0, -1) for j in (0, -1)}
    for _ in range(20):
        y = augment(x, periodic=False)
        assert {float(y[0, i, j]) for i in (0, -1) for j in (0, -1)} == corners


def test_train_a_hybrid_prior(seeded, grf_file, tmp_path):
    spectrum = ROOT / "posterior_diffusion" / "data" / "default_power_spectrum.txt"
    args = [
        *train_args(grf_file, tmp_path),
        "--trainer.max_steps",
        "3",
        "--model.hybrid_power_spectrum",
        str(spectrum),
    ]
    assert main(args) == 0
    prior = NetworkPrior.from_file(next(tmp_path.glob("lightning_logs/version_0/prior.pt")))
    assert prior.metadata["hybrid"] and prior.identity()["name"] == "hybrid"
    # The learned part is a small correction to the analytic denoiser after 3 steps.
    exact = GaussianPrior(default_power_spectrum(), (1, 16, 16))
    x = exact.sample(4, seeded(0)) + 0.01 * torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        gap = (prior.denoise(x, 0.01) - exact.denoise(x, 0.01)).square().mean()
    assert gap < 0.05 * (exact.denoise(x, 0.01) - x).square().mean()


def test_worker_processes_read_the_file_lazily(grf_file):
    module = FieldDataModule(str(grf_file), batch_size=8, num_workers=2, val_fraction=0.25)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch.shape == (8, 1, 16, 16) and batch.dtype == torch.float32
    val = next(iter(module.val_dataloader()))
    expected = np.asarray(h5py.File(grf_file)["fields"][module.val_indices[:8]], dtype=np.float32)
    assert np.array_equal(val[:, 0].numpy(), expected)  # no augmentation on validation maps


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, weights_only=False, map_location="cpu")["global_step"])


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGKILL on Windows")
def test_training_resumes_after_sigkill(grf_file, tmp_path):
    """A training process killed with SIGKILL (no handler, no clean-up) once a checkpoint exists:
    `--ckpt_path last` continues from that checkpoint's step and weights."""
    args = train_args(grf_file, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "posterior_diffusion.cli", *args, "--trainer.max_steps", "100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    # Waits for the checkpoint, not for a clock: a loaded machine only makes this slower.
    while not (last.exists() and intact(last) and checkpoint_step(last) >= 10):
        assert proc.poll() is None, "training ended before a checkpoint at step 10"
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # The kill may have cut a later save short: resuming takes the newest intact checkpoint.
    saved = sorted(last.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    newest = next(p for p in reversed(saved) if intact(p))
    step = checkpoint_step(newest)
    assert step >= 10
    weights = live_weights(newest)
    assert main([*args, "--trainer.max_steps", str(step + 1), "--ckpt_path", "last"]) == 0
    resumed = tmp_path / "lightning_logs" / "version_1"
    assert NetworkPrior.from_file(resumed / "prior.pt").metadata["training_steps"] == step + 1
    # One more Adam step moves each weight by about lr = 1e-3: the run went on from the kill.
    assert (live_weights(resumed / "checkpoints" / "last.ckpt") - weights).abs().max() < 3e-3


def test_a_checkpoint_cut_short_is_skipped_for_the_previous_one(grf_file, tmp_path):
    args = train_args(grf_file, tmp_path)
    assert main([*args, "--trainer.max_steps", "5"]) == 0
    assert main([*args, "--trainer.max_steps", "10", "--ckpt_path", "last"]) == 0
    newest = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a kill mid-write
    for other in newest.parent.glob("epoch=*.ckpt"):
        other.unlink()
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        assert main([*args, "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 0
    prior = NetworkPrior.from_file(tmp_path / "lightning_logs" / "version_2" / "prior.pt")
    assert prior.metadata["training_steps"] == 6  # from version_0's step 5, not from scratch


def ddp_train(data: Path, root: Path, probe: Path, *extra: str) -> subprocess.CompletedProcess:
    """The real `train` CLI on 2 CPU processes (gloo DDP), with tests/support/ddp_probe.py's Probe
    callback writing what each rank fetched and its final weights into `probe`."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT / "tests" / "support"), os.environ.get("PYTHONPATH")) if p
        ),
    }
    callback = json.dumps({"class_path": "ddp_probe.Probe", "init_args": {"out_dir": str(probe)}})
    return subprocess.run(
        [sys.executable, "-m", "posterior_diffusion.cli", *train_args(data, root),
         "--trainer.devices", "2", "--trainer.strategy", "ddp", f"--trainer.callbacks+={callback}",
         *extra],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def probe_results(probe: Path) -> list[tuple[dict, dict]]:
    """(summary, {"ema": state, "live": state}) of ranks 0 and 1."""
    return [
        (json.loads((probe / f"rank{r}.json").read_text()),
         torch.load(probe / f"rank{r}.pt", weights_only=True))
        for r in (0, 1)
    ]  # fmt: skip


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test on Linux/macOS")
def test_ddp_training_on_two_cpu_processes(grf_file, tmp_path):
    """Lightning's DDP strategy, 2 processes on the CPU (gloo), through the real CLI: each rank
    reads its own half of the maps (72 training maps, batch 16: 4 steps per epoch on one process,
    2 on each of two), the EMA and live weights end bitwise equal on both ranks and the prior file
    holds that EMA, rank 0 alone writes the checkpoint and the prior file, and `--ckpt_path last`
    goes on from the saved step."""
    done = ddp_train(grf_file, tmp_path, tmp_path / "probe", "--trainer.max_steps", "6")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    assert done.stdout.count("wrote prior file") == 1
    assert NetworkPrior.from_file(run / "prior.pt").metadata["training_steps"] == 6
    # 6 steps at 2 per epoch end in epoch 2 (epoch 1 on one process).
    assert [p.name for p in (run / "checkpoints").glob("epoch=*.ckpt")] == ["epoch=2-step=6.ckpt"]
    assert not (tmp_path / "lightning_logs" / "version_1").exists()  # ranks share one run folder

    (summary0, weights0), (summary1, weights1) = probe_results(tmp_path / "probe")
    module = FieldDataModule(str(grf_file), val_fraction=0.25)
    module.setup("fit")
    train = set(module.train_indices.tolist())
    assert len(train) == 72
    # Sharding: a DistributedSampler per rank hands out 36 distinct maps in epoch 0, the two
    # halves partition the training maps; the loader drops each rank's last partial batch, so
    # each rank fetches 2 x 16 maps per epoch, never one the other rank fetched that epoch.
    for rank, summary in enumerate((summary0, summary1)):
        sampler = summary["sampler"]
        assert (sampler["type"], sampler["rank"], sampler["num_replicas"]) == (
            "DistributedSampler", rank, 2)  # fmt: skip
        assert len(sampler["epoch0"]) == len(set(sampler["epoch0"])) == 36
        assert summary["global_step"] == 6 and summary["world_size"] == 2
        assert sorted(summary["fetched"]) == ["0", "1", "2"]
        for maps in summary["fetched"].values():
            assert len(maps) == len(set(maps)) == 32 and set(maps) <= train
        assert set(summary["fetched"]["0"]) <= set(sampler["epoch0"])
    assert set(summary0["sampler"]["epoch0"]) | set(summary1["sampler"]["epoch0"]) == train
    for epoch in ("0", "1", "2"):
        assert set(summary0["fetched"][epoch]).isdisjoint(summary1["fetched"][epoch])
    # Each rank its own random stream: other noise levels, noise and augmentations.
    assert summary0["first_draws"] != summary1["first_draws"]
    # Reshuffled per epoch (set_epoch): rank 0 does not get the same maps every epoch.
    assert set(summary0["fetched"]["0"]) != set(summary0["fetched"]["1"])
    # EMA: updated on each rank from the all-reduced live weights, so bitwise equal; the prior
    # file (rank 0's) holds exactly that EMA.
    assert_same_state(weights0["live"], weights1["live"])
    assert_same_state(weights0["ema"], weights1["ema"])
    prior_state = torch.load(run / "prior.pt", weights_only=True)["state_dict"]
    assert_same_state(prior_state, weights0["ema"])
    ema = torch.cat(
        [v.flatten() for k, v in sorted(weights0["ema"].items()) if k.startswith("net.")]
    )
    live = torch.cat(
        [v.flatten() for k, v in sorted(weights0["live"].items()) if k.startswith("net.")]
    )
    assert ema.numel() == live.numel() and not torch.equal(ema, live)  # a real average

    # Resume the DDP run for 2 more steps: both ranks go on from step 6, in epoch 3.
    done = ddp_train(grf_file, tmp_path, tmp_path / "probe_resumed",
                     "--trainer.max_steps", "8", "--ckpt_path", "last")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote prior file") == 1
    resumed = tmp_path / "lightning_logs" / "version_1"
    assert NetworkPrior.from_file(resumed / "prior.pt").metadata["training_steps"] == 8
    assert not (tmp_path / "lightning_logs" / "version_2").exists()
    (after0, weights0_after), (after1, weights1_after) = probe_results(tmp_path / "probe_resumed")
    for summary in (after0, after1):
        assert summary["global_step"] == 8 and sorted(summary["fetched"]) == ["3"]
    assert set(after0["fetched"]["3"]).isdisjoint(after1["fetched"]["3"])
    assert_same_state(weights0_after["ema"], weights1_after["ema"])
    # Two more Adam steps move each weight by about 2 lr = 2e-3: it went on from the checkpoint.
    step6 = live_weights(run / "checkpoints" / "last.ckpt")
    assert (live_weights(resumed / "checkpoints" / "last.ckpt") - step6).abs().max() < 5e-3


def test_strategies_that_shard_weights_are_refused():
    """FSDP would hand the EMA update and the exported prior shards of the weights; DDP and one
    device keep them whole."""
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

    from posterior_diffusion.training.module import TrainingStrategyError, check_strategy

    check_strategy(DDPStrategy())
    check_strategy(SingleDeviceStrategy(torch.device("cpu")))
    with pytest.raises(TrainingStrategyError, match="FSDPStrategy is not supported.*strategy ddp"):
        check_strategy(FSDPStrategy())
