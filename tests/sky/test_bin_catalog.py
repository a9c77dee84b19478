"""From a shear catalogue on the sky to an observation: the WCS grid, the binning conventions
against lenspack (bin2d and KS93), noise and sigma_e, bad catalogues, and the command."""

from __future__ import annotations

import contextlib
import io
import json

import h5py
import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.table import Table

from forward_models.lensing import Shear
from posterior_diffusion import api
from posterior_diffusion.cli import main
from posterior_diffusion.sky.catalog import CatalogError, ColumnMap
from posterior_diffusion.sky.grid import SkyGrid, grid_from_header_text

try:
    from lenspack.image.inversion import ks93
    from lenspack.utils import bin2d
except ImportError:  # lenspack is a dev extra
    ks93 = bin2d = None

needs_lenspack = pytest.mark.skipif(ks93 is None, reason="lenspack not installed")

# Odd, non-square: a transposed axis or a half-pixel shift cannot pass unnoticed, and KS93 is
# exact there (on even grids lenspack keeps one Nyquist mode that Shear drops).
SHAPE = (25, 39)
CENTRE = (359.8, -30.0)  # the grid straddles RA = 0


def smooth_kappa(shape, seed=0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(shape)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij"))
    return 0.02 * np.fft.ifft2(np.fft.fft2(noise) * np.exp(-((k / 0.08) ** 2))).real


def catalogue_from(shear: np.ndarray, grid: SkyGrid, per_pixel: int, seed: int) -> Table:
    """Galaxies scattered inside every pixel, each carrying its pixel's shear, through the WCS."""
    rng = np.random.default_rng(seed)
    h, w = grid.shape
    rows, columns = np.divmod(np.repeat(np.arange(h * w), per_pixel), w)
    x = columns + rng.uniform(-0.49, 0.49, rows.size)
    y = rows + rng.uniform(-0.49, 0.49, rows.size)
    ra, dec = grid.wcs.all_pix2world(x, y, 0)
    return Table({
        "RA": ra * u.deg, "DEC": dec * u.deg,
        "g1": shear[0, rows, columns], "g2": shear[1, rows, columns],
        "w": rng.uniform(0.2, 2.0, rows.size),
    })  # fmt: skip


@pytest.fixture()
def truth_catalogue(tmp_path):
    kappa = smooth_kappa(SHAPE)
    shear = Shear(SHAPE).A(torch.from_numpy(kappa)[None]).numpy()
    grid = SkyGrid.centred(*CENTRE, 1.0, SHAPE)
    table = catalogue_from(shear, grid, per_pixel=3, seed=1)
    rng = np.random.default_rng(2)
    m = rng.uniform(-0.1, 0.1, len(table))
    c1, c2 = rng.normal(0, 1e-3, (2, len(table)))
    table["m"], table["c1"], table["c2"] = m, c1, c2
    table["e1"] = (1 + m) * table["g1"] + c1  # what a biased shape measurement reports
    table["e2"] = (1 + m) * table["g2"] + c2
    path = tmp_path / "cat.fits"
    table.write(path)
    return path, kappa, shear


COLUMNS = ColumnMap("RA", "DEC", "e1", "e2", weight="w", m="m", c1="c1", c2="c2")


def test_the_grid_is_a_standard_tan_grid_and_its_header_round_trips():
    grid = SkyGrid.centred(*CENTRE, 1.0, SHAPE)
    ra, dec = grid.radec()
    assert ra[0, 0] > ra[0, -1] or ra[0, 0] < 1  # east to the left (across RA = 0 too)
    assert dec[-1, 0] > dec[0, 0]  # north up
    again = grid_from_header_text(grid.header_text())
    assert again.shape == SHAPE and abs(again.pixel_scale_arcmin - 1.0) < 1e-9
    row, column, inside = again.pixel_of(ra.ravel(), dec.ravel())
    assert inside.all()
    assert np.array_equal(row.reshape(SHAPE), np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]][0])
    assert np.array_equal(column.reshape(SHAPE), np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]][1])


