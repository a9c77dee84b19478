"""Ctrl-C stops the suite even when the code under test catches KeyboardInterrupt, as the CLI
does (tests/support/ctrl_c.py); without the plugin the next test would run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent / "support"
TWO_TESTS = """
import signal
from pathlib import Path

def test_first():
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass  # what the CLI does with a Ctrl-C: exit status 130

def test_second():
    Path("second_ran").write_text("")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
@pytest.mark.parametrize("plugin", [True, False])
def test_ctrl_c_ends_the_session_after_the_test_that_got_it(tmp_path, plugin):
    (tmp_path / "test_two.py").write_text(TWO_TESTS)
    flags = ["-p", "ctrl_c"] if plugin else []
    env = {**os.environ, "PYTHONPATH": str(SUPPORT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *flags, "test_two.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
        # A shell's background jobs inherit SIGINT ignored; the suite under test must not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    if plugin:
        assert done.returncode == 130 and "interrupted by Ctrl-C" in done.stdout, done.stdout
        assert not (tmp_path / "second_ran").exists()
    else:  # the control: the swallowed Ctrl-C lets the run go on
        assert done.returncode == 0 and (tmp_path / "second_ran").exists(), done.stdout
