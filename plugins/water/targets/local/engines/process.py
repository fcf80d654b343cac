"""Run a container's command as a local process under the pod's CPU and memory limits.

Memory is enforced like the kubelet does: by a cgroup (v1 memory controller) when one can be
created here, else by a watchdog that samples the resident memory of the process tree and
kills it past the limit. CPU is a CFS quota in a cgroup (else CPU affinity), and thread pools
(OpenMP/BLAS/Arrow/DuckDB) are capped to the CPU limit. A process killed for memory raises
`OutOfMemory`, naming the limit, the way Kubernetes reports OOMKilled.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
SAMPLE_SECONDS = 0.05


class OutOfMemory(RuntimeError):
    """The process went past its memory limit and was killed (Kubernetes: OOMKilled)."""

    def __init__(self, name: str, limit_bytes: int, peak_bytes: int, tail: list[str]):
        self.limit_bytes, self.peak_bytes, self.tail = limit_bytes, peak_bytes, tail
        super().__init__(
            f"{name} was OOMKilled: it went past its memory limit of {format_bytes(limit_bytes)} "
            f"(peak resident memory seen {format_bytes(peak_bytes)}). Raise the memory limit "
            f"in the spec or make the step stream its input."
        )


class ProcessFailed(RuntimeError):
    def __init__(self, name: str, returncode: int, tail: list[str]):
        self.returncode, self.tail = returncode, tail
        detail = "\n".join(tail[-20:])
        super().__init__(f"{name} exited with code {returncode}; last lines:\n{detail}")


@dataclass(frozen=True)
class ProcessResult:
    returncode: int
    seconds: float
    peak_rss_bytes: int
    enforcement: str  # "cgroup" or "watchdog"
    output: list[str]


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def thread_env(cpu: float) -> dict[str, str]:
    """Environment that keeps thread pools within the CPU limit, as a container's would."""
    threads = str(max(1, math.ceil(cpu)))
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS")
    return {name: threads for name in names} | {"WATER_CPU_LIMIT": str(cpu)}


class _Cgroup:
    """A pair of v1 cgroups (memory, cpu) for one process; None where they cannot be made."""

    def __init__(self, memory_bytes: int, cpu: float):
        name = f"water-{uuid.uuid4().hex[:12]}"
        self.memory = CGROUP_ROOT / "memory" / name
        self.cpu = CGROUP_ROOT / "cpu" / name
        self.memory.mkdir()
        try:
            (self.memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            (self.memory / "memory.swappiness").write_text("0")
            if (CGROUP_ROOT / "cpu").is_dir():
                self.cpu.mkdir()
                (self.cpu / "cpu.cfs_period_us").write_text("100000")
                (self.cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpu * 100000))))
        except OSError:
            self.remove()
            raise

    @classmethod
    def create(cls, memory_bytes: int, cpu: float) -> _Cgroup | None:
        if os.environ.get("WATER_NO_CGROUP") or not os.access(CGROUP_ROOT / "memory", os.W_OK):
            return None
        try:
            return cls(memory_bytes, cpu)
        except OSError:
            return None

    def enter(self) -> None:  # runs in the child between fork and exec
        pid = str(os.getpid())
        (self.memory / "cgroup.procs").write_text(pid)
        if self.cpu.is_dir():
            (self.cpu / "cgroup.procs").write_text(pid)

    def oom_killed(self) -> bool:
        try:
            control = (self.memory / "memory.oom_control").read_text()
        except OSError:
            return False
        counts = dict(line.split() for line in control.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", "0")) > 0

    def remove(self) -> None:
        for folder in (self.memory, self.cpu):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # tasks still leaving
                    time.sleep(0.02)


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_limited(
    argv: list[str],
    *,
    name: str,
    memory_bytes: int,
    cpu: float,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> ProcessResult:
    """Run argv to completion within the limits; stream its output lines to `log`.

    Raises OutOfMemory when it is killed for memory, ProcessFailed on a non-zero exit.
    """
    full_env = {**os.environ, **thread_env(cpu), **(env or {})}
    cgroup = _Cgroup.create(memory_bytes, cpu)
    cores = sorted(os.sched_getaffinity(0))[: max(1, math.ceil(cpu))]

    def in_child() -> None:
        if cgroup:
            cgroup.enter()
        else:
            os.sched_setaffinity(0, cores)

    tail: deque[str] = deque(maxlen=200)
    output: list[str] = []
    peak = 0
    killed_for_memory = threading.Event()
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
        preexec_fn=in_child,
    )
    ps_proc = psutil.Process(proc.pid)

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            rss = _tree_rss(ps_proc)
            peak = max(peak, rss)
            if cgroup is None and rss > memory_bytes:
                killed_for_memory.set()
                _kill_group(proc)
                return
            time.sleep(SAMPLE_SECONDS)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            output.append(line)
            log(line)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted (task timeout, Ctrl-C): take the process tree down
            _kill_group(proc)
            proc.wait()
        watcher.join(timeout=1)
        oom = killed_for_memory.is_set() or (cgroup is not None and cgroup.oom_killed())
        if cgroup:
            cgroup.remove()
    seconds = time.monotonic() - started
    if oom:
        raise OutOfMemory(name, memory_bytes, peak, list(tail))
    if returncode != 0:
        raise ProcessFailed(name, returncode, list(tail))
    return ProcessResult(returncode, seconds, peak, "cgroup" if cgroup else "watchdog", output)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def python_executable() -> str:
    """The interpreter running water, for entrypoints run as local 'containers'."""
    import sys

    return sys.executable
