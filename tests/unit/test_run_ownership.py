"""`water run` owns its run: one run per pipeline and day, its whole process tree (kill -9
of water included), what killed runs leave (staging folders, cgroups) cleaned by the next
one, the seed manifest and the warehouse safe for runs of different days at once, and the
memory figure the one the kernel enforces. Issue #12, findings 5, 6 and 9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from water.targets.local.engines import partitions, process

WATER = str(Path(sys.executable).parent / "water")
GONE_WITHIN = 60  # seconds: a generous bound, the tree goes in well under one


def _python(code: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        env={**(env or os.environ), "PYTHONPATH": str(ROOT / "plugins")},
        **kwargs,
    )


def _read_json_line(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    assert line, f"the helper process ended early (exit {proc.wait()})"
    return json.loads(line)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _all_gone(pids: list[int]) -> list[int]:
    """The pids still running after waiting up to GONE_WITHIN for them to end."""
    deadline = time.monotonic() + GONE_WITHIN
    alive = pids
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _running(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


# --- finding 5: one run per pipeline and day ---------------------------------------------


def test_a_second_run_of_the_same_day_is_refused_at_once_naming_the_holder(tmp_path, monkeypatch):
    """While a run holds customer_value's 2026-11-03, `water run` of that day exits 75 naming
    the holder's pid and changes nothing (at HEAD it went on and deleted the first's DagRun)."""
    state = tmp_path / "state"
    env = {**os.environ, "WATER_STATE_DIR": str(state), "COLUMNS": "200"}
    holder = _python(
        """
        import json, sys, time
        from water.cli.ownership import run_lock
        with run_lock("customer_value", "2026-11-03"):
            print(json.dumps({"held": True}), flush=True)
            sys.stdin.read()
        """,
        stdin=subprocess.PIPE,
        env=env,
    )
    try:
        assert _read_json_line(holder) == {"held": True}
        (state / "runs" / "customer_value").mkdir(parents=True)
        (state / "runs" / "customer_value" / "ds=2026-11-03.json").write_text('{"state": "success"}')
        before = _snapshot(state)
        started = time.monotonic()
        result = subprocess.run(
            [WATER, "run", "customer_value", "--date", "2026-11-03"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        took = time.monotonic() - started
        assert result.returncode == 75, result.stdout + result.stderr
        message = " ".join(result.stderr.split())
        assert f"customer_value ds=2026-11-03 is being run by another process (pid {holder.pid}, since" in message
        assert "Nothing was changed" in message and f"kill -INT {holder.pid}" in message
        assert _snapshot(state) == before
        print(f"refused in {took:.1f} s")  # shown with -s; reported in the issue note
        from water.cli import ownership

        monkeypatch.setenv("WATER_STATE_DIR", str(state))
        ownership.check_not_running("customer_value", "2026-11-04")  # another day is free
        with pytest.raises(ownership.RunBusy):
            ownership.check_not_running("customer_value", "2026-11-03")
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_goes_with_its_holder_even_killed(tmp_path, monkeypatch):
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path))
    from water.cli import ownership

    holder = _python(
        """
        import json, time
        from water.cli.ownership import run_lock
        with run_lock("p", "2026-11-01"):
            print(json.dumps({"held": True}), flush=True)
            time.sleep(600)
        """,
        env={**os.environ, "WATER_STATE_DIR": str(tmp_path)},
    )
    assert _read_json_line(holder) == {"held": True}
    with pytest.raises(ownership.RunBusy, match=f"pid {holder.pid}"), ownership.run_lock("p", "2026-11-01"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with ownership.run_lock("p", "2026-11-01") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_seeding_waits_for_another_process_seeding_and_keeps_both_days(tmp_path, monkeypatch):
    """Two runs of different days seed the same warehouse: the second waits for the first, so
    the seed manifest (read, modified, written) keeps both days."""
    from water.cli.seeding import seed_pipeline, seeding_lock
    from water.spec import load_pipeline

    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path))
    warehouse = tmp_path / "warehouse"
    seed_pipeline(load_pipeline("recipe_engagement"), [date(2026, 11, 1)], users=100)
    env = {**os.environ, "WATER_STATE_DIR": str(tmp_path)}
    with seeding_lock(warehouse, progress=lambda _: None):
        second = subprocess.Popen(
            [WATER, "seed", "recipe_engagement", "--date", "2026-11-02", "--users", "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        first_line = second.stdout.readline()
        assert "waiting for another process seeding" in first_line, first_line
        assert set(json.loads((warehouse / "_seed.json").read_text())["days"]) == {"2026-11-01"}
    rest = second.stdout.read()
    assert second.wait(timeout=600) == 0, rest
    assert set(json.loads((warehouse / "_seed.json").read_text())["days"]) == {"2026-11-01", "2026-11-02"}


def test_a_publish_waits_for_another_process_holding_the_warehouse(tmp_path, monkeypatch):
    """DuckDB lets one process open the file: a publish meeting another's lock waits for it
    (at HEAD it failed at once), and past the bound fails naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from water.targets.local.engines import warehouse as wh

    source = tmp_path / "lake" / "ds=2026-11-01"
    source.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": [1, 2, 3]}), source / "part-0.parquet")
    (tmp_path / "wh").mkdir()
    holder = _python(
        f"""
        import duckdb, json, sys, time
        con = duckdb.connect({str(tmp_path / "wh" / wh.DATABASE)!r})
        print(json.dumps({{"held": True}}), flush=True)
        sys.stdin.readline()
        time.sleep(2)  # still held when the publish below starts
        con.close()
        sys.stdin.read()
        """,
        stdin=subprocess.PIPE,
    )
    try:
        assert _read_json_line(holder) == {"held": True}
        monkeypatch.setattr(wh, "LOCK_WAIT_SECONDS", 1.0)
        with pytest.raises(wh.WarehouseBusy, match=r"warehouse .*warehouse.duckdb stayed locked by another process for 1 s"):
            wh.publish_partition(tmp_path / "wh", "ml.lists", "2026-11-01", source)
        monkeypatch.setattr(wh, "LOCK_WAIT_SECONDS", 120.0)
        holder.stdin.write("release in a moment\n")
        holder.stdin.flush()  # the holder closes its connection while publish_partition waits
        assert wh.publish_partition(tmp_path / "wh", "ml.lists", "2026-11-01", source) == 3
    finally:
        holder.kill()
        holder.wait()


