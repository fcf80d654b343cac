"""End to end: `water run` drives the demo DAG through Airflow on the local target.

About 20,000 users; runs the same day twice and checks the second run rewrote every
partition with the same bytes and published no duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from water import lake, seed
from water.local.partitions import data_files

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

DS = "2026-11-01"
USERS = 20_000
WATER = str(Path(sys.executable).parent / "water")
STAGES = ("extract", "features", "training_set", "preprocess", "train", "batch_inference",
          "inference_stats", "size_postprocess", "postprocess_small", "commit_outputs", "publish")
SKIPPED = ("no_predictions", "postprocess_medium", "plan_shards", "postprocess_large")


def water_run(state_dir: Path) -> dict:
    proc = subprocess.run(
        [WATER, "run", "recipe_engagement", "--date", DS, "--users", str(USERS), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "WATER_STATE_DIR": str(state_dir)},
    )
    assert proc.returncode == 0, f"water run failed:\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout)


def partitions_fingerprint(lake_dir: Path) -> dict[str, str]:
    """Every file of every ds partition: its bytes, or for Spark's Parquet its decoded content.

    parquet-mr lists a column chunk's encodings from a hash set whose order changes from one
    JVM to the next, so Spark-written footers may differ while data, schema and metadata don't.
    """
    prints = {}
    for folder in sorted(lake_dir.glob(f"**/ds={DS}")):
        for path in data_files(folder):
            name = str(path.relative_to(lake_dir))
            if path.name.startswith("part-") and path.name.endswith("-c000.snappy.parquet"):
                table = pq.read_table(path)
                payload = table.schema.serialize().to_pybytes() + b"".join(
                    c.to_pylist().__repr__().encode() for c in table.columns
                )
                name = name.split("-")[0] + "-<spark job>.parquet"
            else:
                payload = path.read_bytes()
            prints[name] = hashlib.sha256(payload).hexdigest()
    return prints


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    state = tmp_path_factory.mktemp("e2e-state")
    first = water_run(state)
    lake_dir = state / "lake" / "recipe_engagement"
    first_prints = partitions_fingerprint(lake_dir)
    second = water_run(state)
    return {"state": state, "lake": lake_dir, "first": first, "second": second,
            "first_prints": first_prints, "second_prints": partitions_fingerprint(lake_dir)}


def figures(summary: dict) -> dict[str, dict]:
    return {t["task_id"]: t["figures"] for t in summary["tasks"]}


def test_every_stage_succeeds(runs):
    for summary in (runs["first"], runs["second"]):
        assert summary["state"] == "success"
        states = {t["task_id"]: t["state"] for t in summary["tasks"]}
        assert states == {**{s: "success" for s in STAGES}, **{s: "skipped" for s in SKIPPED}}
        assert summary["sizing"]["tier"] == "small" and summary["sizing"]["shards"] == 1
        assert summary["wall_seconds"] > 0 and summary["overhead_ratio"] >= 1.0


def test_row_counts_hold_through_every_stage(runs):
    f = figures(runs["first"])
    warehouse = runs["state"] / "warehouse"
    events = pq.read_metadata(warehouse / "app" / "recipe_events" / f"event_date={DS}" / "part-00000.parquet").num_rows
    users = pq.read_table(warehouse / "app" / "users").to_pandas()
    eligible = int((users.signup_date.astype(str) <= DS).sum())
    assert f["extract"]["rows_out"] >= events
    assert f["features"]["rows_in"] == f["extract"]["rows_out"]
    assert f["features"]["rows_out"] == eligible
    assert f["training_set"]["rows_out"] == eligible
    assert f["preprocess"]["outputs"]["inference-output"] == eligible
    labels = pq.read_metadata(runs["lake"] / lake.LABELS / f"ds={DS}" / "part-00000.parquet").num_rows
    assert f["train"]["rows_in"] == labels
    assert f["batch_inference"]["rows_in"] == f["batch_inference"]["rows_out"] == eligible
    assert f["inference_stats"]["rows"] == sum(f["inference_stats"]["class_counts"].values()) == eligible
    assert f["size_postprocess"]["rows"] == eligible and f["size_postprocess"]["counts_from"] == "inference_stats"
    assert f["postprocess_small"]["rows_out"] == f["commit_outputs"]["rows_out"] == eligible
    assert f["publish"]["rows_out"] == eligible == runs["first"]["rows_published"]


def test_model_beats_what_the_generator_guarantees(runs):
    accuracy = runs["first"]["validation_accuracy"]
    assert accuracy >= seed.GUARANTEED_ACCURACY
    counts = runs["first"]["predicted_class_counts"]
    shares = [counts[c] / sum(counts.values()) for c in ("cook", "browse", "dormant")]
    assert all(abs(s - m) < 0.1 for s, m in zip(shares, seed.DEFAULT_MIX))  # close to the true mix


def test_second_run_rewrites_identical_partitions(runs):
    assert runs["first_prints"] and runs["first_prints"] == runs["second_prints"]
    datasets = {name.split("/ds=")[0] for name in runs["first_prints"]}
    assert datasets >= {lake.RAW, lake.FEATURES, lake.TRAINING, lake.CHANNEL_TRAIN, lake.CHANNEL_INFERENCE,
                        lake.MODEL, lake.PREDICTIONS, lake.STATS, lake.OUTPUTS}


def test_publish_never_duplicates(runs):
    from water.local.warehouse import table_rows

    warehouse = runs["state"] / "warehouse"
    assert table_rows(warehouse, "ml.engagement_segments") == runs["second"]["rows_published"]


def test_plain_airflow_sees_the_dag_with_only_airflow_home(runs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(runs["state"] / "airflow")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "list", "-o", "json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    listing = next(line for line in proc.stdout.splitlines() if line.startswith("["))
    assert "recipe_engagement" in {d["dag_id"] for d in json.loads(listing)}
