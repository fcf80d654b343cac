"""Each local stage on small data, in pipeline order, running the production artifacts.

One small lake (2,000 users, one day) is seeded for the module; the stages then run one
after the other, as the DAG chains them, and each test checks what its stage wrote.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from water import lake, seed
from water.local.partitions import data_files, file_uri
from water.local.process import OutOfMemory
from water.spec import load_pipeline
from water.targets.local import LocalTarget

DS = "2026-11-01"
USERS = 2_000


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    warehouse, lake_root = root / "warehouse", root / "lake"
    seed.seed(warehouse, lake_root / "recipe_engagement", [seed.date.fromisoformat(DS)], USERS)
    target = LocalTarget(lake_root=file_uri(lake_root), warehouse_dir=str(warehouse))
    return SimpleNamespace(
        spec=load_pipeline("recipe_engagement"),
        target=target,
        warehouse=warehouse,
        lake=lake_root / "recipe_engagement",
        figures={},
    )


def run(op, figures=None, decision=None):
    ti = SimpleNamespace(try_number=1, xcom_pull=lambda task_ids=None, key=None: decision)
    result = op.run(DS, {"ds": DS, "ti": ti})
    if figures is not None:
        figures[op.task_id] = result
    return result


def partition(env, dataset: str) -> Path:
    return env.lake / dataset / f"ds={DS}"


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in data_files(folder)}


def source_counts(env):
    users = pq.read_table(env.warehouse / "app" / "users")
    events = pq.read_table(env.warehouse / "app" / "recipe_events" / f"event_date={DS}")
    active = set(pc.unique(events.column("user_id")).to_pylist())
    eligible = [u for u, d in zip(users.column("user_id").to_pylist(), users.column("signup_date").to_pylist()) if d.isoformat() <= DS]
    return events.num_rows, eligible, active


def test_extract_runs_the_bigquery_sql_on_duckdb(env):
    figures = run(env.target.extract(env.spec), env.figures)
    events, eligible, active = source_counts(env)
    idle = len(set(eligible) - active)
    assert figures["rows_out"] == events + idle  # every event, plus one row per user without events
    raw = pq.read_table(partition(env, lake.RAW))
    assert set(raw.column_names) >= {"user_id", "platform", "tenure_days", "event_type", "event_ts"}
    assert pc.min(raw.column("tenure_days")).as_py() >= 0


@pytest.mark.spark
def test_features_runs_the_glue_script_on_local_spark(env):
    figures = run(env.target.features(env.spec), env.figures)
    events, eligible, _ = source_counts(env)
    assert figures["rows_in"] == env.figures["extract"]["rows_out"]
    assert figures["rows_out"] == len(eligible)  # one row per user
    features = pq.read_table(partition(env, lake.FEATURES))
    assert pc.sum(features.column("n_events")).as_py() == events
    assert features.column("user_id").to_pylist() == sorted(features.column("user_id").to_pylist())


@pytest.mark.spark
def test_generator_keeps_its_guaranteed_signal(env):
    """The seeded labels are learnable: a fixed rule on the features reaches the floor."""
    features = pq.read_table(partition(env, lake.FEATURES)).to_pandas().set_index("user_id")
    labels = pq.read_table(partition(env, lake.LABELS)).to_pandas().set_index("user_id")
    joined = labels.join(features, how="inner")
    guessed = [seed.rule_segment(e, c) for e, c in zip(joined.n_events, joined.n_cooks)]
    accuracy = sum(g == s for g, s in zip(guessed, joined.segment)) / len(joined)
    assert accuracy >= seed.GUARANTEED_ACCURACY


def test_training_set_runs_the_athena_sql_on_duckdb(env):
    figures = run(env.target.training_set(env.spec), env.figures)
    table = pq.read_table(partition(env, lake.TRAINING))
    assert figures["rows_out"] == table.num_rows == env.figures["features"]["rows_out"]
    split = table.column("split")
    splits = {name: pc.sum(pc.equal(split, name)).as_py() for name in ("train", "validation", "unlabelled")}
    assert sum(splits.values()) == table.num_rows
    labelled = splits["train"] + splits["validation"]
    labels = pq.read_table(partition(env, lake.LABELS))
    assert labelled == labels.num_rows
    assert 0.1 < splits["validation"] / labelled < 0.3
    assert all(u % 5 == 0 for u in table.filter(pc.equal(table.column("split"), "validation")).column("user_id").to_pylist())


def test_preprocess_pod_writes_the_channels_within_its_limits(env):
    op = env.target.preprocess(env.spec)
    op.arguments["inference_shard_rows"] = 700  # several inference files from a small day
    figures = run(op, env.figures)
    rows = env.figures["training_set"]["rows_out"]
    assert figures["outputs"]["inference-output"] == rows
    inference_files = data_files(partition(env, lake.CHANNEL_INFERENCE))
    assert len(inference_files) == -(-rows // 700)
    train_csv = data_files(partition(env, lake.CHANNEL_TRAIN))[0].read_text().splitlines()
    assert train_csv[0].startswith("label,is_ios,")
    assert figures["peak_rss_mb"] < figures["memory_limit_mb"]
    assert figures["limits_enforced_by"] in ("cgroup", "watchdog")


def test_training_follows_the_sagemaker_script_mode_contract(env):
    figures = run(env.target.train(env.spec), env.figures)
    model = partition(env, lake.MODEL)
    with tarfile.open(model / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["features.json", "model.joblib"]
    with tarfile.open(model / "output.tar.gz") as tar:
        metrics = json.load(tar.extractfile("metrics.json"))
    accuracy = figures["metrics"]["validation:accuracy"]
    assert accuracy == pytest.approx(metrics["validation_accuracy"], abs=1e-4)
    assert accuracy > metrics["validation_majority_accuracy"] + 0.15  # it learned the signal
    assert figures["channels"] == {"train": metrics["train_rows"], "validation": metrics["validation_rows"]}


def test_batch_transform_writes_one_output_per_input(env):
    figures = run(env.target.batch_inference(env.spec), env.figures)
    inputs = data_files(partition(env, lake.CHANNEL_INFERENCE))
    outputs = data_files(partition(env, lake.PREDICTIONS))
    assert [p.name for p in outputs] == [f"{p.name}.out" for p in inputs]
    assert figures["rows_out"] == figures["rows_in"] == env.figures["training_set"]["rows_out"]
    first_in = inputs[0].read_text().splitlines()[0].split(",")[0]
    first_out = outputs[0].read_text().splitlines()[0].split(",")
    assert first_out[0] == first_in and first_out[1] in env.spec.classes and 0 < float(first_out[2]) <= 1


def test_inference_stats_counts_classes_without_loading(env):
    figures = run(env.target.inference_stats(env.spec), env.figures)
    lines = [line.split(",")[1] for p in data_files(partition(env, lake.PREDICTIONS)) for line in p.read_text().splitlines()]
    assert figures["class_counts"] == {c: lines.count(c) for c in env.spec.classes}
    stored = json.loads((partition(env, lake.STATS) / "inference_stats.json").read_text())
    assert stored["class_counts"] == figures["class_counts"] and stored["ds"] == DS


def one_shard(rows):
    return {"tier": "small", "shards": [{"index": 0, "row_start": 0, "row_end": rows}]}


def test_postprocess_pod_writes_per_segment_lists(env):
    small = env.spec.sizing.tiers[0]
    figures = run(env.target.postprocess(env.spec, small, None), env.figures)
    assert figures["memory_limit_mb"] == small.resources.memory_limit_bytes / 2**20
    rows = env.figures["inference_stats"]["rows"]
    run(env.target.commit_outputs(env.spec, "size_postprocess"), env.figures, decision=one_shard(rows))
    outputs = partition(env, lake.OUTPUTS)
    assert sorted(p.name for p in outputs.iterdir()) == [f"segment={c}" for c in sorted(env.spec.classes)]
    counts = env.figures["inference_stats"]["class_counts"]
    for segment, n in counts.items():
        table = pq.read_table(outputs / f"segment={segment}")
        assert table.num_rows == n
        confidence = table.column("confidence").to_pylist()
        assert confidence == sorted(confidence, reverse=True)
    assert figures["rows_out"] == env.figures["commit_outputs"]["rows_out"] == sum(counts.values())
    assert not partition(env, lake.POSTPROCESS_SHARDS).exists()  # shards are gone once committed


def test_sharded_postprocess_covers_every_row_once(env):
    from water.sizing import _row_ranges

    rows = env.figures["inference_stats"]["rows"]
    shards = _row_ranges(rows, 3)
    largest = env.spec.sizing.tiers[-1]
    for shard in shards:  # what the mapped postprocess_large task instances do
        op = env.target.postprocess(env.spec, largest, None)
        op.shard = shard
        figures = run(op)
        assert figures["rows_in"] == figures["rows_out"] == shard["row_end"] - shard["row_start"]
    committed = run(env.target.commit_outputs(env.spec, "size_postprocess"), decision={"tier": largest.name, "shards": shards})
    assert committed["shards"] == 3 and committed["rows_out"] == rows
    users = pq.read_table(partition(env, lake.OUTPUTS)).column("user_id").to_pylist()
    assert len(users) == len(set(users)) == rows


def test_publish_replaces_the_day_in_the_warehouse(env):
    from water.local.warehouse import table_rows

    op = env.target.publish(env.spec)
    first = run(op)
    second = run(op)  # a re-run replaces, never duplicates
    assert first["rows_out"] == second["rows_out"] == env.figures["commit_outputs"]["rows_out"]
    assert table_rows(env.warehouse, env.spec.publish.table, DS) == first["rows_out"]
    assert table_rows(env.warehouse, env.spec.publish.table) == first["rows_out"]


TINY = {"requests": {"cpu": "500m", "memory": "40Mi"}, "limits": {"cpu": "1", "memory": "40Mi"}}


@pytest.mark.parametrize("enforcement", ["cgroup", "watchdog"])
def test_pod_out_of_memory_is_reported_and_keeps_the_previous_partition(env, enforcement, monkeypatch):
    if enforcement == "watchdog":
        monkeypatch.setenv("WATER_NO_CGROUP", "1")
    before = digest(partition(env, lake.CHANNEL_TRAIN))
    assert before, "preprocess must have run first"
    op = env.target.preprocess(env.spec)
    op.container_resources = TINY
    with pytest.raises(OutOfMemory) as caught:
        run(op)
    assert "OOMKilled" in str(caught.value) and "40.0 MiB" in str(caught.value)
    assert digest(partition(env, lake.CHANNEL_TRAIN)) == before
    leftovers = [p.name for p in partition(env, lake.CHANNEL_TRAIN).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_postprocess_killed_for_memory_is_retried_once_a_tier_up(env):
    op = env.target.postprocess(env.spec, env.spec.sizing.tiers[0], None)
    op.container_resources = TINY  # an undersized pod: the real entrypoint cannot even import pyarrow
    figures = run(op)
    assert figures["escalated"]["from_memory_limit"] == "40Mi"
    small = env.spec.sizing.tiers[0].resources
    assert figures["escalated"]["to"] == "small" and figures["escalated"]["to_memory_limit"] == small.limits.memory
    assert figures["memory_limit_mb"] == small.memory_limit_bytes / 2**20
    assert figures["rows_out"] == env.figures["inference_stats"]["rows"]


def test_escalation_happens_once_only(env):
    from water.spec import SizingPolicy

    op = env.target.postprocess(env.spec, env.spec.sizing.tiers[0], None)
    smaller = {"requests": {"cpu": "500m", "memory": "20Mi"}, "limits": {"cpu": "1", "memory": "20Mi"}}
    op.container_resources = smaller
    op.escalation = SizingPolicy.model_validate(
        {"tiers": [{"name": "tiny", "max_rows": 10, "resources": smaller}], "scale_out": {"rows_per_shard": 10, "max_shards": 2}}
    )  # the top tier: the retry doubles to 40Mi, still too small, and there is no third try
    with pytest.raises(OutOfMemory, match="40.0 MiB"):
        run(op)
