"""`water new NAME`: the files it writes, the names it refuses, and the label feed a new pipeline gets.

The end-to-end check (validate, run, DagBag) is tests/e2e/test_new_pipeline.py.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from water import lake, seed
from water.cli import scaffold
from water.spec import load_spec


@pytest.fixture()
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
        "include/sql/churn/training_set.sql",
        "include/glue/churn_features.py",
        "include/jobs/churn/preprocess.py",
        "include/jobs/churn/postprocess.py",
        "include/training/churn/train.py",
        "include/training/churn/inference.py",
        "dags/churn.py",
    ]
    for path in created:
        assert "{{" not in path.read_text(), path  # every placeholder filled
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")
    spec = load_spec(project / "include/pipelines/churn.yaml", include_dir=project / "include")
    assert spec.name == "churn" and spec.start_date == date(2026, 11, 20)
    assert spec.publish.table == "ml.churn"  # not the demo's table: two pipelines never overwrite each other
    assert spec.features.script == "glue/churn_features.py"
    assert 'build_pipeline_dag("churn")' in (project / "dags/churn.py").read_text()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Churn", "use snake_case"),
        ("churn-model", "use snake_case"),
        ("2churn", "use snake_case"),
        ("", "use snake_case"),
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


def test_never_overwrites_a_file_of_another_pipeline_part(project):
    stray = project / "include/training/churn/train.py"
    stray.parent.mkdir(parents=True)
    stray.write_text("# mine\n")
    before = tree(project)
    with pytest.raises(scaffold.ScaffoldError, match="include/training/churn/train.py"):
        scaffold.scaffold("churn", project)
    assert tree(project) == before


def test_every_template_has_a_place_and_every_other_place_a_reference_file():
    on_disk = {p.name for p in scaffold.TEMPLATES.iterdir() if p.is_file()}
    assert on_disk == {"spec.yaml", "dag.py"} and on_disk <= set(scaffold.LAYOUT)
    for source, target in scaffold.LAYOUT.items():
        if source not in on_disk:
            assert (ROOT / target.format(name=scaffold.REFERENCE)).is_file(), target


def test_seeding_delivers_the_label_feed_to_each_pipeline(tmp_path):
    warehouse, demo, churn = tmp_path / "warehouse", tmp_path / "lake/recipe_engagement", tmp_path / "lake/churn"
    day = date(2026, 11, 1)
    seed.seed(warehouse, demo, [day], 500)
    events = warehouse / "app/recipe_events/event_date=2026-11-01/part-00000.parquet"
    stamp = events.stat().st_mtime_ns
    result = seed.seed(warehouse, [demo, churn], [day], 500)  # a new pipeline on a seeded day
    assert result.days["2026-11-01"]["written"] is True
    assert events.stat().st_mtime_ns == stamp  # the day's events stay as they were
    labels = [folder / lake.LABELS / "ds=2026-11-01" / "part-00000.parquet" for folder in (demo, churn)]
    assert pq.read_table(labels[0]).equals(pq.read_table(labels[1]))
    assert seed.seed(warehouse, [demo, churn], [day], 500).days["2026-11-01"]["written"] is False
