"""Each local stage of the demo on small data, running the production artifacts.

One small lake (2,000 users, one day) is seeded for the module, and the demo's steps run on it
once, in the DAG's order, as the tests ask for them (`Pipeline.through`): a test gets the steps
it checks, and every step before them, whichever tests ran before it. So each test stands
alone (`-k name`). Tests that run a stage again to see it fail or shard do so on a private
copy of the lake, so they never change what another test reads.

Every stage after `features` reads what the Glue script wrote on local Spark, so those tests
are marked `spark` as well.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import demo_seed, make_task_context
from water.spec import load_pipeline
from water.targets.local.engines.partitions import data_files, file_uri
from water.targets.local.engines.process import OutOfMemory
from water.targets.local.target import LocalTarget

DS = "2026-11-01"
USERS = 2_000
INFERENCE_SHARD_ROWS = 700  # several inference files from a small day
NOT_LOCAL_STAGES = {"drift_guard"}  # target-agnostic branch, not a stage (tests/unit/test_drift.py, e2e)


def run(op, decision=None) -> dict[str, Any]:
    """Run a stage's operator for DS; a sized step's commit gets `decision` as the sizing branch's XCom."""
    xcom = {(op.decision_task_id, "decision"): decision} if decision is not None else None
    return op.run(DS, make_task_context(DS, xcom))


def small_day(spec, name: str, class_counts: dict[str, int]) -> dict[str, Any]:
    """The decision of a small day: every route on its smallest tier, one shard of its rows."""
    from water.sizing import decide_routes

    step = spec.steps[name]
    routes = step.all_routes(spec.classes, name)
    force = {r: route.sizing.tiers[0].name for r, route in routes.items()}
    return decide_routes(routes, class_counts, force, field=f"steps.{name}", single=not step.routes)


def routes(spec, name: str) -> dict[str, Any]:
    return spec.steps[name].all_routes(spec.classes, name)


def build(env, name: str, task_id: str | None = None):
    """A fresh operator of step `name` as its target's builder makes it: the step's own task,
    or `task_id` among the tasks it builds (a sized step's tier and commit tasks)."""
    from airflow.sdk import DAG

    with DAG(f"stages_{name}", schedule=None) as dag:
        built = env.target.build(env.spec, name, env.spec.steps[name])
    return built.head if task_id is None else dag.get_task(task_id)


class Pipeline:
    """The demo's local stages on one seeded day: each step runs once, after its upstream."""

    def __init__(self, root: Path) -> None:
        self.spec = load_pipeline("recipe_engagement")
        self.warehouse, self.lake = root / "warehouse", root / "lake" / self.spec.name
        demo_seed().seed(self.warehouse, self.lake, [date.fromisoformat(DS)], USERS)
        self.target = LocalTarget(lake_root=file_uri(root / "lake"), warehouse_dir=str(self.warehouse))
        self.figures: dict[str, dict[str, Any]] = {}  # task id -> what it returned
        self.done: set[str] = set()

    def through(self, name: str) -> dict[str, dict[str, Any]]:
        """Run step `name` and every step it depends on (those not run yet); the figures so far."""
        upstream = self.spec.upstream()
        needed, todo = {name}, [name]
        while todo:
            for up in upstream[todo.pop()]:
                if up not in needed:
                    needed.add(up)
                    todo.append(up)
        for step in self.spec.order():
            if step in needed and step not in self.done and step not in NOT_LOCAL_STAGES:
                self._run(step)
                self.done.add(step)
        return self.figures

    def _run(self, name: str) -> None:
        step = self.spec.steps[name]
        if step.kind == "sized_postprocess":  # what the branch does on a small day: small tiers, one shard each
            for route_name, route in routes(self.spec, name).items():
                tier = build(self, name, step.tier_task_id(name, route_name, route.sizing.tiers[0].name))
                self.figures[tier.task_id] = run(tier)
            counts = self.figures[self.spec.roles()["stats"]]["class_counts"]
            commit = build(self, name, step.commit_task_id())
            self.figures[commit.task_id] = run(commit, decision=small_day(self.spec, name, counts))
            return
        op = build(self, name)
        if step.kind == "pod" and "inference_shard_rows" in op.arguments:
            op.arguments["inference_shard_rows"] = INFERENCE_SHARD_ROWS
        self.figures[name] = run(op)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Pipeline:
    return Pipeline(tmp_path_factory.mktemp("stages"))


