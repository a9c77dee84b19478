"""Finished ensemble members saved as they finish, so that a killed `reconstruct` run resumes.

The journal is a directory beside the output, `.NAME.resume/`: `run.json` (the settings that
determine every member's draw, written once and atomically) and `samples.zarr`, one zarr chunk per
member, NaN until that member is written. A member counts as done only if its chunk reads back
finite, so a chunk cut short by a kill is simply drawn again. Members have their own random
streams, so a resumed ensemble equals an uninterrupted one with the same seed. An ensemble-level
sampler (smc) keeps its whole state after each level in `ensemble_state.pt` (tensors and numbers
only, read back with weights_only=True), so a resumed run continues from its last level.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from posterior_diffusion.io.atomic import atomic_path, remove_path


class JournalError(ValueError):
    """A journal that cannot be used for this run; str() is one line naming it and why."""


ENSEMBLE_STATE = "ensemble_state.pt"


def holds_ensemble_state(output: str | os.PathLike) -> bool:
    """Whether the journal of `output` keeps an ensemble-level sampler's state."""
    return (journal_path(output) / ENSEMBLE_STATE).is_file()


def journal_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.resume")


def remove_journal(output: str | os.PathLike) -> None:
    """Delete the journal beside `output`: once the output holds every member, or when the
    journal holds none."""
    remove_path(journal_path(output))


