"""End to end: `water new churn` in a copy of the project validates and runs as it is.

A new pipeline reads the same seeded app data as the demo (the label feed lands in its own
lake folder), its DAG loads beside the demo's with the same graph, and it publishes to a
table of its own. One started `--from customer_value` (other classes, tier names, ids and
shape) runs too, and the project's own integrity and contract tests pass with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.runs import RUN_LIMIT, run, water
from water.spec import pipeline_names

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

USERS = 3_000

SHIPPED = pipeline_names()  # this repository's pipelines, beside which churn is made


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("new-pipeline")
    shutil.copytree(ROOT / "include", root / "include")
    shutil.copytree(ROOT / "dags", root / "dags")
    made = water("new", "churn", project=root, state=root / ".water")
    assert made.returncode == 0, made.stdout + made.stderr
    return root, made


def test_new_lists_the_files_and_what_to_run_next(project):
    _, made = project
    for relative in ("include/pipelines/churn.yaml", "include/glue/churn_features.py", "dags/churn.py"):
        assert relative in made.stdout
    assert "water validate" in made.stdout and "water run churn" in made.stdout


def test_names_are_refused_with_exit_2(project):
    root, _ = project
    spec = (root / "include/pipelines/churn.yaml").read_text()
    for name, message in (("churn", "already exists"), ("Churn-2", "use snake_case"), ("import", "Python keyword")):
        result = water("new", name, project=root, state=root / ".water")
        assert result.returncode == 2 and message in result.stderr, (name, result.stderr)
    assert (root / "include/pipelines/churn.yaml").read_text() == spec  # untouched


def test_validate_passes_with_the_new_pipeline(project):
    root, _ = project
    result = water("validate", project=root, state=root / ".water")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   include/pipelines/churn.yaml" in result.stdout
    assert f"{len(SHIPPED) + 2} DAGs load, 0 problem(s)" in result.stdout  # the shipped pipelines, churn and water_control


def test_the_dag_loads_beside_the_demo_with_the_same_graph(project, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    root, _ = project
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(root))
    bag = DagBag(str(root / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dags) == {*SHIPPED, "churn", "water_control"}
    churn, demo = bag.dags["churn"], bag.dags["recipe_engagement"]
    assert churn.fileloc.endswith("dags/churn.py")
    assert {t.task_id for t in churn.tasks} - {"postprocess_medium"} == {t.task_id for t in demo.tasks} - {"postprocess_medium"}
    assert churn.get_task("publish").table == "ml.churn"


def test_a_run_before_the_start_date_is_refused(project):
    root, _ = project
    result = water("run", "churn", "--date", "2000-01-01", project=root, state=root / ".water")
    assert result.returncode == 2
    assert "2000-01-01 is before churn's start_date" in " ".join(result.stderr.split())


def test_run_succeeds_and_publishes_its_own_table(project):
    root, _ = project
    result = water("run", "churn", "--users", str(USERS), "--json", project=root, state=root / ".water", limit=RUN_LIMIT)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "success"
    states = {t["task_id"]: t["state"] for t in summary["tasks"]}
    assert states["train"] == states["publish"] == "success"
    assert summary["rows_published"] > 0
    labels = root / ".water" / "lake" / "churn" / "engagement_labels" / f"ds={summary['ds']}"
    assert labels.is_dir()  # the label feed reached the new pipeline's lake folder

    from tests.helpers import table_rows

    assert table_rows(root / ".water" / "warehouse", "ml.churn") == summary["rows_published"]


@pytest.fixture(scope="module")
def whole_project(tmp_path_factory):
    """A copy of the repository (tests included) with a pipeline started from customer_value."""
    root = tmp_path_factory.mktemp("from-example")
    ignore = shutil.ignore_patterns(".venv", ".water", ".git", "__pycache__", "*.egg-info", "test-artifacts")
    for item in ROOT.iterdir():
        if item.name in (".venv", ".water", ".git") or item.name.endswith(".egg-info"):
            continue
        if item.is_dir():
            shutil.copytree(item, root / item.name, ignore=ignore)
        else:
            shutil.copy2(item, root / item.name)
    made = water("new", "basket", "--from", "customer_value", project=root, state=root / ".water")
    assert made.returncode == 0, made.stdout + made.stderr
    return root


def test_a_pipeline_from_the_second_example_runs(whole_project):
    result = water(
        "run", "basket", "--date", "2026-11-03", "--json", project=whole_project, state=whole_project / ".water", limit=RUN_LIMIT
    )
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "success" and summary["rows_published"] > 0
    assert set(summary["predicted_class_counts"]) == {"vip", "loyal", "occasional", "lapsed"}


def test_the_projects_tests_hold_a_pipeline_of_another_shape(whole_project):
    """`make test`'s integrity and contract tests take their expectations from each spec:
    a pipeline with other classes and tier names keeps them green."""
    env = {**os.environ, "WATER_PROJECT_ROOT": str(whole_project), "WATER_STATE_DIR": str(whole_project / ".water")}
    argv = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/dags", "tests/contract"]
    result = run([*argv, "-k", "basket or not (recipe_engagement or customer_value)"], cwd=whole_project, env=env, limit=1200)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"^tests/dags/\S+\[\S*basket\S*\] PASSED", result.stdout, re.M), "no integrity test ran on basket"
