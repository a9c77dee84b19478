"""Ctrl-C stops the whole test run, even when the code under test catches it.

The CLI turns KeyboardInterrupt into exit status 130, as a user expects; a test that calls it in
process would swallow the Ctrl-C meant for pytest, which then goes on to the next test. This
plugin notes every SIGINT and ends the session after the test that received it.
"""

from __future__ import annotations

import signal

import pytest

_received = []


def _note_then_interrupt(signum, frame):
    _received.append(signum)
    signal.default_int_handler(signum, frame)


def pytest_configure(config):
    # Left alone where SIGINT is ignored (a shell's background job) or already handled.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _note_then_interrupt)


def pytest_runtest_teardown(item, nextitem):
    if _received:
        pytest.exit("interrupted by Ctrl-C", returncode=130)