def private_copy(env: Pipeline, tmp_path: Path) -> SimpleNamespace:
    """The lake as the pipeline left it, copied for a test that runs a stage again."""
    lake = tmp_path / "lake" / env.spec.name
    shutil.copytree(env.lake, lake)
    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(env.warehouse))
    return SimpleNamespace(spec=env.spec, target=target, lake=lake, warehouse=env.warehouse)


def partition(env, dataset: str) -> Path:
    return env.lake / dataset / f"ds={DS}"


def pod_output(env, step: str, flag: str) -> str:
    return env.spec.steps[step].writes[flag].dataset


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in data_files(folder)}


def source_counts(env):
    users = pq.read_table(env.warehouse / "app" / "users")
    events = pq.read_table(env.warehouse / "app" / "recipe_events" / f"event_date={DS}")
    active = set(pc.unique(events.column("user_id")).to_pylist())
    eligible = [
        u
        for u, d in zip(users.column("user_id").to_pylist(), users.column("signup_date").to_pylist(), strict=True)
        if d.isoformat() <= DS
    ]
    return events.num_rows, eligible, active


def labels_dataset(env) -> str:
    (labels,) = env.spec.label_sources()  # the label feed: a lake source of the spec
    assert labels == "engagement_labels"
    return labels


def test_extract_runs_the_bigquery_sql_on_duckdb(env):
    figures = env.through("extract")["extract"]
    events, eligible, active = source_counts(env)
    idle = len(set(eligible) - active)
    assert figures["rows_out"] == events + idle  # every event, plus one row per user without events
    raw = pq.read_table(partition(env, env.spec.steps["extract"].writes))
    assert set(raw.column_names) >= {"user_id", "platform", "tenure_days", "event_type", "event_ts"}
    assert pc.min(raw.column("tenure_days")).as_py() >= 0


@pytest.mark.spark
def test_features_runs_the_glue_script_on_local_spark(env):
    figures = env.through("features")
    events, eligible, _ = source_counts(env)
    assert figures["features"]["rows_in"] == figures["extract"]["rows_out"]
    assert figures["features"]["rows_out"] == len(eligible)  # one row per user
    features = pq.read_table(partition(env, env.spec.steps["features"].writes))
    assert pc.sum(features.column("n_events")).as_py() == events
    assert features.column("user_id").to_pylist() == sorted(features.column("user_id").to_pylist())


def rule_segment(n_events: int, n_cooks: int) -> str:
    """The fixed rule behind the demo seed's GUARANTEED_ACCURACY."""
    return "dormant" if n_events <= 2 else "cook" if n_cooks >= 1 else "browse"


@pytest.mark.spark
def test_generator_keeps_its_guaranteed_signal(env):
    """The seeded labels are learnable: a fixed rule on the features reaches the floor."""
    seed = demo_seed()
    env.through("features")
    features = pq.read_table(partition(env, env.spec.steps["features"].writes)).to_pandas().set_index("user_id")
    labels = pq.read_table(partition(env, labels_dataset(env))).to_pandas().set_index("user_id")
    joined = labels.join(features, how="inner")
    guessed = [rule_segment(e, c) for e, c in zip(joined.n_events, joined.n_cooks, strict=True)]
    accuracy = sum(g == s for g, s in zip(guessed, joined.segment, strict=True)) / len(joined)
    assert accuracy >= seed.GUARANTEED_ACCURACY


@pytest.mark.spark
def test_training_set_runs_the_athena_sql_on_duckdb(env):
    figures = env.through("training_set")
    table = pq.read_table(partition(env, env.spec.steps["training_set"].writes))
    assert figures["training_set"]["rows_out"] == table.num_rows == figures["features"]["rows_out"]
    split = table.column("split")
    splits = {name: pc.sum(pc.equal(split, name)).as_py() for name in ("train", "validation", "unlabelled")}
    assert sum(splits.values()) == table.num_rows
    labelled = splits["train"] + splits["validation"]
    labels = pq.read_table(partition(env, labels_dataset(env)))
    assert labelled == labels.num_rows
    assert 0.1 < splits["validation"] / labelled < 0.3
    assert all(u % 5 == 0 for u in table.filter(pc.equal(table.column("split"), "validation")).column("user_id").to_pylist())


