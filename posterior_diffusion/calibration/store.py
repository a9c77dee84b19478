"""Per-test result files (tests/test_0007.npz), written atomically, so a killed run can resume.

Each file holds its test's diagnostics and the run settings it was made with; tests/settings.json
holds them too. A rerun loads finished tests whose settings match and refuses to mix in others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from posterior_diffusion.io.atomic import atomic_path, temporary_sibling
from posterior_diffusion.io.attrs import to_json

from .settings import settings_differences


class ResumeError(ValueError):
    """Finished tests in the output directory were made with other settings."""


class ResultStore:
    """The tests/ folder of a report directory."""

    def __init__(self, folder: str | Path, settings: Mapping[str, Any]):
        self.folder = Path(folder)
        self.settings = dict(settings)
        self._check_folder_settings()

    def path(self, index: int) -> Path:
        return self.folder / f"test_{index:04d}.npz"

    def finished(self, index: int) -> bool:
        return self.path(index).is_file()

    def count_finished(self, num_tests: int) -> int:
        return sum(self.finished(i) for i in range(num_tests))

    def _refuse(self, where: Path, stored: Mapping[str, Any]) -> None:
        diffs = settings_differences(stored, self.settings)
        raise ResumeError(
            f"{where}: finished tests there were made with other settings ("
            + "; ".join(diffs)
            + "); rerun with those settings, or write the report to another directory"
        )

    def _check_folder_settings(self) -> None:
        file = self.folder / "settings.json"
        if not file.is_file():
            return
        try:
            stored = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise ResumeError(f"{file}: cannot read the stored run settings ({err})") from None
        if stored != self.settings:
            self._refuse(self.folder, stored)

    def prepare(self) -> None:
        """Create the folder and record the settings (before the first test is run)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        file = self.folder / "settings.json"
        if not file.is_file():
            with atomic_path(file) as tmp:
                tmp.write_text(json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    def save(
        self,
        index: int,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        keep_existing: bool = False,
    ) -> None:
        """Write test `index` (its arrays, plus `meta` and the settings as JSON) atomically; with
        `keep_existing`, a copy another process finished first is kept (first writer wins)."""
        payload = dict(arrays)
        payload["meta_json"] = np.array(to_json(meta))
        payload["settings_json"] = np.array(to_json(self.settings))
        path = self.path(index)
        if not keep_existing:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **payload)  # a file object: numpy adds no .npz suffix to the temp name
            return
        tmp = temporary_sibling(path)
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **payload)
            os.link(tmp, path)  # atomic, and fails where the file exists
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def load(
        self, index: int, skip: Iterable[str] = ()
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (without the keys in `skip`) and meta of a finished test, settings checked."""
        path = self.path(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = json.loads(str(data["settings_json"]))
                if stored != self.settings:
                    self._refuse(path, stored)
                meta = json.loads(str(data["meta_json"]))
                skipped = set(skip) | {"settings_json", "meta_json"}
                arrays = {key: data[key] for key in data.files if key not in skipped}
        except (OSError, ValueError, KeyError) as err:
            if isinstance(err, ResumeError):
                raise
            reason = " ".join(str(err).split()) or type(err).__name__
            raise ResumeError(
                f"{path}: cannot read this test file ({reason}); delete it to recompute the test"
            ) from None
        return arrays, meta
