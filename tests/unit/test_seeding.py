"""A pipeline's local data from its spec: fixtures loaded as they are, the seed entrypoint run
with the pipeline's own classes, both idempotent; what the data cannot do is refused."""

from __future__ import annotations

import re
import shutil
from datetime import date

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT
from water.cli.seeding import SeedError, load_fixtures, parse_mix, seed_pipeline
from water.spec import load_spec

SPEC = {
    "name": "shop",
    "description": "a pipeline on fixtures",
    "owner": "t",
    "start_date": "2026-11-01",
    "classes": ["a", "b", "c", "d"],
    "sources": {
        "shop.orders": {"fixture": "data/shop/orders.csv"},
        "labels": {"fixture": "data/shop/labels.csv", "label_column": "klass"},
    },
    "steps": {
        "daily": {"kind": "bigquery_sql", "sql": "sql/shop/daily.sql", "reads": ["shop.orders"], "writes": "daily"},
        "joined": {"kind": "athena_sql", "sql": "sql/shop/joined.sql", "reads": ["daily", "labels"], "writes": "joined"},
    },
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    include = tmp_path / "include"
    (include / "pipelines").mkdir(parents=True)
    (include / "data/shop").mkdir(parents=True)
    (include / "sql/shop").mkdir(parents=True)
    (include / "data/shop/orders.csv").write_text(
        "order_id,customer,order_date,amount\nO-1,C-1,2026-11-01,9.5\nO-2,C-2,2026-11-02,3.0\n"
    )
    (include / "data/shop/labels.csv").write_text("ds,customer,klass\n2026-11-01,C-1,a\n2026-11-02,C-1,b\n2026-11-02,C-2,c\n")
    (include / "sql/shop/daily.sql").write_text("SELECT * FROM `shop.orders` WHERE order_date = @ds")
    (include / "sql/shop/joined.sql").write_text("SELECT * FROM daily JOIN labels USING (customer) WHERE daily.ds = ?")
    (include / "pipelines/shop.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path / ".water"))
    monkeypatch.delenv("WATER_LAKE", raising=False)
    monkeypatch.delenv("WATER_WAREHOUSE", raising=False)
    return tmp_path


def test_fixtures_land_as_warehouse_tables_and_ds_partitions(project):
    spec = load_spec(project / "include/pipelines/shop.yaml", include_dir=project / "include")
    warehouse, lake = project / ".water/warehouse", project / ".water/lake/shop"
    written = load_fixtures(spec, warehouse, lake)
    assert written == ["shop.orders: 2 rows", "labels/ds=2026-11-01: 1 rows", "labels/ds=2026-11-02: 2 rows"]
    orders = pq.read_table(warehouse / "shop/orders/part-00000.parquet")
    assert orders.column("order_id").to_pylist() == ["O-1", "O-2"]  # string ids stay strings
    assert str(orders.schema.field("order_date").type) == "date32[day]"
    day = pq.read_table(lake / "labels/ds=2026-11-02/part-00000.parquet")
    assert day.column_names == ["customer", "klass"] and day.num_rows == 2  # ds is the folder
    stamp = (lake / "labels/ds=2026-11-02/part-00000.parquet").stat().st_mtime_ns
    assert load_fixtures(spec, warehouse, lake) == []  # idempotent: nothing rewritten
    assert (lake / "labels/ds=2026-11-02/part-00000.parquet").stat().st_mtime_ns == stamp


def test_a_lake_fixture_without_ds_is_refused_naming_the_source(project):
    (project / "include/data/shop/labels.csv").write_text("customer,klass\nC-1,a\n")
    spec = load_spec(project / "include/pipelines/shop.yaml", include_dir=project / "include")
    with pytest.raises(SeedError, match=r"sources\.labels\.fixture: include/data/shop/labels.csv needs a ds column"):
        load_fixtures(spec, project / "w", project / "l")


def test_a_mix_needs_a_seed_entrypoint(project):
    spec = load_spec(project / "include/pipelines/shop.yaml", include_dir=project / "include")
    with pytest.raises(SeedError, match="--mix need a seed entrypoint"):
        seed_pipeline(spec, [date(2026, 11, 1)], mixes={date(2026, 11, 1): {"a": 1.0}})


@pytest.mark.parametrize(
    ("text", "shares"),
    [
        ("40/30/20/10", {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}),
        ("a=1,d=1", {"a": 0.5, "b": 0.0, "c": 0.0, "d": 0.5}),
        ("b:3,c:1", {"a": 0.0, "b": 0.75, "c": 0.25, "d": 0.0}),
    ],
)
def test_mix_follows_the_pipelines_classes(text, shares):
    assert parse_mix(text, ["a", "b", "c", "d"]) == pytest.approx(shares)


@pytest.mark.parametrize(
    ("text", "message"),
    [("80/15/5", "needs 4 shares, in the order a/b/c/d"), ("cook=1", "names ['cook']"), ("0/0/0/0", "positive sum")],
)
def test_a_bad_mix_says_what_it_needs(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_mix(text, ["a", "b", "c", "d"])


def test_the_demo_seed_entrypoint_gets_the_mix_in_its_classes(tmp_path, monkeypatch):
    """The demo's own seeder, run as water runs it: the day's segments follow the mix asked for."""
    for folder in ("include", "dags"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path / ".water"))
    monkeypatch.delenv("WATER_LAKE", raising=False)
    monkeypatch.delenv("WATER_WAREHOUSE", raising=False)
    spec = load_spec(tmp_path / "include/pipelines/recipe_engagement.yaml", include_dir=tmp_path / "include")
    day = date(2026, 11, 2)
    lines: list[str] = []
    seed_pipeline(spec, [day], users=2_000, mixes={day: parse_mix("80/15/5", spec.classes)}, progress=lines.append)
    assert any("2,000 users" in line and "mix 80%/15%/5%" in line for line in lines), lines
    labels = pq.read_table(tmp_path / ".water/lake/recipe_engagement/engagement_labels/ds=2026-11-02/part-00000.parquet")
    segments = labels.column("segment").to_pylist()
    assert segments.count("cook") / len(segments) == pytest.approx(0.8, abs=0.06)
    lines.clear()
    seed_pipeline(spec, [day], users=2_000, mixes={day: parse_mix("80/15/5", spec.classes)}, progress=lines.append)
    assert any("already there" in line for line in lines), lines  # idempotent


def test_a_label_outside_the_classes_stops_the_first_reader_of_any_kind(project):
    """Locally, every step that reads a label source checks its values first: SQL or pod."""
    from water.targets.local.target import LocalTarget

    spec_data = {
        **SPEC,
        "steps": {
            **SPEC["steps"],
            "score": {
                "kind": "pod",
                "entrypoint": "sql/shop/daily.sql",
                "reads": {"labels": "labels"},
                "writes": {"out": "scored"},
                "resources": {"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}},
            },
        },
    }
    (project / "include/pipelines/shop.yaml").write_text(yaml.safe_dump(spec_data, sort_keys=False))
    spec = load_spec(project / "include/pipelines/shop.yaml", include_dir=project / "include")
    target = LocalTarget.from_environment()
    load_fixtures(spec, target.source_folder(spec, "shop.orders").parents[1], target.source_folder(spec, "labels").parent)
    daily = target.build(spec, "daily", spec.steps["daily"]).head
    joined = target.build(spec, "joined", spec.steps["joined"]).head
    assert daily.execute({"ds": "2026-11-02"})["rows_out"] == 1
    assert joined.execute({"ds": "2026-11-02"})["rows_out"] == 1  # labels a, b, c: all classes

    (project / "include/data/shop/labels.csv").write_text("ds,customer,klass\n2026-11-02,C-2,zz\n2026-11-02,C-1,a\n")
    load_fixtures(spec, target.source_folder(spec, "shop.orders").parents[1], target.source_folder(spec, "labels").parent)
    for name in ("joined", "score"):
        with pytest.raises(
            ValueError, match=re.escape("source labels ds=2026-11-02: klass holds ['zz'], which are not among the spec's classes")
        ):
            target.build(spec, name, spec.steps[name]).head.execute({"ds": "2026-11-02"})
    daily.execute({"ds": "2026-11-01"})
    assert joined.execute({"ds": "2026-11-01"})["rows_out"] >= 1  # another day's labels are fine
