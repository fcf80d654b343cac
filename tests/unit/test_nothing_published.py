"""A run that publishes nothing for a day retracts that day's earlier outputs (or keeps them,
by the publish step's `when_nothing_published`), and the summary, the report and Slack say which.

Finding 3: a no_predictions or quarantined re-run of a day left that day's earlier outputs
partition and warehouse rows in place while the run said "nothing published". The DAG and
its operators are those water.factory builds with the local target (tests/routes.py's
pipeline, no Spark, no Airflow database); the demo's spec shows where the retraction sits
when a drift guard can quarantine the day too.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import routes
from tests.helpers import table_rows
from water import report
from water.targets.local.engines.partitions import file_uri
from water.targets.local.engines.warehouse import publish_partition, retract_partition

DS, NEXT_DS = "2026-11-01", "2026-11-02"
TABLE = "ml.routed_lists"


def built(tmp_path, **publish):
    """(spec, DAG, lake folder, warehouse folder) of the routed pipeline, its publish step changed by `publish`."""
    from water.factory import build_dag
    from water.targets.local.target import LocalTarget

    data = routes.spec_data()
    data["steps"]["publish"].update(publish)
    spec = routes.load_project(tmp_path / "project", data)
    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    return spec, build_dag(spec, target), tmp_path / "lake" / spec.name, tmp_path / "warehouse"


def outputs_written(lake, ds: str, rows: int):
    """A day's committed post-processing output, as the commit leaves it."""
    folder = lake / "outputs" / f"ds={ds}" / "class=cook"
    folder.mkdir(parents=True)
    ids = [f"u-{ds}-{i}" for i in range(rows)]
    pq.write_table(pa.table({"id": ids, "campaign": ["weekly_menu"] * rows}), folder / "part-0.parquet")
    return folder.parent


def published_day(dag, lake, task_context, ds: str, rows: int) -> None:
    outputs_written(lake, ds, rows)
    assert dag.get_task("publish").execute(task_context(ds))["rows_out"] == rows


def no_predictions_rerun(dag, spec, task_context, ds: str) -> dict:
    """The day again, with no predictions: the sizing branch ends it at no_predictions."""
    name, step = spec.step_of("sized_postprocess")
    zero = {"rows": 0, "class_counts": dict.fromkeys(spec.classes, 0)}
    context = task_context(ds, {("inference_stats", "return_value"): zero})
    assert dag.get_task(step.size_task_id(name)).choose_branch(context) == [step.no_predictions_task_id]
    assert dag.get_task(step.no_predictions_task_id).execute(context)["flag"] == "no_predictions"
    return context


def test_a_no_predictions_rerun_retracts_the_days_rows_and_outputs_partition(tmp_path, task_context):
    spec, dag, lake, warehouse = built(tmp_path)
    published_day(dag, lake, task_context, DS, 30)
    published_day(dag, lake, task_context, NEXT_DS, 20)
    assert table_rows(warehouse, TABLE, DS) == 30

    context = no_predictions_rerun(dag, spec, task_context, DS)
    retract = dag.get_task("retract_publish")
    assert "no_predictions" in retract.upstream_task_ids  # it runs after the day ended unpublished
    figures = retract.execute(context)

    assert table_rows(warehouse, TABLE, DS) == 0  # the day's earlier rows are gone
    assert not (lake / "outputs" / f"ds={DS}").exists()  # and its outputs partition
    assert table_rows(warehouse, TABLE, NEXT_DS) == 20 and (lake / "outputs" / f"ds={NEXT_DS}").is_dir()  # other days stay
    assert (figures["flag"], figures["rows_retracted"], figures["table"]) == ("retracted", 30, TABLE)
    assert figures["partition_removed"].endswith(f"/outputs/ds={DS}")
    again = retract.execute(context)  # a retry finds nothing left and says so
    assert (again["rows_retracted"], again["partition_removed"]) == (0, None)


def test_keep_leaves_the_days_earlier_outputs_and_builds_no_retraction(tmp_path, task_context):
    spec, dag, lake, warehouse = built(tmp_path, when_nothing_published="keep")
    published_day(dag, lake, task_context, DS, 30)
    no_predictions_rerun(dag, spec, task_context, DS)
    assert not [t for t in dag.task_ids if t.startswith("retract_")]
    assert table_rows(warehouse, TABLE, DS) == 30 and (lake / "outputs" / f"ds={DS}").is_dir()
    assert spec.roles()["nothing_published"] == {
        "endings": ["no_predictions"],
        "setting": "keep",
        "retract": None,
        "table": TABLE,
        "dataset": "outputs",
    }


def test_the_retraction_runs_only_after_a_day_ended_unpublished_and_nothing_failed():
    """The demo: after quarantine or no_predictions, neither of which runs on a published day;
    a failed step before them leaves it upstream_failed, so a failed run keeps the previous
    good partition."""
    from water.factory import build_dag
    from water.spec import load_pipeline
    from water.targets.local.target import LocalTarget

    spec = load_pipeline("recipe_engagement")
    dag = build_dag(spec, LocalTarget(lake_root="file:///nowhere/lake", warehouse_dir="/nowhere/warehouse"))
    retract = dag.get_task("retract_publish")
    assert retract.upstream_task_ids == {"quarantine", "no_predictions"}
    assert retract.trigger_rule == "none_failed_min_one_success"
    assert retract.downstream_task_ids == {"run_report"}
    assert "retract_publish" not in dag.get_task("publish").get_flat_relative_ids(upstream=False)


