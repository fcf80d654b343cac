"""End to end: the cook route's own rows land it on its first tier, its second, or shards.

The demo runs in a copy of the project whose cook route (weekly_menu) has scaled-down tiers
(1,000, 3,000, 5,000, 7,000 rows, then shards of 2,500, at most 4): three small days
exercise every branch while the other routes stay on their first tier; force_tier
overrides one route, or all, for one run. The smallest day's run forces the browse route's
tier, and serves both tests: the cook route's own rows still pick its tier.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e import runs

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

DS = "2026-11-01"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizing-project")
    shutil.copytree(ROOT / "include", root / "include")
    shutil.copytree(ROOT / "dags", root / "dags")
    spec_path = root / "include" / "pipelines" / "recipe_engagement.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    cook = next(r for r in spec["steps"]["postprocess"]["routes"].values() if "cook" in r["classes"])
    for tier, max_rows in zip(cook["sizing"]["tiers"], SCALED, strict=True):
        tier["max_rows"] = max_rows
    cook["sizing"]["scale_out"] = {"rows_per_shard": 2_500, "max_shards": 4}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


SCALED = (1_000, 3_000, 5_000, 7_000)


def spec_of(project: Path):
    from water.spec import load_spec

    return load_spec(project / "include/pipelines/recipe_engagement.yaml", include_dir=project / "include")


def water_run(project: Path, users: int, conf: dict | None = None) -> dict:
    extra = ["--users", str(users), *(["--conf", json.dumps(conf)] if conf else [])]
    return runs.water_run("recipe_engagement", DS, *extra, project=project, state=project / ".water")


FORCE_ONE = {"force_tier": {"browse": "medium"}}  # one route, by its class


@pytest.fixture(scope="module")
def run_day(project):
    """run_day(users, conf) -> (its summary, the user ids it published): each run once for the module."""
    done: dict[str, tuple[dict, list[int]]] = {}

    def run(users: int, conf: dict | None = None) -> tuple[dict, list[int]]:
        key = json.dumps([users, conf])
        if key not in done:
            summary = water_run(project, users, conf)
            done[key] = summary, published(project)  # as this run left them
        return done[key]

    return run


def states(summary: dict) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in summary["tasks"]}


def published(project: Path) -> list[int]:
    return pq.read_table(project / ".water" / "lake" / "recipe_engagement" / "outputs" / f"ds={DS}").column("user_id").to_pylist()


@pytest.mark.parametrize(
    ("users", "conf", "tier_index", "shards"),
    [(800, FORCE_ONE, 0, 1), (5_000, None, 1, 1), (20_000, None, -1, 4)],
    ids=["first-tier", "second-tier", "largest-x4"],
)
def test_the_cook_routes_rows_pick_its_tier(project, run_day, users, conf, tier_index, shards):
    spec = spec_of(project)
    step = spec.steps["postprocess"]
    name, route = next((n, r) for n, r in step.routes.items() if "cook" in r.classes)
    tier = route.sizing.tiers[tier_index]
    summary, users_out = run_day(users, conf)
    assert summary["state"] == "success"
    decided = summary["sizing"]["routes"]
    assert (decided[name]["tier"], decided[name]["shards"], decided[name]["forced"]) == (tier.name, shards, False)
    assert decided[name]["rows"] == summary["predicted_class_counts"]["cook"]
    for other, d in decided.items():  # the light routes stay on their first tier (unless forced)
        if other != name and not d["forced"]:
            assert (d["tier"], d["shards"]) == (step.routes[other].sizing.tiers[0].name, 1)
    s = states(summary)
    chosen = [t for t, state in s.items() if t.startswith(f"{name}_") and state == "success"]
    assert len(chosen) == shards and all(t.startswith(step.tier_task_id("postprocess", name, tier.name)) for t in chosen)
    assert s["no_predictions"] == "skipped"
    figures = {t["task_id"]: t["figures"] for t in summary["tasks"]}
    limit = tier.resources.memory_limit_bytes / 2**20
    assert all(figures[t]["memory_limit_mb"] == limit and figures[t]["peak_rss_mb"] < limit for t in chosen)
    assert sum(figures[t]["rows_out"] for t in chosen) == decided[name]["rows"]
    assert figures["commit_outputs"]["shards"] == shards + len(decided) - 1
    assert len(users_out) == len(set(users_out)) == users == summary["rows_published"]


def test_force_tier_overrides_one_route_or_all_for_one_run(project, run_day):
    spec = spec_of(project)
    step = spec.steps["postprocess"]
    summary, _ = run_day(800, FORCE_ONE)
    decided = summary["sizing"]["routes"]
    browse = next(n for n, r in step.routes.items() if "browse" in r.classes)
    assert decided[browse]["tier"] == "medium" and decided[browse]["forced"] is True
    assert all(not d["forced"] and d["tier"] == "small" for n, d in decided.items() if n != browse)
    assert states(summary)[step.tier_task_id("postprocess", browse, "medium")] == "success"
    summary, _ = run_day(800, {"force_tier": "medium"})
    assert all(d["tier"] == "medium" and d["forced"] for d in summary["sizing"]["routes"].values())
