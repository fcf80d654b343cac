"""End to end: `water new churn` in a copy of the project validates and runs as it is.

A new pipeline reads the same seeded app data as the demo (the label feed lands in its own
lake folder), its DAG loads beside the demo's with the same graph, and it publishes to a
table of its own.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ROOT
from tests.e2e.test_cli import water

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

USERS = 3_000


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
    assert "2 DAGs load, 0 problem(s)" in result.stdout


def test_the_dag_loads_beside_the_demo_with_the_same_graph(project, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    root, _ = project
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(root))
    bag = DagBag(str(root / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dags) == {"recipe_engagement", "churn"}
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
    result = water("run", "churn", "--users", str(USERS), "--json", project=root, state=root / ".water", timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "success"
    states = {t["task_id"]: t["state"] for t in summary["tasks"]}
    assert states["train"] == states["publish"] == "success"
    assert summary["rows_published"] > 0
    labels = root / ".water" / "lake" / "churn" / "engagement_labels" / f"ds={summary['ds']}"
    assert labels.is_dir()  # the label feed reached the new pipeline's lake folder

    from water.local.warehouse import table_rows

    assert table_rows(root / ".water" / "warehouse", "ml.churn") == summary["rows_published"]
