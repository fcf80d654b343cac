"""OpenLineage events of local runs, read back and checked (docs/lineage.md).

A local run appends its events to `<state>/lineage/events.jsonl` (water.paths.lineage_events).
`schema_errors` validates one event against the OpenLineage spec's JSON schema, vendored in
tests/contract/openlineage/ (README there): the core schema, and each facet against its own
schema when the facet's `_schemaURL` names one of the vendored facet files (facet `$ref`s to the
core resolve by `$id` through a referencing registry, never over the network). `check_run`
holds a run's events to what the issue asks: every step's task reports what it read and wrote
as water.lineage names it, the graph joins, and no task carries another's datasets.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent / "contract" / "openlineage"
CORE = "OpenLineage.json"

Event = dict[str, Any]
DatasetId = tuple[str, str]


@cache
def _schemas() -> dict[str, dict]:
    """Every vendored schema by its $id."""
    found = {}
    for path in [SCHEMAS / CORE, *sorted((SCHEMAS / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text())
        found[schema["$id"]] = schema
    return found


@cache
def _registry() -> Registry:
    return Registry().with_resources((uri, Resource.from_contents(schema)) for uri, schema in _schemas().items())


def _facet_schema(schema_url: str) -> tuple[str, dict] | None:
    """The vendored schema a facet's _schemaURL names: by its exact $id, else (another version of
    the same standard facet) by the file name; None for a facet the spec does not define."""
    uri, _, fragment = schema_url.partition("#")
    schemas = _schemas()
    if uri not in schemas:
        same_file = [u for u in schemas if u.rsplit("/", 1)[-1] == uri.rsplit("/", 1)[-1] and "/facets/" in u]
        if not same_file or "/facets/" not in uri:
            return None
        uri = same_file[0]
    return uri, {"$ref": f"{uri}#{fragment}"} if fragment else {"$ref": uri}


def _facets(event: Event) -> list[tuple[str, dict]]:
    """(where, facet) of every facet in an event: run, job, and each dataset's."""
    found = [(f"run.facets.{k}", v) for k, v in event.get("run", {}).get("facets", {}).items()]
    found += [(f"job.facets.{k}", v) for k, v in event.get("job", {}).get("facets", {}).items()]
    for side, facet_key in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for i, dataset in enumerate(event.get(side, [])):
            for key in ("facets", facet_key):
                found += [(f"{side}[{i}].{key}.{k}", v) for k, v in dataset.get(key, {}).items()]
    return found


def _short(error: Any) -> str:
    """An error's message without the whole event it may quote (a oneOf quotes the instance)."""
    from jsonschema.exceptions import best_match

    deepest = best_match(error.context) if error.context else error
    where = ".".join(map(str, deepest.absolute_path))
    message = deepest.message if len(deepest.message) <= 300 else deepest.message[:300] + " …"
    return f"{message} (at {where})" if deepest is not error and where else message


def schema_errors(event: Event) -> list[str]:
    """Where and how an event breaks the OpenLineage spec (empty: it validates)."""
    registry = _registry()
    core = _schemas()[next(u for u, s in _schemas().items() if u.endswith(f"/{CORE}"))]
    errors = []
    if not Draft202012Validator(core, registry=registry).is_valid(event):
        # the core is oneOf run/dataset/job event: name the errors against the kind it looks like
        kind = "RunEvent" if "run" in event else "DatasetEvent" if "dataset" in event else "JobEvent"
        validator = Draft202012Validator({"$ref": f"{core['$id']}#/$defs/{kind}"}, registry=registry)
        errors = [f"{'.'.join(map(str, e.absolute_path)) or '<event>'}: {_short(e)}" for e in validator.iter_errors(event)]
        errors = errors or [f"<event>: not valid under {CORE}"]
    for where, facet in _facets(event):
        named = _facet_schema(facet.get("_schemaURL", "")) if isinstance(facet, dict) else None
        if named is None:
            continue
        validator = Draft202012Validator(named[1], registry=registry)
        errors += [
            f"{where}.{'.'.join(map(str, e.absolute_path))}: {_short(e)}".replace(".:", ":") for e in validator.iter_errors(facet)
        ]
    return errors


def load_events(state: Path) -> list[Event]:
    """Every event local runs with this state folder wrote, in the order written."""
    path = state / "lineage" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_of(event: Event) -> str | None:
    """The Airflow run id of a task's event (None for a DAG-run event)."""
    return event.get("run", {}).get("facets", {}).get("airflow", {}).get("dagRun", {}).get("run_id")


