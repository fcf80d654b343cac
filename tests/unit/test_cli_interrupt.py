"""Ctrl-C (SIGINT) and SIGTERM end every `water` command with 130 and 143, saying so
(water.cli.main, the one place that maps them; README's exit codes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# A command that is interrupted while it works: any command, as main() runs them all.
INTERRUPTED_COMMAND = """
import os, signal, sys, time
import water.cli as cli

def command():
    os.kill(os.getpid(), signal.{name})
    time.sleep(30)  # the signal ends it long before

cli.app = command
cli.main()
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_any_command_with_its_exit_code(signum, code):
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_COMMAND.format(name=signum.name)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert f"interrupted ({signum.name})" in done.stderr
    assert "Traceback" not in done.stderr