# --- finding 6: the process tree dies with water -----------------------------------------

ESCAPING_TREE = """
import os, subprocess, sys, time
# A daemon in a session of its own (out of the process group, as PySpark's worker daemon
# leaves it), and a plain child: the grandchildren of the run-like parent.
escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("pids", os.getpid(), escaped.pid, child.pid, flush=True)
time.sleep(600)
"""


def test_kill_9_of_the_parent_takes_its_whole_process_tree_down(tmp_path):
    """A run-like parent runs a command through run_limited; the command starts processes,
    one in a session of its own. kill -9 of the parent leaves none of them running (at HEAD
    the whole tree went on)."""
    script = tmp_path / "tree.py"
    script.write_text(ESCAPING_TREE)
    parent = _python(
        f"""
        import json, sys
        from water.targets.local.engines.process import run_limited

        def log(line):
            if line.startswith("pids "):
                print(json.dumps([int(p) for p in line.split()[1:]]), flush=True)

        run_limited([sys.executable, {str(script)!r}], name="pod tree", memory_bytes=2**30, cpu=1, log=log)
        """
    )
    tree = _read_json_line(parent)
    assert all(psutil.pid_exists(pid) for pid in tree)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _all_gone(tree) == [], f"still running after the parent's kill -9: {tree}"


def test_a_command_that_ends_takes_what_it_left_running_along(tmp_path):
    """As a pod's processes end with its main container: a daemon the command left behind
    (holding its output open) does not outlive it, nor keep run_limited waiting."""
    lines = []
    started = time.monotonic()
    process.run_limited(
        ["sh", "-c", "sleep 600 & echo $!"],
        name="pod",
        memory_bytes=2**30,
        cpu=1,
        log=lines.append,
    )
    assert time.monotonic() - started < 300  # a bound, not a timing: it would wait 600 s
    assert _all_gone([int(lines[0])]) == []


GLUE_SCRIPT = """
import json, os, sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
spark.range(10).count()
print("driver", os.getpid(), flush=True)
time.sleep(600)
"""


@pytest.mark.spark
def test_kill_9_of_the_parent_stops_local_spark(tmp_path):
    """The Glue engine's spark-submit: its JVM and the Python driver the JVM starts die with
    the process that started them (at HEAD Spark ran on for minutes and wrote its partition)."""
    script = tmp_path / "job.py"
    script.write_text(GLUE_SCRIPT)
    parent = _python(
        f"""
        import json, os
        from pathlib import Path
        from water.targets.local.engines.glue import run_glue_script

        def log(line):
            if line.startswith("driver "):
                print(json.dumps({{"driver": int(line.split()[1])}}), flush=True)

        run_glue_script(Path({str(script)!r}), "job", {{}}, "G.025X", log=log)
        """
    )
    driver = _read_json_line(parent)["driver"]
    spark = [p.pid for p in psutil.Process(parent.pid).children(recursive=True)]
    assert driver in spark and any("java" in psutil.Process(pid).name() for pid in spark), spark
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _all_gone(spark) == [], f"Spark still running after the parent's kill -9: {spark}"


