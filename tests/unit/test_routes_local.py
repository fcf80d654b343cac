"""Class-routed post-processing on the local target, task by task, on a small day.

A temporary project (tests/routes.py): the predictions are a source the test writes (CSV lines
`id,class,confidence`, string ids, two files), counted by inference_stats; the sized step has
three routes with tiny tiers, so that on this day
- weekly_menu (cook, 100 rows) is past its largest tier: 3 shards of its mapped tier,
- first_cook_nudge (browse, 30 rows) runs its small tier,
- win_back (dormant, 25 rows) runs its small tier, too small for its job (--ballast-mb): the
  pod is killed for memory and runs once more one tier up,
- spam (10 rows) is dropped.
The operators are those water.factory builds with water.targets.local.LocalTarget, run as the
scheduler would after the sizing branch (no Spark, no Airflow database).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests import routes
from water.targets.local.engines.partitions import data_files, file_uri

DS = "2026-11-01"
COUNTS = {"cook": 100, "browse": 30, "dormant": 25, "spam": 10}
LOCAL_ROUTES = {
    "weekly_menu": routes.route(
        ["cook"],
        routes.sizing([routes.tier("small", 20), routes.tier("large", 40)], 40, 4),
        args={"campaign": "weekly_menu"},
    ),
    "first_cook_nudge": routes.route(
        ["browse"], routes.sizing([routes.tier("small", 100), routes.tier("large", 1_000)], 1_000, 2), args={"campaign": "nudge"}
    ),
    "win_back": routes.route(
        ["dormant"],
        # the small tier cannot hold the job's 256 MiB: killed for memory, retried on medium
        routes.sizing([routes.tier("small", 100, "128Mi"), routes.tier("medium", 1_000, "768Mi")], 1_000, 2),
        args={"campaign": "win_back", "ballast_mb": 256},
    ),
}
CAMPAIGN = {"cook": "weekly_menu", "browse": "nudge", "dormant": "win_back"}


def write_predictions(folder: Path) -> dict[str, list[str]]:
    """The day's predictions in two files, classes interleaved; ids by class."""
    rng = random.Random(7)
    rows = [(cls, i) for cls, n in COUNTS.items() for i in range(n)]
    rng.shuffle(rows)
    lines = [f"u-{cls[:2]}-{i:05d},{cls},{rng.uniform(0.3, 1):.4f}" for cls, i in rows]
    folder.mkdir(parents=True)
    half = len(lines) // 2
    (folder / "part-00000.csv.out").write_text("\n".join(lines[:half]) + "\n")
    (folder / "part-00001.csv.out").write_text("\n".join(lines[half:]) + "\n")
    ids: dict[str, list[str]] = {c: [] for c in COUNTS}
    for line in lines:
        ident, cls, _ = line.split(",")
        ids[cls].append(ident)
    return ids


@pytest.fixture
def day(tmp_path, monkeypatch, task_context):
    from water.factory import build_dag
    from water.spec import load_spec
    from water.targets.local.target import LocalTarget

    path = routes.write_project(tmp_path, routes.spec_data(LOCAL_ROUTES))
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(tmp_path))  # the pods run include/ of this project
    spec = load_spec(path)
    lake = tmp_path / "lake" / spec.name
    ids = write_predictions(lake / "predictions" / f"ds={DS}")
    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    dag = build_dag(spec, target)
    context = task_context(DS)
    name, step = spec.step_of("sized_postprocess")
    context["ti"].task_id = step.size_task_id(name)  # the task that pushes XCom: the sizing branch
    return {"spec": spec, "dag": dag, "ti": context["ti"], "ids": ids, "lake": lake, "context": context}


def run(day, task_id: str, **mapped: Any) -> Any:
    """Run one task as its task instance would (a mapped task unmapped with `mapped`); keep its XCom."""
    task = day["dag"].get_task(task_id)
    if mapped:
        task = task.unmap(mapped)
    value = task.execute(day["context"])
    if not mapped:
        day["ti"].xcom[(task_id, "return_value")] = value
    return value


def read(folder: Path) -> list[dict[str, Any]]:
    return [row for path in data_files(folder) for row in pq.read_table(path).to_pylist()]


