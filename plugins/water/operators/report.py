"""The end of every run: its completion event, its report, its success-or-failure message and its run metrics.

A teardown task, so it runs whatever happened upstream and the DAG run's own state still
comes from the real work (a teardown never turns a failed run into a success). Reads the
run's task states (Airflow's task breadcrumbs) and figures (XCom), publishes the completion
event `pipeline.<name>.succeeded|failed|quarantined` (water.amqp_publish; never fails the
task), writes `reports/ds=…/report.html` and `run.json` to the lake, sends one Slack message
naming any failed task with a link to its log, and sends the run's metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context

from water import amqp_publish, events, lake, lineage, metrics, notify, report
from water import drift as drift_math
from water.operators.drift import DRIFT_FILE, STATS_FILE
from water.spec import Roles
from water.store import LakeStore

RUN_REPORT = "run_report"
REPORT_FILE = "report.html"
RUN_FILE = "run.json"
LOOK_BACK_DAYS = 60  # how far back the previous run's sizing is looked for


def completion_outcome(record: dict[str, Any], head: dict[str, Any]) -> str:
    """The run's outcome as its completion event names it: failed, quarantined (the drift guard held the
    day back, nothing published) or succeeded."""
    if record["state"] == "failed":
        return "failed"
    return "quarantined" if head.get("quarantined") else "succeeded"


class RunReportOperator(BaseOperator):
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        pipeline: str,
        classes: list[str],
        lake_root: str,
        storage_conn_id: str | None,
        target: str,
        roles: Roles,
        history_days: int,
        slack_conn_id: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline, self.classes = pipeline, list(classes)
        self.lake_root, self.storage_conn_id, self.target = lake_root, storage_conn_id, target
        self.roles, self.history_days, self.slack_conn_id = roles.copy(), history_days, slack_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        ds = context["ds"]
        store = LakeStore(self.lake_root, self.pipeline, self.storage_conn_id)
        record = self.run_record(context)
        head = report.headline(record)
        # First: a pipeline started by this one's completion waits for no report, and no report
        # problem keeps the event from going out.
        self.announce(record, head)
        record["previous_routes"] = self.previous_routes(store, ds)
        record["lineage"] = self.lineage()
        history = self.history(store, ds)
        page = report.render(record, history, self.classes)
        where = store.write_text(lake.REPORTS, ds, REPORT_FILE, page)
        store.write_json(lake.REPORTS, ds, RUN_FILE, {**record, "history": history})
        self.notify(context, record, head)
        metrics.gauge("run.duration_seconds", record["duration_seconds"], pipeline=self.pipeline, ds=ds, state=record["state"])
        metrics.increment("run.finished", pipeline=self.pipeline, ds=ds, state=record["state"], tier=head.get("tier"))
        self.log.info("run report: %s (%s)", where, record["state"])
        self.lineage_ds = ds
        return {"report": where, "state": record["state"], "failed_tasks": record["failed_tasks"]}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the run report writes the day's partition of the lake's reports dataset; its
        inputs are the run's task states and XComs, and the earlier reports (history)."""
        reports = lineage.lake_dataset(self.lake_root, self.pipeline, lake.REPORTS)
        ds = getattr(self, "lineage_ds", None)
        return lineage.operator_lineage([lineage.Seen(reports)], [lineage.Seen(reports, lineage.partition_of(ds))])

    def run_record(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = context["ti"]
        crumbs = RuntimeTaskInstance.get_task_breadcrumbs(dag_id=ti.dag_id, run_id=ti.run_id)
        tasks = []
        for crumb in crumbs:
            task_id, map_index = crumb["task_id"], crumb.get("map_index", -1)
            if task_id == self.task_id:
                continue
            state = str(getattr(crumb["state"], "value", crumb["state"]))
            value = ti.xcom_pull(task_ids=task_id, map_indexes=map_index) if state == "success" else None
            label = task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"
            tasks.append(
                {
                    "task_id": label,
                    "state": state,
                    "seconds": round(crumb["duration"], 2) if crumb.get("duration") is not None else None,
                    "figures": value if isinstance(value, dict) else {},
                    "log": notify.task_log_url(ti.dag_id, ti.run_id, task_id, map_index),
                }
            )
        from water.factory import by_dag_order

        tasks = by_dag_order(self.get_dag(), tasks)
        dag_run = context.get("dag_run")
        # A run starts when it may and does: `airflow dags test` sets start_date to the logical
        # date, a late scheduled run has run_after before start_date; the later of the two holds.
        moments = [m for m in (getattr(dag_run, "start_date", None), getattr(dag_run, "run_after", None)) if m]
        duration = (datetime.now(UTC) - max(moments)).total_seconds() if moments else None
        return {
            "dag_id": ti.dag_id,
            "ds": context["ds"],
            "run_id": ti.run_id,
            "target": self.target,
            "state": report.outcome(tasks, self.roles),
            "failed_tasks": [t["task_id"] for t in tasks if t["state"] == "failed"],
            "duration_seconds": round(duration, 1) if duration is not None else None,
            "conf": dict(getattr(dag_run, "conf", None) or {}),
            "roles": self.roles,
            "decision": ti.xcom_pull(task_ids=self.roles["decision"], key="decision") if self.roles.get("decision") else None,
            "drift": ti.xcom_pull(task_ids=self.roles["drift"], key="drift") if self.roles.get("drift") else None,
            "tasks": tasks,
        }

    def lineage(self) -> list[dict[str, Any]]:
        """What each step read and wrote, in graph order: the dataset identities its lineage
        events carry (water.lineage.step_datasets), built from the spec, as the cloud's events
        go to a backend this task cannot read. [] (and a warning) when it cannot be built: the
        report goes out without the section rather than not at all."""
        from water.lineage import step_datasets
        from water.spec import load_pipeline
        from water.targets import get_target

        try:
            spec, target = load_pipeline(self.pipeline), get_target(self.target)
            graph = [(name, *step_datasets(spec, target, name)) for name in spec.order()]
        except Exception as exc:  # the report's other sections still matter
            self.log.warning("no lineage section in the report: %s", exc)
            return []
        return [
            {"step": name, "inputs": self._datasets(inputs), "outputs": self._datasets(outputs)}
            for name, inputs, outputs in graph
        ]

    def _datasets(self, datasets: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
        """(namespace, name) identities as {namespace, name, label}."""
        return [
            {"namespace": namespace, "name": name, "label": report.dataset_label(namespace, name, self.lake_root)}
            for namespace, name in datasets
        ]

    def previous_routes(self, store: LakeStore, ds: str) -> dict[str, dict[str, Any]]:
        """The newest earlier run's sizing per route (its run.json), to show beside today's."""
        for day in reversed([d for d in store.days(lake.REPORTS) if d < ds][-LOOK_BACK_DAYS:]):
            earlier = store.read_json(lake.REPORTS, day, RUN_FILE) or {}
            if earlier.get("decision"):
                return report.route_figures(earlier["decision"])
        return {}

    def history(self, store: LakeStore, ds: str) -> list[dict[str, Any]]:
        """Class shares and drift per day for the last `history_days` days up to ds."""
        stats_dataset = self.roles.get("stats_dataset")
        if not stats_dataset:
            return []
        days = [d for d in store.days(stats_dataset) if d <= ds][-self.history_days :]
        out = []
        for day in days:
            stats = store.read_json(stats_dataset, day, STATS_FILE) or {}
            verdict = store.read_json(stats_dataset, day, DRIFT_FILE) or {}
            counts = stats.get("class_counts") or {}
            out.append(
                {
                    "ds": day,
                    "rows": stats.get("rows"),
                    "shares": drift_math.shares(counts, self.classes),
                    "psi": verdict.get("psi"),
                    "js": verdict.get("js"),
                    "verdict": verdict.get("verdict"),
                }
            )
        return out

    def announce(self, record: dict[str, Any], head: dict[str, Any]) -> str:
        """Publish the run's completion event (water.amqp_publish); how it went, never an exception."""
        event = events.completion_event(
            pipeline=self.pipeline,
            ds=record["ds"],
            run_id=record["run_id"],
            outcome=completion_outcome(record, head),
            rows=head.get("rows_published"),
            tiers={route: figures["tier"] for route, figures in (head.get("routes") or {}).items()},
        )
        return amqp_publish.publish_completion(event)

    def notify(self, context: Context, record: dict[str, Any], head: dict[str, Any]) -> None:
        failed = record["state"] == "failed"
        facts = {
            "duration": f"{record['duration_seconds']:.0f} s" if record.get("duration_seconds") is not None else "-",
            "rows": f"{head['rows']:,}" if head.get("rows") is not None else "-",
            "tier": head.get("tier") or "-",
            "drift": head.get("drift_verdict") or "-",
        }
        if head.get("rows_published") is not None:
            facts["published"] = f"{head['rows_published']:,} rows"
        if head.get("quarantined"):
            facts["quarantined"] = head["quarantined"]
        if head.get("earlier_outputs"):
            facts["earlier outputs"] = report.earlier_outputs_text(head["earlier_outputs"])
        links = {}
        lines = [] if failed else report.route_lines(head.get("routes") or {}, record.get("previous_routes") or {})
        for t in record["tasks"]:
            if t["state"] == "failed":
                lines.append(f"failed: {t['task_id']}")
                links[f"log of {t['task_id']}"] = t["log"]
        links["run in Airflow"] = notify.run_url(record["dag_id"], record["run_id"])
        if failed:
            where = ", ".join(record["failed_tasks"])
            title = f"{self.pipeline} ds={record['ds']} FAILED " + (
                f"at {where}" if where else "before publishing: no task failed, the run was stopped or marked failed"
            )
        elif head.get("quarantined"):
            title = f"{self.pipeline} ds={record['ds']} finished: predictions quarantined for drift, nothing published"
        elif head.get("rows") == 0:
            title = f"{self.pipeline} ds={record['ds']} finished: no predictions, nothing published"
        else:
            title = f"{self.pipeline} ds={record['ds']} succeeded"
        notice = notify.notice_for(context, "failure" if failed else "success", title, facts=facts, lines=lines, links=links)
        notify.send(notice, self.slack_conn_id)
