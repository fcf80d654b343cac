"""`water lineage PIPELINE [--date D] [--json]`: the dataset graph of a local run, read from a
synthetic OpenLineage events file shaped as the provider writes it (task jobs `<dag_id>.<task_id>`,
the `parent`, `airflow` and `nominalTime` run facets): two days of recipe_engagement (the second
run twice, the first try failing), a retried task, a task mapped over two shards, the DAG's own
events and another pipeline's, lines in file order, not graph order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from water import paths
from water.cli import app
from water.lineage import lake_dataset, warehouse_table

PIPELINE = "recipe_engagement"
LAKE = "file:///lake"
USERS = warehouse_table("app.users", gcp_project="proj")  # ("bigquery", "proj.app.users")
RAW, FEATURES, MODEL = (lake_dataset(LAKE, PIPELINE, d) for d in ("raw", "features", "model"))
PREDICTIONS = lake_dataset(LAKE, PIPELINE, "predictions")
UPSTREAM = {"extract": [], "features": ["extract"], "train": ["features"], "batch_inference": ["train"]}


def dataset(identity: tuple[str, str], rows: int | None = None, *, output: bool = False) -> dict:
    found: dict = {"namespace": identity[0], "name": identity[1], "facets": {}}
    if rows is not None:
        found["outputFacets" if output else "inputFacets"] = {
            "outputStatistics" if output else "inputStatistics": {"rowCount": rows}
        }
    return found


def event(
    kind: str,
    task: str,
    *,
    ds: str,
    run: str,
    at: str,
    inputs=(),
    outputs=(),
    attempt: int = 1,
    map_index: int | None = None,
    dag: str = PIPELINE,
) -> dict:
    logical = f"{ds}T00:00:00+00:00"
    return {
        "eventType": kind,
        "eventTime": f"{ds}T{at}+00:00",
        "job": {"namespace": "default", "name": f"{dag}.{task}"},
        "run": {
            "runId": f"{run}-{task}-{map_index}-{attempt}",  # one OpenLineage run per try and map index
            "facets": {
                "parent": {"job": {"namespace": "default", "name": dag}, "run": {"runId": f"ol-{run}"}},
                "nominalTime": {"nominalStartTime": logical},
                "airflow": {
                    "dag": {"dag_id": dag},
                    "dagRun": {"dag_id": dag, "run_id": run, "logical_date": logical},
                    "task": {"task_id": task, "upstream_task_ids": UPSTREAM.get(task, [])},
                    "taskInstance": {"try_number": attempt, "map_index": map_index},
                },
            },
        },
        "inputs": list(inputs),
        "outputs": list(outputs),
    }


def step(kind, task, inputs=(), outputs=(), **kw) -> list[dict]:
    """A task's START (its inputs as the extractor knows them at start) and its end."""
    end = {**kw, "at": kw["at"].replace(":00.", ":30.")}
    return [event("START", task, inputs=inputs, **kw), event(kind, task, inputs=inputs, outputs=outputs, **end)]


def day_one() -> list[dict]:
    """11-01: extract and features succeed, train fails."""
    kw = {"ds": "2026-11-01", "run": "manual__2026-11-01"}
    return [
        *step("COMPLETE", "extract", [dataset(USERS)], [dataset(RAW, 100, output=True)], at="10:00:00.0", **kw),
        *step("COMPLETE", "features", [dataset(RAW)], [dataset(FEATURES, 90, output=True)], at="10:01:00.0", **kw),
        *step("FAIL", "train", [dataset(FEATURES)], [], at="10:02:00.0", **kw),
    ]


def day_two() -> list[dict]:
    """11-02: a first run failing at extract, then the latest: train failing once then succeeding,
    batch_inference mapped over two shards."""
    first = {"ds": "2026-11-02", "run": "manual__2026-11-02_first"}
    kw = {"ds": "2026-11-02", "run": "manual__2026-11-02"}
    return [
        *step("FAIL", "extract", [dataset(USERS)], [], at="08:00:00.0", **first),
        *step("COMPLETE", "extract", [dataset(USERS)], [dataset(RAW, 200, output=True)], at="11:00:00.0", **kw),
        # the mapped shards and the DAG's own event come first in the file
        *step(
            "COMPLETE",
            "batch_inference",
            [dataset(MODEL)],
            [dataset(PREDICTIONS, 70, output=True)],
            at="11:05:00.0",
            map_index=1,
            **kw,
        ),
        *step(
            "COMPLETE",
            "batch_inference",
            [dataset(MODEL)],
            [dataset(PREDICTIONS, 50, output=True)],
            at="11:05:00.0",
            map_index=0,
            **kw,
        ),
        {**event("START", "x", at="10:59:00.0", **kw), "job": {"namespace": "default", "name": PIPELINE}},
        *step("COMPLETE", "features", [dataset(RAW)], [dataset(FEATURES, 180, output=True)], at="11:01:00.0", **kw),
        *step("FAIL", "train", [dataset(FEATURES)], [], at="11:02:00.0", **kw),
        *step("COMPLETE", "train", [dataset(FEATURES, 180)], [dataset(MODEL, output=True)], at="11:03:00.0", attempt=2, **kw),
    ]


