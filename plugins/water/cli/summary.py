"""The run summary: each task's state and duration with the figures it returned (XCom).

Read from Airflow's metadata database after (or while) a run goes; rendered as a table a
person reads at a glance, and written as JSON next to the run's log.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG
    from sqlalchemy.orm import Session

    from water.spec import Roles

FIGURE_KEYS = ("decision", "drift")  # what branches push besides (never instead of) a return value


def pipeline_dag(dag_id: str) -> DAG | None:
    """The pipeline's DAG as the factory builds it (for the task order), or None."""
    from water.factory import build_pipeline_dag

    try:
        return build_pipeline_dag(dag_id)
    except Exception:  # a spec broken since the run: fall back to the ids' order
        return None


def in_dag_order(dag: DAG | None, task_ids: list[str]) -> list[str]:
    from water.factory import by_dag_order

    return [t["task_id"] for t in by_dag_order(dag, [{"task_id": t} for t in task_ids])]


def roles(dag_id: str) -> Roles:
    """Which task holds which figure (water.spec.PipelineSpec.roles), or {} for an unknown pipeline."""
    from water.spec import SpecError, load_pipeline

    try:
        return load_pipeline(dag_id).roles()
    except SpecError:
        return {}


def find_run(dag_id: str, ds: str, session: Session, since: datetime | None = None) -> DagRun | None:
    """The newest run of dag_id for logical date ds (created at or after `since`, if given)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    day = date.fromisoformat(ds)
    logical = datetime(day.year, day.month, day.day, tzinfo=UTC)
    query = select(DagRun).where(DagRun.dag_id == dag_id, DagRun.logical_date == logical).order_by(DagRun.id.desc())
    if since is not None:
        query = query.where(DagRun.run_after >= since)
    return session.scalars(query).first()


def task_states(dag_id: str, ds: str, since: datetime | None = None) -> dict[str, str]:
    """task_id -> state of the newest run for ds (empty before the run exists)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = find_run(dag_id, ds, session, since)
        if run is None:
            return {}
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
            )
        ).all()
    return {_label(t, m): _state_name(s) for t, m, s in rows}


def _state_name(state: object) -> str:
    """'success', 'failed', ... from an Airflow state enum or string; 'none' before scheduling."""
    if not state:
        return "none"
    return str(state.value if hasattr(state, "value") else state)


def _label(task_id: str, map_index: int) -> str:
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"


