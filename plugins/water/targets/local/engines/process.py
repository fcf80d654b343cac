"""Run a container's command as a local process under the pod's CPU and memory limits.

Memory is enforced like the kubelet does: by a cgroup (v1 memory controller) when one can be
created here, else by a watchdog that samples the process tree's proportional set size (PSS:
shared pages split among the processes sharing them) and kills it past the limit. The peak
reported is the figure that is enforced: the cgroup's working set (usage less inactive file
cache, what the kubelet reads), else the tree's PSS. CPU is a CFS quota in a cgroup (else CPU
affinity), and thread pools (OpenMP/BLAS/Arrow/DuckDB) are capped to the CPU limit. A process
killed for memory raises `OutOfMemory`, naming the limit, the way Kubernetes reports OOMKilled.

The process tree belongs to the process that started it: each command runs under a reaper
(reaper.py) that the kernel signals when this process dies, even by SIGKILL, and that then
kills the whole tree; cgroups are named after their owner's pid, so those of a dead owner
are removed by the next `water run` (`remove_stale_cgroups`).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "cpu")
SAMPLE_SECONDS = 0.05
REAPER = Path(__file__).with_name("reaper.py")
_OWNED_CGROUP = re.compile(r"^water-(\d+)-[0-9a-f]+$")  # water-<owner pid>-<token>
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: a child must not dlopen
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


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
    peak_rss_bytes: int  # the enforced figure: the cgroup's working set, else the tree's PSS
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
    return dict.fromkeys(names, threads) | {"WATER_CPU_LIMIT": str(cpu)}


class _Cgroup:
    """A pair of v1 cgroups (memory, cpu) for one process; None where they cannot be made."""

    def __init__(self, memory_bytes: int, cpu: float):
        name = f"water-{os.getpid()}-{uuid.uuid4().hex[:12]}"
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

    def procs_files(self) -> list[Path]:
        """The files a process joins these cgroups through (the reaper's child writes its pid)."""
        return [folder / "cgroup.procs" for folder in (self.memory, self.cpu) if folder.is_dir()]

    def working_set(self) -> int:
        """Memory charged to the cgroup less the file cache it could drop (the kubelet's figure)."""
        try:
            usage = int((self.memory / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (self.memory / "memory.stat").read_text().splitlines())
        except (OSError, ValueError):
            return 0
        return max(0, usage - int(stat.get("total_inactive_file", 0)))

    def max_usage(self) -> int:
        try:
            return int((self.memory / "memory.max_usage_in_bytes").read_text())
        except (OSError, ValueError):
            return 0

    def oom_killed(self) -> bool:
        try:
            control = (self.memory / "memory.oom_control").read_text()
        except OSError:
            return False
        counts = dict(line.split() for line in control.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", "0")) > 0

    def remove(self) -> None:
        for folder in (self.memory, self.cpu):
            _remove_cgroup(folder)


def _remove_cgroup(folder: Path) -> bool:
    """rmdir a cgroup, waiting a moment for tasks still leaving it; True once it is gone."""
    for _ in range(50):
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:  # tasks still leaving
            time.sleep(0.02)
    return False


def remove_stale_cgroups() -> list[Path]:
    """Remove the water-* cgroups whose owner process is gone (killing any process left in
    them: nothing may outlive its run), and empty ones named before owners were; returns them."""
    removed = []
    for controller in CGROUP_CONTROLLERS:
        root = CGROUP_ROOT / controller
        try:
            folders = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("water-")]
        except OSError:
            continue
        for folder in folders:
            owned = _OWNED_CGROUP.match(folder.name)
            if owned and psutil.pid_exists(int(owned.group(1))):
                continue
            if owned:
                for pid in _cgroup_pids(folder):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if _remove_cgroup(folder):
                    removed.append(folder)
                continue
            try:  # named before owners were: removed only when empty
                folder.rmdir()
                removed.append(folder)
            except OSError:
                pass
    return removed


def _cgroup_pids(folder: Path) -> list[int]:
    try:
        return [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def die_with_parent(signum: int = signal.SIGKILL, *, adopt_orphans: bool = False) -> Callable[[], None]:
    """A preexec_fn: the child gets `signum` when the process starting it dies, however it dies
    (Linux PR_SET_PDEATHSIG, kept across exec; strictly, when the starting thread ends, so start
    it from a thread that waits for it); `adopt_orphans` makes it its tree's subreaper."""
    parent = os.getpid()

    def in_child() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if adopt_orphans:
            _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            os._exit(128 + int(signum))

    return in_child


def _pss_bytes(pid: int) -> int:
    """A process's proportional set size; its RSS where smaps_rollup cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _tree_pss(reaper: psutil.Process) -> int:
    """PSS summed over the reaper's descendants (the command's processes, not the reaper)."""
    try:
        processes = reaper.children(recursive=True)
    except psutil.Error:
        return 0
    return sum(_pss_bytes(proc.pid) for proc in processes)


_RUNNING: dict[int, subprocess.Popen[str]] = {}
_RUNNING_LOCK = threading.Lock()


def kill_running() -> int:
    """Kill every process tree run_limited has running in this process (an interrupted run);
    returns how many."""
    with _RUNNING_LOCK:
        running = list(_RUNNING.values())
    for proc in running:
        _kill_group(proc)
    return len(running)


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

    owned = die_with_parent(signal.SIGTERM, adopt_orphans=True)

    def in_child() -> None:
        owned()
        if cgroup is None:
            os.sched_setaffinity(0, cores)

    reaper = [sys.executable, "-I", "-S", str(REAPER)]
    for procs in cgroup.procs_files() if cgroup else []:
        reaper += ["--cgroup", str(procs)]

    tail: deque[str] = deque(maxlen=200)
    output: list[str] = []
    peak = 0
    killed_for_memory = threading.Event()
    started = time.monotonic()
    proc = subprocess.Popen(
        [*reaper, "--", *argv],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
        preexec_fn=in_child,  # noqa: PLW1509 - PR_SET_PDEATHSIG has no Popen argument; only prctl and sched_setaffinity run in the child
    )
    with _RUNNING_LOCK:
        _RUNNING[proc.pid] = proc
    ps_proc = psutil.Process(proc.pid)

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            used = cgroup.working_set() if cgroup else _tree_pss(ps_proc)
            peak = max(peak, used)
            if cgroup is None and used > memory_bytes:
                killed_for_memory.set()
                _kill_group(proc)
                return
            time.sleep(SAMPLE_SECONDS)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            output.append(line)
            log(line)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted (task timeout, Ctrl-C): take the process tree down
            _kill_group(proc)
            proc.wait()
        with _RUNNING_LOCK:
            _RUNNING.pop(proc.pid, None)
        watcher.join(timeout=1)
        oom = killed_for_memory.is_set() or (cgroup is not None and cgroup.oom_killed())
        if cgroup:
            if oom:  # the kernel killed it at the limit, maybe between two samples
                peak = max(peak, cgroup.max_usage())
            cgroup.remove()
    seconds = time.monotonic() - started
    if oom:
        raise OutOfMemory(name, memory_bytes, peak, list(tail))
    if returncode != 0:
        raise ProcessFailed(name, returncode, list(tail))
    return ProcessResult(returncode, seconds, peak, "cgroup" if cgroup else "watchdog", output)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the reaper's process group and every descendant (some leave the group, as
    PySpark's worker daemon does)."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.Error):
            child.kill()


def python_executable() -> str:
    """The interpreter running water, for entrypoints run as local 'containers'."""
    import sys

    return sys.executable
