"""How a command ends: exit statuses, and failures reported in one line on stderr.

Invalid input exits with status 2 and nothing written; Ctrl-C with 130. In a sharded run every
rank fails or stops alike, and rank 0 alone says why.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from posterior_diffusion.distributed import is_main_process

PROG = "posterior-diffusion"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class UsageError(ValueError):
    """Flags that are fine one by one but do not go together."""


def say(message: str) -> None:
    """`message` on stderr as the program's, once per run (from rank 0)."""
    if is_main_process():
        print(f"{PROG}: {message}", file=sys.stderr)


def _error(err: BaseException) -> None:
    say(f"error: {' '.join(str(err).split()) or type(err).__name__}")


def run_command(command: Callable[[], int]) -> int:
    """`command`'s exit status, failures turned into one line on stderr and a status."""
    try:
        with _one_line_warnings():
            return command()
    except ValueError as err:
        # ObservationError, ForwardModelError, PowerSpectrumError, FieldFileError and the
        # other checks of user input all derive from ValueError and carry one-line messages.
        _error(err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("interrupted; nothing written")
        return EXIT_INTERRUPTED
    except (OSError, RuntimeError) as err:  # unwritable output, sampler divergence, ...
        _error(err)
        return EXIT_FAILED


def run_training(train: Callable[[], None]) -> int:
    """`train`'s exit status: LightningCLI reports its own failures; invalid input and Ctrl-C
    as for the other commands."""
    try:
        train()
    except ValueError as err:  # TrainingDataError, PriorFileError: one line, no traceback
        _error(err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("training interrupted; resume with --ckpt_path last")
        return EXIT_INTERRUPTED
    return EXIT_OK


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings as one line each, as the program's (restoring the caller's display after)."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        yield


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if is_main_process():  # every rank of a sharded run warns alike
        print(f"{PROG}: warning: {' '.join(str(message).split())}", file=file or sys.stderr)
