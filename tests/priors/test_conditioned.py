"""Parameter-conditioned priors: theta data sets, the condition in the network and in training,
ConditionedPrior with classifier-free guidance, the exact posterior at w = 0, and the CLI."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import xarray as xr
from oracle_conditional import NAMES, SHAPE, THETA_1, THETA_2, condition_entry, network_prior
from oracle_conditional import oracle_prior as make_oracle_prior
from scipy import stats
from torch import nn
from training_helpers import train_args

from forward_models import ForwardModel, GaussianNoise, Mask
from posterior_diffusion.cli import main
from posterior_diffusion.masks import survey_mask
from posterior_diffusion.networks import UNet
from posterior_diffusion.networks.edm import EDMPrecond, drop_mask
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.priors.conditioned import ConditionedPrior, GuidanceWarning
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.power_spectrum import PowerLawSpectrum, power_on_grid
from posterior_diffusion.priors.prior_file import PriorFileError
from posterior_diffusion.priors.resolve import condition_prior
from posterior_diffusion.references.gaussian import exact_posterior
from posterior_diffusion.references.gaussian_problems import compare_to_exact
from posterior_diffusion.rng import member_seed
from posterior_diffusion.samplers.run import sample_posterior
from posterior_diffusion.simulators import write_dataset_file
from posterior_diffusion.simulators.conditional import (
    DEFAULT_RANGES,
    conditional_grf,
    draw_theta,
)
from posterior_diffusion.simulators.grf import gaussian_field_from_power_grid, gaussian_random_field
from posterior_diffusion.training import FieldDataModule, TrainingDataError

PREFIX = "posterior-diffusion: error: "
WARNING = "posterior-diffusion: warning: "


def whitened_power(fields: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Per map, the mean over modes of |fft2(x)|^2 / (H W P): 1 in expectation for a GRF with
    spectrum P, with a standard deviation of about sqrt(2 / (H W)) per map."""
    height, width = power.shape
    modes = np.abs(np.fft.fft2(fields)) ** 2 / (height * width * power)
    return modes.reshape(len(fields), -1).mean(1)


# -- the simulator -------------------------------------------------------------------------


def test_draw_theta_is_uniform_in_the_box_and_per_map():
    ranges = {"amplitude": (0.3, 4.0), "slope": (-3.0, -0.5)}
    theta = draw_theta(4000, seed=7, ranges=ranges)
    assert theta.shape == (4000, 2)
    for column, name in enumerate(NAMES):
        low, high = ranges[name]
        values = theta[:, column]
        assert values.min() >= low and values.max() <= high
        assert stats.kstest(values, "uniform", args=(low, high - low)).pvalue > 1e-3, name
    # Independent coordinates: |r| of two independent uniforms has a standard error 1 / sqrt(n).
    assert abs(np.corrcoef(theta.T)[0, 1]) < 4 / math.sqrt(4000)
    # Map i's theta comes from its own stream: it does not depend on num, and seeds differ.
    np.testing.assert_array_equal(draw_theta(10, seed=7, ranges=ranges), theta[:10])
    assert not np.allclose(draw_theta(10, seed=8, ranges=ranges), theta[:10])


def test_conditional_grf_maps_follow_their_own_theta():
    fields, theta, attrs = conditional_grf((16, 16), 9, seed=5)
    fewer, theta_fewer, _ = conditional_grf((16, 16), 4, seed=5)
    np.testing.assert_array_equal(fewer, fields[:4])  # map i does not depend on num
    np.testing.assert_array_equal(theta_fewer, theta[:4])
    for i in (0, 3, 8):
        power = power_on_grid(PowerLawSpectrum(*theta[i]), 16, 16)
        expected = gaussian_field_from_power_grid(power, 1, member_seed(5, i))[0]
        np.testing.assert_array_equal(fields[i], expected)
    assert attrs["theta_names"] == NAMES and attrs["kind"] == "grf"
    assert attrs["parameters"]["theta_ranges"] == {k: list(v) for k, v in DEFAULT_RANGES.items()}
    # A box of one point: every map is the plain GRF simulator's first map under seed
    # member_seed(seed, i) (not its map i under seed: the streams are nested).
    single, theta_single, _ = conditional_grf((16, 16), 3, 5, (1.3, 1.3), (-1.7, -1.7))
    np.testing.assert_array_equal(theta_single, np.tile([1.3, -1.7], (3, 1)))
    for i in range(3):
        plain = gaussian_random_field(PowerLawSpectrum(1.3, -1.7), (16, 16), 1, member_seed(5, i))
        np.testing.assert_array_equal(single[i], plain[0])


