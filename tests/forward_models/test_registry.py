"""The name -> forward-model registry used by the CLI: built-ins, registration and entry points."""

from __future__ import annotations

import json
import math
import sys
from importlib.metadata import EntryPoint

import pytest
import torch

from forward_models import (
    Compose,
    ForwardModel,
    ForwardModelError,
    GaussianNoise,
    Identity,
    PoissonNoise,
    available_forward_models,
    build_forward_model,
    register_forward_model,
    registry,
)

BUILT_IN = ["blur", "downsample", "galaxy_counts", "inpainting", "lensing", "noise", "smoothing"]
MASK = torch.ones(8, 10)
MASK[2:4, 3:7] = 0


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Each test sees the built-ins only and no installed entry points."""
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "entry_points", lambda group: [])


# name, attrs, arrays, y_shape, expected field_shape, expected operator class name
CASES = [
    ("noise", {}, {"noise_std": torch.tensor(0.1)}, (1, 8, 10), (1, 8, 10), "Identity"),
    (
        "inpainting",
        {},
        {"noise_std": torch.tensor(0.1), "mask": MASK},
        (2, 8, 10),
        (2, 8, 10),
        "Mask",
    ),
    ("blur", {"psf_fwhm_pixels": 2.0}, {"noise_std": 0.1}, (1, 8, 10), (1, 8, 10), "Blur"),
    ("blur", {}, {"psf": torch.rand(3, 3), "noise_std": 0.1}, (1, 8, 10), (1, 8, 10), "Blur"),
    (
        "downsample",
        {"downsample_factor": 2},
        {"noise_std": 0.1},
        (1, 8, 10),
        (1, 16, 20),
        "Downsample",
    ),
    (
        "smoothing",
        {"smoothing_kind": b"tophat", "smoothing_radius_pixels": 1.5},
        {"noise_std": torch.full((1, 8, 10), 0.1)},
        (1, 8, 10),
        (1, 8, 10),
        "Smoothing",
    ),
    (
        "lensing",
        {"sigma_e": 0.26, "n_gal_per_arcmin2": 30.0, "pixel_scale_arcmin": 1.0},
        {},
        (2, 8, 10),
        (1, 8, 10),
        "Shear",
    ),
    ("lensing", {}, {"noise_std": 0.05, "mask": MASK}, (2, 8, 10), (1, 8, 10), "Compose"),
    ("galaxy_counts", {"n_bar": 5.0, "bias": 1.2}, {}, (1, 8, 10), (1, 8, 10), "GalaxyCounts"),
]


@pytest.mark.parametrize("name, attrs, arrays, y_shape, field_shape, operator", CASES)
def test_built_in_models(seeded, name, attrs, arrays, y_shape, field_shape, operator):
    model = build_forward_model(name, attrs, arrays, y_shape)
    assert isinstance(model, ForwardModel) and model.name == name
    assert model.field_shape == field_shape and model.data_shape == y_shape
    assert type(model.operator).__name__ == operator
    expected_noise = PoissonNoise if name == "galaxy_counts" else GaussianNoise
    assert isinstance(model.noise, expected_noise)
    x = 0.1 * torch.randn((2, *field_shape), generator=seeded(0), dtype=torch.float64)
    y = model.simulate(x, generator=seeded(1))
    assert y.shape == (2, *y_shape)
    assert torch.all(torch.isfinite(model.log_likelihood(y, x)))
    json.dumps(model.params())


def test_available_models_are_the_cli_names():
    assert available_forward_models() == BUILT_IN


def test_mask_reaches_the_noise_model():
    attrs, arrays = {"psf_fwhm_pixels": 2.0}, {"noise_std": 0.1, "mask": MASK}
    model = build_forward_model("blur", attrs, arrays, (1, 8, 10))
    whitened = model.noise.whiten(torch.ones(1, 8, 10, dtype=torch.float64))
    expected = torch.where(MASK == 1, 1 / 0.1, 0.0).to(torch.float64)[None]
    torch.testing.assert_close(whitened, expected)


def test_lensing_shape_noise_and_mask():
    attrs = {"sigma_e": 0.3, "pixel_scale_arcmin": 0.5}
    n_gal = torch.full((8, 10), 20.0)
    n_gal[0, 0] = 0.0  # no galaxies: unobserved
    arrays = {"n_gal_per_arcmin2": n_gal, "mask": MASK}
    model = build_forward_model("lensing", attrs, arrays, (2, 8, 10))
    assert isinstance(model.operator, Compose)
    whitened = model.noise.whiten(torch.ones(2, 8, 10, dtype=torch.float64))
    observed = (MASK == 1) & (n_gal > 0)
    # sigma = 0.3 / sqrt(20 * 0.25) on both components wherever observed, zero precision elsewhere.
    expected = torch.where(observed, math.sqrt(5.0) / 0.3, 0.0).expand(2, 8, 10)
    torch.testing.assert_close(whitened, expected.to(torch.float64))
    # The operator masks both shear components too.
    gamma = model.A(torch.randn(1, 8, 10, dtype=torch.float64))
    assert torch.all(gamma[:, MASK == 0] == 0) and torch.all(gamma[:, MASK == 1] != 0)


@pytest.mark.parametrize(
    "name, attrs, arrays, y_shape, missing",
    [
        ("noise", {}, {}, (1, 8, 10), "noise_std"),
        ("inpainting", {}, {"noise_std": 0.1}, (1, 8, 10), "mask"),
        ("blur", {}, {"noise_std": 0.1}, (1, 8, 10), "psf_fwhm_pixels"),
        ("blur", {"psf_fwhm_pixels": 2.0}, {}, (1, 8, 10), "noise_std"),
        ("downsample", {}, {"noise_std": 0.1}, (1, 8, 10), "downsample_factor"),
        (
            "smoothing",
            {"smoothing_kind": "tophat"},
            {"noise_std": 0.1},
            (1, 8, 10),
            "smoothing_radius_pixels",
        ),
        ("lensing", {"sigma_e": 0.3}, {}, (2, 8, 10), "noise_std"),
        ("galaxy_counts", {"bias": 1.0}, {}, (1, 8, 10), "n_bar"),
        ("galaxy_counts", {"n_bar": 3.0}, {}, (1, 8, 10), "bias"),
    ],
)
def test_missing_parameter_is_named(name, attrs, arrays, y_shape, missing):
    with pytest.raises(ForwardModelError, match=f"'{missing}'") as info:
        build_forward_model(name, attrs, arrays, y_shape)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_invalid_values_raise_forward_model_error():
    with pytest.raises(ForwardModelError, match="lensing"):
        build_forward_model("lensing", {}, {"noise_std": 0.1}, (1, 8, 10))  # shear has 2 components
    with pytest.raises(ForwardModelError, match="sigma"):
        build_forward_model("noise", {}, {"noise_std": -1.0}, (1, 8, 10))
    with pytest.raises(ForwardModelError, match="smoothing_kind"):
        build_forward_model(
            "smoothing", {"smoothing_kind": "box", "smoothing_radius_pixels": 1.0}, {}, (1, 8, 10)
        )


def test_a_derived_field_too_large_is_refused_before_allocation():
    """downsample_factor = 100000 on 8 x 10 data asks for a 800000 x 1000000 field (6 TB of
    float64): refused by size, in one line, before anything is allocated; the largest allowed
    factor builds."""
    with pytest.raises(ForwardModelError, match=r"makes the field 800000 x 1000000 pixels"):
        build_forward_model("downsample", {"downsample_factor": 100000}, {"noise_std": 0.1},
                            (1, 8, 10))  # fmt: skip
    largest = int(math.isqrt(registry.MAX_FIELD_PIXELS // 80))
    model = build_forward_model("downsample", {"downsample_factor": largest}, {"noise_std": 0.1},
                                (1, 8, 10))  # fmt: skip
    assert model.field_shape == (1, 8 * largest, 10 * largest)


@pytest.mark.parametrize("value", [1e300, float("nan"), -2.0, 0.0])
@pytest.mark.parametrize("name, key", [("blur", "psf_fwhm_pixels"),
                                       ("smoothing", "smoothing_radius_pixels")])  # fmt: skip
def test_a_psf_or_smoothing_scale_without_meaning_is_refused(name, key, value):
    """Before, psf_fwhm_pixels = 1e300 overflowed with a traceback."""
    with pytest.raises(ForwardModelError, match=f"'{key}' must be > 0 and at most 1000 pixels"):
        build_forward_model(name, {key: value}, {"noise_std": 0.1}, (1, 8, 10))


def test_unknown_name_lists_known_names():
    with pytest.raises(ForwardModelError, match="unknown forward model 'tomography'") as info:
        build_forward_model("tomography", {}, {}, (1, 8, 10))
    for name in BUILT_IN:
        assert name in str(info.value)


def identity_builder(attrs, arrays, y_shape):
    return ForwardModel(
        Identity(), GaussianNoise(float(attrs["sigma"])), tuple(y_shape), name="toy"
    )


def test_register_custom_builder():
    register_forward_model("toy", identity_builder)
    assert "toy" in available_forward_models()
    model = build_forward_model("toy", {"sigma": 0.5}, {}, (1, 4, 4))
    assert model.name == "toy" and model.noise.params()["sigma"] == 0.5
    with pytest.raises(ForwardModelError, match="already registered"):
        register_forward_model("toy", identity_builder)
    register_forward_model(
        "toy", lambda a, r, s: identity_builder({"sigma": 2.0}, r, s), replace=True
    )
    assert build_forward_model("toy", {}, {}, (1, 4, 4)).noise.params()["sigma"] == 2.0


def test_builder_with_wrong_data_shape_is_rejected():
    register_forward_model("bad", lambda a, r, s: identity_builder({"sigma": 1.0}, r, (1, 2, 2)))
    with pytest.raises(ForwardModelError, match="shape"):
        build_forward_model("bad", {}, {}, (1, 4, 4))


def test_entry_point_is_loaded_lazily(monkeypatch, tmp_path):
    (tmp_path / "toy_plugin.py").write_text(
        "from forward_models import ForwardModel, GaussianNoise, Identity\n"
        "def build(attrs, arrays, y_shape):\n"
        "    return ForwardModel(Identity(), GaussianNoise(0.2), y_shape, name='plugin')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_plugin", raising=False)
    group = registry.ENTRY_POINT_GROUP
    seen_groups = []

    def fake_entry_points(group):
        seen_groups.append(group)
        return [EntryPoint(name="plugin", value="toy_plugin:build", group=group)]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    assert "plugin" in available_forward_models()
    build_forward_model("noise", {}, {"noise_std": 0.1}, (1, 4, 4))
    assert "toy_plugin" not in sys.modules  # listed, not loaded
    model = build_forward_model("plugin", {}, {}, (1, 4, 4))
    assert model.name == "plugin" and model.data_shape == (1, 4, 4)
    assert set(seen_groups) == {group} == {"posterior_diffusion.forward_models"}


def test_the_registry_says_which_data_are_shear_and_names_their_channels():
    from forward_models.registry import data_labels, has_shear_data

    assert has_shear_data("lensing") and not has_shear_data("noise")
    assert not has_shear_data("a_plugin_that_is_not_installed") and not has_shear_data(None)
    assert data_labels("lensing", 2) == ["gamma 1", "gamma 2"]
    assert data_labels("noise", 1) == ["data"] and data_labels(None, 2) == ["data", "data"]
