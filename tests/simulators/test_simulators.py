"""Simulators: spectra, moments and bounds within sampling error, exact seeding, the CLI."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import zarr

import posterior_diffusion
from forward_models.fourier import frequency_magnitude
from posterior_diffusion.cli import main
from posterior_diffusion.priors.power_spectrum import power_on_grid
from posterior_diffusion.rng import member_seed
from posterior_diffusion.simulators import (
    cic_paint,
    convergence_map,
    convergence_power_spectrum,
    gaussian_random_field,
    linear_density,
    lognormal_field,
    lognormal_spectrum,
    lpt_density_3d,
    lpt_density_maps,
)
from posterior_diffusion.simulators.lpt import linear_power_3d, lpt_displacement

SHAPE = (32, 32)
BIN_EDGES = np.linspace(0.0, 0.75, 13)  # cycles per pixel; 0.75 > sqrt(2) / 2


def red_spectrum(k):
    """P(k) with pixel variance ~0.4: strongly non-Gaussian as a lognormal, 1 + xi > 0."""
    return 0.02 / (np.asarray(k) ** 2 + 0.05**2)


def binned_power(fields):
    """Per map and |k| bin, the mean of |fft2(x)|^2 / (H W) over the bin's modes: (num, bins)."""
    num, height, width = fields.shape
    modes = np.abs(np.fft.fft2(fields)) ** 2 / (height * width)
    which = np.digitize(frequency_magnitude(height, width), BIN_EDGES) - 1
    bins = np.unique(which)
    return np.stack([modes[:, which == b].mean(axis=1) for b in bins], axis=1), which, bins


def test_grf_power_spectrum_matches_input_within_sample_variance():
    num = 64
    fields = gaussian_random_field(red_spectrum, SHAPE, num, seed=1)
    assert fields.shape == (num, *SHAPE) and fields.dtype == np.float64
    measured, which, bins = binned_power(fields)
    power = power_on_grid(red_spectrum, *SHAPE)
    for column, b in enumerate(bins):
        p = power[which == b]
        # Mode k and its partner -k are one exponential variable (or chi^2_1 when k = -k):
        # either way the bin sum of |x_hat|^2 / (H W) has variance 2 sum P^2 per map.
        standard_error = np.sqrt(2 * np.sum(p**2) / num) / p.size
        assert abs(measured[:, column].mean() - p.mean()) < 5 * standard_error, b


def test_lognormal_power_mean_variance_and_bound():
    num = 128
    delta = lognormal_field(red_spectrum, SHAPE, num, seed=2)
    power = power_on_grid(red_spectrum, *SHAPE)
    spectrum = lognormal_spectrum(power)
    assert spectrum.clipped_fraction == 0.0  # P(0) > 0 here, so nothing needs clipping
    assert np.all(delta > -1)
    assert np.mean(delta**2) > 0.2 and np.mean(delta**3) > 0.2  # non-Gaussian, skewed
    # The mean of a map has variance P(0) / (H W) whatever the field's statistics.
    mean_error = np.sqrt(power[0, 0] / (SHAPE[0] * SHAPE[1]) / num)
    assert abs(delta.mean()) < 5 * mean_error
    variances = np.mean(delta**2, axis=(1, 2))
    assert abs(variances.mean() - power.mean()) < 5 * variances.std(ddof=1) / np.sqrt(num)
    # Non-Gaussian field: the standard error of each bin comes from the scatter over maps.
    measured, which, bins = binned_power(delta)
    for column, b in enumerate(bins):
        standard_error = measured[:, column].std(ddof=1) / np.sqrt(num)
        assert abs(measured[:, column].mean() - power[which == b].mean()) < 5 * standard_error, b


def test_lognormal_rejects_spectrum_no_lognormal_field_has():
    def ring(k):  # nearly a single cosine: xi(r) swings far below -1
        return 50.0 * np.exp(-(((np.asarray(k) - 0.25) / 0.02) ** 2))

    with pytest.raises(ValueError, match="no lognormal field"):
        lognormal_field(ring, SHAPE, 1, seed=0)


