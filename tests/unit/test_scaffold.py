"""`water new NAME [--from EXAMPLE]`: the files it writes, the names it refuses, its local data.

The end-to-end check (validate, run, DagBag) is tests/e2e/test_new_pipeline.py.
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import ROOT
from water.cli import scaffold
from water.spec import load_spec, pipeline_names


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "include", tmp_path / "include")
    shutil.copytree(ROOT / "dags", tmp_path / "dags")
    return tmp_path


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_scaffold_writes_a_valid_pipeline_in_the_project_layout(project):
    created = scaffold.scaffold("churn", project, today=date(2026, 11, 20))
    assert [str(p.relative_to(project)) for p in created] == [
        "include/pipelines/churn.yaml",
        "include/sql/churn/extract.sql",
        "include/glue/churn_features.py",
        "include/sql/churn/training_set.sql",
        "include/jobs/churn/preprocess.py",
        "include/training/churn/train.py",
        "include/training/churn/inference.py",
        *(f"include/jobs/churn/{route}.py" for route in ("weekly_menu", "first_cook_nudge", "win_back")),
        "include/jobs/churn/route_lists.py",  # the routes' helper module travels with them
        "dags/churn.py",
    ]
    for path in created:
        assert "{{" not in path.read_text(), path  # every placeholder filled
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")
    spec = load_spec(project / "include/pipelines/churn.yaml", include_dir=project / "include")
    demo = load_spec(project / "include/pipelines/recipe_engagement.yaml", include_dir=project / "include")
    assert spec.name == "churn" and spec.start_date == date(2026, 11, 20)
    assert spec.steps["publish"].table == "ml.churn"  # not the demo's table: two pipelines never overwrite each other
    assert spec.steps["features"].script == "glue/churn_features.py"
    assert spec.sources == demo.sources and spec.local_data == demo.local_data  # the demo's local data
    assert list(spec.steps) == list(demo.steps)
    assert 'build_pipeline_dag("churn")' in (project / "dags/churn.py").read_text()
    assert "water new churn --from recipe_engagement" in (project / "include/pipelines/churn.yaml").read_text()


@pytest.mark.parametrize("example", pipeline_names())
def test_every_shipped_example_scaffolds_a_valid_pipeline(project, example):
    created = scaffold.scaffold("fresh", project, today=date(2026, 11, 20), example=example)
    spec = load_spec(project / "include/pipelines/fresh.yaml", include_dir=project / "include")
    original = load_spec(project / f"include/pipelines/{example}.yaml", include_dir=project / "include")
    assert list(spec.steps) == list(original.steps) and spec.classes == original.classes
    for name, step in spec.steps.items():  # every script is the new pipeline's own copy
        if step.artifact():
            assert step.artifact() != original.steps[name].artifact()
            assert (project / "include" / step.artifact()) in created
    tables = {s.table for s in spec.steps_of("publish").values()}
    assert all(t.startswith("ml.fresh") for t in tables)


def test_an_unknown_example_is_refused(project):
    before = tree(project)
    with pytest.raises(scaffold.ScaffoldError, match="no pipeline 'nope' to start from"):
        scaffold.scaffold("churn", project, example="nope")
    assert tree(project) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Churn", "use snake_case"),
        ("churn-model", "use snake_case"),
        ("2churn", "use snake_case"),
        ("", "use snake_case"),
        ("churn\n", "use snake_case"),  # re.match's `$` matched before a trailing newline
        ("churn\nx", "use snake_case"),
        ("c" * 65, "is 65 characters long; a pipeline name may have at most 64"),
        ("class", "is a Python keyword"),
        ("match", "is a Python keyword"),
        ("json", "is the name of a Python module"),
        ("airflow", "is the name of a Python module"),
        ("water", "is the name of a Python module"),
        ("recipe_engagement", "already exists"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(project, name, message):
    before = tree(project)
    with pytest.raises(scaffold.ScaffoldError, match=message):
        scaffold.scaffold(name, project)
    assert tree(project) == before


def test_a_taken_name_already_exists_where_dags_is_on_sys_path(project, monkeypatch):
    """A process that parsed the DAGs has dags/ on sys.path (Airflow puts it there): a DAG file
    dags/recipe_engagement.py, the repository's or the project's, is found as a module, and the
    name is still "already exists"."""
    for dags in (ROOT / "dags", project / "dags"):
        monkeypatch.syspath_prepend(str(dags))
        with pytest.raises(scaffold.ScaffoldError, match="already exists"):
            scaffold.scaffold("recipe_engagement", project)


def test_never_overwrites_a_file_of_another_pipeline_part(project):
    stray = project / "include/training/churn/train.py"
    stray.parent.mkdir(parents=True)
    stray.write_text("# mine\n")
    before = tree(project)
    with pytest.raises(scaffold.ScaffoldError, match=re.escape("include/training/churn/train.py")):
        scaffold.scaffold("churn", project)
    assert tree(project) == before


def test_the_dag_template_is_the_only_template():
    assert {p.name for p in scaffold.TEMPLATES.iterdir() if p.is_file()} == {"dag.py"}
