"""Tabulated power spectra: log-log interpolation, the k = 0 row, coverage and table validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forward_models.fourier import frequency_magnitude
from posterior_diffusion.priors import (
    PowerSpectrumError,
    TabulatedPowerSpectrum,
    default_power_spectrum,
)
from posterior_diffusion.priors.power_spectrum import power_on_grid


def write_table(tmp_path: Path, text: str, name: str = "spectrum.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("slope", [-3.0, -1.2, 0.5])
def test_log_log_interpolation_is_exact_for_a_power_law(slope):
    # Rows far apart (a factor 10 in k): a linear-in-P interpolation would be off by tens of %.
    k_rows = np.array([0.01, 0.1, 1.0])
    table = TabulatedPowerSpectrum(k_rows, 2.5 * k_rows**slope)
    k = np.geomspace(0.01, 1.0, 57)
    np.testing.assert_allclose(table(k), 2.5 * k**slope, rtol=1e-12)


def test_rows_are_returned_exactly():
    k_rows = np.array([0.0, 0.05, 0.2, 0.6])
    power = np.array([3.0, 2.0, 0.7, 0.01])
    np.testing.assert_allclose(TabulatedPowerSpectrum(k_rows, power)(k_rows), power, rtol=1e-13)


def test_zero_row_gives_p0_and_linear_interpolation_to_the_first_positive_row():
    table = TabulatedPowerSpectrum([0.0, 0.1, 1.0], [5.0, 1.0, 0.01])
    np.testing.assert_allclose(table(np.array([0.0])), [5.0], rtol=1e-15)
    # Between k = 0 and the first positive row P is linear in k (log k is undefined at 0).
    np.testing.assert_allclose(table(np.array([0.025, 0.05])), [4.0, 3.0], rtol=1e-12)


def test_zero_row_may_hold_zero_power():
    table = TabulatedPowerSpectrum([0.0, 0.1, 1.0], [0.0, 1.0, 0.01])
    assert table(np.array([0.0]))[0] == 0.0
    power = power_on_grid(table, 8, 8)
    assert power[0, 0] == 0.0 and np.all(power.ravel()[1:] > 0)


def test_grid_values_follow_the_fft_frequency_convention():
    # P(k) = k on a 6 x 10 grid: the grid must hold |k| of np.fft.fftfreq, k_x along the last axis.
    table = TabulatedPowerSpectrum([0.0, 0.01, 1.0], [0.0, 0.01, 1.0])
    power = power_on_grid(table, 6, 10)
    assert power.shape == (6, 10)
    np.testing.assert_allclose(power[0, 1], 0.1, rtol=1e-12)  # k_x = 1/10
    np.testing.assert_allclose(power[1, 0], 1 / 6, rtol=1e-12)  # k_y = 1/6
    np.testing.assert_allclose(power[3, 5], np.hypot(0.5, 0.5), rtol=1e-12)  # the corner
    np.testing.assert_allclose(power, frequency_magnitude(6, 10), rtol=1e-12)


def test_k_beyond_the_table_names_the_file_and_the_range(tmp_path):
    # A 16 x 16 grid reaches |k| = sqrt(2)/2 = 0.7071 at its corner; the table stops at 0.5.
    path = write_table(tmp_path, "0 1.0\n0.1 0.5\n0.5 0.1\n", name="short_table.txt")
    table = TabulatedPowerSpectrum.from_file(path)
    with pytest.raises(PowerSpectrumError) as err:
        power_on_grid(table, 16, 16)
    message = str(err.value)
    assert str(path) in message
    assert "[0, 0.5]" in message and "0.707107" in message
    assert "\n" not in message


def test_k_below_a_table_without_zero_row_is_an_error():
    table = TabulatedPowerSpectrum([0.01, 1.0], [1.0, 0.1], source="no_zero_row.txt")
    with pytest.raises(PowerSpectrumError, match=r"no_zero_row\.txt.*\[0\.01, 1\]"):
        table(np.array([0.0, 0.5]))


def test_k_just_past_the_last_row_by_round_off_is_accepted():
    table = TabulatedPowerSpectrum([0.0, 0.1, 0.5], [1.0, 0.5, 0.1])
    np.testing.assert_allclose(table(np.array([0.5 * (1 + 1e-14)])), [0.1], rtol=1e-12)
    with pytest.raises(PowerSpectrumError):
        table(np.array([0.5 * (1 + 1e-9)]))


def test_range_message_does_not_state_a_wrong_grid_corner():
    corner = frequency_magnitude(15, 17).max()  # (7/15, 8/17) -> 0.6627
    table = TabulatedPowerSpectrum([0.0, 0.1, 0.6], [1.0, 0.5, 0.1], source="t.txt")
    with pytest.raises(PowerSpectrumError) as err:
        power_on_grid(table, 15, 17)
    assert f"{corner:.4f}" in str(err.value)
    assert "0.7071" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0.0\n0.1\n0.2\n", "two columns"),  # one column
        ("0 1 2\n0.1 1 2\n", "two columns"),  # three columns
        ("0 1\n0.1 0.5\n0.1 0.3\n", "strictly increasing"),  # repeated k
        ("0 1\n0.2 0.5\n0.1 0.3\n", "strictly increasing"),  # decreasing k
        ("-0.1 1\n0.1 0.5\n", "k must be >= 0"),  # negative k
        ("0 1\n0.1 -0.5\n", "P must be > 0"),  # negative P
        ("0 -1\n0.1 0.5\n", "P must be > 0"),  # negative P(0)
        ("0 1\n0.1 0\n", "P must be > 0"),  # zero P at k > 0: log-log needs P > 0
        ("0 1\n0.1 nan\n", "NaN or inf"),
        ("0 1\nnan 0.5\n", "NaN or inf"),
        ("0 1\n0.1 inf\n", "NaN or inf"),
        ("0 1\n", "two rows"),  # a single row cannot be interpolated
        ("k P\n0 1\n0.1 0.5\n", "cannot read"),  # an uncommented header
        ("0 1\n0.1\n", "cannot read"),  # ragged
    ],
)
def test_bad_tables_raise_power_spectrum_error_naming_the_file(tmp_path, text, match):
    path = write_table(tmp_path, text, name="bad_table.txt")
    with pytest.raises(PowerSpectrumError, match=match) as err:
        TabulatedPowerSpectrum.from_file(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_files_raise_power_spectrum_error(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(PowerSpectrumError, match="cannot read") as err:
        TabulatedPowerSpectrum.from_file(missing)
    assert str(missing) in str(err.value)
    with pytest.raises(PowerSpectrumError, match="cannot read"):
        TabulatedPowerSpectrum.from_file(tmp_path)  # a directory


def test_power_spectrum_error_is_a_value_error():
    assert issubclass(PowerSpectrumError, ValueError)


def test_from_file_skips_comments_and_records_its_source(tmp_path):
    text = "# a header line\n# k P\n0.0 4.0  # inline comment\n\n0.1 2.0\n0.8 0.25\n"
    path = write_table(tmp_path, text)
    table = TabulatedPowerSpectrum.from_file(path)
    np.testing.assert_array_equal(table.k, [0.0, 0.1, 0.8])
    np.testing.assert_array_equal(table.power, [4.0, 2.0, 0.25])
    assert table.source == str(path)


def test_callable_values_that_are_negative_or_nan_on_the_grid_are_rejected():
    with pytest.raises(PowerSpectrumError, match="finite and >= 0"):
        power_on_grid(lambda k: 1.0 - 4.0 * k, 8, 8)  # negative for k > 0.25
    with pytest.raises(PowerSpectrumError, match="finite and >= 0"):
        power_on_grid(lambda k: np.where(k > 0, 1.0, np.nan), 8, 8)  # NaN at k = 0


def test_scalar_callable_is_broadcast_to_the_grid():
    power = power_on_grid(lambda k: 0.5, 4, 6)
    assert power.shape == (4, 6)
    np.testing.assert_array_equal(power, 0.5)


@pytest.mark.parametrize("shape", [(16, 16), (15, 17), (64, 64)])
def test_default_spectrum_covers_the_whole_grid(shape):
    spectrum = default_power_spectrum()
    power = power_on_grid(spectrum, *shape)
    assert power.shape == shape
    assert np.all(np.isfinite(power)) and np.all(power > 0)
    # The table's own formula: P(k) = 1.85e-4 (k^2 + 0.003^2)^(-0.6), rows about 8.7% apart in k,
    # so log-log interpolation of this smooth curve is good to far better than 1e-3.
    k = frequency_magnitude(*shape)
    np.testing.assert_allclose(power, 1.85e-4 * (k**2 + 0.003**2) ** -0.6, rtol=1e-3)


def test_default_spectrum_is_a_valid_table_with_provenance():
    spectrum = default_power_spectrum()
    assert spectrum.k[0] == 0.0 and spectrum.k[-1] >= np.sqrt(0.5)
    assert spectrum.source == "posterior_diffusion/data/default_power_spectrum.txt"
    assert np.all(np.diff(spectrum.k) > 0) and np.all(spectrum.power > 0)
