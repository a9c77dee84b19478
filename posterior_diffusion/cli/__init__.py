"""The `posterior-diffusion` command line: flags in `parser`, one function per command in
`commands`, exit statuses and one-line failures in `errors`; the work is done by
posterior_diffusion.api."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from .commands import COMMANDS, train
from .errors import PROG, run_command, run_training
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # LightningCLI parses its own flags
        return run_training(lambda: train(argv[1:]))
    args = build_parser().parse_args(argv)  # exits with status 2 on malformed flags
    command = shlex.join([PROG, *argv])
    return run_command(lambda: COMMANDS[args.command](args, command))


__all__ = ["main"]