def _try_lock(path: Path):
    """An open file holding an exclusive advisory lock on `path`/lock, or None when another
    process holds it. The kernel drops the lock when its process dies, so a journal whose lock is
    free was left by a run that is over (killed or failed), and one whose lock is held is live.
    Where flock does not exist (Windows), every journal counts as free."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return open(path / "lock", "a")  # noqa: SIM115 - held for the run, closed by release()
    handle = open(path / "lock", "a")  # noqa: SIM115 - held for the run, closed by release()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


class SampleJournal:
    """The members of one run written so far (see the module docstring)."""

    def __init__(self, path: Path, fingerprint: dict[str, Any]):
        self.path, self.fingerprint = Path(path), fingerprint
        self._array = None
        self._lock = None

    def release(self) -> None:
        """Let another run use this journal (a finished, failed or interrupted run's last step;
        a killed process releases it anyway)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @staticmethod
    def _busy(path: Path, output: str | os.PathLike) -> JournalError:
        return JournalError(
            f"{path}: another run is writing {Path(output).name} now; wait for it to finish, "
            "or choose another output"
        )

    @classmethod
    def start(
        cls, output: str | os.PathLike, fingerprint: dict[str, Any], resume: bool
    ) -> tuple[SampleJournal, bool]:
        """The journal for `output`: a new one, or with `resume` the existing one, checked
        against this run's settings. Returns (journal, whether it was resumed).

        Raises:
            JournalError: a journal exists but `resume` is off, or it belongs to other settings.
        """
        path = journal_path(output)
        fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        journal = cls(path, fingerprint)
        if not path.exists():
            try:
                path.mkdir()
            except FileExistsError:  # a run that started at the same moment
                raise cls._busy(path, output) from None
            journal._lock = _try_lock(path)
            if journal._lock is None:  # another run found the new folder and locked it first
                raise cls._busy(path, output)
            journal._write_settings()
            return journal, False
        if not path.is_dir():
            raise JournalError(f"{path}: is not a journal directory; move it away")
        journal._lock = _try_lock(path)
        if journal._lock is None:
            raise cls._busy(path, output)
        if not (path / "run.json").exists() and journal.count() == 0:
            # Made by a run that died (or lost the lock) before writing its settings: it holds
            # nothing, so this run takes it over as a new journal.
            journal._write_settings()
            return journal, False
        try:
            return journal, journal._check_resumable(output, resume)
        except JournalError:
            journal.release()
            raise

    def _check_resumable(self, output: str | os.PathLike, resume: bool) -> bool:
        path, fingerprint = self.path, self.fingerprint
        if not resume:
            raise JournalError(
                f"{path}: an interrupted run of {Path(output).name} left its finished samples "
                "here; add --resume to continue it, or delete it to start again"
            )
        try:
            saved = json.loads((path / "run.json").read_text())
        except (OSError, ValueError) as err:
            raise JournalError(f"{path}: cannot read run.json ({type(err).__name__})") from None
        different = sorted(
            k for k in fingerprint.keys() | saved.keys() if fingerprint.get(k) != saved.get(k)
        )
        if different:
            raise JournalError(
                f"{path}: the interrupted run had other settings ({', '.join(different)} "
                "differ); rerun with those, or delete the journal to start again"
            )
        return True

    @classmethod
    def join(cls, output: str | os.PathLike, fingerprint: dict[str, Any]) -> SampleJournal:
        """The journal rank 0 of a sharded run has already opened and checked."""
        return cls(journal_path(output), fingerprint)

    def batch_size_change(self, batch_size: int) -> int | None:
        """Record this run's batch size; return the earlier run's when it was another (members
        drawn by a trained network then agree with an uninterrupted run's to float32 rounding,
        not bit for bit), else None."""
        file = self.path / "batch.json"
        try:
            earlier = int(json.loads(file.read_text())["batch_size"])
        except (OSError, ValueError, KeyError, TypeError):
            earlier = None
        with atomic_path(file) as tmp:
            tmp.write_text(json.dumps({"batch_size": int(batch_size)}))
        return earlier if earlier is not None and earlier != int(batch_size) else None

    def save_ensemble_state(self, state: dict[str, Any]) -> None:
        """Keep an ensemble-level sampler's state (replacing the previous level's), atomically."""
        import torch

        with atomic_path(self.path / ENSEMBLE_STATE) as tmp:
            torch.save(state, tmp)

    def load_ensemble_state(self) -> dict[str, Any] | None:
        """The state `save_ensemble_state` kept, or None. Data only: weights_only=True."""
        import torch

        file = self.path / ENSEMBLE_STATE
        if not file.is_file():
            return None
        try:
            return torch.load(file, weights_only=True, map_location="cpu")
        except Exception as err:  # a file cut short by a kill, or not ours
            raise JournalError(
                f"{file}: cannot read the saved sampler state ({type(err).__name__}); delete it "
                "to start the sampler again"
            ) from None

    def holds_work(self) -> bool:
        """Whether a resumed run would start from something: members or a sampler's state."""
        return self.count() > 0 or (self.path / ENSEMBLE_STATE).is_file()

    def _write_settings(self) -> None:
        with atomic_path(self.path / "run.json") as tmp:
            tmp.write_text(json.dumps(self.fingerprint, sort_keys=True, indent=1))

    def _samples(self, num_samples: int, field_shape: tuple[int, ...]):
        """The member array, created (or grown, when a resumed run asks for more) on first use."""
        import zarr

        if self._array is None:
            store = self.path / "samples.zarr"
            shape = (num_samples, *field_shape)
            if store.exists():
                self._array = zarr.open_array(store, mode="r+")
                if tuple(self._array.shape[1:]) != tuple(field_shape):
                    raise JournalError(
                        f"{self.path}: its samples are {tuple(self._array.shape[1:])}, this run "
                        f"draws {tuple(field_shape)}"
                    )
                if self._array.shape[0] < num_samples:
                    self._array.resize(shape)
            else:
                self._array = zarr.open_array(
                    store,
                    mode="w",
                    shape=shape,
                    chunks=(1, *field_shape),
                    dtype="float64",
                    fill_value=np.nan,
                    zarr_format=2,
                )
        return self._array

    def completed(self, num_samples: int, field_shape: tuple[int, ...]) -> dict[int, np.ndarray]:
        """{member index: its sample} for every member below `num_samples` written in full."""
        array = self._samples(num_samples, field_shape)
        # Chunk files of a zarr-v2 array are named "i.0.0.0": list them instead of reading
        # every member (a run of 100,000 members would otherwise read 100,000 missing chunks).
        found = {}
        for index in self._written():
            if index >= num_samples:
                continue
            try:
                sample = np.asarray(array[index])
            except Exception:  # a chunk cut short by a kill: draw the member again
                continue
            if np.all(np.isfinite(sample)):
                found[index] = sample
        return found

    def _written(self) -> list[int]:
        store = self.path / "samples.zarr"
        if not store.exists():
            return []
        return sorted(
            int(name.split(".")[0]) for name in os.listdir(store) if name.split(".")[0].isdigit()
        )

    def count(self) -> int:
        """Members with a chunk on disk (without reading them back)."""
        return len(self._written())

    def record(self, members: list[int], samples: np.ndarray, num_samples: int) -> None:
        """Write finished members (one chunk file each)."""
        array = self._samples(num_samples, tuple(samples.shape[1:]))
        for index, sample in zip(members, samples, strict=True):
            array[index] = sample
