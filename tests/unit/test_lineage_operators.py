"""The OpenLineage facets of water's target-agnostic operators that read or write the lake: the
quality gate, the drift guard and its quarantine, the run report (the sizing branch reads XCom
only, and reports no datasets)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from openlineage.client.serde import Serde

from tests.completions import report_operator
from tests.guarded import CALM, GUARDED, HELD_BACK, PIPELINE, STATS, SWING, judge
from water import lake as lake_layout
from water.lineage import lake_dataset
from water.operators.quality import QualityGateOperator
from water.quality import Gates
from water.spec import DatasetChecks
from water.targets.local.engines.partitions import file_uri

DS = "2026-11-02"


def as_dicts(op) -> tuple[list[dict], list[dict]]:
    lineage = op.get_openlineage_facets_on_complete(None)
    return [Serde.to_dict(d) for d in lineage.inputs], [Serde.to_dict(d) for d in lineage.outputs]


def named(datasets: list[dict]) -> list[str]:
    return [d["name"].rsplit(f"/{PIPELINE}/", 1)[-1] for d in datasets]


def test_the_gate_reads_the_staged_output_with_its_columns_and_rows(tmp_path, task_context):
    root = file_uri(tmp_path / "lake")
    folder = tmp_path / "lake" / "p" / "raw_staging" / f"ds={DS}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": [1, 2, 3], "segment": ["a", "b", None]}), folder / "part-00000.parquet")
    gate = QualityGateOperator(
        task_id="extract_checks",
        gates=Gates("extract", {"raw": ("parquet", DatasetChecks(min_rows=1))}),
        pipeline="p",
        lake_root=root,
        locations={"raw": "raw_staging"},
    )
    gate.execute(task_context(DS))
    inputs, outputs = as_dicts(gate)
    assert outputs == []  # a gate writes nothing
    (read,) = inputs
    assert (read["namespace"], read["name"]) == lake_dataset(root, "p", "raw_staging")
    assert read["facets"]["version"]["datasetVersion"] == f"ds={DS}"
    assert {f["name"]: f["type"] for f in read["facets"]["schema"]["fields"]} == {"user_id": "integer", "segment": "string"}
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 3


def test_the_guard_reads_the_stats_and_writes_its_verdict_beside_them(guard, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    inputs, outputs = as_dicts(guard)
    assert named(inputs) == [STATS] and outputs == []  # a day let through: the guard wrote no dataset
    assert inputs[0]["inputFacets"]["inputStatistics"]["rowCount"] == sum(CALM.values())
    assert inputs[0]["facets"]["version"]["datasetVersion"] == "ds=2026-11-01"


def test_the_quarantine_moves_the_guarded_partition(guard, quarantine, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    folder = guard.store.partition(GUARDED, DS)
    folder.mkdir(parents=True)
    (folder / "part-0.csv.out").write_text("cook,0.9\n")
    _, record = judge(guard, task_context, DS, SWING)
    quarantine.execute(task_context(DS, {(guard.task_id, "drift"): record}))
    inputs, outputs = as_dicts(quarantine)
    # read: the guarded partition it moved; written: the step's output (DriftGuardStep.outputs)
    assert named(inputs) == [GUARDED] and named(outputs) == [HELD_BACK]
    assert inputs[0]["facets"]["version"]["datasetVersion"] == f"ds={DS}"
    assert outputs[0]["outputFacets"]["outputStatistics"]["rowCount"] == sum(SWING.values())
    assert outputs[0]["facets"]["version"]["datasetVersion"] == f"ds={DS}"


def test_an_accepted_day_releases_the_quarantined_partition(guard, quarantine, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    _, record = judge(guard, task_context, DS, SWING)
    quarantine.execute(task_context(DS, {(guard.task_id, "drift"): record}))
    judge(guard, task_context, DS, SWING, accept_drift=True)
    _, outputs = as_dicts(guard)
    assert named(outputs) == [HELD_BACK]
    assert outputs[0]["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "TRUNCATE"


def test_the_report_writes_the_days_report(tmp_path):
    from water.spec import load_pipeline

    spec = load_pipeline("recipe_engagement")
    root = file_uri(tmp_path / "lake")
    op = report_operator(spec, root)
    op.lineage_ds = DS  # as execute keeps it
    inputs, outputs = as_dicts(op)
    reports = lake_dataset(root, spec.name, lake_layout.REPORTS)
    assert [(d["namespace"], d["name"]) for d in outputs] == [reports] == [(d["namespace"], d["name"]) for d in inputs]
    assert outputs[0]["facets"]["version"]["datasetVersion"] == f"ds={DS}"
