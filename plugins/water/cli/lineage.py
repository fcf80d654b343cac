"""`water lineage`: the dataset graph of one run, read from the local OpenLineage events.

Local runs append the provider's RunEvents to paths.lineage_events(), one JSON event a line.
A task's events name their job `<dag_id>.<task_id>`; the provider's `parent` run facet names
the DAG run they belong to, its `airflow` run facet the run's logical date, the task's
upstream tasks and its map index, and `nominalTime` the data interval's start. A run's graph:
each task's last try (every map index of it), in graph order, with what it read and wrote.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from water import paths
from water.report import dataset_label

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

DONE = ("COMPLETE", "FAIL", "ABORT")
STATES = {"COMPLETE": "success", "FAIL": "failed", "ABORT": "aborted", "START": "running"}  # as Airflow says them
# Where a dataset's row count may be: the provider's statistics facets, or a data-quality facet.
ROW_FACETS = (
    ("outputFacets", "outputStatistics"),
    ("inputFacets", "inputStatistics"),
    ("inputFacets", "dataQualityMetrics"),
    ("facets", "dataQualityMetrics"),
)


class LineageError(Exception):
    """No events to show (no events file, or no run of the pipeline for the day)."""


def events_file() -> Path:
    return paths.lineage_events()


@dataclass
class Dataset:
    namespace: str
    name: str
    label: str
    rows: int | None = None


@dataclass
class Step:
    task_id: str
    state: str  # success, failed, aborted, or running (its last event a START)
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)


@dataclass
class RunGraph:
    pipeline: str
    ds: str
    run_id: str
    steps: list[Step]
    days: list[str]  # every day with a run of the pipeline in the file

    def as_json(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "ds": self.ds, "run_id": self.run_id, "steps": [asdict(s) for s in self.steps]}


def read_events(path: Path) -> list[dict[str, Any]]:
    """The file's events; a line that is not a JSON object (one being written) is left out."""
    if not path.is_file():
        raise LineageError(f"no lineage events at {paths.shown(path)}: a local run writes them (`water run PIPELINE`)")
    events = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and isinstance(event.get("job"), dict) and isinstance(event.get("run"), dict):
                events.append(event)
    return events


def _facets(event: dict[str, Any]) -> dict[str, Any]:
    return event["run"].get("facets") or {}


def _dag_id(event: dict[str, Any]) -> str | None:
    dag = (_facets(event).get("airflow") or {}).get("dag") or {}
    parent = (_facets(event).get("parent") or {}).get("job") or {}
    return dag.get("dag_id") or parent.get("name")


def _task_id(event: dict[str, Any], pipeline: str) -> str | None:
    """The task of a task event of `pipeline`; None for another pipeline's or a DAG's own event."""
    job = str(event["job"].get("name") or "")
    if not job.startswith(pipeline + ".") or _dag_id(event) not in (None, pipeline):
        return None
    task = (_facets(event).get("airflow") or {}).get("task") or {}
    return str(task.get("task_id") or job.removeprefix(pipeline + "."))


def _day(moment: object) -> str | None:
    if not isinstance(moment, str) or not moment:
        return None
    try:
        when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when.astimezone(UTC) if when.tzinfo else when).date().isoformat()


def _ds(event: dict[str, Any]) -> str | None:
    """The run's logical date: the airflow facet's, else the nominal start (data interval start)."""
    dag_run = (_facets(event).get("airflow") or {}).get("dagRun") or {}
    nominal = (_facets(event).get("nominalTime") or {}).get("nominalStartTime")
    return _day(dag_run.get("logical_date")) or _day(nominal) or _day(dag_run.get("run_after"))


def _run_key(event: dict[str, Any]) -> str:
    """The DAG run a task event belongs to: the parent run's id (or the Airflow run id)."""
    parent = (_facets(event).get("parent") or {}).get("run") or {}
    dag_run = (_facets(event).get("airflow") or {}).get("dagRun") or {}
    return str(parent.get("runId") or dag_run.get("run_id") or "")


def _rows(dataset: dict[str, Any]) -> int | None:
    for where, facet in ROW_FACETS:
        rows = ((dataset.get(where) or {}).get(facet) or {}).get("rowCount")
        if isinstance(rows, int) and not isinstance(rows, bool):
            return rows
    return None


def _merge(datasets: dict[tuple[str, str], Dataset], found: list[Any], lake_root: str) -> None:
    """Add one event's datasets; a later event's row count replaces an earlier one's."""
    for d in found:
        if not isinstance(d, dict) or "namespace" not in d or "name" not in d:
            continue
        key = (str(d["namespace"]), str(d["name"]))
        rows = _rows(d)
        if key not in datasets:
            datasets[key] = Dataset(*key, label=dataset_label(*key, lake_root), rows=rows)
        elif rows is not None:
            datasets[key].rows = rows