@needs_lenspack
def test_biases_are_removed_and_ks93_recovers_the_convergence(truth_catalogue):
    """Noise-free galaxies with per-galaxy m and c: the binned shear is the true shear, and
    lenspack's KS93 on it gives back the convergence (up to its mean): rows, columns, signs and
    the half-pixel convention all agree with the lensing operator."""
    path, kappa, shear = truth_catalogue
    obs, binned = api.bin_catalog(path, COLUMNS, centre=CENTRE, pixel_scale_arcmin=1.0, shape=SHAPE)
    assert binned.mask.all() and (binned.counts == 3).all()
    np.testing.assert_allclose(obs.y, shear, rtol=0, atol=1e-12)
    kappa_e, kappa_b = ks93(obs.y[0], obs.y[1])
    np.testing.assert_allclose(kappa_e, kappa - kappa.mean(), rtol=0, atol=1e-10)
    assert np.abs(kappa_b).max() < 1e-10
    flipped, _ = api.bin_catalog(path, COLUMNS, centre=CENTRE, pixel_scale_arcmin=1.0,
                                 shape=SHAPE, flip_e2=True)  # fmt: skip
    assert np.abs(ks93(flipped.y[0], flipped.y[1])[1]).max() > 0.1 * np.abs(kappa).max()


