"""The SQL files are valid in their production dialects and translate for DuckDB."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from tests.conftest import ROOT
from water.spec import load_spec
from water.targets.local.engines.sql import date_literal, string_literal, translate

SPECS = sorted((ROOT / "include" / "pipelines").glob("*.yaml"))
DIALECTS = {"bigquery_sql": "bigquery", "athena_sql": "trino"}  # the SQL kinds and their dialects
SQL_FILES = [
    (f"{s.stem}.{name}", DIALECTS[step.kind], step.sql)
    for s in SPECS
    for name, step in load_spec(s).steps.items()
    if step.kind in DIALECTS
]


def test_every_sql_kind_is_covered():
    """Both SQL kinds appear among the pipelines' steps, so neither dialect goes unchecked."""
    assert {dialect for _, dialect, _ in SQL_FILES} == set(DIALECTS.values())


@pytest.mark.parametrize(("pipeline", "dialect", "sql"), SQL_FILES, ids=[f"{p}:{d}" for p, d, _ in SQL_FILES])
def test_sql_parses_in_its_own_dialect(pipeline, dialect, sql):
    text = (ROOT / "include" / sql).read_text()
    statements = sqlglot.parse(text, read=dialect, error_level=ErrorLevel.RAISE)
    assert len(statements) == 1
    # It round-trips through its own dialect, so the file is what production will run.
    assert sqlglot.parse_one(statements[0].sql(dialect=dialect), read=dialect, error_level=ErrorLevel.RAISE)


def test_bigquery_parameter_is_bound_as_a_date():
    sql, tables = translate("SELECT * FROM `app.t` WHERE d = @ds", "bigquery", {"ds": date_literal("2026-11-01")})
    assert "CAST('2026-11-01' AS DATE)" in sql and "@ds" not in sql
    assert tables == [("app", "t")]


def test_trino_placeholders_are_bound_in_order():
    sql, _ = translate("SELECT * FROM t WHERE a = ? AND b = ?", "trino", positional=[string_literal("x"), string_literal("y")])
    assert sql.endswith("a = 'x' AND b = 'y'")


def test_parameter_count_mismatch_is_an_error():
    with pytest.raises(KeyError, match="no value"):
        translate("SELECT * FROM `a.t` WHERE d = @day", "bigquery", {"ds": date_literal("2026-11-01")})
    with pytest.raises(KeyError, match="left over"):
        translate("SELECT 1 FROM t", "trino", positional=[string_literal("x")])


def test_cte_names_are_not_tables():
    _, tables = translate("WITH x AS (SELECT 1 AS a) SELECT * FROM x JOIN `d.y` ON true", "bigquery")
    assert tables == [("d", "y")]


def test_a_table_is_its_committed_partitions_not_another_runs_staging(tmp_path):
    """Two runs at once (a manual run and a scheduled one): one run's query must not read the
    `.staging-ds=…` folder the other run's stage is writing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from water.targets.local.engines.sql import folder_table, run_to_parquet

    features = tmp_path / "features"
    for folder, user in (("ds=2026-11-01", 1), ("ds=2026-11-02", 2), (".staging-ds=2026-11-03-abc", 3), ("_tmp", 4)):
        (features / folder).mkdir(parents=True)
        pq.write_table(pa.table({"user_id": [user]}), features / folder / "part-0.parquet")
    files, _ = folder_table(features, "features", {"ds": "VARCHAR"})
    assert [f.split("/")[-2] for f in files] == ["ds=2026-11-01", "ds=2026-11-02"]
    rows = run_to_parquet(
        "SELECT user_id, ds FROM features",
        "trino",
        tmp_path / "out.parquet",
        lambda schema, name: folder_table(features, name, {"ds": "VARCHAR"}),
    )
    assert rows == 2
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == [
        {"user_id": 1, "ds": "2026-11-01"},
        {"user_id": 2, "ds": "2026-11-02"},
    ]
