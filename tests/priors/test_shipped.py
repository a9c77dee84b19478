"""The priors shipped in posterior_diffusion/data/, reached by their short names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posterior_diffusion.cli import main
from posterior_diffusion.io import read_posterior
from posterior_diffusion.priors import SHIPPED_PRIORS, shipped_prior
from posterior_diffusion.priors.network import NetworkPrior
from posterior_diffusion.priors.resolve import resolve_prior

DATA = Path(__file__).resolve().parents[2] / "posterior_diffusion" / "data"
KINDS = {"default": "convergence", "density": "density"}  # what each was trained on


@pytest.mark.parametrize("name", sorted(SHIPPED_PRIORS))
def test_each_shipped_prior_loads_by_name_and_says_what_it_models(name):
    path = DATA / SHIPPED_PRIORS[name]
    assert path.stat().st_size < 20 * 2**20  # the limit per prior file
    prior = resolve_prior(name, None, (1, 64, 64))
    assert isinstance(prior, NetworkPrior)
    identity = prior.identity()
    assert identity["file"] == f"posterior_diffusion/data/{SHIPPED_PRIORS[name]}"
    assert identity["data_kind"] == KINDS[name]
    assert shipped_prior(name).identity()["checksum"] == identity["checksum"]


def test_a_shipped_prior_and_a_power_spectrum_are_refused_together(tmp_path):
    with pytest.raises(ValueError, match="'density' and a power spectrum"):
        resolve_prior("density", tmp_path / "pk.txt", (1, 64, 64))


def test_reconstruct_galaxy_counts_with_the_density_prior_records_it(tmp_path):
    obs, out = tmp_path / "counts.h5", tmp_path / "post.h5"
    common = ["--prior", "density", "--seed", "1"]
    assert main(["simulate-obs", str(obs), "--forward-model", "galaxy_counts",
                 "--shape", "16", "16", *common]) == 0  # fmt: skip
    assert main(["reconstruct", str(obs), "-o", str(out), "--num-samples", "2",
                 "--steps", "4", "--no-progress", *common]) == 0  # fmt: skip
    ds = read_posterior(out)
    prior = json.loads(ds["attrs"]["prior"])
    assert prior["file"] == "posterior_diffusion/data/density_prior.pt"
    assert ds["attrs"]["sampler"] == "linearized"
