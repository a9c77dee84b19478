"""Trained priors: file round trip, refusal of bad files, shape checks, hybrid, sampling."""

from __future__ import annotations

import ast
import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from forward_models import ForwardModel, GaussianNoise, Mask
from posterior_diffusion.cli import main
from posterior_diffusion.networks import UNet
from posterior_diffusion.networks.edm import EDMPrecond
from posterior_diffusion.priors import GaussianPrior, default_power_spectrum
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.prior_file import PriorFileError, make_record, save_record
from posterior_diffusion.priors.resolve import resolve_prior
from posterior_diffusion.rng import EnsembleRNG
from posterior_diffusion.samplers import SAMPLERS
from posterior_diffusion.samplers.run import sample_posterior

SHAPE = (1, 16, 16)
PACKAGE = Path(__file__).resolve().parents[2] / "posterior_diffusion"


def metadata(**extra) -> dict:
    return {
        "field_shape": list(SHAPE),
        "channels": 1,
        "data_std": 0.03,
        "data_mean": [0.0],
        "sigma_data": 1.0,
        "hybrid": False,
        "pixel_scale_arcmin": 1.0,
        **extra,
    }


def random_precond(seed: int = 0, base=None) -> EDMPrecond:
    """A network with random (non-zero) weights, so outputs depend on every layer."""
    torch.manual_seed(seed)
    net = UNet(channels=1, base_channels=8, channel_mults=(1, 2), blocks_per_level=1)
    precond = EDMPrecond(net, base=base)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    precond.set_normalisation([0.001], 0.03)
    return precond


def write_prior(path: Path, precond: EDMPrecond, **extra) -> Path:
    meta = metadata(
        network={"name": "UNet", "config": precond.net.config()},
        hybrid=precond.base is not None,
        **extra,
    )
    return save_record(make_record(precond.state_dict(), meta), path)


@pytest.fixture()
def prior_file(tmp_path) -> Path:
    return write_prior(tmp_path / "prior.pt", random_precond())


def test_round_trip_gives_identical_denoiser(prior_file):
    precond = random_precond()
    loaded = NetworkPrior.from_file(prior_file)
    x = 0.05 * torch.randn(3, *SHAPE, dtype=torch.float64)
    for sigma in (1e-3, 0.03, 1.0):
        with torch.no_grad():
            assert torch.equal(loaded.denoise(x, sigma), precond(x, sigma))
    assert loaded.identity()["checksum"] == torch.load(prior_file, weights_only=True)["checksum"]


def test_denoiser_takes_any_batch_shape_and_per_member_sigma(prior_file):
    prior = NetworkPrior.from_file(prior_file)
    x = 0.05 * torch.randn(2, 3, *SHAPE, dtype=torch.float64)
    sigma = torch.tensor([[0.01, 0.1, 1.0], [0.01, 0.1, 1.0]], dtype=torch.float64)
    out = prior.denoise(x, sigma)
    assert out.shape == x.shape and out.dtype == torch.float64
    assert torch.allclose(out[1, 2], prior.denoise(x[1, 2][None], 1.0)[0], atol=1e-7)  # float32 net


def test_a_fixed_mean_is_held_exactly_and_the_input_mean_ignored(tmp_path):
    """With metadata `fixed_mean`, D(x) has that mean whatever x, does not depend on x's mean,
    and its vector-Jacobian products (the guidance) are mean-free; the same network without
    it (the control) does none of these."""
    precond = random_precond()
    plain = NetworkPrior.from_file(write_prior(tmp_path / "plain.pt", precond))
    fixed = NetworkPrior.from_file(write_prior(tmp_path / "fixed.pt", precond, fixed_mean=[0.002]))
    assert fixed.identity()["fixed_mean"] == [0.002]
    x = 0.05 * torch.randn(3, *SHAPE, dtype=torch.float64)
    shifted = x + 0.01 * torch.randn(3, 1, 1, 1, dtype=torch.float64)
    for sigma in (1e-3, 0.03, 1.0):
        out = fixed.denoise(x, sigma)
        assert torch.allclose(out.mean(dim=(-2, -1)), torch.tensor(0.002, dtype=torch.float64))
        assert torch.allclose(fixed.denoise(shifted, sigma), out, rtol=0, atol=1e-12)
        _, cov = fixed.linearize(x, sigma)
        assert cov(torch.randn_like(x)).mean(dim=(-2, -1)).abs().max() < 1e-12
        mean_error = (plain.denoise(x, sigma).mean(dim=(-2, -1)) - 0.002).abs().max()
        assert mean_error > 1e-5
    with torch.no_grad():
        drawn = fixed.sample(2, torch.Generator().manual_seed(0), steps=8)
    assert torch.allclose(drawn.mean(dim=(-2, -1)), torch.tensor(0.002, dtype=torch.float64))
    bad = write_prior(tmp_path / "bad.pt", precond, fixed_mean=[0.0, 1.0])
    assert "fixed_mean must be 1 finite number" in one_line_error(bad)


