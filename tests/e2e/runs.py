"""Running `water` from the end-to-end tests, within time limits that scale with the machine.

A limit is given in seconds of an idle machine. While the machine is loaded (its 1-minute load
average per CPU above 1: other jobs, or the other pytest-xdist worker's pipeline), time counts
that much slower, so a healthy run is never cut off on a busy machine and a hung one still ends.
WATER_TEST_TIME_SCALE multiplies every limit (e.g. 3 on a machine three times slower than the
2-core machine the limits were set on).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.airflow_database import copy_migrated_database
from tests.conftest import ROOT

WATER = str(Path(sys.executable).parent / "water")
TIME_SCALE = float(os.environ.get("WATER_TEST_TIME_SCALE") or 1)
RUN_LIMIT = 900  # one `water run` of a pipeline: 1-3 minutes on an idle 2-core machine
COMMAND_LIMIT = 600  # any other `water` command


def load_factor() -> float:
    """How much slower than idle this machine runs now: the load average per CPU, at least 1."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


class Deadline:
    """`seconds` of an idle machine (times WATER_TEST_TIME_SCALE), counted slower while it is loaded."""

    def __init__(self, seconds: float):
        self.limit = seconds * TIME_SCALE
        self.used = 0.0  # idle-machine seconds
        self.started = self._last = time.monotonic()

    def expired(self) -> bool:
        now = time.monotonic()
        self.used += (now - self._last) / load_factor()
        self._last = now
        return self.used >= self.limit

    def __str__(self) -> str:
        return f"{time.monotonic() - self.started:.0f}s (a limit of {self.limit:.0f}s on an idle machine, stretched by its load)"


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (water stops its run's processes and exits 143), then SIGKILL (its process group
    when it leads one)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        proc.wait()


def run(argv: list[str], *, limit: float, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """argv to its end, stdout and stderr captured; past the limit it is stopped and the test fails."""
    deadline = Deadline(limit)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=5)
                return subprocess.CompletedProcess(argv, proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                if deadline.expired():
                    break
        stop(proc)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(argv[:4])} … still running after {deadline}; stopped.\n{out[-3000:]}\n{err[-5000:]}")
    finally:
        if proc.poll() is None:  # an interrupt (Ctrl-C) or an error here: never leave the run behind
            stop(proc)


class Watched:
    """A started process whose stdout and stderr are read as they come (so neither pipe fills up):
    wait for a line of its stdout, or for its end, within limits that scale like Deadline's."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._news = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
            for pipe, lines in ((proc.stdout, self.stdout), (proc.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe, lines: list[str]) -> None:
        for line in pipe:
            with self._news:
                lines.append(line)
                self._news.notify_all()
        with self._news:
            self._news.notify_all()

    def line(self, wanted: Callable[[str], bool], limit: float) -> str | None:
        """The first stdout line `wanted` accepts; None once stdout ended or the limit passed."""
        deadline, seen = Deadline(limit), 0
        while not deadline.expired():
            with self._news:
                for line in self.stdout[seen:]:
                    if wanted(line):
                        return line
                seen = len(self.stdout)
                if not self._readers[0].is_alive():
                    return None
                self._news.wait(timeout=1)
        return None

    def wait(self, limit: float) -> int | None:
        """Its exit code (all its output read), or None when it still runs after the limit."""
        deadline = Deadline(limit)
        while self.proc.poll() is None:
            if deadline.expired():
                return None
            time.sleep(0.2)
        for reader in self._readers:
            reader.join(timeout=30)
        return self.proc.returncode

    @property
    def out(self) -> str:
        return "".join(self.stdout)

    @property
    def err(self) -> str:
        return "".join(self.stderr)


def with_migrated_airflow(state: Path) -> Path:
    """A new state folder with a copy of the session's migrated metadata database, so its first
    `water run` skips the migration (tests/airflow_database.py). The demo's days
    (tests/e2e/conftest.py) start from nothing: there a run migrates, as on a new machine."""
    copy_migrated_database(state / "airflow")
    return state


def water(
    *args: str,
    project: Path = ROOT,
    state: Path | None = None,
    env: dict[str, str] | None = None,
    limit: float = COMMAND_LIMIT,
    migrated: bool = True,
) -> subprocess.CompletedProcess:
    """The `water` command in a project (by default this repository), with its own state folder
    when given (else the test session's); for `water run` that folder holds a migrated Airflow
    database unless `migrated` is False."""
    full_env = {**os.environ, "WATER_PROJECT_ROOT": str(project), "COLUMNS": "160", **(env or {})}
    if state is not None:
        full_env["WATER_STATE_DIR"] = str(with_migrated_airflow(state) if migrated and args[:1] == ("run",) else state)
    return run([WATER, *args], cwd=project, env=full_env, limit=limit)


def water_run(
    pipeline: str,
    ds: str,
    *extra: str,
    project: Path = ROOT,
    state: Path | None = None,
    env: dict[str, str] | None = None,
    migrated: bool = True,
) -> dict:
    """`water run PIPELINE --date DS --json …` that must succeed: its summary."""
    result = water(
        "run", pipeline, "--date", ds, "--json", *extra, project=project, state=state, env=env, limit=RUN_LIMIT, migrated=migrated
    )
    assert result.returncode == 0, f"water run failed:\n{result.stderr[-5000:]}"
    return json.loads(result.stdout)


def edit(project: Path, relative: str, old: str, new: str) -> None:
    """Break one file of a copied project; `old` must be there."""
    path = project / relative
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
