"""The local pod runner enforces a pod's CPU and memory limits and reports OOM as Kubernetes does."""

from __future__ import annotations

import sys

import pytest

from water.targets.local.engines.process import OutOfMemory, ProcessFailed, run_limited

HOG = "import time; chunks = [bytearray(8 * 2**20) for _ in range(64)]; time.sleep(0.5); print('survived')"
CPU_REPORT = (
    "import os; from pathlib import Path; "
    "print('threads', os.environ['OMP_NUM_THREADS']); "
    "print('cores', len(os.sched_getaffinity(0))); "
    "cg = [l.split(':')[2] for l in Path('/proc/self/cgroup').read_text().splitlines() if ':cpu:' in l or ':cpu,' in l]; "
    "quota = Path('/sys/fs/cgroup/cpu' + cg[0] + '/cpu.cfs_quota_us') if cg else None; "
    "print('quota', quota.read_text().strip() if quota and quota.exists() else 'none')"
)


@pytest.mark.parametrize("enforcement", ["cgroup", "watchdog"])
def test_memory_hog_is_killed_and_named(enforcement, monkeypatch):
    if enforcement == "watchdog":
        monkeypatch.setenv("WATER_NO_CGROUP", "1")
    lines = []
    with pytest.raises(OutOfMemory) as caught:
        run_limited([sys.executable, "-c", HOG], name="pod hog", memory_bytes=128 * 2**20, cpu=1, log=lines.append)
    assert "pod hog was OOMKilled" in str(caught.value) and "128.0 MiB" in str(caught.value)
    assert "survived" not in lines


@pytest.mark.parametrize("enforcement", ["cgroup", "watchdog"])
def test_within_limits_it_runs_and_measures(enforcement, monkeypatch):
    if enforcement == "watchdog":
        monkeypatch.setenv("WATER_NO_CGROUP", "1")
    result = run_limited([sys.executable, "-c", HOG], name="pod", memory_bytes=2 * 2**30, cpu=1, log=lambda _: None)
    assert result.output[-1] == "survived"
    assert 500 * 2**20 < result.peak_rss_bytes < 2 * 2**30
    assert result.enforcement in ("cgroup", "watchdog")
    if enforcement == "watchdog":
        assert result.enforcement == "watchdog"


def test_cpu_limit_caps_threads_and_cpu_time():
    result = run_limited([sys.executable, "-c", CPU_REPORT], name="pod", memory_bytes=2**30, cpu=0.5, log=lambda _: None)
    report = dict(line.split(" ", 1) for line in result.output)
    assert report["threads"] == "1"
    if result.enforcement == "cgroup":
        assert report["quota"] == "50000"  # half of a 100 ms period: 500m
    else:
        assert report["cores"] == "1"


def test_failure_carries_the_exit_code_and_log_tail():
    with pytest.raises(ProcessFailed) as caught:
        run_limited(
            [sys.executable, "-c", "print('about to fail'); raise SystemExit(3)"],
            name="pod",
            memory_bytes=2**30,
            cpu=1,
            log=lambda _: None,
        )
    assert caught.value.returncode == 3 and "about to fail" in str(caught.value)
