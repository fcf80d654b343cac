"""Every argument of `water run` (and `water seed`) is checked before anything is deleted,
seeded or started: a bad one exits 2 with a message naming it, and the state folder is as it
was (at HEAD, `--conf '{"force_tier": "huge"}'` failed 43 s in, after deleting the day's
previous run and overwriting its summary; `--users 0` started a run). Issue #12, finding 7;
and a pipeline without a DAG file says which file to write (finding 9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

WATER = str(Path(sys.executable).parent / "water")
PREVIOUS_SUMMARY = '{"dag_id": "recipe_engagement", "ds": "2026-11-01", "state": "success", "tasks": []}'


def water(*args: str, state: Path, project: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "WATER_STATE_DIR": str(state), "WATER_PROJECT_ROOT": str(project), "COLUMNS": "400"}
    return subprocess.run([WATER, *args], capture_output=True, text=True, env=env, timeout=600, check=False)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture
def state(tmp_path) -> Path:
    """A state folder as an earlier run of recipe_engagement's 2026-11-01 left it (its summary;
    the log folder importing Airflow makes)."""
    state = tmp_path / "state"
    (state / "airflow" / "logs").mkdir(parents=True)
    (state / "runs" / "recipe_engagement").mkdir(parents=True)
    (state / "runs" / "recipe_engagement" / "ds=2026-11-01.json").write_text(PREVIOUS_SUMMARY)
    return state


BAD_ARGUMENTS = {
    "conf is a list": (
        ["run", "--conf", "[1, 2]"],
        "--conf must be a JSON object",
    ),
    "conf is not JSON": (
        ["run", "--conf", "{force_tier: medium}"],
        "--conf is not JSON",
    ),
    "a tier the routes do not have": (
        ["run", "--conf", '{"force_tier": "huge"}'],
        "--conf force_tier=\"huge\" is not allowed: 'huge' is not one of ['small', 'medium', 'large']",
    ),
    "a route's tier it does not have": (
        ["run", "--conf", '{"force_tier": {"cook": "huge"}}'],
        '--conf force_tier={"cook": "huge"} is not allowed',
    ),
    "a parameter the DAG does not have": (
        ["run", "--conf", '{"force_teir": "large"}'],
        "--conf 'force_teir' is not a parameter of recipe_engagement (its parameters: force_tier, accept_drift)",
    ),
    "negative users": (["run", "--users", "-5"], "Invalid value for '--users': Input should be greater than or equal to 100"),
    "no users": (["run", "--users", "0"], "Invalid value for '--users': Input should be greater than or equal to 100"),
    "negative retries": (["run", "--retries", "-1"], "Invalid value for '--retries': Input should be greater than or equal to 0"),
    "a date that does not exist": (["run", "--date", "2026-02-30"], "'2026-02-30' is not a date (YYYY-MM-DD)"),
    "a day before the start date": (["run", "--date", "2026-10-01"], "2026-10-01 is before recipe_engagement's start_date"),
    "a mix of the wrong length": (["run", "--mix", "2026-11-01=80/20"], "class mix '80/20' needs 3 shares"),
    "users for a pipeline of fixtures": (
        ["run", "customer_value", "--users", "500"],
        "customer_value's local data are fixtures (sources.*.fixture); --users need a seed entrypoint",
    ),
    "a negative random seed": (
        ["seed", "--seed", "-1"],
        "Invalid value for '--seed': Input should be greater than or equal to 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_a_bad_argument_is_refused_before_anything_changes(case, state):
    args, message = BAD_ARGUMENTS[case]
    before = snapshot(state)
    result = water(*args, state=state)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert snapshot(state) == before  # no DagRun deleted, no summary overwritten, nothing seeded
    assert not (state / "airflow" / "airflow.db").exists()  # no Airflow run was started
    assert "Traceback" not in result.stderr


def test_a_pipeline_without_a_dag_file_says_which_file_to_write(tmp_path, state):
    """A spec whose DAG file is missing: the run names the file and its two lines (at HEAD it
    failed after seeding with `DAG 'customer_value' did not load.` and nothing else)."""
    project = tmp_path / "project"
    (project / "dags").mkdir(parents=True)
    shutil.copytree(ROOT / "include", project / "include")
    (project / "dags" / "recipe_engagement.py").write_text((ROOT / "dags" / "recipe_engagement.py").read_text())
    before = snapshot(state)
    result = water("run", "customer_value", "--date", "2026-11-03", state=state, project=project)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "no DAG file in dags builds 'customer_value' (its spec is include/pipelines/customer_value.yaml)" in message
    assert "Create dags/customer_value.py with:" in message
    assert "from water.factory import build_pipeline_dag" in result.stderr
    assert 'dag = build_pipeline_dag("customer_value")' in result.stderr
    assert snapshot(state) == before