@needs_lenspack
def test_weighted_means_equal_lenspack_bin2d(tmp_path):
    """Galaxies at random positions with random weights and ellipticities: our per-pixel
    weighted means equal bin2d's on the pixel coordinates of the same WCS."""
    rng = np.random.default_rng(5)
    grid = SkyGrid.centred(*CENTRE, 1.0, SHAPE)
    n = 4000
    x, y = rng.uniform(-0.5, SHAPE[1] - 0.5, n), rng.uniform(-0.5, SHAPE[0] - 0.5, n)
    ra, dec = grid.wcs.all_pix2world(x, y, 0)
    e1, e2, w = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n), rng.uniform(0.1, 3, n)
    Table({"ra": ra, "dec": dec, "e1": e1, "e2": e2, "w": w}).write(tmp_path / "cat.csv")
    obs, binned = api.bin_catalog(tmp_path / "cat.csv", ColumnMap(weight="w"), centre=CENTRE,
                                  pixel_scale_arcmin=1.0, shape=SHAPE)  # fmt: skip
    extent = (-0.5, SHAPE[1] - 0.5, -0.5, SHAPE[0] - 0.5)
    ref1, ref2 = bin2d(x, y, npix=(SHAPE[1], SHAPE[0]), v=(e1, e2), w=w, extent=extent)
    counts = bin2d(x, y, npix=(SHAPE[1], SHAPE[0]), extent=extent)
    np.testing.assert_array_equal(binned.counts, counts)
    np.testing.assert_allclose(obs.y[0], ref1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(obs.y[1], ref2, rtol=0, atol=1e-12)
    assert np.array_equal(obs.mask, (counts > 0).astype(np.uint8))


def test_noise_std_and_the_sigma_e_estimate(tmp_path):
    rng = np.random.default_rng(7)
    grid = SkyGrid.centred(10.0, 5.0, 2.0, (16, 16))
    n = 40000
    ra, dec = grid.wcs.all_pix2world(rng.uniform(-0.5, 15.5, n), rng.uniform(-0.5, 15.5, n), 0)
    e1, e2 = rng.normal(0, 0.26, (2, n))
    Table({"ra": ra, "dec": dec, "e1": e1, "e2": e2}).write(tmp_path / "cat.ecsv")
    _, given = api.bin_catalog(tmp_path / "cat.ecsv", sigma_e=0.3, header=None,
                               centre=(10.0, 5.0), pixel_scale_arcmin=2.0, shape=(16, 16))  # fmt: skip
    observed = given.counts > 0
    np.testing.assert_allclose(given.noise_std[observed], 0.3 / np.sqrt(given.counts[observed]))
    assert given.sigma_e_source == "given"
    _, estimated = api.bin_catalog(tmp_path / "cat.ecsv", centre=(10.0, 5.0),
                                   pixel_scale_arcmin=2.0, shape=(16, 16))  # fmt: skip
    # 80,000 components: the dispersion's relative standard error is about 0.25%.
    assert abs(estimated.sigma_e / 0.26 - 1) < 0.01
    assert estimated.sigma_e_source == "estimated from the catalogue"


def test_the_default_grid_is_centred_on_the_galaxies_and_holds_them_all(truth_catalogue):
    path, _, _ = truth_catalogue
    obs, binned = api.bin_catalog(path, COLUMNS)
    grid = grid_from_header_text(obs.attrs["wcs_header"])
    assert abs(((grid.wcs.wcs.crval[0] - CENTRE[0] + 180) % 360) - 180) < 0.01  # across RA = 0
    assert binned.galaxies_left_out == 0 and binned.counts.sum() == 3 * SHAPE[0] * SHAPE[1]
    assert all(side % 8 == 0 and side >= n for side, n in zip(grid.shape, SHAPE, strict=True))


@pytest.mark.parametrize(
    "columns, message",
    [
        (ColumnMap("RA", "DEC", "e1", "nope"), "no column 'nope'"),
        (ColumnMap("RA", "DEC", "e1", "e2", weight="neg"), "weights must be >= 0"),
        (ColumnMap("RA", "DEC", "e1", "bad"), "column 'bad': 1 (missing or NaN|NaN/inf) values"),
        (ColumnMap("RA", "DEC", "e1", "name"), "column 'name': not a column of numbers"),
    ],
)
def test_bad_catalogues_are_refused_in_one_line_naming_file_and_column(tmp_path, columns, message):
    table = Table({"RA": [1.0, 1.01], "DEC": [0.0, 0.01], "e1": [0.1, 0.2], "e2": [0.0, 0.1],
                   "neg": [1.0, -1.0], "bad": [0.0, np.nan], "name": ["a", "b"]})  # fmt: skip
    table.write(tmp_path / "cat.fits")
    with pytest.raises(CatalogError, match=message) as err:
        api.bin_catalog(tmp_path / "cat.fits", columns)
    assert str(tmp_path / "cat.fits") in str(err.value) and "\n" not in str(err.value)


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


def test_the_command_writes_an_observation_that_reconstruct_reads(tmp_path, truth_catalogue):
    path, _, shear = truth_catalogue
    out = tmp_path / "obs.h5"
    flags = ["--ra", "RA", "--dec", "DEC", "--weight", "w", "--m", "m", "--c1", "c1", "--c2", "c2",
             "--center", str(CENTRE[0]), str(CENTRE[1]), "--shape", *map(str, SHAPE),
             "--sigma-e", "0.26"]  # fmt: skip
    code, _ = run_cli("bin-catalog", str(path), "-o", str(out), *flags)
    assert code == 0
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["y"][:], shear, atol=1e-12)
        assert f.attrs["forward_model"] == "lensing" and f["n_galaxies"][:].sum() == len(
            Table.read(path)
        )
        binning = json.loads(f.attrs["binning"])
        assert binning["sigma_e_source"] == "given" and binning["catalog_sha256"]
        assert "RA---TAN" in f.attrs["wcs_header"]
    before = out.read_bytes()
    code, err = run_cli("bin-catalog", str(path), "-o", str(out), *flags)  # exists: refused
    assert code == 2 and "--overwrite" in err and out.read_bytes() == before
    code, err = run_cli("bin-catalog", str(path), "-o", str(tmp_path / "x.h5"), "--ra", "RA",
                        "--dec", "DEC", "--e1", "zzz")  # fmt: skip
    assert code == 2 and "cat.fits: no column 'zzz'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()
    code, _ = run_cli("reconstruct", str(out), "--prior", "gaussian", "--num-samples", "2",
                      "--steps", "4", "--no-progress", "-o", str(tmp_path / "post.h5"))  # fmt: skip
    assert code == 0