def test_staging_of_dead_processes_is_removed_and_a_live_ones_kept(tmp_path):
    """What a killed stage left (its staging folder, a partition half swapped) goes at the
    next run; a concurrent live run's staging stays."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "600"])
    try:
        dataset = tmp_path / "lake" / "p" / "features"
        (dataset / "ds=2026-11-01").mkdir(parents=True)
        (dataset / "ds=2026-11-01" / "part-0.parquet").write_text("good")
        left = {
            "dead": dataset / f".staging-ds=2026-11-02.pid{dead.pid}.0a1b2c3d",
            "legacy": dataset / ".staging-ds=2026-11-03-0a1b2c3d",  # named before owners were
            "live": dataset / f".staging-ds=2026-11-04.pid{live.pid}.0a1b2c3d",
            "sharded": tmp_path
            / "lake"
            / "p"
            / "outputs"
            / "ds=2026-11-02"
            / "route=r"
            / f".staging-shard=0000.pid{dead.pid}.00aa11bb",
        }
        for folder in left.values():
            folder.mkdir(parents=True)
            (folder / "part-0.parquet").write_text("partial")
        # killed between the two renames of a swap: the old partition must come back
        swapped = dataset / f".replaced-ds=2026-11-05.pid{dead.pid}.0a1b2c3d"
        swapped.mkdir()
        (swapped / "part-0.parquet").write_text("previous good")

        removed = partitions.remove_dead_debris(tmp_path / "lake" / "p")

        assert sorted(removed) == sorted([left["dead"], left["legacy"], left["sharded"]])
        assert left["live"].is_dir() and (dataset / "ds=2026-11-01" / "part-0.parquet").read_text() == "good"
        assert (dataset / "ds=2026-11-05" / "part-0.parquet").read_text() == "previous good"
    finally:
        live.kill()
        live.wait()


def test_a_stage_removes_dead_staging_beside_its_partition(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    dataset = tmp_path / "features"
    debris = dataset / f".staging-ds=2026-11-01.pid{dead.pid}.0a1b2c3d"
    debris.mkdir(parents=True)
    with partitions.staged({"out": f"file://{dataset / 'ds=2026-11-02'}"}) as out:
        assert f".pid{os.getpid()}." in out["out"].name  # named after its owner
        (out["out"] / "part-0.parquet").write_text("x")
    assert not debris.exists() and (dataset / "ds=2026-11-02" / "part-0.parquet").exists()


@pytest.mark.skipif(
    os.environ.get("WATER_NO_CGROUP") or not os.access("/sys/fs/cgroup/memory", os.W_OK), reason="needs writable v1 cgroups"
)
def test_cgroups_of_dead_owners_are_removed_with_what_runs_in_them():
    dead = subprocess.Popen(["true"])
    dead.wait()
    # what a killed run left in its cgroup: a process whose parent is gone
    orphan = int(
        subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True).stdout
    )
    stale = Path("/sys/fs/cgroup/memory") / f"water-{dead.pid}-0a1b2c3d4e5f"
    live = Path("/sys/fs/cgroup/memory") / f"water-{os.getpid()}-0a1b2c3d4e5f"
    stale.mkdir()
    live.mkdir()
    try:
        (stale / "cgroup.procs").write_text(str(orphan))
        removed = process.remove_stale_cgroups()
        assert stale in removed and not stale.exists()
        assert live.exists() and live not in removed
        assert _all_gone([orphan]) == []
    finally:
        if _running(orphan):
            os.kill(orphan, signal.SIGKILL)
        for folder in (stale, live):
            if folder.exists():
                folder.rmdir()


# --- finding 9: the memory figure is the enforced one ---------------------------------------

SHARED_PAGES = """
import os, time
block = bytearray(200 * 2**20)  # written: resident, then shared copy-on-write by 3 children
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        time.sleep(1.5)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print("done", flush=True)
"""


@pytest.mark.parametrize("enforcement", ["cgroup", "watchdog"])
def test_shared_pages_count_once_in_the_memory_figure(enforcement, monkeypatch, tmp_path):
    """Four processes sharing 200 MiB hold 200 MiB, not 800: RSS summed over them counted the
    shared pages four times (a pod "at 162/120 MiB" that was never killed; under the watchdog,
    a pod killed well within its limit). The figure and the watchdog use what is enforced."""
    if enforcement == "watchdog":
        monkeypatch.setenv("WATER_NO_CGROUP", "1")
    script = tmp_path / "shared.py"
    script.write_text(SHARED_PAGES)
    limit = 450 * 2**20
    result = process.run_limited([sys.executable, str(script)], name="pod", memory_bytes=limit, cpu=1, log=lambda _: None)
    assert result.output[-1] == "done"
    assert 150 * 2**20 < result.peak_rss_bytes < limit, result.peak_rss_bytes