def test_convergence_mean_variance_and_shift_bound():
    num, shift = 128, 0.02
    kappa = convergence_map(SHAPE, num, seed=3, pixel_scale_arcmin=2.0, shift=shift)
    power = power_on_grid(convergence_power_spectrum(2.0), *SHAPE)
    spectrum = lognormal_spectrum(power, shift)
    # Only the mean mode is clipped (P(0) = 0), a fraction of a percent of the variance.
    assert 0 < spectrum.clipped_fraction < 0.01
    assert shift**2 * np.expm1(spectrum.sigma_g2) == pytest.approx(power.mean(), rel=0.01)
    assert np.all(kappa > -shift)
    map_means = kappa.mean(axis=(1, 2))
    assert abs(map_means.mean()) < 5 * map_means.std(ddof=1) / np.sqrt(num)
    variances = np.mean(kappa**2, axis=(1, 2))
    assert abs(variances.mean() - power.mean()) < 5 * variances.std(ddof=1) / np.sqrt(num)


def test_cic_conserves_mass_and_lpt_maps_have_zero_mean():
    positions = np.random.default_rng(0).uniform(-40, 80, size=(3, 5000))
    mass = cic_paint(positions, 16)
    assert mass.sum() == pytest.approx(5000, rel=1e-12) and np.all(mass >= 0)
    maps = lpt_density_maps(32, 2, seed=4, order=2)
    assert maps.shape == (2, 32, 32)
    assert np.all(np.abs(maps.mean(axis=(1, 2))) < 1e-12)
    assert np.all(maps >= -1)


def test_zeldovich_displacement_is_minus_grad_inverse_laplacian():
    delta = linear_density(15, seed=5)  # odd: no Nyquist modes, so the check is exact
    psi1, _ = lpt_displacement(delta, order=1)
    q = 2 * np.pi * np.fft.fftfreq(15)
    shapes = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]  # q along axis 0, 1, 2
    divergence = sum(
        np.fft.ifftn(1j * q.reshape(shape) * np.fft.fftn(psi1[axis])).real
        for axis, shape in enumerate(shapes)
    )
    np.testing.assert_allclose(-divergence, delta - delta.mean(), atol=1e-10)


def test_non_cubic_box_displacement_power_and_mass():
    # Sides 15 x 9 x 11 (odd: exact divergence check): each axis must use its own frequencies.
    delta = linear_density((15, 9, 11), seed=5)
    psi1, _ = lpt_displacement(delta, order=1)
    axes = [2 * np.pi * np.fft.fftfreq(s) for s in delta.shape]
    shapes = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]
    divergence = sum(
        np.fft.ifftn(1j * axes[a].reshape(shape) * np.fft.fftn(psi1[a])).real
        for a, shape in enumerate(shapes)
    )
    np.testing.assert_allclose(-divergence, delta - delta.mean(), atol=1e-10)
    # |fftn(delta)|^2 / V is P3 times a chi^2_2 / 2 variable per mode: its mean over the
    # 1,485 modes of |fftn|^2 / (V P3) is 1 within a few times 1 / sqrt(1485 / 2).
    shape = (16, 12, 10)
    delta = linear_density(shape, seed=8)
    f = [np.fft.fftfreq(s) for s in shape]
    k = np.sqrt(f[0][:, None, None] ** 2 + f[1][None, :, None] ** 2 + f[2][None, None, :] ** 2)
    power = linear_power_3d(k)
    ratio = (np.abs(np.fft.fftn(delta)) ** 2 / delta.size)[power > 0] / power[power > 0]
    assert ratio.mean() == pytest.approx(1.0, abs=4 / np.sqrt(ratio.size / 2))
    positions = np.random.default_rng(1).uniform(-30, 50, size=(3, 4000))
    mass = cic_paint(positions, (8, 12, 6))
    assert mass.shape == (8, 12, 6) and mass.sum() == pytest.approx(4000, rel=1e-12)


