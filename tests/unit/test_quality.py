"""Data-quality gates (water.quality, the spec's `checks`) and empty inputs, on the local target.

- The check logic: profiles of Parquet (footers), CSV with and without a header, zero-byte
  files; each check's failure message names the check and the figures; the training gate
  against the validation labels' majority class.
- Spec errors for checks that cannot apply name the file and the field.
- The local stages: a failed gate fails the step naming step, check and figures, and the
  day's previous partition stays; empty and zero-byte inputs get an explicit outcome.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_task_context
from tests.unit.test_spec import assert_spec_error, demo
from water import quality
from water.quality import Gates, QualityCheckFailed
from water.spec import Checks, DatasetChecks, MetricCheck, load_pipeline
from water.targets.local.engines.partitions import file_uri

DS = "2026-11-01"


def parquet_bytes(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def files(**contents: bytes) -> list[quality.PartitionFile]:
    """In-memory partition files: relative name -> bytes."""
    return [(name.replace("__", "/"), partial(io.BytesIO, data)) for name, data in contents.items()]


EVENTS = pa.table({"user_id": [1, 2, 3, 4], "event_type": ["view", None, None, None], "duration_s": [1.5, None, None, None]})


# --- profiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("statistics", [True, False], ids=["footer", "no-statistics"])
def test_parquet_profile_counts_rows_types_and_nulls(statistics):
    found = quality.profile(
        files(a=parquet_bytes(EVENTS, write_statistics=statistics), b=parquet_bytes(EVENTS.slice(0, 1))),
        "parquet",
        DatasetChecks(max_null_share={"event_type": 0.5}),
    )
    assert (found.rows, found.files) == (5, 2)
    assert found.columns == {"user_id": "integer", "event_type": "string", "duration_s": "float"}
    assert found.nulls == {"event_type": 3}


def test_hive_folders_are_string_columns():
    found = quality.profile(files(segment_cook__part=parquet_bytes(EVENTS)), "parquet")
    assert "segment_cook" not in found.columns  # a plain folder name is no column
    found = quality.profile([("segment=cook/part.parquet", partial(io.BytesIO, parquet_bytes(EVENTS)))], "parquet")
    assert found.columns["segment"] == "string"


def test_csv_profiles_and_zero_byte_files():
    header = b"label,x\ncook,1\n,2\nbrowse,\n"
    found = quality.profile(files(a=header, empty=b""), "csv_header", DatasetChecks(max_null_share={"label": 0.1}))
    assert (found.rows, found.columns, found.nulls) == (3, {"label": "string", "x": "integer"}, {"label": 1})
    assert quality.profile(files(a=b"1,a,0.5\n2,b,0.4", b=b""), "csv").rows == 2  # last line without a newline
    assert quality.profile(files(model=b"\x00" * 10), "files").rows == 0


def test_a_zero_byte_parquet_file_is_named():
    with pytest.raises(ValueError, match=re.escape("part-0.parquet is zero bytes: not a Parquet file")):
        quality.profile([("part-0.parquet", partial(io.BytesIO, b""))], "parquet")


# --- dataset checks ------------------------------------------------------------------------


def test_each_failed_check_names_itself_and_its_figures():
    checks = DatasetChecks(
        min_rows=1000, max_null_share={"event_type": 0.5}, columns={"user_id": "string", "recipe_id": "integer"}
    )
    failures = quality.dataset_failures(checks, quality.profile(files(a=parquet_bytes(EVENTS)), "parquet", checks))
    assert failures == [
        "min_rows failed: 4 rows < 1,000",
        "columns failed: user_id is integer, expected string; recipe_id is missing (columns: user_id, event_type, duration_s)",
        "max_null_share failed: event_type is 75.0% null (3 of 4 rows) > 50.0%",
    ]
    with pytest.raises(QualityCheckFailed) as caught:
        quality.enforce("features", failures[:1])
    assert str(caught.value) == "features: check min_rows failed: 4 rows < 1,000"


def test_passing_checks_and_number_admits_integers_and_floats():
    checks = DatasetChecks(min_rows=4, max_null_share={"event_type": 0.75}, columns={"user_id": "number", "duration_s": "number"})
    assert quality.dataset_failures(checks, quality.profile(files(a=parquet_bytes(EVENTS)), "parquet", checks)) == []


def test_an_empty_output_fails_min_rows_with_zero_rows():
    checks = DatasetChecks(min_rows=1000, max_null_share={"event_type": 0.5})
    found = quality.profile(files(a=parquet_bytes(EVENTS.slice(0, 0))), "parquet", checks)
    assert quality.dataset_failures(checks, found, "raw") == ["min_rows failed on raw: 0 rows < 1,000"]


# --- the training gate ---------------------------------------------------------------------

LABELS = b"label,x\n" + b"cook,1\n" * 40 + b"browse,1\n" * 35 + b"dormant,1\n" * 25


def test_label_counts_and_the_majority_baseline():
    labels = quality.label_counts(files(a=LABELS, b=b""), "label")
    assert labels == {"browse": 35, "cook": 40, "dormant": 25}
    check = MetricCheck(name="validation:accuracy", above_majority_by=0.05, at_least=0.5)
    assert quality.metric_failures(check, {"validation:accuracy": 0.80}, labels) == []
    assert quality.metric_failures(check, {"validation:accuracy": 0.37}, labels) == [
        "metric failed: validation:accuracy 0.3700 < at_least 0.5000",
        "metric failed: validation:accuracy 0.3700 < 0.4500, the majority-class baseline ('cook' 40.0% of 100 "
        "validation rows) + 0.05",
    ]


def test_a_metric_not_reported_or_no_labels_fails_saying_so():
    check = MetricCheck(name="validation:accuracy", above_majority_by=0.05)
    assert quality.metric_failures(check, {"train:accuracy": 0.9}, {"cook": 1}) == [
        "metric failed: validation:accuracy was not reported by the training job (metrics reported: train:accuracy)"
    ]
    assert "holds no labelled rows" in quality.metric_failures(check, {"validation:accuracy": 0.9}, {})[0]
    with pytest.raises(ValueError, match="no column 'segment'"):
        quality.label_counts(files(a=LABELS), "segment")


def test_parse_metrics_keeps_the_last_value_as_sagemaker_does():
    definitions = [("validation:accuracy", r"validation:accuracy=([0-9.]+)")]
    lines = ["validation:accuracy=0.5;", "noise", "validation:accuracy=0.8731;"]
    assert quality.parse_metrics(lines, definitions) == {"validation:accuracy": 0.8731}


def test_gates_of_the_shipped_specs():
    """Every shipped step that writes rows has gates; training steps a metric on their validation channel."""
    for name in ("recipe_engagement", "customer_value"):
        spec = load_pipeline(name)
        for step_name, step in spec.steps.items():
            gates = Gates.of(step_name, step)
            if step.kind in ("inference_stats", "drift_guard", "publish"):
                assert gates is None
                continue
            assert gates is not None, step_name
            if getattr(step, "objective_metric", None):
                assert gates.metric.name == step.objective_metric and gates.validation == "channels/validation"
            else:
                assert set(gates.outputs) == set(step.outputs()), step_name


# --- spec errors ---------------------------------------------------------------------------


def with_checks(step: str, checks: dict) -> dict:
    data = demo()
    data["steps"][step]["checks"] = checks
    return data


SPEC_CASES = {
    "unknown check": ("extract", {"max_rows": 5}, "steps.extract.checks.max_rows", "unknown field"),
    "share above one": (
        "extract",
        {"max_null_share": {"user_id": 1.5}},
        "steps.extract.checks.max_null_share.user_id",
        "less than or equal to 1",
    ),
    "zero rows": ("extract", {"min_rows": 0}, "steps.extract.checks.min_rows", "greater than or equal to 1"),
    "unknown type": ("extract", {"columns": {"user_id": "int"}}, "steps.extract.checks.columns.user_id", "'integer'"),
    "metric without bound": ("train", {"metric": {"name": "validation:accuracy"}}, "steps.train.checks.metric", "at_least"),
    "metric not defined": (
        "train",
        {"metric": {"name": "validation:f1", "at_least": 0.5}},
        "steps.train.checks.metric.name",
        "not among metric_definitions",
    ),
    "metric on sql": ("extract", {"metric": {"at_least": 0.5}}, "steps.extract.checks.metric", "only a training step"),
    "no such channel": (
        "train",
        {"metric": {"above_majority_by": 0.1, "validation": "holdout"}},
        "steps.train.checks.metric.validation",
        "not one of the step's reads",
    ),
    "rows of a model": ("train", {"min_rows": 10}, "steps.train.checks.min_rows", "written as files"),
    "columns of headerless csv": (
        "batch_inference",
        {"columns": {"id": "integer"}},
        "steps.batch_inference.checks.columns",
        "only min_rows applies",
    ),
    "pod with several outputs": ("preprocess", {"min_rows": 10}, "steps.preprocess.checks.min_rows", "checks.outputs.<flag>"),
    "unknown output flag": (
        "preprocess",
        {"outputs": {"train": {"min_rows": 10}}},
        "steps.preprocess.checks.outputs.train",
        "writes flags",
    ),
    "outputs on sql": ("extract", {"outputs": {"raw": {"min_rows": 10}}}, "steps.extract.checks.outputs", "only a pod step"),
    "checks on publish": ("publish", {"min_rows": 10}, "steps.publish.checks", "unknown field"),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_a_bad_check_names_file_and_field(tmp_path, case):
    step, checks, field, words = SPEC_CASES[case]
    assert_spec_error(tmp_path, with_checks(step, checks), field, words)


# --- the local stages ----------------------------------------------------------------------


def context():
    return make_task_context(DS)


def lake(tmp_path: Path) -> tuple[str, Path]:
    root = tmp_path / "lake"
    return file_uri(root), root / "p"


def write_parquet(folder: Path, table: pa.Table, name: str = "part-00000.parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)


def test_a_failed_gate_fails_the_sql_step_and_keeps_the_days_previous_partition(tmp_path, monkeypatch):
    """The empty-events day: the query writes rows whose event fields are all NULL; the gate fails
    naming step, check and figures, and yesterday's good run of the day stays in place."""
    from water.targets.local.operators import LocalQueryOperator

    include = tmp_path / "include"
    (include / "sql").mkdir(parents=True)
    (include / "sql/extract.sql").write_text(
        "SELECT u.user_id, e.event_type FROM `app.users` AS u LEFT JOIN `app.events` AS e ON e.user_id = u.user_id"
    )
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(tmp_path))
    warehouse = tmp_path / "warehouse"
    write_parquet(warehouse / "app/users", pa.table({"user_id": list(range(10))}))
    write_parquet(
        warehouse / "app/events", pa.table({"user_id": pa.array([], pa.int64()), "event_type": pa.array([], pa.string())})
    )
    root, pipeline = lake(tmp_path)
    previous = pipeline / "raw" / f"ds={DS}"
    write_parquet(previous, pa.table({"user_id": [1], "event_type": ["view"]}))
    before = (previous / "part-00000.parquet").read_bytes()
    checks = Checks(min_rows=5, max_null_share={"event_type": 0.5})
    op = LocalQueryOperator(
        task_id="extract",
        sql="sql/extract.sql",
        dialect="bigquery",
        tables="warehouse",
        warehouse_dir=str(warehouse),
        destination="raw",
        pipeline="p",
        lake_root=root,
        gates=Gates("extract", {"raw": ("parquet", checks)}),
    )
    with pytest.raises(QualityCheckFailed) as caught:
        op.run(DS, context())
    assert str(caught.value) == "extract: check max_null_share failed: event_type is 100.0% null (10 of 10 rows) > 50.0%"
    assert (previous / "part-00000.parquet").read_bytes() == before
    assert [p.name for p in previous.parent.iterdir()] == [f"ds={DS}"]  # the staged output is gone
    # the same day with its events in: passes, and the output replaces the partition
    write_parquet(warehouse / "app/events", pa.table({"user_id": list(range(10)), "event_type": ["view"] * 10}))
    figures = op.run(DS, context())
    assert figures["rows_out"] == 10 and figures["checks"]["raw"]["nulls"] == {"event_type": 0}
    assert pq.read_table(previous).num_rows == 10


