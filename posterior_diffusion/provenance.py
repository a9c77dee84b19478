"""Provenance attributes for result files: what produced them, from what, with which settings."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from posterior_diffusion.io.attrs import portable_attr, to_json

DISTRIBUTION = "posterior-diffusion"


def package_version() -> str:
    """The installed distribution's version, or the source tree's when not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from posterior_diffusion.version import __version__

        return __version__


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (of every file, in name order, for a directory store)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def provenance(
    command: str | None = None,
    sampler_info: Mapping[str, Any] | None = None,
    seed: int | None = None,
    prior_identity: Mapping[str, Any] | None = None,
    forward_model_params: Mapping[str, Any] | None = None,
    input_path: str | os.PathLike | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Flat attributes (str, numbers, 1-D arrays) that netCDF and zarr accept.

    Nested settings are JSON strings so they survive every format unchanged.

    Args:
        command: the command line, or None for a Python API call.
        sampler_info: the `info` dict from `sample_posterior` (sampler, steps, options, ...).
        seed: the random seed of the run.
        prior_identity: `Prior.identity()`; its `checksum` also gets an attribute of its own.
        forward_model_params: `ForwardModel.params()`.
        input_path: the observation file; its sha256 is recorded.
        extra: further attributes, added last (nested values become JSON).
    """
    import torch  # imported here so that reading attributes needs no torch at import time

    attrs: dict[str, Any] = {
        "posterior_diffusion_version": package_version(),
        "torch_version": str(torch.__version__),
        "command": command if command is not None else "(Python API)",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if sampler_info is not None:
        info = dict(sampler_info)
        attrs["sampler"] = str(info.pop("sampler", "unknown"))
        attrs["sampler_settings"] = to_json(info)
    if seed is not None:
        attrs["seed"] = int(seed)
    if prior_identity is not None:
        attrs["prior"] = to_json(prior_identity)
        attrs["prior_name"] = str(prior_identity.get("name", "unknown"))
        if prior_identity.get("checksum") is not None:
            attrs["prior_checksum"] = str(prior_identity["checksum"])
    if forward_model_params is not None:
        attrs["forward_model"] = str(forward_model_params.get("name", "unknown"))
        attrs["forward_model_params"] = to_json(forward_model_params)
    if input_path is not None:
        attrs["input_file"] = str(input_path)
        attrs["input_sha256"] = file_sha256(input_path)
    for key, value in (extra or {}).items():
        value = portable_attr(value)
        if value is not None:
            attrs[str(key)] = value
    return attrs