def test_a_publish_nothing_can_stop_before_gets_no_retraction(tmp_path):
    """Without a quarantine or no_predictions before it, a retraction would run every day."""
    from water.factory import build_dag
    from water.targets.local.target import LocalTarget

    data = routes.spec_data()
    data["steps"] = {"publish": {"kind": "publish", "reads": "predictions", "table": TABLE}}
    spec = routes.load_project(tmp_path / "project", data)
    assert spec.nothing_published_endings("publish") == [] and not spec.retracts("publish")
    dag = build_dag(spec, LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "w")))
    assert set(dag.task_ids) == {"publish", "run_report"}
    assert spec.roles()["nothing_published"] is None


def test_retracting_from_a_warehouse_or_table_not_there_yet_removes_nothing(tmp_path):
    assert retract_partition(tmp_path / "none", TABLE, DS) == 0
    source = tmp_path / "outputs" / f"ds={DS}"
    source.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a", "b"]}), source / "part-0.parquet")
    publish_partition(tmp_path / "warehouse", "ml.other", DS, source)
    assert retract_partition(tmp_path / "warehouse", TABLE, DS) == 0
    assert retract_partition(tmp_path / "warehouse", "ml.other", DS) == 2
    assert table_rows(tmp_path / "warehouse", "ml.other", DS) == 0


# --- what the summary, the report and Slack say ---------------------------------------------

ROLES = {
    "publish": "publish",
    "quarantine": "quarantine",
    "nothing_published": {
        "endings": ["quarantine", "no_predictions"],
        "setting": "retract",
        "retract": "retract_publish",
        "table": TABLE,
        "dataset": "outputs",
    },
}
KEEP = {**ROLES, "nothing_published": {**ROLES["nothing_published"], "setting": "keep", "retract": None}}


def tasks(**states: str) -> list[dict]:
    figures = {"retract_publish": {"flag": "retracted", "rows_retracted": 1_234}}
    return [
        {"task_id": t.replace("__", "."), "state": s, "seconds": 1.0, "figures": figures.get(t, {})} for t, s in states.items()
    ]


@pytest.mark.parametrize(
    ("roles", "states", "outcome"),
    [
        (
            ROLES,
            {"quarantine": "success", "no_predictions": "skipped", "publish": "skipped", "retract_publish": "success"},
            {"outcome": "retracted", "rows_retracted": 1_234},
        ),
        (
            ROLES,
            {
                "quarantine": "skipped",
                "no_predictions": "success",
                "publish": "skipped",
                "retract_publish__table_partition": "success",
                "retract_publish__lake_partition": "success",
            },
            {"outcome": "retracted", "rows_retracted": None},
        ),  # the cloud's group: provider tasks, no figures
        (KEEP, {"quarantine": "success", "no_predictions": "skipped", "publish": "skipped"}, {"outcome": "kept"}),
        (ROLES, {"quarantine": "success", "retract_publish": "failed"}, {"outcome": "not retracted"}),
        (ROLES, {"quarantine": "skipped", "no_predictions": "skipped", "publish": "success", "retract_publish": "skipped"}, None),
        (
            ROLES,
            {"quarantine": "upstream_failed", "no_predictions": "upstream_failed", "retract_publish": "upstream_failed"},
            None,
        ),
    ],
    ids=["retracted", "retracted-cloud", "kept", "retraction-failed", "published", "failed-run"],
)
def test_the_headline_says_what_became_of_the_days_earlier_outputs(roles, states, outcome):
    found = report.earlier_outputs(tasks(**states), roles)
    if outcome is None:
        assert found is None
    else:
        assert {k: found[k] for k in outcome} == outcome and (found["table"], found["dataset"]) == (TABLE, "outputs")


def test_the_run_table_the_report_and_slack_say_retracted_or_kept(monkeypatch, task_context):
    from rich.console import Console

    from water import notify
    from water.cli import summary as run_summary
    from water.operators.report import RunReportOperator

    states = {"quarantine": "success", "no_predictions": "skipped", "publish": "skipped", "retract_publish": "success"}
    for roles, said in (
        (ROLES, "retracted: ml.routed_lists rows of the day and outputs/ds=… removed (1,234 rows)"),
        (KEEP, "kept: ml.routed_lists rows of the day and outputs/ds=… stay"),
    ):
        run_tasks = tasks(**states) if roles is ROLES else tasks(**{k: v for k, v in states.items() if k != "retract_publish"})
        # water run's table and JSON summary
        head = run_summary._headline(run_tasks, roles)
        assert head["earlier_outputs"]["outcome"] == said.split(":")[0]
        console = Console(record=True, width=200, force_terminal=False)
        run_summary.render({"dag_id": "routed", "ds": DS, "state": "success", "tasks": run_tasks, **head}, console)
        assert f"earlier outputs of ds={DS} {said}" in console.export_text()
        # the report page
        record = {
            "dag_id": "routed",
            "ds": DS,
            "run_id": "r",
            "state": "success",
            "duration_seconds": 1.0,
            "roles": roles,
            "tasks": run_tasks,
            "decision": None,
            "drift": None,
        }
        assert said in report.render(record, [], ["cook", "browse"])
        # the Slack message
        sent = []
        monkeypatch.setattr(notify, "send", lambda notice, conn_id, sent=sent: sent.append(notice))
        op = RunReportOperator(
            task_id="run_report",
            pipeline="routed",
            classes=["cook"],
            lake_root="file:///x",
            storage_conn_id=None,
            target="local",
            roles=roles,
            history_days=7,
            slack_conn_id=None,
        )
        op.notify(task_context(DS), record, report.headline(record))
        assert said in sent[0].facts["earlier outputs"]