def test_larger_density_maps_keep_the_projection_depth():
    cubic = lpt_density_maps(16, 1, seed=3, order=2)
    assert np.array_equal(cubic, lpt_density_maps(16, 1, seed=3, order=2, depth=16))
    wide = lpt_density_maps(32, 2, seed=3, order=2, depth=16, axis=1)
    assert wide.shape == (2, 32, 32) and np.all(np.abs(wide.mean(axis=(1, 2))) < 1e-12)
    # The large scales keep the power of the box's linear field averaged over its 16-cell
    # depth, as for cubic boxes (test_lpt_large_scale_power_follows_linear_input).
    maps = lpt_density_maps(32, 3, seed=7, order=2, growth=0.5, depth=16)
    linear = np.stack(
        [0.5 * linear_density((16, 32, 32), member_seed(7, i)).mean(axis=0) for i in range(3)]
    )
    k = frequency_magnitude(32, 32)
    large = (k > 0) & (k <= 2.01 / 32)
    power = [(np.abs(np.fft.fft2(m)) ** 2)[:, large].mean() for m in (maps, linear)]
    assert power[0] / power[1] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="slab"):
        lpt_density_maps(32, 1, seed=3, depth=16, slab=20)


def test_second_order_term_changes_the_field_with_the_right_sign():
    first = lpt_density_maps(32, 1, seed=6, order=1)
    second = lpt_density_maps(32, 1, seed=6, order=2)
    assert np.abs(first - second).max() > 0.05 * first.std()
    # Weakly non-linear skewness S3 = <delta^3> / <delta^2>^2 of the 3-D density: 4 for
    # Zel'dovich, 34/7 for 2LPT (= exact second-order PT). The same initial conditions cancel
    # most sample variance in the difference; a wrong sign of the -3/7 term gives about -6/7.
    skewness = []
    for order in (1, 2):
        delta = lpt_density_3d(32, seed=6, order=order, growth=0.2)
        skewness.append(np.mean(delta**3) / np.mean(delta**2) ** 2)
    assert skewness[1] - skewness[0] == pytest.approx(6 / 7, abs=0.3)


@pytest.mark.parametrize("order", [1, 2])
def test_lpt_large_scale_power_follows_linear_input(order):
    # Same initial conditions projected linearly: at |k| <= 2 / N the LPT maps keep their power
    # to within 5% at growth 0.5 (mode coupling and the CIC window act at smaller scales).
    n, num, growth = 32, 3, 0.5
    maps = lpt_density_maps(n, num, seed=7, order=order, growth=growth)
    linear = np.stack(
        [growth * linear_density(n, member_seed(7, i)).mean(axis=0) for i in range(num)]
    )
    k = frequency_magnitude(n, n)
    large = (k > 0) & (k <= 2.01 / n)
    ratio = (np.abs(np.fft.fft2(maps)) ** 2)[:, large].mean() / (np.abs(np.fft.fft2(linear)) ** 2)[
        :, large
    ].mean()
    assert ratio == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    "simulate",
    [
        lambda num, seed: gaussian_random_field(red_spectrum, (16, 24), num, seed),
        lambda num, seed: lognormal_field(red_spectrum, (16, 16), num, seed),
        lambda num, seed: convergence_map((16, 16), num, seed),
        lambda num, seed: lpt_density_maps(16, num, seed, order=2),
    ],
    ids=["grf", "lognormal", "convergence", "density"],
)
def test_seeds_reproduce_exactly_and_differ(simulate):
    three = simulate(3, 11)
    assert np.array_equal(three, simulate(3, 11))
    assert np.array_equal(three[:2], simulate(2, 11))  # map i does not depend on num
    assert not np.allclose(three, simulate(3, 12))
    assert not np.allclose(three[0], three[1])


