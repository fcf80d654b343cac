"""One factory turns a pipeline spec into its DAG. The graph is the same for every target.

Each step becomes the task (or task group) its target's builder makes for its kind; the
edges follow from the datasets the steps read and write (PipelineSpec.upstream). The
factory knows no step by name: a drift guard gates whatever reads the dataset it guards,
a publish step's retraction follows the tasks that end a day unpublished, and every run
ends with `run_report`, a teardown after every leaf.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TaskGroup

from water import metrics, notify
from water.docs import dag_doc
from water.operators.report import RUN_REPORT, RunReportOperator
from water.spec import PipelineSpec, load_pipeline
from water.targets import Target, get_target
from water.targets.base import Built, Node


def _params(spec: PipelineSpec) -> dict[str, Param]:
    """The run parameters (the trigger form): those of the kinds this pipeline has."""
    params: dict[str, Param] = {}
    sized = spec.step_of("sized_postprocess")
    if sized:
        name, step = sized
        routes = step.all_routes(spec.classes, name)
        if not step.routes:
            tier_names = [t.name for t in routes[name].sizing.tiers]  # the one route: the step's own sizing
            params["force_tier"] = Param(
                None,
                type=["null", "string"],
                enum=[None, *tier_names],
                title="Force post-processing tier",
                description=f"Override the sizing decision for this run: one of {', '.join(tier_names)}.",
            )
        else:
            tiers = {r: [t.name for t in route.sizing.tiers] for r, route in routes.items()}
            common = [t for t in next(iter(tiers.values())) if all(t in names for names in tiers.values())]
            per_key = {r: {"type": "string", "enum": names} for r, names in tiers.items()}
            per_key |= {c: {"type": "string", "enum": tiers[r]} for r, route in routes.items() for c in route.classes}
            params["force_tier"] = Param(
                None,
                anyOf=[
                    {"type": "null"},
                    {"type": "string", "enum": common},
                    {"type": "object", "properties": per_key, "additionalProperties": False},
                ],
                title="Force post-processing tiers",
                description=(
                    "Override the sizing decision for this run: a tier for every route "
                    f"({', '.join(common) or 'none shared'}), or per route or class, e.g. "
                    f'{{"{next(iter(routes))}": "{tiers[next(iter(routes))][-1]}"}}. Routes: '
                    + "; ".join(f"{r} ({', '.join(route.classes)}): {', '.join(tiers[r])}" for r, route in routes.items())
                ),
            )
    guard = spec.step_of("drift_guard")
    if guard:
        g = guard[1]
        params["accept_drift"] = Param(
            False,
            type="boolean",
            title="Accept drift",
            description=(
                "Publish this day even if the drift guard would block it (re-run a quarantined day "
                f"after checking it). Thresholds: warn {g.warn}, block {g.block} on {g.metric.upper()}."
            ),
        )
    return params


def _entry_task_ids(node: Node) -> list[str]:
    """The task ids a branch must name to run `node` (a task, or a task group's first tasks)."""
    if isinstance(node, TaskGroup):
        return [root.task_id for root in node.roots]
    return [node.task_id]


def timetable(schedule: str | None) -> str | CronDataIntervalTimetable | None:
    """The DAG schedule of a spec's `schedule:` (a cron or preset: when a run starts).

    Each run processes one whole, finished day: its logical date (`ds`) is the start of a data
    interval that ends when the run starts, so the 06:00 run on 2026-11-02 processes
    ds=2026-11-01. Spelled out because Airflow's default for a plain cron string
    (`[scheduler] create_cron_data_intervals = False`) gives the 06:00 run of 2026-11-02
    ds=2026-11-02: six hours of that day. A manual run (the UI's trigger, `water run --date`)
    processes the logical date it is given; `start_date` is the first day processed.
    """
    if schedule is None or schedule in ("@once", "@continuous"):
        return schedule
    return CronDataIntervalTimetable(schedule, timezone="UTC")


def build_dag(spec: PipelineSpec, target: Target) -> DAG:
    retries = os.environ.get("WATER_RETRIES")  # `water run --retries N` overrides the spec
    default_args = {
        "owner": spec.owner,
        "retries": int(retries) if retries else spec.retries,
        "retry_delay": spec.retry_delay,
        "on_execute_callback": notify.on_run_start(spec.notifications.slack_conn_id),
        "on_success_callback": metrics.on_task_success,
    }
    start = datetime(spec.start_date.year, spec.start_date.month, spec.start_date.day, tzinfo=UTC)
    with DAG(
        dag_id=spec.dag_id,
        description=spec.description.strip().splitlines()[0][:200],
        schedule=timetable(spec.schedule),
        start_date=start,
        catchup=spec.catchup,
        max_active_runs=spec.max_active_runs,
        tags=sorted({*spec.tags, "water", f"target:{target.name}"}),
        default_args=default_args,
        doc_md=dag_doc(spec, target.name),
        params=_params(spec),
    ) as dag:
        built: dict[str, Built] = {}
        upstream = spec.direct_upstream()
        for name in spec.order():
            built[name] = target.build(spec, name, spec.steps[name])
            for up in upstream[name]:
                built[up].tail >> built[name].head
        for name in spec.order():
            retraction = built[name].on_nothing_published
            if retraction is not None:
                endings = spec.nothing_published_endings(name)
                if not endings:  # its trigger rule would let it run every day
                    raise ValueError(f"steps.{name}: a retraction with nothing before it that ends a day unpublished")
                [dag.get_task(task_id) for task_id in endings] >> retraction
        guard = spec.step_of("drift_guard")
        if guard:
            from water.operators.drift import DriftGuardOperator

            guard_task = built[guard[0]].head
            assert isinstance(guard_task, DriftGuardOperator), guard_task  # what every target builds for the kind
            guard_task.continue_task_ids = [
                task_id for name in spec.guarded_steps() for task_id in _entry_task_ids(built[name].head)
            ]
        leaves = list(dag.leaves)
        # Runs whatever happened upstream; as a teardown it never masks a failed run.
        run_report = RunReportOperator(
            task_id=RUN_REPORT,
            classes=spec.classes,
            target=target.name,
            roles=spec.roles(),
            history_days=spec.report.history_days,
            slack_conn_id=spec.notifications.slack_conn_id,
            execution_timeout=timedelta(minutes=10),
            **target.lake_access(spec),
        ).as_teardown()
        leaves >> run_report
    return dag


def build_pipeline_dag(name: str) -> DAG:
    """The DAG of include/pipelines/<name>.yaml on the target WATER_TARGET selects.

    A malformed spec raises SpecError naming the file and fields; Airflow shows it as this
    DAG file's import error, and the other pipelines' DAG files load as usual.
    """
    return build_dag(load_pipeline(name), get_target())


def by_dag_order(dag: DAG | None, tasks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task records ({"task_id": …}, mapped ones as `id[i]`) in the DAG's topological order."""
    order = {task.task_id: i for i, task in enumerate(dag.topological_sort())} if dag is not None else {}

    def key(record: dict[str, Any]) -> tuple[int, str, int]:
        task_id, _, index = record["task_id"].partition("[")
        return order.get(task_id, len(order)), task_id, int(index.rstrip("]") or -1)

    return sorted(tasks, key=key)