def test_zero_byte_predictions_are_zero_predictions_for_inference_stats(tmp_path):
    """A transform of an empty input file leaves a zero-byte predictions file: counted as none
    (DuckDB's CSV reader took it for a malformed file)."""
    from water.targets.local.operators import LocalInferenceStatsOperator

    root, pipeline = lake(tmp_path)
    predictions = pipeline / "predictions" / f"ds={DS}"
    predictions.mkdir(parents=True)
    (predictions / "part-00000.csv.out").write_bytes(b"")
    op = LocalInferenceStatsOperator(
        task_id="inference_stats",
        predictions="predictions",
        destination="stats",
        classes=["cook", "browse"],
        pipeline="p",
        lake_root=root,
    )
    assert op.run(DS, context()) == {"rows_in": 0, "rows": 0, "class_counts": {"cook": 0, "browse": 0}}
    (predictions / "part-00001.csv.out").write_text("1,cook,0.9\n2,browse,0.8\n3,cook,0.7\n")
    assert op.run(DS, context())["class_counts"] == {"cook": 2, "browse": 1}
    stats = json.loads((pipeline / "stats" / f"ds={DS}" / "inference_stats.json").read_text())
    assert stats["rows"] == 3


def test_a_zero_byte_parquet_input_and_an_empty_input_folder_are_named(tmp_path):
    from water.targets.local.operators import LocalGlueJobOperator

    root, pipeline = lake(tmp_path)
    raw = pipeline / "raw" / f"ds={DS}"
    raw.mkdir(parents=True)
    op = LocalGlueJobOperator(
        task_id="features",
        script="glue/x.py",
        script_args={},
        worker_type="G.1X",
        sources={"input_path": "raw"},
        destination="features",
        pipeline="p",
        lake_root=root,
    )
    with pytest.raises(FileNotFoundError, match=f"features: input partition raw/ds={DS} holds no data files"):
        op.run(DS, context())  # before Spark starts: it could not read a schema from an empty folder
    (raw / "part-00000.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape("holds a zero-byte Parquet file part-00000.parquet")):
        op.run(DS, context())
    assert not (pipeline / "features").exists()


def test_a_training_channel_without_rows_fails_before_training(tmp_path):
    from water.targets.local.operators import LocalTrainingOperator

    root, pipeline = lake(tmp_path)
    for channel, text in (("train", "label,x\ncook,1\n"), ("validation", "label,x\n")):
        folder = pipeline / "channels" / channel / f"ds={DS}"
        folder.mkdir(parents=True)
        (folder / "part-00000.csv").write_text(text)
    op = LocalTrainingOperator(
        task_id="train",
        entry_point="training/x/train.py",
        hyperparameters={},
        instance_type="ml.m5.large",
        metric_definitions=[],
        channels={"train": "channels/train", "validation": "channels/validation"},
        destination="model",
        pipeline="p",
        lake_root=root,
    )
    with pytest.raises(ValueError, match=f"train: channel validation \\(channels/validation/ds={DS}\\) holds no rows"):
        op.run(DS, context())


def test_publish_of_a_partition_without_parquet_fails_instead_of_publishing(tmp_path):
    from water.targets.local.operators import LocalPublishOperator

    root, pipeline = lake(tmp_path)
    (pipeline / "outputs" / f"ds={DS}").mkdir(parents=True)
    op = LocalPublishOperator(
        task_id="publish", source="outputs", table="ml.t", warehouse_dir=str(tmp_path / "wh"), pipeline="p", lake_root=root
    )
    with pytest.raises(FileNotFoundError, match=f"publish: outputs/ds={DS} holds no Parquet files"):
        op.run(DS, context())


TRAINING_POD = textwrap.dedent(
    """
    import argparse, pathlib
    parser = argparse.ArgumentParser()
    parser.add_argument("--train"); parser.add_argument("--validation"); parser.add_argument("--model-output")
    parser.add_argument("--accuracy")
    args = parser.parse_args()
    out = pathlib.Path(args.model_output.removeprefix("file://"))
    (out / "model.joblib").write_text("model " + args.accuracy)
    print(f"validation:accuracy={args.accuracy};")
    """
)


def test_a_training_pod_below_the_majority_baseline_fails_and_keeps_the_previous_model(tmp_path, monkeypatch):
    """The chance-level model: 0.37 against a validation channel whose majority class holds 40 %."""
    from water.targets.local.operators import LocalPodOperator

    monkeypatch.setenv("WATER_NO_CGROUP", "1")
    entrypoint = tmp_path / "train.py"
    entrypoint.write_text(TRAINING_POD)
    root, pipeline = lake(tmp_path)
    for channel in ("train", "validation"):
        folder = pipeline / "channels" / channel / f"ds={DS}"
        folder.mkdir(parents=True)
        (folder / "part-00000.csv").write_bytes(LABELS)
    model = pipeline / "model" / f"ds={DS}"
    model.mkdir(parents=True)
    (model / "model.joblib").write_text("yesterday's good model")
    gate = MetricCheck(name="validation:accuracy", above_majority_by=0.05)

    def pod(accuracy: str):
        return LocalPodOperator(
            task_id="train",
            entrypoint=str(entrypoint),
            arguments={"accuracy": accuracy},
            inputs={"train": "channels/train", "validation": "channels/validation"},
            outputs={"model-output": ("model", "files")},
            container_resources={"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            metric_definitions=[("validation:accuracy", r"validation:accuracy=([0-9.]+)")],
            gates=Gates("train", metric=gate, validation="channels/validation"),
            pipeline="p",
            lake_root=root,
        )

    with pytest.raises(
        QualityCheckFailed,
        match=r"train: check metric failed: validation:accuracy 0.3700 < 0.4500, the "
        r"majority-class baseline \('cook' 40.0% of 100 validation rows\) \+ 0.05",
    ):
        pod("0.37").run(DS, context())
    assert (model / "model.joblib").read_text() == "yesterday's good model"
    figures = pod("0.84").run(DS, context())
    assert figures["checks"]["metric"] == {"validation:accuracy": 0.84, "majority_share": 0.4}
    assert (model / "model.joblib").read_text() == "model 0.84"


def test_the_shards_check_reads_what_the_decision_ran(tmp_path, task_context):
    """The sized step's check task (both targets): every route's shards the decision ran, together."""
    from water.operators.quality import ShardsGateOperator

    root, pipeline = lake(tmp_path)
    shards = pipeline / "outputs_shards" / f"ds={DS}"
    write_parquet(shards / "route=a/shard=0000/segment=cook", pa.table({"user_id": [1, 2]}))
    write_parquet(shards / "route=b/shard=0000/segment=browse", pa.table({"user_id": [3, None]}))
    write_parquet(shards / "route=c/shard=0000/segment=dormant", pa.table({"user_id": [None] * 50}))  # not run today
    decision = {"routes": {"a": {"tier": "small", "shards": []}, "b": {"tier": "small", "shards": []}}}
    checks = DatasetChecks(min_rows=3, max_null_share={"user_id": 0.2}, columns={"segment": "string"})
    op = ShardsGateOperator(
        task_id="check_outputs",
        gates=Gates("postprocess", {"outputs": ("parquet", checks)}),
        shards_dataset="outputs_shards",
        decision_task_id="size_postprocess",
        pipeline="p",
        lake_root=root,
    )
    context = task_context(DS, {("size_postprocess", "decision"): decision})
    with pytest.raises(
        QualityCheckFailed, match=r"postprocess: check max_null_share failed: user_id is 25.0% null \(1 of 4 rows\)"
    ):
        op.execute(context)
    (shards / "route=b/shard=0000/segment=browse/part-00000.parquet").unlink()
    write_parquet(shards / "route=b/shard=0000/segment=browse", pa.table({"user_id": [3, 4]}))
    assert op.execute(context)["rows_in"] == 4
