"""The parent of one local 'container' process: nothing it starts outlives it.

    python -I -S reaper.py [--cgroup PROCS_FILE]... -- ARGV...

process.run_limited starts it as a session leader, with the kernel told to send it SIGTERM
when water's process dies (PR_SET_PDEATHSIG) and to hand it every orphan of its tree
(PR_SET_CHILD_SUBREAPER). It starts ARGV (in the cgroups given, by writing the child's pid to
each `cgroup.procs`) and waits. When ARGV ends, or on SIGTERM, SIGINT or SIGHUP, it kills
whatever is left of the tree — a Spark JVM's Python driver, a daemon a script forked — as a
pod's processes end with its main container. It exits as ARGV did (the same code, or the
same signal). Standard library only: it runs without water's imports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stop(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def _on_stop(signum: int, frame: object) -> None:
    raise Stop(signum)


def descendants(root: int) -> list[int]:
    """Live (not zombie) descendants of root, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
        if state != "Z":
            children.setdefault(int(ppid), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def kill_tree() -> None:
    """SIGKILL every descendant, again as their orphans are handed over, until none is left."""
    me = os.getpid()
    for _ in range(500):
        left = descendants(me)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        if not left:
            return
        time.sleep(0.01)


def _start(argv: list[str], cgroup_procs: list[str]) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:
        for procs in cgroup_procs:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        os.execvp(argv[0], argv)
    except BaseException as exc:
        os.write(2, f"water: cannot start {argv[0]}: {exc}\n".encode())
    os._exit(127)


def main(args: list[str]) -> None:
    split = args.index("--")
    options, argv = args[:split], args[split + 1 :]
    cgroup_procs = [options[i + 1] for i, flag in enumerate(options) if flag == "--cgroup"]
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop)
    try:
        child = _start(argv, cgroup_procs)
        while True:
            pid, status = os.wait()  # orphans handed over are reaped here too
            if pid == child:
                break
    except Stop as stop:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        kill_tree()
        os._exit(128 + stop.signum)
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    kill_tree()
    if os.WIFSIGNALED(status):
        killed_by = os.WTERMSIG(status)
        signal.signal(killed_by, signal.SIG_DFL)
        os.kill(os.getpid(), killed_by)
    os._exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main(sys.argv[1:])