def collect(dag_id: str, ds: str) -> dict[str, Any] | None:
    """The summary of the newest run for ds, as plain data (None if there is no run)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = find_run(dag_id, ds, session)
        if run is None:
            return None
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)).all()
        xcoms = session.execute(
            select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value).where(
                XComModel.dag_run_id == run.id, XComModel.key.in_(("return_value", *FIGURE_KEYS))
            )
        ).all()
        figures: dict[str, Any] = {}
        for t, m, key, v in sorted(xcoms, key=lambda row: row[2] not in FIGURE_KEYS):
            value = XComModel.deserialize_value(_Row(v))
            # A branch returns a task id and plan_shards a list: only dicts (and decisions) are figures.
            if key in FIGURE_KEYS or isinstance(value, dict):
                figures.setdefault(_label(t, m), value)
        tasks: list[dict[str, Any]] = []
        order = {t: i for i, t in enumerate(in_dag_order(pipeline_dag(dag_id), sorted({ti.task_id for ti in tis})))}
        for ti in sorted(tis, key=lambda t: (order.get(t.task_id, len(order)), t.map_index)):
            label = _label(ti.task_id, ti.map_index)
            duration = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else None
            tasks.append(
                {
                    "task_id": label,
                    "state": _state_name(ti.state),
                    "try_number": ti.try_number,
                    "seconds": round(duration, 2) if duration is not None else None,
                    "figures": figures.get(label) or {},
                }
            )
        started = min((ti.start_date for ti in tis if ti.start_date), default=None)
        ended = max((ti.end_date for ti in tis if ti.end_date), default=None)
        summary: dict[str, Any] = {
            "dag_id": dag_id,
            "ds": ds,
            "run_id": run.run_id,
            "state": _state_name(run.state),
            "conf": run.conf or {},
            "tasks": tasks,
        }
    wall = (ended - started).total_seconds() if started and ended else None
    # A stage's own work (timed inside the operator), else its task duration.
    work = sum(t["figures"].get("work_seconds", t["seconds"] or 0) for t in tasks)
    summary["wall_seconds"] = round(wall, 2) if wall is not None else None
    summary["task_seconds"] = round(work, 2)
    summary["overhead_ratio"] = round(wall / work, 3) if wall and work else None
    summary.update(_headline(tasks, roles(dag_id)))
    return summary


class _Row:
    def __init__(self, value: Any):
        self.value = value


def _headline(tasks: list[dict[str, Any]], roles: Roles) -> dict[str, Any]:
    """The figures people look for first: accuracy, predicted classes, rows published."""
    from water.operators.report import RUN_REPORT
    from water.report import earlier_outputs

    by_id = {t["task_id"]: t["figures"] for t in tasks}

    def figures(role: Literal["stats", "training", "drift", "quarantine", "decision", "publish"]) -> dict[str, Any]:
        found: dict[str, Any] = by_id.get(roles.get(role) or "") or {}
        return found

    metrics = figures("training").get("metrics", {})
    stats = figures("stats")
    decision = figures("decision")
    drift = figures("drift")
    escalations = {t: f["escalated"] for t, f in by_id.items() if f.get("escalated")}
    return {
        "validation_accuracy": metrics.get(roles.get("objective_metric") or ""),
        "predicted_class_counts": stats.get("class_counts"),
        "sizing": {
            "tier": decision.get("tier"),
            "rows": decision.get("rows"),
            "forced": decision.get("forced"),
            "shards": decision.get("shards"),
            "routes": {
                name: {k: d.get(k) for k in ("classes", "tier", "rows", "forced", "reason")}
                | {"shards": len(d.get("shards") or [])}
                for name, d in (decision.get("routes") or {}).items()
            },
        }
        if decision
        else None,
        "escalations": escalations,
        "rows_published": figures("publish").get("rows_out"),
        "drift": {k: drift.get(k) for k in ("verdict", "psi", "js", "baseline", "shares", "baseline_shares")} if drift else None,
        "quarantine": figures("quarantine").get("quarantine"),
        "earlier_outputs": earlier_outputs(tasks, roles),
        "report": by_id.get(RUN_REPORT, {}).get("report"),
    }


def _fmt_rows(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else ""


def _notes(figures: dict[str, Any]) -> str:
    notes = []
    if "peak_rss_mb" in figures:
        limit = figures.get("memory_limit_mb")
        notes.append(f"rss {figures['peak_rss_mb']:.0f}" + (f"/{limit:.0f}" if limit else "") + " MiB")
    for name, value in (figures.get("metrics") or {}).items():
        notes.append(f"{name.replace('validation:', 'val ').replace(':', ' ')} {value:.3f}")
    counts = figures.get("class_counts")
    if counts and "routes" not in figures:
        total = sum(counts.values()) or 1
        notes.append(" ".join(f"{k} {v / total:.0%}" for k, v in counts.items()))
    if figures.get("outputs") and len(figures["outputs"]) > 1:
        notes.append(" ".join(f"{k.removesuffix('-output')} {v:,}" for k, v in figures["outputs"].items()))
    if figures.get("routes"):  # the sizing decision
        notes.append(f"{figures['tier']}" + (" (forced)" if figures.get("forced") else ""))
    if figures.get("escalated"):
        e = figures["escalated"]
        notes.append(f"OOM at {e['from_memory_limit']}, retried as {e['to']} ({e['to_memory_limit']})")
    if figures.get("verdict") and "psi" in figures:
        notes.append(
            f"drift {figures['verdict']}"
            + (f" PSI {figures['psi']:.3f} JS {figures['js']:.3f}" if figures.get("psi") is not None else "")
        )
    if figures.get("flag"):
        notes.append(f"flagged: {figures['flag']}")
    if figures.get("rows_retracted") is not None:
        notes.append(f"{figures['rows_retracted']:,} rows retracted")
    if figures.get("table"):
        notes.append(f"→ {figures['table']}")
    return "; ".join(notes)


def _local(uri: str) -> str:
    """A file:// URI as a path relative to the project (other URIs as they are)."""
    from water import paths
    from water.targets.local.engines.partitions import local_path

    return str(paths.shown(local_path(uri))) if uri.startswith("file://") else uri