def test_a_grid_from_a_fits_header_and_the_size_bound(tmp_path, truth_catalogue):
    from astropy.io import fits

    from posterior_diffusion.sky.grid import SkyGridError

    path, _, shear = truth_catalogue
    grid = SkyGrid.centred(*CENTRE, 1.0, SHAPE)
    fits.PrimaryHDU(np.zeros(SHAPE), header=grid.header()).writeto(tmp_path / "image.fits")
    obs, _ = api.bin_catalog(path, COLUMNS, header=tmp_path / "image.fits")
    np.testing.assert_allclose(obs.y, shear, rtol=0, atol=1e-12)
    with pytest.raises(SkyGridError, match="give no --pixel-scale"):
        api.bin_catalog(path, COLUMNS, header=tmp_path / "image.fits", shape=SHAPE)
    with pytest.raises(SkyGridError, match="spans 25 degrees; at most 20"):
        SkyGrid.centred(0.0, 0.0, 3.0, (500, 500))


def test_results_carry_the_sky_grid_in_fits_and_as_ra_dec_coordinates(tmp_path, truth_catalogue):
    """reconstruct on a binned catalogue: the .fits result has the grid's WCS on every image and
    reads back as the .h5 result (same seed, same samples); the .h5 result has RA/Dec coords."""
    import xarray as xr
    from astropy.io import fits
    from astropy.wcs import WCS

    from posterior_diffusion.io import read_posterior

    path, _, _ = truth_catalogue
    obs = tmp_path / "obs.h5"
    flags = ["--ra", "RA", "--dec", "DEC", "--center", str(CENTRE[0]), str(CENTRE[1]),
             "--shape", *map(str, SHAPE)]  # fmt: skip
    assert run_cli("bin-catalog", str(path), "-o", str(obs), *flags)[0] == 0
    run = [
        "--prior",
        "gaussian",
        "--num-samples",
        "3",
        "--steps",
        "4",
        "--no-progress",
        "--seed",
        "5",
    ]
    for name in ("post.fits", "post.h5"):
        assert run_cli("reconstruct", str(obs), *run, "-o", str(tmp_path / name))[0] == 0
    ra, dec = SkyGrid.centred(*CENTRE, 1.0, SHAPE).radec()
    with fits.open(tmp_path / "post.fits") as hdus:
        for name in ("MEAN", "STD", "Q0.16", "Q0.84", "SAMPLES", "MASK"):
            world = WCS(hdus[name].header).celestial.pixel_to_world(SHAPE[1] - 1, 0)
            assert abs(world.ra.deg - ra[0, -1]) < 1e-9 and abs(world.dec.deg - dec[0, -1]) < 1e-9
        assert hdus["SAMPLES"].data.shape == (3, *SHAPE) and hdus[0].header["SEED"] == 5
    from_fits, from_h5 = (
        read_posterior(tmp_path / "post.fits"),
        read_posterior(tmp_path / "post.h5"),
    )
    np.testing.assert_array_equal(from_fits["samples"], from_h5["samples"])
    np.testing.assert_array_equal(from_fits["y"], from_h5["y"])
    assert from_fits["attrs"]["sampler"] == from_h5["attrs"]["sampler"]
    # The per-pixel noise map travels with the result (reports and users need it).
    with h5py.File(obs) as f:
        noise = np.broadcast_to(f["noise_std"][()], f["y"].shape)
    np.testing.assert_array_equal(from_h5["noise_std"], noise)
    np.testing.assert_array_equal(from_fits["noise_std"], noise)
    ds = xr.open_dataset(tmp_path / "post.h5", engine="h5netcdf")
    np.testing.assert_allclose(ds["ra"].values, ra, atol=1e-10)
    assert ds["dec"].attrs["units"] == "deg"
    ds.close()