def task_events(events: list[Event], dag_id: str, run_id: str, event_type: str = "COMPLETE") -> dict[str, list[Event]]:
    """A run's task events of one type, by task id (a mapped task has one per map index)."""
    found: dict[str, list[Event]] = {}
    for event in events:
        name = event["job"]["name"]
        if event.get("eventType") == event_type and name.startswith(f"{dag_id}.") and run_of(event) == run_id:
            found.setdefault(name.removeprefix(f"{dag_id}."), []).append(event)
    return found


def datasets(event: Event, side: str) -> set[DatasetId]:
    return {(d["namespace"], d["name"]) for d in event.get(side, [])}


def local_target(state: Path) -> Any:
    """The local target of runs with this state folder (its lake and warehouse, as water.paths
    names them for WATER_STATE_DIR=state)."""
    from water.targets.local.target import LocalTarget

    root = state.resolve()
    return LocalTarget(lake_root=f"file://{root / 'lake'}", warehouse_dir=str(root / "warehouse"))


def step_tasks(spec: Any, name: str) -> set[str]:
    """The tasks that carry step `name`'s datasets: the step's own task, or for a sized step
    (one task per tier, per route) its tier tasks and the task committing their shards."""
    step = spec.steps[name]
    if step.kind == "drift_guard":
        return {name, step.quarantine_task_id}  # the guard reads; its quarantine branch writes
    if step.kind != "sized_postprocess":
        return {name}
    routes = step.all_routes(spec.classes, name)
    tiers = {step.tier_task_id(name, r, t.name) for r, route in routes.items() for t in route.sizing.tiers}
    return tiers | {step.commit_task_id()}


def check_run(events: list[Event], spec: Any, target: Any, run_id: str, ran: set[str]) -> list[str]:
    """What is wrong with the lineage of one run (empty: nothing): `ran` are the task ids that
    succeeded (the run's summary); `target` the local target the run used (its lake and warehouse)."""
    from water.lineage import dataset_identity, step_datasets

    problems: list[str] = []
    completes = task_events(events, spec.name, run_id)
    seen_in: dict[str, set[DatasetId]] = {}
    seen_out: dict[str, set[DatasetId]] = {}
    expected: dict[str, tuple[list[DatasetId], list[DatasetId]]] = {}
    for name in spec.steps:
        tasks = step_tasks(spec, name) & ran
        if not tasks:
            continue  # not run this time (e.g. the step after a blocked gate)
        expected[name] = step_datasets(spec, target, name)
        want_in, want_out = (set(x) for x in expected[name])
        if spec.steps[name].kind == "drift_guard":  # its quarantine reads the guarded partition it moves
            want_in |= {dataset_identity(target, spec.name, spec.steps[name].guards)}
        if spec.steps[name].kind == "sized_postprocess":  # its tier tasks write shards, its commit reads them
            shards = dataset_identity(target, spec.name, spec.steps[name].shards_dataset)
            want_in, want_out = want_in | {shards}, want_out | {shards}
        seen_in[name], seen_out[name] = set(), set()
        for task in sorted(tasks):
            if task not in completes:
                problems.append(f"{task} (step {name}): no COMPLETE event")
                continue
            for event in completes[task]:
                got_in, got_out = datasets(event, "inputs"), datasets(event, "outputs")
                seen_in[name] |= got_in
                seen_out[name] |= got_out
                if got_in - want_in:
                    problems.append(f"{task}: inputs not its step's: {sorted(got_in - want_in)}")
                if got_out - want_out:
                    problems.append(f"{task}: outputs not its step's: {sorted(got_out - want_out)}")
        if not seen_in[name]:
            problems.append(f"step {name}: no input dataset reported")
        writes = spec.steps[name].kind != "drift_guard" or spec.steps[name].quarantine_task_id in ran
        if writes and not seen_out[name]:  # a guard that let the day through wrote nothing
            problems.append(f"step {name}: no output dataset reported")
    # the graph joins: what one step writes and another reads, both name the same way
    for producer, (_, outs) in expected.items():
        for consumer, (ins, _) in expected.items():
            for dataset in sorted(set(outs) & set(ins)):
                if consumer == producer:
                    continue
                if dataset not in seen_out[producer]:
                    problems.append(f"{producer} -> {consumer}: {dataset} not among {producer}'s outputs")
                if dataset not in seen_in[consumer]:
                    problems.append(f"{producer} -> {consumer}: {dataset} not among {consumer}'s inputs")
    return problems