def run_cli(*args, cwd):
    """The real command line in a fresh interpreter (about 2 s: it imports torch)."""
    return subprocess.run(
        [sys.executable, "-m", "posterior_diffusion.cli", "simulate", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def run_main(*args, capsys):
    """`cli.main` in this process, for the cases that need no fresh interpreter."""
    status = main(["simulate", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.err


@pytest.mark.parametrize("kind", ["grf", "lognormal", "convergence", "density"])
def test_cli_writes_h5_with_attributes(kind, tmp_path, capsys):
    out = tmp_path / f"{kind}.h5"
    status, err = run_main(kind, out, "--num", 2, "--shape", 16, 16, "--seed", 5, capsys=capsys)
    assert status == 0, err
    with h5py.File(out, "r") as f:
        assert f["fields"].shape == (2, 16, 16) and f["fields"].chunks == (1, 16, 16)
        assert f.attrs["kind"] == kind and int(f.attrs["seed"]) == 5
        assert f.attrs["posterior_diffusion_version"] == posterior_diffusion.__version__
        assert json.loads(f.attrs["parameters"])["shape"] == [16, 16]
        assert ("pixel_scale_arcmin" in f.attrs) == (kind == "convergence")
        assert np.isfinite(f["fields"][...]).all()


def test_cli_writes_zarr_matching_the_python_api(tmp_path):
    out = tmp_path / "kappa.zarr"
    args = ("--num", 3, "--shape", 16, 20, "--seed", 9, "--pixel-scale-arcmin", 0.5)
    proc = run_cli("convergence", out, *args, "--shift", 0.03, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    root = zarr.open_group(str(out), mode="r")
    assert root["fields"].chunks == (1, 16, 20)
    assert root.attrs["kind"] == "convergence" and root.attrs["pixel_scale_arcmin"] == 0.5
    assert root.attrs["posterior_diffusion_version"] == posterior_diffusion.__version__
    assert json.loads(root.attrs["parameters"])["shift"] == 0.03
    expected = convergence_map((16, 20), 3, seed=9, pixel_scale_arcmin=0.5, shift=0.03)
    np.testing.assert_array_equal(root["fields"][...], expected)


def assert_one_line_usage_error(status, err, directory):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posterior-diffusion: error: ")
    assert not any(directory.iterdir())


@pytest.mark.parametrize(
    "args", [("galaxies", "out.h5"), ("grf", "out.h5", "--shape", 0, 16)], ids=["kind", "shape"]
)
def test_cli_bad_kind_or_shape_exits_2_with_one_line(args, tmp_path):
    proc = run_cli(*args, cwd=tmp_path)
    assert_one_line_usage_error(proc.returncode, proc.stderr, tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        ("density", "{dir}/out.h5", "--shape", 16, 8),
        ("density", "{dir}/out.h5", "--lpt-order", 3),
        ("density", "{dir}/out.h5", "--shape", 16, 16, "--depth", 2),
        ("grf", "{dir}/out.h5", "--depth", 16),
        ("grf", "{dir}/out.npy"),
        ("grf", "{dir}/out.h5", "--pixel-scale-arcmin", 1),
        ("lognormal", "{dir}/out.h5", "--power-spectrum", "{dir}/missing.txt"),
    ],
    ids=[
        "density-shape",
        "lpt-order",
        "depth",
        "depth-for-other-kind",
        "suffix",
        "flag-for-other-kind",
        "missing-spectrum",
    ],
)
def test_cli_other_bad_input_exits_2_with_one_line(args, tmp_path, capsys):
    args = [str(a).format(dir=tmp_path) for a in args]
    status, err = run_main(*args, capsys=capsys)
    assert_one_line_usage_error(status, err, tmp_path)


@pytest.mark.parametrize(
    "kind, size", [("density", ["--shape", "64", "64", "--depth", str(10**9)]),
                   ("grf", ["--shape", str(10**7), str(10**7)])],
)  # fmt: skip
def test_a_simulation_beyond_free_memory_is_refused_before_allocating(kind, size, tmp_path,
                                                                      capsys):  # fmt: skip
    status, err = run_main(kind, str(tmp_path / "out.h5"), *size, capsys=capsys)
    assert_one_line_usage_error(status, err, tmp_path)
    assert "GiB free; simulate fewer or smaller maps" in err