def other_pipeline() -> list[dict]:
    """customer_value, on a later day: never in recipe_engagement's graph."""
    theirs = lake_dataset(LAKE, "customer_value", "raw")
    return step(
        "COMPLETE",
        "extract",
        [dataset(USERS)],
        [dataset(theirs)],
        ds="2026-11-05",
        run="cv",
        at="09:00:00.0",
        dag="customer_value",
    )


@pytest.fixture
def events_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WATER_LAKE", LAKE)
    path = paths.lineage_events()
    path.parent.mkdir(parents=True)
    lines = [json.dumps(e) for e in [*day_one(), *other_pipeline(), *day_two()]]
    path.write_text("\n".join(lines) + '\n{"eventType": "START", "job": {"na')  # a line being written
    return path


def water(*args: str):
    """`water lineage …`, on a console wide enough for whole rows: the CLI's consoles took their
    width when water.cli was first imported in this process (COLUMNS then)."""
    from water import cli

    widths = cli.console.width, cli.err.width
    cli.console.width = cli.err.width = 300
    try:
        return CliRunner().invoke(app, ["lineage", *args], env={"COLUMNS": "300"})
    finally:
        cli.console.width, cli.err.width = widths


def graph_json(*args: str) -> dict:
    result = water(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_newest_days_latest_run_in_graph_order(events_file):
    graph = graph_json(PIPELINE)
    assert (graph["pipeline"], graph["ds"], graph["run_id"]) == (PIPELINE, "2026-11-02", "manual__2026-11-02")
    assert [(s["task_id"], s["state"]) for s in graph["steps"]] == [
        ("extract", "success"),
        ("features", "success"),
        ("train", "success"),  # its last try
        ("batch_inference", "success"),  # both shards, in one row
    ]
    by_task = {s["task_id"]: s for s in graph["steps"]}
    labels = {t: ([d["label"] for d in s["inputs"]], [d["label"] for d in s["outputs"]]) for t, s in by_task.items()}
    assert labels == {
        "extract": (["bigquery:proj.app.users"], ["lake:recipe_engagement/raw"]),
        "features": (["lake:recipe_engagement/raw"], ["lake:recipe_engagement/features"]),
        "train": (["lake:recipe_engagement/features"], ["lake:recipe_engagement/model"]),
        "batch_inference": (["lake:recipe_engagement/model"], ["lake:recipe_engagement/predictions"]),
    }
    assert by_task["extract"]["outputs"][0] | {"label": None} == {
        "namespace": "file",
        "name": "/lake/recipe_engagement/raw",
        "label": None,
        "rows": 200,
    }
    assert by_task["train"]["inputs"][0]["rows"] == 180
    assert by_task["batch_inference"]["outputs"][0]["rows"] == 120  # 70 + 50, one per shard
    assert by_task["train"]["outputs"][0]["rows"] is None  # not known


def test_the_date_picks_the_day_and_a_failed_step_shows(events_file):
    graph = graph_json(PIPELINE, "--date", "2026-11-01")
    assert (graph["ds"], graph["run_id"]) == ("2026-11-01", "manual__2026-11-01")
    assert [(s["task_id"], s["state"], len(s["outputs"])) for s in graph["steps"]] == [
        ("extract", "success", 1),
        ("features", "success", 1),
        ("train", "failed", 0),
    ]
    assert graph["steps"][0]["outputs"][0]["rows"] == 100


def test_the_table_has_a_row_per_step(events_file):
    result = water(PIPELINE)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "recipe_engagement ds=2026-11-02 · run manual__2026-11-02" in out
    rows = [line for line in out.splitlines() if line.startswith("│ ") and not line.startswith("│ step")]
    first_cells = [row.split("│")[1].strip() for row in rows if row.split("│")[1].strip()]
    assert first_cells == ["extract", "features", "train", "batch_inference"]
    extract = next(row for row in rows if row.split("│")[1].strip() == "extract")
    assert [cell.strip() for cell in extract.split("│")[2:5]] == [
        "success",
        "bigquery:proj.app.users",
        "lake:recipe_engagement/raw (200 rows)",
    ]
    assert "customer_value" not in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nosuch"], 2, "no pipeline 'nosuch'; there are: customer_value, recipe_engagement"),
        ([PIPELINE, "--date", "2026-02-30"], 2, "'2026-02-30' is not a date (YYYY-MM-DD)"),
        (
            [PIPELINE, "--date", "2026-11-03"],
            1,
            "no run of recipe_engagement for ds=2026-11-03 in ",
        ),
        (["recipe_engagement_vertex"], 1, "no lineage events of recipe_engagement_vertex in"),
    ],
)
def test_what_it_cannot_show_it_says(events_file, args, code, message):
    result = water(*args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split()), result.output
    if code == 1 and "ds=" in message:
        assert "lineage/events.jsonl; runs exist for 2026-11-01, 2026-11-02" in " ".join(result.output.split())


def test_without_an_events_file_it_says_what_writes_one(events_file):
    events_file.unlink()
    result = water(PIPELINE)
    assert result.exit_code == 1
    assert "no lineage events at" in result.output and "`water run PIPELINE`" in result.output