STATE_STYLE = {"success": "green", "failed": "bold red", "upstream_failed": "red", "skipped": "yellow"}


def render(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # a log file or CI: no need to wrap at 80 columns
        console.width = max(console.width, 120)
    table = Table(title=f"{summary['dag_id']}  ds={summary['ds']}  {summary['state'].upper()}", title_justify="left")
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("task", "left"),
        ("state", "left"),
        ("seconds", "right"),
        ("rows in", "right"),
        ("rows out", "right"),
        ("notes", "left"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=column != "notes")
    for task in summary["tasks"]:
        figures = task["figures"]
        state = task["state"]
        table.add_row(
            task["task_id"],
            f"[{STATE_STYLE.get(state, 'white')}]{state}[/]",
            f"{task['seconds']:.1f}" if task["seconds"] is not None else "",
            _fmt_rows(figures.get("rows_in")),
            _fmt_rows(figures.get("rows_out")),
            _notes(figures),
        )
    console.print(table)
    lines = []
    if summary.get("validation_accuracy") is not None:
        lines.append(f"validation accuracy {summary['validation_accuracy']:.3f}")
    counts = summary.get("predicted_class_counts")
    if counts:
        total = sum(counts.values()) or 1
        lines.append("predicted " + ", ".join(f"{k} {v:,} ({v / total:.0%})" for k, v in counts.items()))
    sizing = summary.get("sizing")
    if sizing:
        for name, route in sizing["routes"].items():
            where = f"{name} ({', '.join(route['classes'] or [])})" if len(sizing["routes"]) > 1 else "sizing"
            shards = f" x{route['shards']}" if route["shards"] > 1 else ""
            lines.append(f"{where}: {route['tier']}{shards} — {route['reason']}")
    for task_id, e in (summary.get("escalations") or {}).items():
        lines.append(f"{task_id}: OOMKilled at {e['from_memory_limit']}, retried once as {e['to']} ({e['to_memory_limit']})")
    drift = summary.get("drift")
    if drift and drift.get("verdict"):
        if drift.get("psi") is None:
            from water.drift import not_assessed

            lines.append(f"drift: {not_assessed(drift['verdict'])}")
        else:
            mix = ", ".join(
                f"{c} {(drift.get('baseline_shares') or {}).get(c, 0):.0%}→{s:.0%}"
                for c, s in (drift.get("shares") or {}).items()
            )
            lines.append(
                f"drift: {drift['verdict']} — PSI {drift['psi']:.3f}, JS {drift['js']:.3f} vs {drift['baseline']} ({mix})"
            )
    if summary.get("quarantine"):
        lines.append(f"[bold red]quarantined[/]: predictions held back at {summary['quarantine']}; nothing published")
    if summary.get("earlier_outputs"):
        from water.report import earlier_outputs_text

        lines.append(f"earlier outputs of ds={summary['ds']} " + earlier_outputs_text(summary["earlier_outputs"]))
    if summary.get("wall_seconds") is not None:
        lines.append(
            f"run span {summary['wall_seconds']:.1f}s for {summary['task_seconds']:.1f}s of stage work "
            f"(orchestration overhead ratio {summary['overhead_ratio']})"
        )
    if summary.get("report"):
        lines.append(f"report: {_local(summary['report'])}")
    for line in lines:
        console.print(line)
