"""The `water` command as a person uses it: exit codes and what it says when things go wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ROOT
from tests.e2e.runs import RUN_LIMIT, edit, water

SPEC = "include/pipelines/recipe_engagement.yaml"


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "include", tmp_path / "include")
    shutil.copytree(ROOT / "dags", tmp_path / "dags")
    return tmp_path


def test_version_and_help():
    assert water("--version").stdout.strip().startswith("water ")
    help_text = water("--help").stdout
    panels = {}  # panel title -> the commands listed under it
    for line in help_text.splitlines():
        if line.startswith("╭─"):
            title = line.strip("╭─╮ ").strip()
            panels[title] = []
        elif line.startswith("│ ") and panels and not line[2:].startswith(" "):
            panels[list(panels)[-1]].append(line[2:].split()[0])
    assert {"run", "seed", "validate", "new"} <= set(panels["Local"])
    assert panels["Cluster"] == ["pods", "logs", "edit"]
    assert panels["Deploy"] == ["catalog", "deploy"]
    assert "Exit codes: 0 success" in help_text and "127" in help_text


def test_validate_passes_on_the_repository():
    result = water("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problem(s)" in result.stdout and "0 problem(s)" in result.stdout


def test_validate_names_file_and_field(project):
    edit(project, SPEC, "worker_type: G.1X", "worker_type: G.3X")
    result = water("validate", project=project, state=project / ".water")
    assert result.returncode == 1
    assert SPEC in result.stdout
    assert "features.worker_type" in result.stdout


def test_run_with_a_bad_spec_exits_2_naming_file_and_field(project):
    edit(project, SPEC, "memory: 1Gi", "memory: 1 GB")
    result = water("run", project=project, state=project / ".water", migrated=False)
    assert result.returncode == 2
    assert not (project / ".water" / "airflow").exists()  # refused before Airflow is set up
    assert SPEC in result.stderr
    assert "preprocess.resources.limits.memory" in result.stderr


def test_bad_date_is_refused():
    result = water("run", "--date", "2026-13-01")
    assert result.returncode == 2 and "is not a date" in result.stderr


@pytest.mark.e2e
def test_failed_run_exits_1_naming_the_task_and_its_error(project):
    edit(project, "include/sql/recipe_engagement/extract.sql", "`app.recipe_events`", "`app.recipe_event`")
    result = water("run", "--users", "500", "--json", project=project, state=project / ".water", limit=RUN_LIMIT)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["state"] == "failed"
    states = {t["task_id"]: t["state"] for t in summary["tasks"]}
    assert states["extract"] == "failed" and states["features"] == "upstream_failed"
    assert "run failed at extract" in result.stderr
    assert "table app.recipe_event has no Parquet files" in result.stderr  # the log tail
    # The run report ran after the failure (a teardown) without turning the run into a success.
    assert states["run_report"] == "success"
    report = project / ".water" / "lake" / "recipe_engagement" / "reports" / "ds=2026-11-01" / "report.html"
    assert "FAILED" not in report.read_text() and ">failed<" in report.read_text()
    # No Slack connection here: start and failure went to the outbox, and to the terminal.
    outbox = [json.loads(line) for line in (project / ".water" / "outbox" / "slack.jsonl").read_text().splitlines()]
    assert [m["kind"] for m in outbox] == ["start", "failure"]
    failure = outbox[1]["text"]
    assert failure.splitlines()[0] == "❌ recipe_engagement ds=2026-11-01 FAILED at extract"
    assert "log of extract: http" in failure and "/tasks/extract" in failure
    assert "✉ ❌ recipe_engagement ds=2026-11-01 FAILED at extract (outbox)" in result.stderr
