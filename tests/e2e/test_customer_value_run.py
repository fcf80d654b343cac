"""End to end: the second example, `customer_value`, on its shipped fixtures.

Another shape than the demo (no Glue, two Athena SQL steps, training and scoring in pods,
4 classes, string ids, tiers compact/wide): it runs with `water run` as it is, every
customer is scored and published exactly once, and a label outside its classes stops the
first step that reads the labels, naming them.
"""

from __future__ import annotations

import json

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.e2e.runs import RUN_LIMIT, edit, water
from tests.helpers import table_rows
from tests.lineage import check_run, load_events, local_target, schema_errors, task_events
from water.spec import load_pipeline

pytestmark = pytest.mark.e2e

DS = "2026-11-03"
SPEC = load_pipeline("customer_value")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    state = tmp_path_factory.mktemp("customer-value-state")
    result = water("run", "customer_value", "--date", DS, "--json", state=state, limit=RUN_LIMIT)
    assert result.returncode == 0, result.stderr[-5000:]
    return json.loads(result.stdout), state


def test_runs_as_shipped(run):
    summary, _ = run
    assert summary["state"] == "success"
    states = {t["task_id"]: t["state"] for t in summary["tasks"]}
    for name in SPEC.steps:
        if SPEC.steps[name].kind != "sized_postprocess":
            assert states[name] == "success", name
    tiers = [t.name for t in SPEC.step_of("sized_postprocess")[1].sizing.tiers]
    assert summary["sizing"]["tier"] in tiers  # its own tier names, not the demo's
    assert summary["validation_accuracy"] >= 0.6  # read from the training pod's log
    assert set(summary["predicted_class_counts"]) == set(SPEC.classes)


def test_every_customer_is_published_exactly_once_with_its_string_key(run, tmp_path):
    summary, state = run
    from tests.conftest import ROOT

    customers = pacsv.read_csv(ROOT / "include/data/customer_value/customers.csv").column("customer_key").to_pylist()
    outputs = pq.read_table(state / "lake/customer_value/outputs" / f"ds={DS}")
    keys = outputs.column("customer_key").to_pylist()
    assert sorted(keys) == sorted(customers) and len(set(keys)) == len(keys)
    assert all(isinstance(k, str) and k.startswith("C-") for k in keys)
    table = SPEC.step_of("publish")[1].table
    assert table_rows(state / "warehouse", table, DS) == len(customers) == summary["rows_published"]


def test_a_label_outside_the_classes_fails_the_first_step_that_reads_it(tmp_path):
    import shutil

    from tests.conftest import ROOT

    for folder in ("include", "dags"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    labels = tmp_path / "include/data/customer_value/value_labels.csv"
    first = next(line for line in labels.read_text().splitlines() if line.startswith(f"{DS},"))
    edit(tmp_path, "include/data/customer_value/value_labels.csv", first, first.rsplit(",", 1)[0] + ",platinum_")
    result = water("run", "customer_value", "--date", DS, project=tmp_path, state=tmp_path / ".water", limit=RUN_LIMIT)
    assert result.returncode == 1
    summary = json.loads(next((tmp_path / ".water/runs/customer_value").glob(f"ds={DS}.json")).read_text())
    failed = [t["task_id"] for t in summary["tasks"] if t["state"] == "failed"]
    reader = next(n for n, s in SPEC.steps.items() if "value_labels" in s.inputs())
    assert failed == [reader]
    log = " ".join(result.stderr.split())
    assert "value_labels" in log and "platinum_" in log and "not among the spec's classes" in log
    assert not (tmp_path / ".water/lake/customer_value/outputs").exists()  # nothing published


def test_catalog_ddl_follows_from_the_spec_and_the_local_run(run):
    """`water catalog`: one external table per dataset the Athena SQL reads, in the pipeline's
    own database, with the columns the local run wrote (the same SQL production runs)."""
    import sqlglot
    from sqlglot import exp

    _, state = run
    result = water("catalog", "customer_value", "--lake", "s3://acme-ml-lake/water", state=state)
    assert result.returncode == 0, result.stderr
    statements = sqlglot.parse(result.stdout, read="hive")
    tables = {st.this.this.name: st for st in statements[1:]}
    reads = [d for s in SPEC.steps_of("athena_sql").values() for d in s.reads]
    assert set(tables) == set(reads)
    assert statements[0].this.name == SPEC.database == "water_customer_value"
    for name, statement in tables.items():
        assert statement.this.this.db == SPEC.database
        columns = [c.name for c in statement.this.expressions if isinstance(c, exp.ColumnDef)]
        local = pq.read_schema(next((state / "lake/customer_value" / name / f"ds={DS}").rglob("*.parquet")))
        assert columns == [f for f in local.names if f != "ds"], name
        assert f"s3://acme-ml-lake/water/customer_value/{name}/" in result.stdout


def test_catalog_before_any_local_run_says_what_to_do(tmp_path):
    result = water("catalog", "customer_value", state=tmp_path)
    assert result.returncode == 1 and "run `water run customer_value` first" in " ".join(result.stderr.split())


def test_lineage_events_validate_against_the_openlineage_spec(run):
    """The run's OpenLineage events (docs/lineage.md), in <state>/lineage/events.jsonl: every one
    validates against the spec's schema, and every task that succeeded has its COMPLETE event."""
    summary, state = run
    events = load_events(state)
    problems = {f"{e['job']['name']} {e['eventType']}": errors for e in events if (errors := schema_errors(e))}
    assert problems == {}
    succeeded = {t["task_id"] for t in summary["tasks"] if t["state"] == "success"}
    assert succeeded - set(task_events(events, SPEC.name, summary["run_id"])) == set()


def test_every_step_reports_what_it_read_and_wrote_and_the_graph_joins(run):
    """Every step's task names its inputs and outputs as water.lineage does, what one step writes
    is what the next reads (namespace and name), and no task carries another step's datasets
    (the run's tasks share one process)."""
    summary, state = run
    succeeded = {t["task_id"] for t in summary["tasks"] if t["state"] == "success"}
    assert check_run(load_events(state), SPEC, local_target(state), summary["run_id"], succeeded) == []
