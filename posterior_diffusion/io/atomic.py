"""Write-then-rename, so an output path holds either its old content or the complete new one."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A fresh `.NAME.partial-PID-TOKEN` beside `path` (`remove_stale_temporaries` knows the
    form, and removes those of dead processes)."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (a file or a directory) into.

    On normal exit the temporary replaces `path`; on any exception, Ctrl-C included, it is
    removed and `path` is left as it was.
    """
    path = Path(path)
    # A sibling, not a file in /tmp: os.replace is only atomic within one file system.
    tmp = temporary_sibling(path)
    try:
        yield tmp
        _replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    remove_stale_temporaries(path)


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):  # alive under another user, or cannot tell: keep it
        return False
    return False


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.partial-PID-*` and `.NAME.old-PID-*` siblings of `path` left by a process
    killed mid-write (SIGKILL runs no cleanup), once `path` itself has been written; those of
    live processes stay. Returns what was removed."""
    path = Path(path)
    removed = []
    for kind in ("partial", "old"):
        for leftover in path.parent.glob(f".{glob.escape(path.name)}.{kind}-*-*"):
            pid = leftover.name[len(f".{path.name}.{kind}-") :].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and _process_is_gone(int(pid)):
                remove_path(leftover)
                removed.append(leftover)
    return removed


def _replace(src: Path, dst: Path) -> None:
    if not (src.is_dir() or dst.is_dir()):
        os.replace(src, dst)
        return
    # rename(2) will not replace a non-empty directory (a .zarr store): move the old one aside,
    # put the new one in place, and only then delete the old one.
    backup = None
    if dst.exists() or dst.is_symlink():
        backup = dst.with_name(f".{dst.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(dst, backup)
    try:
        os.replace(src, dst)
    except BaseException:
        if backup is not None:
            os.replace(backup, dst)
        raise
    if backup is not None:
        remove_path(backup)


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class OutputPathError(ValueError):
    """An output path that must not be written: one line naming it and why."""


def check_output_target(
    path: str | os.PathLike,
    directory: bool,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike, ...] = (),
) -> None:
    """Refuse, before any work, to write `path` where that would lose something: over an input
    of the same run, over a thing of the other kind (a directory where a file goes, or a file
    where a directory store goes), or over an existing output without `overwrite`."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    for source in inputs:
        if source is not None and Path(source).exists() and os.path.samefile(path, source):
            raise OutputPathError(f"{path}: is this run's input; write the output elsewhere")
    if path.is_dir() and not directory:
        raise OutputPathError(
            f"{path}: is an existing directory; this output is a single file (nothing written)"
        )
    if not path.is_dir() and directory:
        raise OutputPathError(
            f"{path}: is an existing file; this output is a directory store (nothing written)"
        )
    if not overwrite:
        raise OutputPathError(f"{path}: already exists; add --overwrite to replace it")