def test_each_route_reads_its_classes_shards_escalates_alone_and_commits_once(day):
    spec, dag, ti = day["spec"], day["dag"], day["ti"]
    name, step = spec.step_of("sized_postprocess")
    partition = lambda dataset: day["lake"] / dataset / f"ds={DS}"  # noqa: E731

    stats = run(day, "inference_stats")
    assert stats["class_counts"] == COUNTS

    size = dag.get_task(step.size_task_id(name))
    branches = size.choose_branch(day["context"])
    decision = ti.xcom[(size.task_id, "decision")]
    assert decision["counts_from"] == "inference_stats"
    assert branches == ["plan_weekly_menu_shards", "first_cook_nudge_small", "win_back_small"]
    assert {r: (d["tier"], len(d["shards"])) for r, d in decision["routes"].items()} == {
        "weekly_menu": ("large", 3),
        "first_cook_nudge": ("small", 1),
        "win_back": ("small", 1),
    }

    # weekly_menu: its plan task's shards, one mapped task instance each
    shards = run(day, step.plan_task_id("weekly_menu"))
    assert shards == decision["routes"]["weekly_menu"]["shards"]
    largest = step.tier_task_id(name, "weekly_menu", "large")
    shard_root = partition(step.shards_dataset) / "route=weekly_menu"
    seen: list[str] = []
    for shard in shards:
        figures = run(day, largest, shard=shard)
        assert figures["rows_in"] == figures["rows_out"] == shard["row_end"] - shard["row_start"]
        assert "escalated" not in figures  # it fit the first time
        rows = read(shard_root / f"shard={shard['index']:04d}")
        assert {r["class"] for r in rows} == {"cook"} and {r["campaign"] for r in rows} == {"weekly_menu"}
        seen += [r["id"] for r in rows]
    assert sorted(seen) == sorted(day["ids"]["cook"])  # the shards cover the route's rows exactly once

    # the unsharded routes: each reads its own classes only
    nudge = run(day, "first_cook_nudge_small")
    assert nudge["rows_in"] == nudge["rows_out"] == COUNTS["browse"]
    assert "escalated" not in nudge and nudge["memory_limit_mb"] == 256
    rows = read(partition(step.shards_dataset) / "route=first_cook_nudge" / "shard=0000")
    assert sorted(r["id"] for r in rows) == sorted(day["ids"]["browse"])

    # win_back: killed for memory on its small tier, retried once on its medium tier
    win_back = run(day, "win_back_small")
    assert win_back["rows_in"] == win_back["rows_out"] == COUNTS["dormant"]
    assert win_back["escalated"]["to"] == "medium"
    assert (win_back["escalated"]["from_memory_limit"], win_back["escalated"]["to_memory_limit"]) == ("128Mi", "768Mi")
    assert win_back["memory_limit_mb"] == 768
    rows = read(partition(step.shards_dataset) / "route=win_back" / "shard=0000")
    assert sorted(r["id"] for r in rows) == sorted(day["ids"]["dormant"])

    # one commit: every row of every route once, the dropped class nowhere
    committed = run(day, step.commit_task_id())
    kept = sum(n for c, n in COUNTS.items() if c != "spam")
    assert committed["rows_out"] == kept and committed["shards"] == 5
    assert committed["tier"] == "weekly_menu large × 3 · first_cook_nudge small · win_back small"
    outputs = read(partition(step.writes))
    out_ids = [r["id"] for r in outputs]
    assert len(out_ids) == len(set(out_ids)) == kept
    assert set(out_ids) == {i for c, ids in day["ids"].items() if c != "spam" for i in ids}
    assert "spam" not in {r["class"] for r in outputs}
    assert all(r["campaign"] == CAMPAIGN[r["class"]] for r in outputs)
    assert sorted(p.name for p in partition(step.writes).iterdir()) == ["class=browse", "class=cook", "class=dormant"]
    assert not partition(step.shards_dataset).exists()  # the shards are gone once committed


def test_a_route_without_rows_writes_nothing_and_the_commit_skips_it(day):
    """No dormant rows today: win_back's tasks are skipped, and the commit asks nothing of it."""
    spec, dag = day["spec"], day["dag"]
    name, step = spec.step_of("sized_postprocess")
    folder = day["lake"] / "predictions" / f"ds={DS}"
    for path in folder.iterdir():  # the same day without its dormant rows
        path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if ",dormant," not in line))

    run(day, "inference_stats")
    branches = dag.get_task(step.size_task_id(name)).choose_branch(day["context"])
    assert branches == ["plan_weekly_menu_shards", "first_cook_nudge_small"]
    for shard in run(day, step.plan_task_id("weekly_menu")):
        run(day, step.tier_task_id(name, "weekly_menu", "large"), shard=shard)
    run(day, "first_cook_nudge_small")
    committed = run(day, step.commit_task_id())
    assert committed["rows_out"] == COUNTS["cook"] + COUNTS["browse"] and committed["shards"] == 4
    assert "win_back no rows" in committed["tier"]


def test_the_commit_refuses_a_missing_shard_of_a_route(day):
    spec, dag = day["spec"], day["dag"]
    name, step = spec.step_of("sized_postprocess")
    run(day, "inference_stats")
    dag.get_task(step.size_task_id(name)).choose_branch(day["context"])
    run(day, "first_cook_nudge_small")  # weekly_menu and win_back never ran
    with pytest.raises(FileNotFoundError) as caught:
        run(day, step.commit_task_id())
    message = str(caught.value)
    assert "route=weekly_menu/shard=0000" in message and "route=weekly_menu/shard=0002" in message
    assert "route=win_back/shard=0000" in message and "first_cook_nudge" not in message
    assert not (day["lake"] / step.writes).exists()  # nothing half-committed