def one_line_error(path: Path) -> str:
    with pytest.raises(PriorFileError) as err:
        NetworkPrior.from_file(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_corrupted_foreign_and_tampered_files_are_refused(prior_file, tmp_path):
    data = prior_file.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert "not a loadable prior file" in one_line_error(truncated)
    assert "not a zip archive as torch.save writes" in one_line_error(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    assert "not a loadable prior file (not a zip archive" in one_line_error(garbage)
    noise = tmp_path / "noise.pt"  # torch.load blames pickled objects for random bytes
    noise.write_bytes(np.random.default_rng(0).bytes(3000))
    assert "pickled" not in one_line_error(noise)
    text = tmp_path / "text.pt"  # and answers a text file with a bare number (a KeyError)
    text.write_text("junk\n")
    assert "not a zip archive" in one_line_error(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.ones(3)}, foreign)
    assert "not a posterior-diffusion prior" in one_line_error(foreign)
    code = tmp_path / "code.pt"
    torch.save({"prior": Path("x")}, code)  # a pickled object: refused by weights_only
    message = one_line_error(code)
    assert "not a loadable prior file (it holds pickled Python objects" in message
    assert "\x1b" not in message and "trust the source" not in message
    record = torch.load(prior_file, weights_only=True)
    record["state_dict"]["net.stem.weight"][0, 0, 0, 0] += 1e-3
    tampered = tmp_path / "tampered.pt"
    torch.save(record, tampered)
    assert "checksum mismatch" in one_line_error(tampered)
    record = torch.load(prior_file, weights_only=True)
    meta = json.loads(record["metadata_json"])
    meta["data_std"] = 1.0
    record["metadata_json"] = json.dumps(meta, sort_keys=True)
    edited = tmp_path / "edited.pt"
    torch.save(record, edited)
    assert "checksum mismatch" in one_line_error(edited)
    missing = tmp_path / "missing.pt"
    assert "not found" in one_line_error(missing)


def test_unknown_network_and_wrong_weights_are_refused(tmp_path):
    precond = random_precond()
    meta = metadata(network={"name": "os.system", "config": {}})
    path = save_record(make_record(precond.state_dict(), meta), tmp_path / "unknown.pt")
    assert "unknown network 'os.system'" in one_line_error(path)
    bigger = {**precond.net.config(), "base_channels": 16}
    meta = metadata(network={"name": "UNet", "config": bigger})
    path = save_record(make_record(precond.state_dict(), meta), tmp_path / "mismatch.pt")
    assert "weights do not fit network 'UNet'" in one_line_error(path)
    # 40,000 channels would allocate ~100 GB before the weights are compared: refused at once.
    huge = {**precond.net.config(), "base_channels": 40000}
    meta = metadata(network={"name": "UNet", "config": huge})
    path = save_record(make_record(precond.state_dict(), meta), tmp_path / "huge.pt")
    assert "its config asks for" in one_line_error(path)
    for shape in (64, [1, 16], [1, -16, 16], [1, 16, 10**9]):
        meta = {
            **metadata(network={"name": "UNet", "config": precond.net.config()}),
            "field_shape": shape,
        }
        path = save_record(make_record(precond.state_dict(), meta), tmp_path / "shape.pt")
        assert "metadata field_shape must be [C, H, W]" in one_line_error(path)


def test_fields_the_prior_cannot_describe_are_refused(prior_file):
    prior = NetworkPrior.from_file(prior_file)
    prior.check_fields((1, 32, 48), 1.0)  # fully convolutional: other sizes are fine
    with pytest.raises(PriorFileError, match="1 channel"):
        prior.check_fields((2, 16, 16))
    with pytest.raises(PriorFileError, match="multiples of 2"):
        prior.check_fields((1, 15, 16))
    with pytest.raises(PriorFileError, match="trained at 1.0 arcmin per pixel"):
        prior.check_fields((1, 16, 16), pixel_scale_arcmin=2.0)
    with pytest.raises(PriorFileError, match="channel"):
        resolve_prior(str(prior_file), None, (2, 16, 16))


def test_cli_refuses_a_bad_prior_file_in_one_line(tmp_path, capsys):
    obs = tmp_path / "obs.h5"
    assert (
        main(
            [
                "simulate-obs",
                str(obs),
                "--forward-model",
                "noise",
                "--shape",
                "16",
                "16",
                "--noise-std",
                "0.01",
                "--prior",
                "gaussian",
            ]
        )
        == 0
    )
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    capsys.readouterr()
    assert "bad.pt" in refused_reconstruct(obs, ["--prior", str(bad)], tmp_path, capsys)


def test_hybrid_starts_as_the_gaussian_prior_and_round_trips(tmp_path):
    gaussian = GaussianPrior(default_power_spectrum(), SHAPE)
    torch.manual_seed(0)
    net = UNet(channels=1, base_channels=8, channel_mults=(1, 2))  # zero head: no correction
    hybrid = EDMPrecond(net, base=gaussian)
    hybrid.set_normalisation([0.0], 0.03)
    x = 0.05 * torch.randn(2, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(hybrid(x, 0.02), gaussian.denoise(x, 0.02), atol=1e-14)
    trained = random_precond(base=gaussian)
    path = write_prior(tmp_path / "hybrid.pt", trained)
    loaded = NetworkPrior.from_file(path)
    assert loaded.field_shape == SHAPE  # tied to its Gaussian part's grid
    with torch.no_grad():
        assert torch.equal(loaded.denoise(x, 0.02), trained(x, 0.02))
    with pytest.raises(PriorFileError, match="hybrid prior is for 16 x 16"):
        loaded.check_fields((1, 32, 32))


def test_unet_is_equivariant_to_periodic_shifts():
    torch.manual_seed(0)
    net = random_precond().net.double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    c = torch.tensor([0.1, -0.5], dtype=torch.float64)
    with torch.no_grad():
        shifted = net(torch.roll(x, (2, 4), dims=(-2, -1)), c)
        assert torch.allclose(shifted, torch.roll(net(x, c), (2, 4), dims=(-2, -1)), atol=1e-12)


def test_samplers_run_with_a_network_prior(seeded, prior_file):
    prior = NetworkPrior.from_file(prior_file)
    mask = torch.ones(16, 16)
    mask[4:8, 4:12] = 0
    model = ForwardModel(Mask(mask), GaussianNoise(0.01, mask), SHAPE, name="inpainting")
    y = model.simulate(0.03 * torch.randn(SHAPE, dtype=torch.float64), torch.Generator())
    for name in ("guided", "dps"):
        x = SAMPLERS[name].function(prior, model, y, EnsembleRNG(0, range(2)), steps=6)
        assert x.shape == (2, *SHAPE) and torch.isfinite(x).all()
    drawn = prior.sample(2, seeded(0), steps=8)
    assert drawn.shape == (2, *SHAPE) and torch.isfinite(drawn).all()
    # A prior draw is the unconditional reverse-SDE sampler's draw, member for member.
    rng = EnsembleRNG(int(torch.randint(2**62, (), generator=seeded(0))), range(2))
    alone = SAMPLERS["prior_sde"].function(prior, None, None, rng, 8, field_shape=SHAPE)
    assert torch.equal(drawn, alone)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the posterior_diffusion modules a file imports, wherever in it."""
    package = "posterior_diffusion." + ".".join(path.relative_to(PACKAGE).parent.parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names.add(".".join(filter(None, [base, node.module])))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_priors_import_nothing_above_them_and_conditioned_imports_network_one_way():
    above = ("samplers", "reconstruction", "api", "cli", "calibration", "reporting", "observing")
    for path in sorted((PACKAGE / "priors").glob("*.py")):
        for name in imported_modules(path):
            assert not name.startswith(tuple(f"posterior_diffusion.{a}" for a in above)), (
                path.name,
                name,
            )
    assert "posterior_diffusion.priors.network" in imported_modules(
        PACKAGE / "priors" / "conditioned.py"
    )
    assert "posterior_diffusion.priors.conditioned" not in imported_modules(
        PACKAGE / "priors" / "network.py"
    )


def test_bf16_autocast_stays_close_to_float32_and_is_recorded(seeded, prior_file):
    prior = NetworkPrior.from_file(prior_file)
    x = 0.03 * torch.randn(4, *SHAPE, dtype=torch.float64, generator=seeded(0))
    sigma = torch.tensor([0.001, 0.01, 0.1, 1.0], dtype=torch.float64)
    reference = prior.denoise(x, sigma)
    assert "precision" not in prior.identity()
    prior.configure(precision="bf16")
    fast = prior.denoise(x, sigma)
    assert fast.dtype == torch.float64
    # bf16 rounds each convolution's operands to 8 bits of mantissa (2^-9 relative); through
    # this random network's 8 convolutions that gave 1.1% at sigma = 1, where its output
    # dominates the skip connection. A float32 network would differ by about 1e-7.
    assert float((fast - reference).norm() / reference.norm()) < 3e-2
    assert not torch.equal(fast, reference)
    assert prior.identity()["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        prior.configure(precision="fp16")


def test_cli_refuses_bf16_for_an_analytic_prior(tmp_path, capsys):
    obs = Path(__file__).resolve().parents[2] / "examples" / "data" / "masked_field_obs.h5"
    flags = ["--prior", "gaussian", "--precision", "bf16"]
    assert "trained priors" in refused_reconstruct(obs, flags, tmp_path, capsys)


def refused_reconstruct(obs, flags: list[str], tmp_path, capsys) -> str:
    """`reconstruct OBS FLAGS`, which must fail with exit 2 in one line and write nothing."""
    output = tmp_path / "out.h5"
    code = main(["reconstruct", str(obs), *flags, "-o", str(output), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not output.exists()
    return err


def flat_power(value: float = 0.5) -> dict:
    return {"k": [0.0, 0.1, 0.5**0.5], "power": [[value, value, value]]}


@pytest.mark.parametrize(
    "record, message",
    [
        ({"k": [0.0, 0.5]}, "must be {"),
        ({"k": [0.0, 0.1, 0.5**0.5], "power": [[1.0, 1.0]]}, "3 numbers, as k"),
        ({"k": [0.0, 0.1, 0.5**0.5], "power": [[1.0] * 3, [1.0] * 3]}, "one row list per channel"),
        ({"k": [0.0, 0.1, 0.5], "power": [[1.0] * 3]}, "at least sqrt(1/2)"),
        ({"k": [0.0, 0.1, 0.5**0.5], "power": [[1.0, float("nan"), 1.0]]}, "NaN or inf"),
        ({"k": [0.0, 0.1, 0.5**0.5], "power": [[1.0, "a", 1.0]]}, "must be numbers"),
    ],
)
def test_malformed_training_power_is_refused_in_one_line(tmp_path, record, message):
    path = write_prior(tmp_path / "p.pt", random_precond(), training_power=record)
    assert message in one_line_error(path)


def test_training_power_gives_the_guided_covariance_at_high_noise(prior_file, tmp_path):
    """Above GAUSSIAN_COVARIANCE_ABOVE_STD data std guided's covariance is P sigma^2/(P + sigma^2)
    with the training spectrum (a flat one here: a multiple of the identity) and the network's D;
    below, and for files without the spectrum, it is the network's own Tweedie covariance."""
    guided_module = importlib.import_module("posterior_diffusion.samplers.guided")
    plain = NetworkPrior.from_file(prior_file)
    with_power = NetworkPrior.from_file(
        write_prior(tmp_path / "power.pt", random_precond(), training_power=flat_power(0.5))
    )
    assert plain.identity()["training_power_spectrum"] is False
    assert with_power.identity()["training_power_spectrum"] is True
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    v = torch.randn(2, *SHAPE, dtype=torch.float64)
    high = 1.5 * with_power.data_std() * guided_module.GAUSSIAN_COVARIANCE_ABOVE_STD
    x0_hat, cov = guided_module.tweedie_linearization(with_power)(x, high)
    torch.testing.assert_close(x0_hat, with_power.denoise(x, high))
    torch.testing.assert_close(cov(v), 0.5 * high**2 / (0.5 + high**2) * v)
    learned = plain.linearize(x, high)[1](v)
    assert (learned - 0.5 * high**2 / (0.5 + high**2) * v).abs().max() > 1e-3  # a control
    low = 0.5 * with_power.data_std() * guided_module.GAUSSIAN_COVARIANCE_ABOVE_STD
    torch.testing.assert_close(
        guided_module.tweedie_linearization(with_power)(x, low)[1](v),
        with_power.linearize(x, low)[1](v),
    )
    torch.testing.assert_close(
        guided_module.tweedie_linearization(plain)(x, high)[1](v), plain.linearize(x, high)[1](v)
    )


def test_a_network_prior_s_members_agree_across_batch_sizes_to_float32_rounding(prior_file):
    """What docs/samplers.md promises for trained priors: a member drawn in another batch size is
    the same draw up to float32 rounding in the network (its convolution kernels depend on the
    batch), far below the posterior's spread; analytic priors are bit-identical (test_run.py)."""
    prior = NetworkPrior.from_file(prior_file)
    mask = torch.ones(16, 16)
    mask[4:8, 4:12] = 0
    model = ForwardModel(Mask(mask), GaussianNoise(0.01, mask), SHAPE, name="inpainting")
    y = model.simulate(0.03 * torch.randn(SHAPE, dtype=torch.float64), torch.Generator())
    runs = [
        sample_posterior(prior, model, y, 4, steps=6, seed=3, batch_size=b, progress=False)[0]
        for b in (1, 4)
    ]
    spread = runs[1].std(0).mean()
    assert (runs[0] - runs[1]).abs().max() < 1e-4 * spread
    assert (runs[1][0] - runs[1][1]).abs().max() > 0.1 * spread  # members are different draws


def test_a_resumed_run_with_another_batch_size_says_what_it_guarantees(tmp_path, prior_file):
    """The resume check states the tolerance for trained priors; analytic ones stay silent
    (bit-identical), as does a resumed run that keeps the batch size."""
    from types import SimpleNamespace

    from posterior_diffusion.io.journal import SampleJournal
    from posterior_diffusion.reconstruction import BatchSizeWarning, _note_batch_size

    def resumed_with(prior, batch_size):
        journal, _ = SampleJournal.start(tmp_path / "out.h5", {"s": 1}, resume=True)
        request = SimpleNamespace(batch_size=batch_size, device="cpu")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _note_batch_size(journal, SimpleNamespace(request=request, num_samples=64, prior=prior))
        journal.release()
        return [w for w in caught if issubclass(w.category, BatchSizeWarning)]

    first, _ = SampleJournal.start(tmp_path / "out.h5", {"s": 1}, resume=False)
    first.batch_size_change(8)  # the default for 64 members on a CPU
    first.record([0], torch.zeros(1, *SHAPE).numpy(), 64)
    first.release()
    network = NetworkPrior.from_file(prior_file)
    assert resumed_with(network, None) == []
    (warning,) = resumed_with(network, 4)
    assert "batches of 8, this one of 4" in str(warning.message)
    assert "1e-4 of the posterior std" in str(warning.message)
    assert resumed_with(GaussianPrior(default_power_spectrum(), SHAPE), 2) == []


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("sigma_data", float("nan"), "metadata sigma_data must be finite and > 0, got nan"),
        ("data_std", -1.0, "metadata data_std must be finite and > 0, got -1.0"),
        ("data_std", "x", "metadata data_std must be a number, got 'x'"),
        ("data_mean", [float("inf")], "metadata data_mean must be 1 finite number(s)"),
        ("data_mean", [0.0, 0.0], "metadata data_mean must be 1 finite number(s)"),
    ],
)
def test_meaningless_normalisation_numbers_are_refused_in_one_line(tmp_path, key, value, message):
    """Before, sigma_data = NaN diverged in the sampler (exit 1), data_std = -1 gave a traceback
    and data_mean = inf ran (exit 0)."""
    path = write_prior(tmp_path / "p.pt", random_precond(), **{key: value})
    assert message in one_line_error(path)