def test_conditional_grf_spectra_match_each_map_theta_statistically():
    """Whitened by its own theta's spectrum, every map's mode power averages 1: over 200 maps the
    mean is 1 +- 0.088 / sqrt(200) = 0.0063. Whitened by another map's theta it is far off."""
    num = 200
    fields, theta, _ = conditional_grf((16, 16), num, seed=9)
    grids = [power_on_grid(PowerLawSpectrum(*t), 16, 16) for t in theta]
    own = np.array([whitened_power(f[None], p)[0] for f, p in zip(fields, grids, strict=True)])
    standard_error = math.sqrt(2 / 256) / math.sqrt(num)
    assert abs(own.mean() - 1) < 5 * standard_error
    assert abs(own.std() - math.sqrt(2 / 256)) < 0.3 * math.sqrt(2 / 256)
    # Nothing left of theta in the whitened power (a map drawn with a neighbour's theta would).
    assert abs(stats.pearsonr(own, theta[:, 0])[0]) < 4 / math.sqrt(num)
    assert abs(stats.pearsonr(own, theta[:, 1])[0]) < 4 / math.sqrt(num)
    # Whitened by the previous map's spectrum the power is off by factors (log spread > 0.5).
    rolled = np.roll(grids, 1, 0)
    wrong = [whitened_power(f[None], p)[0] for f, p in zip(fields, rolled, strict=True)]
    assert np.log(wrong).std() > 0.5 > 5 * np.log(own).std()


@pytest.fixture(scope="module")
def theta_file(tmp_path_factory):
    """96 conditional GRFs of 16 x 16 in the default box, written by the real CLI."""
    path = tmp_path_factory.mktemp("theta") / "cond16.h5"
    args = ["simulate", "grf", str(path), "--num", "96", "--shape", "16", "16", "--seed", "4",
            "--amplitude-range", "0.5", "2"]  # fmt: skip
    assert main(args) == 0
    return path


def test_simulate_cli_writes_theta_and_its_names(theta_file):
    with h5py.File(theta_file, "r") as f:
        fields, theta = f["fields"][...], f["theta"][...]
        assert json.loads(f.attrs["theta_names"]) == NAMES
        assert f.attrs["kind"] == "grf"
        assert "--amplitude-range" in f.attrs["command"]
    expected, expected_theta, _ = conditional_grf((16, 16), 96, seed=4)
    assert theta.shape == (96, 2) and theta.dtype == np.float64
    np.testing.assert_array_equal(theta, expected_theta)
    np.testing.assert_array_equal(fields, expected)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["lognormal", "--amplitude-range", "0.5", "2"], "simulate kind grf, not lognormal"),
        (["grf", "--slope-range", "-1", "-2"], "slope range must be two finite numbers LO <= HI"),
        (["grf", "--amplitude-range", "2", "1"], "amplitude range must be two finite"),
        (["grf", "--amplitude-range", "0", "1"], "amplitude range must be > 0"),
        (
            ["grf", "--amplitude-range", "1", "2", "--power-spectrum", "{dir}/pk.txt"],
            "replace --power-spectrum",
        ),
        (["grf", "--amplitude-range", "1", "2", "--shift", "0.5"], "--shift: not for kind grf"),
        (
            ["grf", "--slope-range", "-2", "-1", "--pixel-scale-arcmin", "2", "--growth", "2"],
            "--pixel-scale-arcmin, --growth: not for kind grf",
        ),
    ],
    ids=[
        "kind",
        "slope-lo-hi",
        "amplitude-lo-hi",
        "amplitude-zero",
        "power-spectrum",
        "shift",
        "pixel-scale-growth",
    ],
)
def test_simulate_cli_refuses_bad_conditional_flags_in_one_line(flags, message, tmp_path, capsys):
    (tmp_path / "pk.txt").write_text("0 1\n1 1\n")
    out = tmp_path / "out" / "cond.h5"
    out.parent.mkdir()
    kind, *rest = (f.format(dir=tmp_path) for f in flags)
    code = main(["simulate", kind, str(out), "--num", "2", "--shape", "16", "16", *rest])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(PREFIX) and message in err
    assert not any(out.parent.iterdir())


# -- training data ---------------------------------------------------------------------------


