"""The trained-prior file: weights and metadata as plain tensors and a JSON string, checksummed.

Written by training (inside every Lightning checkpoint, key `prior`, and as a standalone file) and
read with `torch.load(weights_only=True)`: nothing in the file is ever executed. The checksum is
sha256 over the metadata JSON and every tensor, so a corrupted or edited file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

FORMAT = "posterior-diffusion-prior"
FORMAT_VERSION = 1
REQUIRED_METADATA = ("network", "field_shape", "channels", "data_std", "sigma_data", "hybrid")


class PriorFileError(ValueError):
    """A prior file that cannot be used; the message is one line naming the file."""


def record_checksum(metadata_json: str, state_dict: dict[str, Tensor]) -> str:
    digest = hashlib.sha256(metadata_json.encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def make_record(state_dict: dict[str, Tensor], metadata: dict[str, Any]) -> dict[str, Any]:
    """The dict to torch.save: format tags, metadata as JSON, weights, and their checksum."""
    state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    metadata_json = json.dumps(metadata, sort_keys=True)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata_json": metadata_json,
        "state_dict": state,
        "checksum": record_checksum(metadata_json, state),
    }


def save_record(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a record atomically (temporary sibling, then rename)."""
    from posterior_diffusion.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return Path(path)


def load_record(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor], str]:
    """(metadata, state_dict, checksum) from a prior file or a training checkpoint, validated.

    Raises:
        PriorFileError: missing, unreadable, foreign, corrupted or incomplete file (the checksum
            detects corruption, not deliberate edits: docs/reliability.md).
    """
    path = Path(path)
    if not path.is_file():
        raise PriorFileError(f"{path}: prior file not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle with code in it, not a torch file at all
        if not zipfile.is_zipfile(path):  # torch's own message would blame pickles or print a key
            reason = "not a zip archive as torch.save writes: truncated, or another kind of file"
        elif "Weights only load failed" in str(err):
            reason = "it holds pickled Python objects, which are never loaded: only tensors"
        else:
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # torch colours some messages
            reason = text.splitlines()[0][:160] if text else type(err).__name__
        raise PriorFileError(f"{path}: not a loadable prior file ({reason})") from None
    record = content.get("prior", content) if isinstance(content, dict) else None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PriorFileError(
            f"{path}: not a posterior-diffusion prior (no '{FORMAT}' record; a checkpoint from "
            "`posterior-diffusion train` or a file it exported is needed)"
        )
    if record.get("format_version") != FORMAT_VERSION:
        raise PriorFileError(
            f"{path}: prior format version {record.get('format_version')} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    metadata_json, state = record.get("metadata_json"), record.get("state_dict")
    if not isinstance(metadata_json, str) or not isinstance(state, dict):
        raise PriorFileError(f"{path}: prior record lacks its metadata or weights")
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise PriorFileError(f"{path}: prior weights hold something other than tensors")
    if record_checksum(metadata_json, state) != record.get("checksum"):
        raise PriorFileError(
            f"{path}: checksum mismatch: the weights or metadata were changed or corrupted"
        )
    try:
        metadata = json.loads(metadata_json)
    except json.JSONDecodeError as err:
        raise PriorFileError(f"{path}: prior metadata is not valid JSON ({err})") from None
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise PriorFileError(f"{path}: prior metadata lacks {', '.join(missing)}")
    return metadata, state, record["checksum"]
