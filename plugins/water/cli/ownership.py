"""`water run` owns its run: one run per pipeline and day at a time, and clean interrupts.

- `run_lock(pipeline, ds)`: an exclusive lock (flock) on `.water/locks/PIPELINE/ds=DS.lock`,
  which names its holder (pid, since when, command line); a second run of the same pipeline
  and day gets `RunBusy` at once. `check_not_running` asks the same without creating anything.
  The kernel drops the lock when its process ends, however it ends.
- `InterruptGuard`: SIGINT and SIGTERM while a run is in progress go to a thread (through
  Python's signal wakeup fd, so a main thread busy in C code or inside an Airflow task, which
  would swallow a KeyboardInterrupt and go on to the next task, does not delay it); the
  runner's handler stops the run and exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from water import paths

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunBusy(RuntimeError):
    """Another process holds the pipeline's day."""


def lock_path(pipeline: str, ds: str) -> Path:
    return paths.state_dir() / "locks" / pipeline / f"ds={ds}.lock"


def _holder(path: Path) -> dict[str, Any]:
    """What the lock's holder wrote about itself (it may be a moment from writing it)."""
    for _ in range(20):
        try:
            text = path.read_text()
            if text.strip():
                holder: dict[str, Any] = json.loads(text)
                return holder
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return {}


def _busy(pipeline: str, ds: str, path: Path) -> RunBusy:
    holder = _holder(path)
    pid = holder.get("pid", "unknown")
    since = holder.get("since")
    age = ""
    if since:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()
        age = f", since {since} ({seconds:.0f} s ago)"
    command = f", `{holder['command']}`" if holder.get("command") else ""
    return RunBusy(
        f"{pipeline} ds={ds} is being run by another process (pid {pid}{age}{command}; lock "
        f"{paths.shown(path)}). Nothing was changed. Wait for it to finish, or stop it "
        f"(kill -INT {pid}), then run again."
    )


def check_not_running(pipeline: str, ds: str) -> None:
    """Raise RunBusy if a run of this pipeline and day holds its lock (creates nothing)."""
    path = lock_path(pipeline, ds)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(pipeline, ds, path) from None
    finally:
        os.close(fd)  # closing drops the shared lock, if it was taken


@contextmanager
def run_lock(pipeline: str, ds: str) -> Iterator[Path]:
    """Hold the pipeline's day for this process; RunBusy at once if another holds it."""
    path = lock_path(pipeline, ds)
    paths.private_dir(path.parent.parent)
    paths.private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _busy(pipeline, ds, path) from None
    try:
        holder = {
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "command": " ".join(["water", *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        os.close(fd)


class InterruptGuard:
    """While entered, SIGINT/SIGTERM call `on_interrupt(signum)` in a thread of their own."""

    def __init__(self, on_interrupt: Callable[[int], None]):
        self.on_interrupt = on_interrupt
        self._saved: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def __enter__(self) -> InterruptGuard:
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        self._write = write
        for signum in INTERRUPT_SIGNALS:
            # A Python-level handler, so the C handler writes the wakeup fd; it does nothing
            # itself, so no KeyboardInterrupt reaches code that would swallow it.
            self._saved[signum] = signal.signal(signum, _noted)
        self._saved_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        threading.Thread(target=self._wait, name="water-interrupts", daemon=True).start()
        return self

    def _wait(self) -> None:
        try:
            while data := os.read(self._read, 1):  # every signal with a Python handler lands here
                if data[0] in INTERRUPT_SIGNALS:
                    self.on_interrupt(data[0])
                    return
        finally:
            os.close(self._read)

    def __exit__(self, *exc_info: object) -> None:
        signal.set_wakeup_fd(self._saved_wakeup)
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        os.close(self._write)  # the thread reads the end of the pipe and stops


def _noted(signum: int, frame: object) -> None:
    """Signals are handled by InterruptGuard's thread."""
