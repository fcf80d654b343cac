"""End to end: the seed's swing, 34/33/33 one day and 80/15/5 the next, at the same user count.

The total is the same both days; what moves is each class's rows, and each route is sized
from its own: the cook route's tier or shard count grows, the others shrink, every pod stays
under its limit, and the outputs hold every row exactly once. The tiers are scaled down so
that 5,000 users cross them; the drift guard only warns here (the swing is the point).
"""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.runs import water_run

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

USERS = 5_000
DAYS = {"2026-11-01": "34/33/33", "2026-11-02": "80/15/5"}
# per route, as shares of USERS: the first tier up to 20 %, the next up to 50 %, then 80 % … (40 % a
# shard): a third of the users takes a route past its first tier, 15 % keeps it there, 80 % past the second
SCALED = (1_000, 2_500, 4_000, 5_500, 7_000)
ROWS_PER_SHARD = 2_000


@pytest.fixture(scope="module")
def swing(tmp_path_factory):
    root = tmp_path_factory.mktemp("routes-project")
    for folder in ("include", "dags"):
        shutil.copytree(ROOT / folder, root / folder)
    spec_path = root / "include/pipelines/recipe_engagement.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    sized = next(s for s in spec["steps"].values() if s["kind"] == "sized_postprocess")
    assert sized.get("routes"), "the demo's post-processing is routed by class"
    for route in sized["routes"].values():
        assert len(route["sizing"]["tiers"]) <= len(SCALED)
        for tier, max_rows in zip(route["sizing"]["tiers"], SCALED, strict=False):
            tier["max_rows"] = max_rows
        route["sizing"]["scale_out"] = {"rows_per_shard": ROWS_PER_SHARD, "max_shards": 4}
    guard = next(s for s in spec["steps"].values() if s["kind"] == "drift_guard")
    guard.update({"warn": 0.1, "block": 50})  # warn only: the swing must reach the routes
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    summaries = {
        ds: water_run("recipe_engagement", ds, "--users", str(USERS), "--mix", f"{ds}={mix}", project=root, state=root / ".water")
        for ds, mix in DAYS.items()
    }
    return root, sized, summaries


def route_of(sized: dict, cls: str) -> str:
    return next(name for name, route in sized["routes"].items() if cls in route["classes"])


def size(sized: dict, name: str, route: dict) -> tuple[int, int]:
    """A route's size as (tier index in its own sizing, shards): comparable across days."""
    tiers = [t["name"] for t in sized["routes"][name]["sizing"]["tiers"]]
    return tiers.index(route["tier"]), route["shards"]


def test_same_total_both_days(swing):
    _, _, summaries = swing
    one, two = summaries.values()
    assert one["state"] == two["state"] == "success"
    assert one["sizing"]["rows"] == two["sizing"]["rows"] == USERS
    assert two["drift"]["verdict"] == "warn"  # judged, not blocked


def test_the_heavy_class_route_grows_and_the_light_ones_shrink(swing):
    _, sized, summaries = swing
    one, two = (s["sizing"]["routes"] for s in summaries.values())
    cook, browse, dormant = (route_of(sized, c) for c in ("cook", "browse", "dormant"))
    assert two[cook]["rows"] > one[cook]["rows"] and size(sized, cook, two[cook]) > size(sized, cook, one[cook])
    for light in (browse, dormant):
        assert two[light]["rows"] < one[light]["rows"] and size(sized, light, two[light]) < size(sized, light, one[light])
    for routes in (one, two):  # each route sized from its own classes' rows
        assert sum(r["rows"] for r in routes.values()) == USERS


def test_every_pod_stays_under_its_limit(swing):
    _, _, summaries = swing
    for summary in summaries.values():
        routes = summary["sizing"]["routes"]
        pods = [
            t
            for t in summary["tasks"]
            if t["state"] == "success"
            and "memory_limit_mb" in t["figures"]
            and any(t["task_id"].startswith(f"{r}_") for r in routes)
        ]
        assert len(pods) == sum(r["shards"] for r in routes.values())  # one pod per planned shard, all ran
        for pod in pods:
            f = pod["figures"]
            assert "escalated" not in f and f["peak_rss_mb"] < f["memory_limit_mb"], pod


def test_outputs_hold_every_row_exactly_once(swing):
    root, _, summaries = swing
    for ds, summary in summaries.items():
        outputs = pq.read_table(root / ".water/lake/recipe_engagement/outputs" / f"ds={ds}")
        users = outputs.column("user_id").to_pylist()
        assert len(users) == len(set(users)) == USERS == summary["rows_published"]