@pytest.mark.spark
def test_preprocess_pod_writes_the_channels_within_its_limits(env):
    figures = env.through("preprocess")
    pod = figures["preprocess"]
    rows = figures["training_set"]["rows_out"]
    assert pod["outputs"]["inference-output"] == rows
    inference_files = data_files(partition(env, pod_output(env, "preprocess", "inference-output")))
    assert len(inference_files) == -(-rows // INFERENCE_SHARD_ROWS)
    train_csv = data_files(partition(env, pod_output(env, "preprocess", "train-output")))[0].read_text().splitlines()
    assert train_csv[0].startswith("label,is_ios,")
    assert pod["peak_rss_mb"] < pod["memory_limit_mb"]
    assert pod["limits_enforced_by"] in ("cgroup", "watchdog")


@pytest.mark.spark
def test_training_follows_the_sagemaker_script_mode_contract(env):
    figures = env.through("train")["train"]
    model = partition(env, env.spec.steps["train"].writes)
    with tarfile.open(model / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["features.json", "model.joblib"]
    with tarfile.open(model / "output.tar.gz") as tar:
        metrics = json.load(tar.extractfile("metrics.json"))
    accuracy = figures["metrics"]["validation:accuracy"]
    assert accuracy == pytest.approx(metrics["validation_accuracy"], abs=1e-4)
    assert accuracy > metrics["validation_majority_accuracy"] + 0.15  # it learned the signal
    assert figures["channels"] == {"train": metrics["train_rows"], "validation": metrics["validation_rows"]}


@pytest.mark.spark
def test_batch_transform_writes_one_output_per_input(env):
    figures = env.through("batch_inference")
    step = env.spec.steps["batch_inference"]
    inputs = data_files(partition(env, step.input))
    outputs = data_files(partition(env, step.writes))
    assert [p.name for p in outputs] == [f"{p.name}.out" for p in inputs]
    transform = figures["batch_inference"]
    assert transform["rows_out"] == transform["rows_in"] == figures["training_set"]["rows_out"]
    first_in = inputs[0].read_text().splitlines()[0].split(",")[0]
    first_out = outputs[0].read_text().splitlines()[0].split(",")
    assert first_out[0] == first_in and first_out[1] in env.spec.classes and 0 < float(first_out[2]) <= 1


@pytest.mark.spark
def test_inference_stats_counts_classes_without_loading(env):
    figures = env.through("inference_stats")["inference_stats"]
    step = env.spec.steps["inference_stats"]
    lines = [line.split(",")[1] for p in data_files(partition(env, step.reads)) for line in p.read_text().splitlines()]
    assert figures["class_counts"] == {c: lines.count(c) for c in env.spec.classes}
    stored = json.loads((partition(env, step.writes) / "inference_stats.json").read_text())
    assert stored["class_counts"] == figures["class_counts"] and stored["ds"] == DS


@pytest.mark.spark
def test_postprocess_routes_write_per_segment_lists_from_their_own_classes(env):
    figures = env.through("postprocess")
    step = env.spec.steps["postprocess"]
    counts = figures["inference_stats"]["class_counts"]
    for route_name, route in routes(env.spec, "postprocess").items():
        small = route.sizing.tiers[0]
        pod = figures[step.tier_task_id("postprocess", route_name, small.name)]
        assert pod["memory_limit_mb"] == small.resources.memory_limit_bytes / 2**20
        assert pod["rows_in"] == pod["rows_out"] == sum(counts[c] for c in route.classes)  # only its classes
        assert pod["peak_rss_mb"] < pod["memory_limit_mb"]
    outputs = partition(env, step.writes)
    assert sorted(p.name for p in outputs.iterdir()) == [f"segment={c}" for c in sorted(env.spec.classes)]
    for segment, n in counts.items():
        table = pq.read_table(outputs / f"segment={segment}")
        assert table.num_rows == n
        assert len(set(table.column("campaign").to_pylist())) == 1  # one route's list per segment
    assert figures[step.commit_task_id()]["rows_out"] == sum(counts.values())
    assert not partition(env, step.shards_dataset).exists()  # shards are gone once committed


@pytest.mark.spark
def test_sharded_route_covers_its_rows_once(env, tmp_path):
    from water.sizing import _row_ranges

    counts = env.through("inference_stats")["inference_stats"]["class_counts"]
    own = private_copy(env, tmp_path)
    step = env.spec.steps["postprocess"]
    route_name, route = next(iter(routes(env.spec, "postprocess").items()))
    route_rows = sum(counts[c] for c in route.classes)
    shards = _row_ranges(route_rows, 3)
    largest = route.sizing.tiers[-1]
    mapped = build(own, "postprocess", step.tier_task_id("postprocess", route_name, largest.name))
    assert mapped.partial_kwargs["container_resources"] == largest.resources.as_k8s_dict()
    for shard in shards:  # what the mapped task instances of the route's largest tier do
        figures = run(mapped.unmap({"shard": shard}))
        assert figures["rows_in"] == figures["rows_out"] == shard["row_end"] - shard["row_start"]
    decision = {"routes": {route_name: {"tier": largest.name, "shards": shards}}}
    committed = run(build(own, "postprocess", step.commit_task_id()), decision=decision)
    assert committed["shards"] == 3 and committed["rows_out"] == route_rows
    users = pq.read_table(partition(own, step.writes)).column("user_id").to_pylist()
    assert len(users) == len(set(users)) == route_rows


@pytest.mark.spark
def test_publish_replaces_the_day_in_the_warehouse(env):
    from tests.helpers import table_rows

    figures = env.through("publish")
    step = env.spec.steps["publish"]
    first = figures["publish"]
    second = run(build(env, "publish"))  # a re-run replaces, never duplicates
    committed = figures[env.spec.steps["postprocess"].commit_task_id()]
    assert first["rows_out"] == second["rows_out"] == committed["rows_out"]
    assert table_rows(env.warehouse, step.table, DS) == first["rows_out"]
    assert table_rows(env.warehouse, step.table) == first["rows_out"]


TINY = {"requests": {"cpu": "500m", "memory": "40Mi"}, "limits": {"cpu": "1", "memory": "40Mi"}}


@pytest.mark.spark
@pytest.mark.parametrize("enforcement", ["cgroup", "watchdog"])
def test_pod_out_of_memory_is_reported_and_keeps_the_previous_partition(env, enforcement, monkeypatch, tmp_path):
    if enforcement == "watchdog":
        monkeypatch.setenv("WATER_NO_CGROUP", "1")
    env.through("preprocess")
    own = private_copy(env, tmp_path)
    train = partition(own, pod_output(own, "preprocess", "train-output"))
    before = digest(train)
    assert before, "preprocess must have run first"
    op = build(own, "preprocess")
    op.container_resources = TINY
    with pytest.raises(OutOfMemory) as caught:
        run(op)
    assert "OOMKilled" in str(caught.value) and "40.0 MiB" in str(caught.value)
    assert digest(train) == before
    leftovers = [p.name for p in train.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.spark
def test_postprocess_killed_for_memory_is_retried_once_a_tier_up(env, tmp_path):
    counts = env.through("inference_stats")["inference_stats"]["class_counts"]
    own = private_copy(env, tmp_path)
    step = env.spec.steps["postprocess"]
    route_name, route = next(iter(routes(env.spec, "postprocess").items()))
    op = build(own, "postprocess", step.tier_task_id("postprocess", route_name, route.sizing.tiers[0].name))
    op.container_resources = TINY  # an undersized pod: the real entrypoint cannot even import pyarrow
    figures = run(op)
    assert figures["escalated"]["from_memory_limit"] == "40Mi"
    small = route.sizing.tiers[0]
    assert figures["escalated"]["to"] == small.name and figures["escalated"]["to_memory_limit"] == small.resources.limits.memory
    assert figures["memory_limit_mb"] == small.resources.memory_limit_bytes / 2**20
    assert figures["rows_out"] == sum(counts[c] for c in route.classes)


@pytest.mark.spark
def test_escalation_happens_once_only(env, tmp_path):
    from water.spec import SizingPolicy

    env.through("inference_stats")
    own = private_copy(env, tmp_path)
    step = env.spec.steps["postprocess"]
    route_name, route = next(iter(routes(env.spec, "postprocess").items()))
    op = build(own, "postprocess", step.tier_task_id("postprocess", route_name, route.sizing.tiers[0].name))
    smaller = {"requests": {"cpu": "500m", "memory": "20Mi"}, "limits": {"cpu": "1", "memory": "20Mi"}}
    op.container_resources = smaller
    op.escalation = SizingPolicy.model_validate(
        {"tiers": [{"name": "tiny", "max_rows": 10, "resources": smaller}], "scale_out": {"rows_per_shard": 10, "max_shards": 2}}
    )  # the top tier: the retry doubles to 40Mi, still too small, and there is no third try
    with pytest.raises(OutOfMemory, match=re.escape("40.0 MiB")):
        run(op)