def _last_try(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of a task instance's last try (each try is its own OpenLineage run)."""
    tries: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        tries.setdefault(str(event["run"].get("runId")), []).append(event)
    return max(tries.values(), key=lambda evs: max(str(e.get("eventTime") or "") for e in evs))


def _state(events: list[dict[str, Any]]) -> str:
    done = [e for e in events if e.get("eventType") in DONE]
    return str(max(done, key=lambda e: str(e.get("eventTime") or ""))["eventType"]) if done else "START"  # RUNNING: still START


def _step(task_id: str, events: list[dict[str, Any]], lake_root: str) -> Step:
    """One task's row: every map index's last try; rows summed over the instances that report them."""
    instances: dict[object, list[dict[str, Any]]] = {}
    for event in events:
        index = ((_facets(event).get("airflow") or {}).get("taskInstance") or {}).get("map_index")
        instances.setdefault(index, []).append(event)
    states, inputs, outputs = [], [], []
    for instance_events in instances.values():
        last = sorted(_last_try(instance_events), key=lambda e: str(e.get("eventTime") or ""))
        states.append(_state(last))
        ins: dict[tuple[str, str], Dataset] = {}
        outs: dict[tuple[str, str], Dataset] = {}
        for event in last:
            _merge(ins, event.get("inputs") or [], lake_root)
            _merge(outs, event.get("outputs") or [], lake_root)
        inputs.append(ins)
        outputs.append(outs)
    state = next((s for s in ("FAIL", "ABORT", "START") if s in states), "COMPLETE")
    return Step(task_id, STATES[state], _combine(inputs), _combine(outputs))


def _combine(per_instance: list[dict[tuple[str, str], Dataset]]) -> list[Dataset]:
    combined: dict[tuple[str, str], Dataset] = {}
    for datasets in per_instance:
        for key, d in datasets.items():
            if key not in combined:
                combined[key] = Dataset(d.namespace, d.name, d.label, d.rows)
            else:
                before = combined[key].rows
                combined[key].rows = None if before is None or d.rows is None else before + d.rows
    return list(combined.values())


def _graph_order(by_task: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Task ids in graph order (the airflow facet's upstream tasks), ties by when they started."""
    started = {t: min(str(e.get("eventTime") or "") for e in evs) for t, evs in by_task.items()}
    upstream: dict[str, set[str]] = {}
    for task_id, events in by_task.items():
        ups: set[str] = set()
        for event in events:
            task = (_facets(event).get("airflow") or {}).get("task") or {}
            ups.update(u for u in task.get("upstream_task_ids") or [] if u in by_task and u != task_id)
        upstream[task_id] = ups
    order: list[str] = []
    waiting = dict(upstream)
    while waiting:
        ready = [t for t, ups in waiting.items() if ups <= set(order)] or list(waiting)  # a cycle: by time
        first = min(ready, key=lambda t: (started[t], t))
        order.append(first)
        del waiting[first]
    return order


def run_graph(events: list[dict[str, Any]], pipeline: str, ds: str | None, lake_root: str) -> RunGraph:
    """The dataset graph of `pipeline`'s latest run for `ds` (default: the newest day with a run)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if _task_id(event, pipeline) is not None:
            runs.setdefault(_run_key(event), []).append(event)
    if not runs:
        raise LineageError(f"no lineage events of {pipeline} in {paths.shown(events_file())}: `water run {pipeline}` writes them")
    day_of = {key: next((d for d in map(_ds, evs) if d), None) for key, evs in runs.items()}
    days = sorted({d for d in day_of.values() if d})
    chosen = ds or (days[-1] if days else None)
    of_day = [key for key, day in day_of.items() if day == chosen]
    if not of_day:
        known = f"; runs exist for {', '.join(days)}" if days else ""
        raise LineageError(f"no run of {pipeline} for ds={chosen or '-'} in {paths.shown(events_file())}{known}")
    key = max(of_day, key=lambda k: max(str(e.get("eventTime") or "") for e in runs[k]))
    by_task: dict[str, list[dict[str, Any]]] = {}
    for event in runs[key]:
        by_task.setdefault(str(_task_id(event, pipeline)), []).append(event)
    airflow_run = next(
        (((_facets(e).get("airflow") or {}).get("dagRun") or {}).get("run_id") for e in runs[key] if _facets(e).get("airflow")),
        None,
    )
    steps = [_step(task_id, by_task[task_id], lake_root) for task_id in _graph_order(by_task)]
    return RunGraph(pipeline, str(chosen), str(airflow_run or key), steps, days)


def load(pipeline: str, ds: date | None) -> RunGraph:
    """The graph of the local events file, the local lake's root written `lake:`."""
    return run_graph(read_events(events_file()), pipeline, ds.isoformat() if ds else None, paths.lake_uri())


def _cell(datasets: list[Dataset]) -> str:
    from rich.markup import escape

    lines = [escape(d.label) + (f" [dim]({d.rows:,} rows)[/]" if d.rows is not None else "") for d in datasets]
    return "\n".join(lines) or "[dim]-[/]"


def render(graph: RunGraph, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    colour = {"success": "green", "failed": "red", "aborted": "red"}
    table = Table(title=escape(f"{graph.pipeline} ds={graph.ds} · run {graph.run_id}"), show_lines=True)
    for column in ("step", "state", "inputs", "outputs"):
        table.add_column(column, overflow="fold")
    for step in graph.steps:
        state = f"[{colour.get(step.state, 'yellow')}]{escape(step.state)}[/]"
        table.add_row(escape(step.task_id), state, _cell(step.inputs), _cell(step.outputs))
    console.print(table)
