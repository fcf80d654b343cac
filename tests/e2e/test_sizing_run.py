"""End to end: the day's output size lands post-processing in small, medium, or large x N.

The demo pipeline runs in a copy of the project whose sizing tiers are scaled down
(small <= 1,000 rows, medium <= 3,000, large <= 5,000, then shards of 2,500, at most 4),
so three small days exercise every branch, and force_tier overrides one run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT
from water.spec import parse_quantity

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

WATER = str(Path(sys.executable).parent / "water")
DS = "2026-11-01"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizing-project")
    shutil.copytree(ROOT / "include", root / "include")
    shutil.copytree(ROOT / "dags", root / "dags")
    spec_path = root / "include" / "pipelines" / "recipe_engagement.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    sizing = spec["steps"]["postprocess"]["sizing"]
    for tier, max_rows in zip(sizing["tiers"], (1_000, 3_000, 5_000)):
        tier["max_rows"] = max_rows
    sizing["scale_out"] = {"rows_per_shard": 2_500, "max_shards": 4}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def water_run(project: Path, users: int, conf: dict | None = None) -> dict:
    argv = [WATER, "run", "recipe_engagement", "--date", DS, "--users", str(users), "--json"]
    if conf:
        argv += ["--conf", json.dumps(conf)]
    env = {**os.environ, "WATER_PROJECT_ROOT": str(project), "WATER_STATE_DIR": str(project / ".water")}
    proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, f"water run failed:\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout)


def states(summary: dict) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in summary["tasks"]}


def published(project: Path) -> list[int]:
    return pq.read_table(project / ".water" / "lake" / "recipe_engagement" / "outputs" / f"ds={DS}").column("user_id").to_pylist()


@pytest.mark.parametrize(
    "users,tier,shards",
    [(800, "small", 1), (2_500, "medium", 1), (9_000, "large", 4)],
    ids=["small", "medium", "large-x4"],
)
def test_output_size_picks_the_tier(project, users, tier, shards):
    summary = water_run(project, users)
    assert summary["state"] == "success"
    assert summary["sizing"]["tier"] == tier and summary["sizing"]["shards"] == shards
    assert summary["sizing"]["rows"] == users
    s = states(summary)
    chosen = [t for t, state in s.items() if t.startswith("postprocess_") and state == "success"]
    assert len(chosen) == shards and all(t.startswith(f"postprocess_{tier}") for t in chosen)
    assert s["no_predictions"] == "skipped"
    figures = {t["task_id"]: t["figures"] for t in summary["tasks"]}
    spec = yaml.safe_load((project / "include" / "pipelines" / "recipe_engagement.yaml").read_text())
    limit = next(t for t in spec["steps"]["postprocess"]["sizing"]["tiers"] if t["name"] == tier)["resources"]["limits"]["memory"]
    limit = int(parse_quantity(limit) / 2**20)
    assert all(figures[t]["memory_limit_mb"] == limit for t in chosen)
    assert sum(figures[t]["rows_out"] for t in chosen) == users
    assert figures["commit_outputs"]["shards"] == shards
    users_out = published(project)
    assert len(users_out) == len(set(users_out)) == users == summary["rows_published"]


def test_force_tier_overrides_the_decision_for_one_run(project):
    summary = water_run(project, 800, conf={"force_tier": "medium"})
    assert summary["sizing"]["tier"] == "medium" and summary["sizing"]["forced"] is True
    assert states(summary)["postprocess_medium"] == "success"
    assert states(summary)["postprocess_small"] == "skipped"