def test_data_module_yields_fields_with_their_theta(theta_file):
    module = FieldDataModule(str(theta_file), batch_size=8, augment=False, val_fraction=0.25)
    module.setup("fit")
    with h5py.File(theta_file, "r") as f:
        fields, theta = f["fields"][...], f["theta"][...]
    # Validation batches keep the file's order of the held-out maps.
    x, t = next(iter(module.val_dataloader()))
    rows = module.val_indices[:8]
    assert x.shape == (8, 1, 16, 16) and t.shape == (8, 2)
    np.testing.assert_array_equal(x[:, 0].numpy(), fields[rows].astype(np.float32))
    np.testing.assert_array_equal(t.numpy(), theta[rows])
    # Shuffled training batches: each map comes with its own row's theta.
    x, t = next(iter(module.train_dataloader()))
    for field, values in zip(x[:, 0].numpy(), t.numpy(), strict=True):
        (row,) = np.nonzero((fields.astype(np.float32) == field).all((1, 2)))[0]
        assert row in module.train_indices
        np.testing.assert_array_equal(values, theta[row])
    condition = module.describe()["condition"]
    train = theta[module.train_indices]
    assert condition["names"] == NAMES
    np.testing.assert_allclose(condition["mean"], train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(condition["std"], train.std(0), rtol=1e-12)
    assert condition["min"] == train.min(0).tolist() and condition["max"] == train.max(0).tolist()


@pytest.mark.parametrize(
    "theta, message",
    [
        (np.ones((3, 2)), "dataset 'theta' must be (num, P) with num = 4 maps, got (3, 2)"),
        (np.ones(4), "dataset 'theta' must be (num, P) with num = 4 maps, got (4,)"),
        (np.ones((4, 0)), "dataset 'theta' must be (num, P)"),
        (np.array([[1.0, 2], [2, np.nan], [3, 1], [4, 0]]), "dataset 'theta' has NaN or inf"),
        (np.array([[1.0, 2], [2, np.inf], [3, 1], [4, 0]]), "dataset 'theta' has NaN or inf"),
        (np.array([[1.0, 2], [2, 2], [3, 2], [4, 2]]), "dataset 'theta' does not vary in slope"),
    ],
    ids=["rows", "rank", "empty", "nan", "inf", "constant"],
)
def test_bad_theta_datasets_are_refused(tmp_path, theta, message):
    path = tmp_path / "bad.h5"
    fields = np.random.default_rng(0).normal(size=(4, 8, 8))
    with h5py.File(path, "w") as f:
        f.create_dataset("fields", data=fields)
        f.create_dataset("theta", data=theta)
        f.attrs["theta_names"] = json.dumps(NAMES)
    # val_fraction 0.25 keeps 3 training maps: the constant column is constant on them too.
    with pytest.raises(TrainingDataError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        FieldDataModule(str(path), val_fraction=0.25).setup("fit")


def test_zarr_theta_is_read_like_hdf5(theta_file, tmp_path):
    with h5py.File(theta_file, "r") as f:
        fields, theta = f["fields"][...], f["theta"][...]
    store = write_dataset_file(tmp_path / "c.zarr", fields, {"kind": "grf", "theta_names": NAMES},
                               theta=theta)  # fmt: skip
    modules = [FieldDataModule(str(p), val_fraction=0.25) for p in (theta_file, store)]
    for module in modules:
        module.setup("fit")
    assert modules[0].describe()["condition"] == modules[1].describe()["condition"]


def training_error(capsys) -> str:
    """The one error line of a refused `train`: the last on stderr (Lightning may have printed
    its set-up messages before the data were checked)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith(PREFIX)]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def test_train_cli_refuses_a_conditional_net_on_a_file_without_theta(grf_file, tmp_path, capsys):
    args = [*train_args(grf_file, tmp_path), "--model.net.init_args.condition_dim", "2",
            "--trainer.max_steps", "2"]  # fmt: skip
    assert main(args) == 2
    err = training_error(capsys)
    assert str(grf_file) in err and "no 'theta' dataset" in err
    assert not list(tmp_path.glob("**/prior.pt"))


def test_train_cli_refuses_a_parameter_count_mismatch(theta_file, tmp_path, capsys):
    args = [*train_args(theta_file, tmp_path), "--model.net.init_args.condition_dim", "3",
            "--trainer.max_steps", "2"]  # fmt: skip
    assert main(args) == 2
    err = training_error(capsys)
    assert "dataset 'theta' has 2 parameter(s), the network's condition_dim is 3" in err


def test_an_unconditional_net_on_a_theta_file_warns_and_trains_unconditionally(
    theta_file, tmp_path
):
    args = [*train_args(theta_file, tmp_path), "--trainer.max_steps", "3"]
    with pytest.warns(UserWarning, match="has a 'theta' dataset but the network has condition_dim"):
        assert main(args) == 0
    prior = NetworkPrior.from_file(next(tmp_path.glob("lightning_logs/version_0/prior.pt")))
    assert prior.metadata["condition"] is None and prior.condition is None
    assert "condition_dim" not in prior.metadata["network"]["config"]
    assert "theta_mean" not in prior.precond.state_dict()
    assert "conditioned_on" not in prior.identity() and "theta" not in prior.identity()
    with pytest.raises(PriorFileError, match="trained without parameters"):
        ConditionedPrior(prior, [1.0, -2.0])


@pytest.fixture(scope="module")
def conditional_prior_file(theta_file, tmp_path_factory):
    """A tiny conditional prior (condition_dim 2) trained for 6 steps by the real train CLI."""
    root = tmp_path_factory.mktemp("train")
    args = [*train_args(theta_file, root), "--model.net.init_args.condition_dim", "2",
            "--trainer.max_steps", "6"]  # fmt: skip
    assert main(args) == 0
    return next(root.glob("lightning_logs/version_0/prior.pt"))


def test_a_trained_conditional_prior_records_its_condition(conditional_prior_file, theta_file):
    prior = NetworkPrior.from_file(conditional_prior_file)
    module = FieldDataModule(str(theta_file), val_fraction=0.25)  # the tiny config's split
    module.setup("fit")
    expected = module.describe()["condition"]
    assert prior.condition == {**expected, "dropout": 0.1}
    assert prior.metadata["network"]["config"]["condition_dim"] == 2
    torch.testing.assert_close(
        prior.precond.theta_mean, torch.tensor(expected["mean"], dtype=torch.float64)
    )
    torch.testing.assert_close(
        prior.precond.theta_std, torch.tensor(expected["std"], dtype=torch.float64)
    )
    identity = prior.identity()
    assert identity["conditioned_on"] == NAMES and identity["theta"] is None


# -- the network -----------------------------------------------------------------------------


def perturbed(net: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """The network with every weight moved at random: the zero-initialised head and null vector
    would otherwise hide the condition."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return net


def tiny_conditional_net(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(channels=1, base_channels=8, channel_mults=(1, 2), blocks_per_level=1,
                condition_dim=2)  # fmt: skip


def test_unet_drops_the_condition_where_keep_is_false(seeded):
    net = perturbed(tiny_conditional_net()).double()
    g = seeded(1)
    x = torch.randn((4, *SHAPE), generator=g, dtype=torch.float64)
    c_noise = torch.tensor([-1.0, -0.2, 0.3, 1.0], dtype=torch.float64)
    condition = torch.randn((4, 2), generator=g, dtype=torch.float64)
    keep = torch.tensor([True, False, True, False])
    with torch.no_grad():
        mixed = net(x, c_noise, condition, keep)
        unconditional = net(x, c_noise)
        conditional = net(x, c_noise, condition)
        other = net(x, c_noise, condition + 1.0)
    assert torch.equal(mixed[~keep], unconditional[~keep])
    assert torch.equal(mixed[keep], conditional[keep])
    # The condition is felt by every member, and another theta gives another output.
    for a, b in ((conditional, unconditional), (other, conditional)):
        gap = (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)
        assert (gap > 0.01).all(), gap


def test_unconditional_unet_config_and_refusals():
    plain = UNet(channels=1, base_channels=8, channel_mults=(1, 2))
    assert "condition_dim" not in plain.config() and plain.condition_embedding is None
    net = tiny_conditional_net()
    assert net.config()["condition_dim"] == 2
    rebuilt = UNet(**net.config())
    assert rebuilt.state_dict().keys() == net.state_dict().keys()
    assert "condition_embedding.null" in net.state_dict()
    x, c_noise = torch.zeros(2, *SHAPE), torch.zeros(2)
    with pytest.raises(ValueError, match="unconditional"):
        plain(x, c_noise, torch.zeros(2, 2))
    precond = EDMPrecond(plain)
    assert "theta_mean" not in precond.state_dict()
    with pytest.raises(ValueError, match="this prior is unconditional"):
        precond(x, 1.0, [1.0, -2.0])


def test_edm_precond_standardises_theta_for_the_network(seeded):
    net = perturbed(tiny_conditional_net())
    precond = EDMPrecond(net)
    mean, std = [1.25, -1.75], [0.4, 0.5]
    precond.set_normalisation([0.1], 2.0)
    precond.set_condition_normalisation(mean, std)
    seen = []
    net.condition_embedding.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    x = torch.randn((3, *SHAPE), generator=seeded(2))
    theta = torch.tensor([[0.9, -2.0], [1.7, -1.1], [0.5, -2.5]], dtype=torch.float64)
    with torch.no_grad():
        per_member = precond(x, 0.7, theta)
        shared = precond(x, 0.7, [0.9, -2.0])
        expanded = precond(x, 0.7, theta[:1].expand(3, 2))
    expected = (theta - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(seen[0].double(), expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(shared, expanded)
    assert torch.equal(shared[0], per_member[0]) and not torch.equal(shared[1], per_member[1])


def test_drop_mask_drops_at_the_rate_asked():
    torch.manual_seed(0)
    condition = torch.zeros(20000, 2)
    kept = drop_mask(condition, 0.3, 20000, "cpu")
    assert kept.dtype == torch.bool
    # Binomial: the dropped share is 0.3 +- sqrt(0.3 * 0.7 / 20000) = 0.0032.
    assert abs((~kept).float().mean().item() - 0.3) < 5 * math.sqrt(0.21 / 20000)
    assert drop_mask(condition, 0.0, 20000, "cpu") is None
    assert drop_mask(None, 0.3, 20000, "cpu") is None


# -- learning p(x | theta) -------------------------------------------------------------------


def test_training_learns_to_use_theta(seeded):
    """250 Adam steps of the tiny net on 384 GRFs whose amplitudes are 0.3 or 3 (slopes in the
    default box). On 384 held-out maps at fixed noise, the per-map log ratio of the denoising
    error with the other amplitude's theta to that with the map's own theta is positive by many
    standard errors of its mean. sigma = 0.3 and 0.5 pooled data std are 0.6 and 1 std of the
    low-amplitude maps. Measured (these seeds): means 0.18 and 0.33, at 25 and 26 standard
    errors."""
    low, high, num = 0.3, 3.0, 384
    a = conditional_grf((16, 16), num, seed=11, amplitude_range=(low, low))
    b = conditional_grf((16, 16), num, seed=12, amplitude_range=(high, high))
    order = np.random.default_rng(0).permutation(2 * num)
    x = torch.from_numpy(np.concatenate([a[0], b[0]])[order]).float()[:, None]
    theta = np.concatenate([a[1], b[1]])[order]
    t = torch.from_numpy(theta).float()
    train = 384
    model = EDMPrecond(tiny_conditional_net(seed=0))
    std = float(x[:train].std())
    model.set_normalisation([0.0], std)
    model.set_condition_normalisation(theta[:train].mean(0), theta[:train].std(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    torch.manual_seed(1)
    for _ in range(250):
        index = torch.randint(train, (32,))
        loss = model.loss(x[index], condition=t[index], condition_dropout=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x0, own = x[train:], t[train:]
    other = own.clone()
    other[:, 0] = low + high - own[:, 0]  # the other amplitude, same slope
    generator = seeded(5)
    for sigma_n in (0.3, 0.5):
        noisy = x0 + sigma_n * std * torch.randn(x0.shape, generator=generator)
        with torch.no_grad():
            errors = [
                (model(noisy, sigma_n * std, c) - x0).square().flatten(1).mean(1)
                for c in (own, other)
            ]
        log_ratio = (errors[1] / errors[0]).log()
        standard_error = float(log_ratio.std()) / math.sqrt(len(log_ratio))
        assert float(log_ratio.mean()) > max(8 * standard_error, 0.1), (sigma_n, log_ratio)


# -- ConditionedPrior ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_conditional_prior() -> NetworkPrior:
    return network_prior(perturbed(tiny_conditional_net(seed=3)), 1.0, condition_entry())


def test_conditioned_prior_is_the_conditional_pass_at_w0_and_cfg_otherwise(
    seeded,
    random_conditional_prior,
):
    prior = random_conditional_prior
    g = seeded(4)
    x = torch.randn((3, *SHAPE), generator=g, dtype=torch.float64)
    theta = [1.4, -2.1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # w = 0 inside the box: no warning at all
        plain = ConditionedPrior(prior, theta)
    for sigma in (0.05, 0.8, torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64)):
        conditional = prior.denoise(x, sigma, condition=theta)
        unconditional = prior.denoise(x, sigma)
        assert torch.equal(plain.denoise(x, sigma), conditional)
        assert (conditional - unconditional).abs().max() > 1e-3 * unconditional.abs().max()
        for w in (1.5, -1.0, 0.3):
            with pytest.warns(GuidanceWarning):
                guided = ConditionedPrior(prior, theta, guidance=w)
            torch.testing.assert_close(
                guided.denoise(x, sigma), (1 + w) * conditional - w * unconditional,
                rtol=0, atol=1e-12,
            )  # fmt: skip
    identity = ConditionedPrior(prior, {"slope": -2.1, "amplitude": 1.4}, 0.0).identity()
    assert identity["theta"] == {"amplitude": 1.4, "slope": -2.1} and identity["guidance"] == 0.0
    assert identity["conditioned_on"] == NAMES and identity["file"] == "test-prior.pt"


def test_guidance_warns_once_and_only_when_w_is_not_zero(random_conditional_prior):
    for w, count in ((0.0, 0), (1.0, 1), (-0.5, 1)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ConditionedPrior(random_conditional_prior, [1.0, -2.0], guidance=w)
        guidance = [c for c in caught if issubclass(c.category, GuidanceWarning)]
        assert len(guidance) == count and len(caught) == count, [str(c.message) for c in caught]
        if count:
            assert str(guidance[0].message).startswith(f"classifier-free guidance w = {w:g} ")


def test_theta_by_name_or_by_order_is_the_same(seeded, random_conditional_prior):
    x = torch.randn((2, *SHAPE), generator=seeded(5), dtype=torch.float64)
    by_name = ConditionedPrior(random_conditional_prior, {"slope": -1.2, "amplitude": 0.8})
    by_order = ConditionedPrior(random_conditional_prior, (0.8, -1.2))
    from_numpy = ConditionedPrior(random_conditional_prior, np.array([0.8, -1.2]))
    assert by_name.theta == by_order.theta == from_numpy.theta == [0.8, -1.2]
    assert torch.equal(by_name.denoise(x, 0.3), by_order.denoise(x, 0.3))
    assert torch.equal(by_name.denoise(x, 0.3), from_numpy.denoise(x, 0.3))
    assert by_name.identity() == by_order.identity()


@pytest.mark.parametrize(
    "theta, guidance, message",
    [
        ({"amplitude": 1.0, "slope": -2.0, "omega": 0.3}, 0.0, "unknown: omega"),
        ({"amplitude": 1.0}, 0.0, "missing: slope"),
        ([1.0], 0.0, "conditioned on 2 parameter(s) (amplitude, slope), got 1 value(s)"),
        ([1.0, -2.0, 3.0], 0.0, "got 3 value(s)"),
        ([1.0, float("nan")], 0.0, "theta values must be finite"),
        ({"amplitude": float("inf"), "slope": -2.0}, 0.0, "theta values must be finite"),
        (["one", -2.0], 0.0, "theta values must be numbers"),
        ([1.0, -2.0], -1.5, "guidance weight must be a finite number >= -1"),
        ([1.0, -2.0], float("nan"), "guidance weight must be a finite number >= -1"),
        ([1.0, -2.0], float("inf"), "guidance weight must be a finite number >= -1"),
    ],
    ids=[
        "unknown",
        "missing",
        "too-few",
        "too-many",
        "nan",
        "inf",
        "text",
        "w<-1",
        "w-nan",
        "w-inf",
    ],
)
def test_bad_theta_or_guidance_is_refused(random_conditional_prior, theta, guidance, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        ConditionedPrior(random_conditional_prior, theta, guidance)
    assert len(str(raised.value).splitlines()) == 1


def test_theta_outside_the_training_box_warns(random_conditional_prior):
    with pytest.warns(UserWarning, match=r"outside the training range.*amplitude = 3 \(trained "
                      r"on \[0\.5, 2\]\); slope = -0\.5 \(trained on \[-2\.5, -1\]\)"):  # fmt: skip
        ConditionedPrior(random_conditional_prior, [3.0, -0.5])
    with pytest.warns(UserWarning, match="outside the training range") as caught:
        ConditionedPrior(random_conditional_prior, [1.0, -3.0])
    assert "amplitude" not in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ConditionedPrior(random_conditional_prior, [0.5, -1.0])  # the box's edges are inside


def test_theta_for_an_unconditional_prior_and_guidance_without_theta_are_refused(
    random_conditional_prior,
):
    torch.manual_seed(0)
    plain = network_prior(perturbed(UNet(base_channels=8, channel_mults=(1, 2))), 1.0, None)
    assert plain.condition is None
    with pytest.raises(PriorFileError, match="trained without parameters; it takes no theta"):
        ConditionedPrior(plain, [1.0, -2.0])
    with pytest.raises(PriorFileError, match="trained without parameters"):
        condition_prior(plain, {"amplitude": 1.0, "slope": -2.0})
    with pytest.raises(ValueError, match="this prior is unconditional"):
        plain.denoise(torch.zeros(1, *SHAPE), 1.0, condition=[1.0, -2.0])
    gaussian = GaussianPrior(default_power_spectrum(), SHAPE)
    with pytest.raises(ValueError, match="theta is for parameter-conditioned trained priors"):
        condition_prior(gaussian, [1.0, -2.0])
    for prior in (random_conditional_prior, plain, gaussian):
        with pytest.raises(ValueError, match="a guidance weight needs theta"):
            condition_prior(prior, None, 1.0)
        assert condition_prior(prior, None, 0.0) is prior
    conditioned = condition_prior(random_conditional_prior, [1.0, -2.0], 0.0)
    assert isinstance(conditioned, ConditionedPrior) and conditioned.theta == [1.0, -2.0]


# -- exact posterior at w = 0 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle_prior() -> NetworkPrior:
    return make_oracle_prior()


def test_oracle_network_gives_the_exact_gaussian_denoiser(seeded, oracle_prior):
    x = 3 * torch.randn((3, *SHAPE), generator=seeded(0), dtype=torch.float64)
    exact = [GaussianPrior(PowerLawSpectrum(*t), SHAPE) for t in (THETA_1, THETA_2, [1.25, -1.75])]
    for sigma in (1e-3, 0.1, 1.0, 30.0, 300.0):
        for theta, prior in zip((THETA_1, THETA_2), exact[:2], strict=True):
            torch.testing.assert_close(
                oracle_prior.denoise(x, sigma, condition=theta), prior.denoise(x, sigma),
                rtol=1e-10, atol=1e-12,
            )  # fmt: skip
        torch.testing.assert_close(
            oracle_prior.denoise(x, sigma), exact[2].denoise(x, sigma), rtol=1e-10, atol=1e-12
        )
    # Per-member theta in one batch.
    theta = torch.tensor([THETA_1, THETA_2, THETA_1], dtype=torch.float64)
    with torch.no_grad():
        mixed = oracle_prior.precond(x, 0.5, theta)
    for b, prior in enumerate((exact[0], exact[1], exact[0])):
        torch.testing.assert_close(mixed[b], prior.denoise(x[b : b + 1], 0.5)[0], rtol=1e-10,
                                   atol=1e-12)  # fmt: skip


@pytest.fixture(scope="module")
def masked_problem():
    """A 16 x 16 map from theta_1's Gaussian prior, 25% masked, noise 0.3 of its pixel std."""
    truth_prior = GaussianPrior(PowerLawSpectrum(*THETA_1), SHAPE)
    mask = torch.from_numpy(survey_mask(SHAPE[1:], hole_fraction=0.25, seed=0))
    noise = GaussianNoise(0.3 * truth_prior.pixel_variance() ** 0.5, mask)
    model = ForwardModel(Mask(mask), noise, SHAPE, name="inpainting")
    generator = torch.Generator().manual_seed(3)
    y = model.simulate(truth_prior.sample(1, generator)[0], generator)
    exact = {
        tuple(t): exact_posterior(GaussianPrior(PowerLawSpectrum(*t), SHAPE), model, y)
        for t in (THETA_1, THETA_2)
    }
    return model, y, exact


def test_conditioned_oracle_prior_samples_the_exact_posterior(oracle_prior, masked_problem):
    """256 guided samples at each theta against the exact Wiener posterior of that theta's
    Gaussian prior (whitened statistics over n = 256 modes; allowances as in
    test_samplers_exact.py). Measured: whitened mean 1.09 / 1.00, variance 1.001 / 1.000.
    Against the other theta's posterior: whitened mean 33 / 57, variance 0.61 / 3.6, std
    ratio 0.87 / 1.15: the condition matters."""
    model, y, exact = masked_problem
    num = 256
    mean_se = math.sqrt(2 / 256)
    variance_se = math.sqrt(2 / (256 * (num - 1)))
    for theta, other in ((THETA_1, THETA_2), (THETA_2, THETA_1)):
        prior = ConditionedPrior(oracle_prior, {"amplitude": theta[0], "slope": theta[1]})
        samples, info = sample_posterior(
            prior, model, y, num, sampler="guided", seed=0, progress=False, batch_size=num
        )
        comparison = compare_to_exact(samples, exact[tuple(theta)])
        assert abs(comparison.whitened_mean - 1) <= 0.3 + 5 * mean_se, comparison
        assert abs(comparison.whitened_variance - 1) <= 0.02 + 5 * variance_se, comparison
        wrong = compare_to_exact(samples, exact[tuple(other)])
        assert wrong.whitened_mean > 10 or abs(wrong.whitened_variance - 1) > 0.5, wrong
        assert abs(math.log(wrong.std_ratio)) > 0.1, wrong
    # The exact posteriors themselves differ: theta_2's larger amplitude leaves the holes about
    # twice as uncertain (measured posterior std ratio 1.91; prior pixel std ratio 1.95).
    ratio = exact[tuple(THETA_2)].std.mean() / exact[tuple(THETA_1)].std.mean()
    assert ratio > 1.5


def test_conditioned_oracle_prior_draws_from_its_theta(seeded, oracle_prior):
    """ConditionedPrior.sample (the reverse SDE with its own denoiser): maps whitened by theta's
    spectrum have mode power 1 +- about 0.09 / sqrt(N) on average; by the other theta's, not."""
    num = 128
    for theta, other in ((THETA_1, THETA_2), (THETA_2, THETA_1)):
        draws = (
            ConditionedPrior(oracle_prior, theta).sample(num, seeded(1), steps=100)[:, 0].numpy()
        )
        own = whitened_power(draws, power_on_grid(PowerLawSpectrum(*theta), 16, 16))
        wrong = whitened_power(draws, power_on_grid(PowerLawSpectrum(*other), 16, 16))
        assert abs(own.mean() - 1) < 0.03 + 5 * math.sqrt(2 / 256 / num), own.mean()
        assert abs(np.log(wrong.mean())) > 0.3, wrong.mean()


# -- the reconstruct CLI ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def obs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("obs") / "noise.h5"
    args = ["simulate-obs", str(path), "--forward-model", "noise", "--shape", "16", "16",
            "--noise-std", "0.5", "--prior", "gaussian", "--seed", "3"]  # fmt: skip
    assert main(args) == 0
    return path


def reconstruct(obs_file, out: Path, *flags: str) -> int:
    return main(["reconstruct", str(obs_file), *flags, "--num-samples", "2", "--steps", "4",
                 "--no-progress", "-o", str(out)])  # fmt: skip


def test_reconstruct_cli_records_theta_and_guidance(
    obs_file, conditional_prior_file, tmp_path, capsys
):
    prior_flag = ["--prior", str(conditional_prior_file)]
    out = tmp_path / "named.h5"
    assert reconstruct(obs_file, out, *prior_flag, "--theta", "amplitude=1.2,slope=-2") == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.strip() == f"wrote 2 samples to {out}"
    named = xr.load_dataset(out, engine="h5netcdf")
    identity = json.loads(named.attrs["prior"])
    assert identity["theta"] == {"amplitude": 1.2, "slope": -2.0}
    assert identity["guidance"] == 0.0 and identity["conditioned_on"] == NAMES
    assert identity["file"] == str(conditional_prior_file)
    assert named.attrs["prior_checksum"] == identity["checksum"]
    # By order: the same theta, so the same draws.
    out = tmp_path / "ordered.h5"
    assert reconstruct(obs_file, out, *prior_flag, "--theta", "1.2,-2") == 0
    ordered = xr.load_dataset(out, engine="h5netcdf")
    np.testing.assert_array_equal(ordered["samples"].values, named["samples"].values)
    # No theta: the marginal prior, recorded as such, and other draws.
    out = tmp_path / "marginal.h5"
    assert reconstruct(obs_file, out, *prior_flag) == 0
    marginal = xr.load_dataset(out, engine="h5netcdf")
    identity = json.loads(marginal.attrs["prior"])
    assert identity["theta"] is None and "guidance" not in identity
    assert not np.array_equal(marginal["samples"].values, named["samples"].values)
    capsys.readouterr()
    # Guidance: one warning line, and w in the provenance.
    out = tmp_path / "guided.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # a second warning from the same line would show too
        code = reconstruct(obs_file, out, *prior_flag, "--theta", "amplitude=1.2,slope=-2",
                           "--guidance", "1")  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{WARNING}classifier-free guidance w = 1 ")
    assert json.loads(xr.load_dataset(out, engine="h5netcdf").attrs["prior"])["guidance"] == 1.0


def test_reconstruct_cli_marginalises_over_a_theta_grid(obs_file, conditional_prior_file, tmp_path):
    out = tmp_path / "grid.h5"
    grid = "amplitude=0.8:1.6:3,slope=-2:-2:1"
    assert (
        reconstruct(obs_file, out, "--prior", str(conditional_prior_file), "--theta-grid", grid)
        == 0
    )
    ds = xr.load_dataset(out, engine="h5netcdf")
    identity = json.loads(ds.attrs["prior"])
    assert identity["theta_grid"]["points"] == [[0.8, -2.0], [1.2, -2.0], [1.6, -2.0]]
    settings = json.loads(ds.attrs["sampler_settings"])
    weights = settings["sampler_diagnostics"]["component_weights"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--theta", "amplitude=1.2,slope=-2"], "trained without parameters; it takes no theta"),
        (["--prior", "gaussian", "--theta", "1.2,-2"], "theta is for parameter-conditioned"),
        (["--prior", "{cond}", "--guidance", "1"], "a guidance weight needs theta"),
        (["--prior", "{cond}", "--theta", "amplitude=1.2,omega=3"], "unknown: omega"),
        (["--prior", "{cond}", "--theta", "1.2,-2,3"], "got 3 value(s)"),
        (["--prior", "{cond}", "--theta", ""], "missing: amplitude, slope"),
        (["--prior", "{cond}", "--theta", "1.2,-2", "--guidance", "-2"], "guidance weight must"),
        (["--theta-grid", "amplitude=1:2:2,slope=-2:-1:2"], "trained without parameters; it has"),
        (["--prior", "{cond}", "--theta-grid", "amplitude=1:2:2"], "a range for each of"),
        (
            [
                "--prior",
                "{cond}",
                "--theta",
                "1,-2",
                "--theta-grid",
                "amplitude=1:2:2,slope=-2:-1:1",
            ],
            "cannot be combined",
        ),
    ],
    ids=[
        "default-prior",
        "gaussian-prior",
        "guidance-only",
        "unknown-name",
        "count",
        "empty",
        "w<-1",
        "grid-default-prior",
        "grid-missing-name",
        "grid-and-theta",
    ],
)
def test_reconstruct_cli_refuses_bad_theta_in_one_line(
    flags, message, obs_file, conditional_prior_file, tmp_path, capsys
):
    out = tmp_path / "out" / "post.h5"
    out.parent.mkdir()
    flags = [f.format(cond=conditional_prior_file) for f in flags]
    assert reconstruct(obs_file, out, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(PREFIX) and message in err
    assert not any(out.parent.iterdir())


@pytest.mark.parametrize("text", ["amplitude=1.2,slope", "amplitude=x,slope=-2", "1.2,slope=-2",
                                  "amplitude=1,amplitude=2"])  # fmt: skip
def test_reconstruct_cli_refuses_malformed_theta(
    text, obs_file, conditional_prior_file, tmp_path, capsys
):
    out = tmp_path / "out" / "post.h5"
    out.parent.mkdir()
    with pytest.raises(SystemExit) as stop:
        reconstruct(obs_file, out, "--prior", str(conditional_prior_file), "--theta", text)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("posterior-diffusion reconstruct: error: argument --theta:"), err
    assert not any(out.parent.iterdir())
