"""A finished run of a real spec as its run report sees it, for the completion event tests (unit and
integration): the record water.operators.report builds from the run's task states and figures, each
figure on the task the spec's roles name (no task ids written here)."""

from __future__ import annotations

from typing import Any

from water.operators.report import RUN_REPORT, RunReportOperator
from water.spec import PipelineSpec

ROWS_PUBLISHED = 2_500_000


def route_tiers(spec: PipelineSpec) -> dict[str, str]:
    """A tier per route of the spec's sized post-processing: each route's own tiers, cycled."""
    name, step = spec.step_of("sized_postprocess") or (None, None)
    assert name and step, f"{spec.name} has no sized post-processing"
    routes = step.all_routes(spec.classes, name)
    return {route: r.sizing.tiers[i % len(r.sizing.tiers)].name for i, (route, r) in enumerate(routes.items())}


def run_record(spec: PipelineSpec, ds: str, run_id: str, *, failed: bool = False, quarantined: bool = False) -> dict[str, Any]:
    """The record of a run that published (the default), failed at its training, or was held back by its drift guard."""
    roles = spec.roles()
    tiers = route_tiers(spec)
    tasks: list[dict[str, Any]] = [
        {"task_id": roles["training"], "state": "failed" if failed else "success", "figures": {}},
        {"task_id": roles["stats"], "state": "success", "figures": {"rows": ROWS_PUBLISHED}},
    ]
    if quarantined:
        where = f"quarantine/ds={ds}"
        tasks.append({"task_id": roles["quarantine"], "state": "success", "figures": {"quarantine": where}})
    elif not failed:
        tasks.append({"task_id": roles["publish"], "state": "success", "figures": {"rows_out": ROWS_PUBLISHED}})
    decision = {
        "tier": " · ".join(f"{r} {t}" for r, t in tiers.items()),
        "routes": {r: {"classes": [], "rows": 1000, "tier": t, "shards": [{}]} for r, t in tiers.items()},
    }
    return {
        "dag_id": spec.dag_id,
        "ds": ds,
        "run_id": run_id,
        "target": "local",
        "state": "failed" if failed else "success",
        "failed_tasks": [roles["training"]] if failed else [],
        "duration_seconds": 12.0,
        "conf": {},
        "roles": roles,
        "decision": None if failed else decision,
        "drift": {"verdict": "block" if quarantined else "ok"},
        "tasks": tasks,
    }


def report_operator(spec: PipelineSpec, lake_root: str) -> RunReportOperator:
    return RunReportOperator(
        task_id=RUN_REPORT,
        pipeline=spec.name,
        classes=spec.classes,
        lake_root=lake_root,
        storage_conn_id=None,
        target="local",
        roles=spec.roles(),
        history_days=7,
        slack_conn_id=None,
    )