@pytest.mark.parametrize(
    "change, options, message",
    [
        ({}, {"centre": (100.0, 50.0), "shape": (8, 8)}, "no galaxy with positive weight falls"),
        ({"DEC": [0.0, 95.0]}, {}, "Dec outside \\[-90, 90\\]"),
        ({"m": [0.0, -1.0]}, {}, "m must be > -1"),
        ({"RA": [1.0, 1.01] * u.m}, {}, "unit m is not an angle"),
    ],
)
def test_catalogues_without_meaning_are_refused_in_one_line(tmp_path, change, options, message):
    columns = {"RA": [1.0, 1.01], "DEC": [0.0, 0.01], "e1": [0.1, 0.2], "e2": [0.0, 0.1],
               "m": [0.0, 0.1], **change}  # fmt: skip
    Table(columns).write(tmp_path / "cat.fits")
    with pytest.raises(ValueError, match=message) as err:
        api.bin_catalog(tmp_path / "cat.fits", ColumnMap("RA", "DEC", m="m"), **options)
    assert "cat.fits" in str(err.value) and "\n" not in str(err.value)


def test_a_fits_observation_with_a_wcs_gives_the_hdf5_one_s_posterior(tmp_path, truth_catalogue):
    """OBS may be FITS: HDUs Y (its header: FWDMODEL and the WCS), MASK, NOISE_STD. The same data
    give the same samples as the .h5 file, and the result carries the sky grid."""
    import xarray as xr
    from astropy.io import fits

    path, _, _ = truth_catalogue
    obs_h5 = tmp_path / "obs.h5"
    flags = ["--ra", "RA", "--dec", "DEC", "--center", str(CENTRE[0]), str(CENTRE[1]),
             "--shape", *map(str, SHAPE), "--sigma-e", "0.26"]  # fmt: skip
    assert run_cli("bin-catalog", str(path), "-o", str(obs_h5), *flags)[0] == 0
    with h5py.File(obs_h5) as f:
        y, mask, noise = f["y"][:], f["mask"][:], f["noise_std"][:]
    header = SkyGrid.centred(*CENTRE, 1.0, SHAPE).header()
    header["FWDMODEL"] = "lensing"
    fits.HDUList([
        fits.PrimaryHDU(),
        fits.ImageHDU(y, header=header, name="Y"),
        fits.ImageHDU(mask.astype(np.uint8), name="MASK"),
        fits.ImageHDU(noise, name="NOISE_STD"),
    ]).writeto(tmp_path / "obs.fits")  # fmt: skip
    run = [
        "--prior",
        "gaussian",
        "--num-samples",
        "2",
        "--steps",
        "4",
        "--no-progress",
        "--seed",
        "3",
    ]
    for obs, out in ((obs_h5, "a.h5"), (tmp_path / "obs.fits", "b.h5")):
        code, err = run_cli("reconstruct", str(obs), *run, "-o", str(tmp_path / out))
        assert code == 0, err
    a = xr.open_dataset(tmp_path / "a.h5", engine="h5netcdf")
    b = xr.open_dataset(tmp_path / "b.h5", engine="h5netcdf")
    np.testing.assert_array_equal(a["samples"].values, b["samples"].values)
    np.testing.assert_allclose(b["ra"].values, a["ra"].values, atol=1e-10)
    a.close(), b.close()
    (tmp_path / "bad.fits").write_bytes(b"SIMPLE  = nonsense")
    code, err = run_cli("reconstruct", str(tmp_path / "bad.fits"), "-o", str(tmp_path / "c.h5"))
    assert code == 2 and "bad.fits" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("cat.fits", b"not a fits file at all", "cannot read as fits"),
        ("cat.csv", b"ra,dec,e1,e2\n", "the catalogue has no rows"),
        ("cat.txt", b"ra dec e1 e2\n", "unknown catalogue format"),
    ],
)
def test_unreadable_empty_or_unknown_catalogues_are_refused_in_one_line(
    tmp_path, name, content, message
):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CatalogError, match=message) as err:
        api.bin_catalog(tmp_path / name)
    assert name in str(err.value) and "\n" not in str(err.value)
