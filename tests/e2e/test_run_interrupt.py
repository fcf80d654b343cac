"""End to end: Ctrl-C (SIGINT) or SIGTERM in the middle of `water run` stops the run: exit
130 or 143, "interrupted" said and written in the summary, the running pod's processes gone,
its staging folder removed, no FAILED alert, the day's lock free again. Issue #12, finding 9
(at HEAD: exit 1, a FAILED alert, the rest of the run's tasks run on as upstream_failed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from tests.conftest import ROOT
from tests.e2e.runs import RUN_LIMIT, WATER, Deadline, Watched, stop, with_migrated_airflow

pytestmark = pytest.mark.e2e

DS = "2026-11-03"
POD_STEPS = ("prepare", "train", "score")  # customer_value's pods: a process tree to own


def _pod_step_running(line: str) -> bool:  # the run prints each task's state
    words = line.split()
    return len(words) >= 3 and words[1] in POD_STEPS and words[2] == "running"


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:  # ended meanwhile
        return []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_cleanly(signum, tmp_path, monkeypatch):
    state = with_migrated_airflow(tmp_path / "state")
    env = {**os.environ, "WATER_STATE_DIR": str(state), "COLUMNS": "160"}
    run = subprocess.Popen(
        [WATER, "run", "customer_value", "--date", DS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output = Watched(run)
    try:
        if output.line(_pod_step_running, limit=RUN_LIMIT) is None:
            pytest.fail(f"no pod step started; exit {run.poll()}:\n{output.out}\n{output.err[-3000:]}")
        deadline = Deadline(120)
        tree: list[psutil.Process] = []
        while not deadline.expired() and not any("include/" in " ".join(_cmdline(p)) for p in tree):
            tree = psutil.Process(run.pid).children(recursive=True)  # the pod's entrypoint among them
            time.sleep(0.1)
        pids = [p.pid for p in tree]
        assert pids, "the pod step's process did not start"

        run.send_signal(signum)
        assert output.wait(limit=300) is not None, f"the run did not stop:\n{output.out}\n{output.err[-3000:]}"
    finally:
        if run.poll() is None:
            stop(run)
    out, err = output.out, output.err

    assert run.returncode == 128 + signum, out + err
    assert f"interrupted ({signal.Signals(signum).name}): customer_value ds={DS} stopped" in err
    summary = json.loads((state / "runs" / "customer_value" / f"ds={DS}.json").read_text())
    assert summary["state"] == "interrupted" and summary["error"] == f"interrupted by {signal.Signals(signum).name}"
    assert any(t["state"] == "interrupted" and t["task_id"] in POD_STEPS for t in summary["tasks"]), summary["tasks"]
    outbox = [json.loads(line) for line in (state / "outbox" / "slack.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in outbox] == ["start"]  # no FAILED alert, no end of run
    deadline = Deadline(60)
    while not deadline.expired() and any(psutil.pid_exists(pid) for pid in pids):
        time.sleep(0.2)
    assert not [pid for pid in pids if psutil.pid_exists(pid)], "processes of the run outlived it"
    assert not list((state / "lake").rglob(".staging-*"))
    from water.cli import ownership

    monkeypatch.setenv("WATER_STATE_DIR", str(state))
    ownership.check_not_running("customer_value", DS)  # the lock went with the run
