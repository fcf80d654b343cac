"""The data-quality gates on the cloud target, for every gated step of every shipped spec.

Where each check runs in the cloud DAG (before the promote of a staged step, after a SageMaker
training job's fit, inside a pod step's task, before a sized step's commit), what it reads
(the staged partition, the job's FinalMetricDataList as botocore's DescribeTrainingJob shape
has it, the pod's log) and what it decides. The lake is read through water.store as in
production; here its s3:// root is mirrored by a local folder, so no request leaves the machine.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.contract.cloud import CLOUD_ENV, DS, UPSTREAM_XCOM, FakeTI, botocore_session, make_context, spec_of, steps, task_copy
from water.quality import Gates, QualityCheckFailed

STAGED = ("bigquery_sql", "glue_pyspark", "athena_sql", "sagemaker_transform")  # write aside, then promote
ARROW = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "number": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("s"),
}
VALUES = {"integer": 1, "float": 0.5, "number": 2.0, "string": "x", "boolean": True}


def gated(*kinds: str) -> list:
    return [p for p in steps(*kinds) if Gates.of(p.values[1], spec_of(p.values[0]).steps[p.values[1]])]


@pytest.fixture
def s3_lake(tmp_path):
    """WATER_LAKE (s3://…) mirrored by a local folder: LakeStore opens file:// paths there."""
    from airflow.sdk import ObjectStoragePath

    from water.store import LakeStore

    root = CLOUD_ENV["WATER_LAKE"]

    def local(store, uri):
        assert uri.startswith(root + "/"), uri
        return ObjectStoragePath(f"file://{tmp_path}/{uri[len(root) + 1 :]}")

    with mock.patch.object(LakeStore, "_path", local):
        yield tmp_path


def write_rows(folder: Path, row_format: str, checks, rows: int) -> None:
    """`rows` rows that pass every check but min_rows (0 rows fail that one)."""
    folder.mkdir(parents=True, exist_ok=True)
    if row_format == "csv":
        (folder / "part-00000.csv.out").write_text("".join(f"{i},a,0.5\n" for i in range(rows)))
        return
    names = {"row": "integer", **dict.fromkeys(checks.max_null_share, "string"), **checks.columns}
    table = pa.table({c: pa.array([VALUES.get(t, "x")] * rows, ARROW[t]) for c, t in names.items()})
    if row_format == "csv_header":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, folder / "part-00000.csv")
    else:
        pq.write_table(table, folder / "part-00000.parquet")


@pytest.mark.parametrize(("pipeline", "name"), gated(*STAGED))
def test_a_staged_steps_check_runs_before_its_promote_on_the_staged_output(cloud_dags, rendered, s3_lake, pipeline, name):
    spec = spec_of(pipeline)
    step = spec.steps[name]
    dag = cloud_dags(pipeline)
    check = dag.get_task(f"{name}.check")
    assert check.downstream_task_ids == {f"{name}.promote"}
    assert dag.get_task(f"{name}.promote").upstream_task_ids == {check.task_id}  # promote waits for it alone
    assert check.locations == {step.writes: f"{step.writes}/_staging"}
    assert (check.lake_root, check.storage_conn_id) == (CLOUD_ENV["WATER_LAKE"], CLOUD_ENV["WATER_AWS_CONN_ID"])
    row_format, checks = Gates.of(name, step).outputs[step.writes]
    staged = s3_lake / pipeline / step.writes / "_staging" / f"ds={DS}"
    write_rows(staged, row_format, checks, 0)  # the day's source did not land
    (s3_lake / pipeline / step.writes / f"ds={DS}").mkdir(parents=True)  # yesterday's run of the day: not read
    with pytest.raises(QualityCheckFailed, match=f"^{name}: check min_rows failed: 0 rows < {checks.min_rows:,}"):
        rendered(check.task_id).execute(make_context(pipeline))
    write_rows(staged, row_format, checks, checks.min_rows)
    figures = rendered(check.task_id).execute(make_context(pipeline))
    assert figures["rows_in"] == checks.min_rows


def final_metrics_xcom(pipeline: str, name: str, value: float) -> dict:
    """The fit task's XCom as SageMakerTrainingOperator returns it: the DescribeTrainingJob answer."""
    shape = botocore_session().get_service_model("sagemaker").operation_model("DescribeTrainingJob").output_shape
    metric = {"MetricName": spec_of(pipeline).steps[name].objective_metric, "Value": value, "Timestamp": "2026-11-01T07:00:00Z"}
    assert set(metric) == set(shape.members["FinalMetricDataList"].member.members)  # the names botocore answers with
    return {
        **UPSTREAM_XCOM[pipeline],
        (f"{name}.fit", "return_value"): {"Training": {"TrainingJobStatus": "Completed", "FinalMetricDataList": [metric]}},
    }


def write_validation(lake: Path, pipeline: str, dataset: str, column: str) -> None:
    folder = lake / pipeline / dataset / f"ds={DS}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-00000.csv").write_text(f"{column},x\n" + "a,1\n" * 60 + "b,1\n" * 40)  # majority 60 %


@pytest.mark.parametrize(("pipeline", "name"), gated("sagemaker_training"))
def test_a_training_jobs_final_metric_below_the_majority_baseline_fails_its_check(cloud_dags, rendered, s3_lake, pipeline, name):
    from water.targets.cloud.operators import SageMakerTrainingGateOperator

    gates = Gates.of(name, spec_of(pipeline).steps[name])
    dag = cloud_dags(pipeline)
    check = dag.get_task(f"{name}.check")
    assert isinstance(check, SageMakerTrainingGateOperator) and check.upstream_task_ids == {f"{name}.fit"}
    write_validation(s3_lake, pipeline, gates.validation, gates.metric.label_column)
    floor = max(gates.metric.at_least or 0, 0.6 + (gates.metric.above_majority_by or 0))
    low = round(floor - 0.05, 4)
    context = make_context(pipeline, FakeTI(final_metrics_xcom(pipeline, name, low), dag_id=pipeline))
    with pytest.raises(QualityCheckFailed, match=f"^{name}: check metric failed: {gates.metric.name} {low:.4f} <"):
        rendered(check.task_id).execute(context)
    context = make_context(pipeline, FakeTI(final_metrics_xcom(pipeline, name, floor + 0.01), dag_id=pipeline))
    figures = rendered(check.task_id).execute(context)
    assert figures["checks"]["metric"]["majority_share"] == 0.6


def test_the_transform_waits_for_the_training_check(cloud_dags):
    """A model below the gate is never used: the transform group comes after the check."""
    for pipeline, name in [p.values for p in gated("sagemaker_training")]:
        dag = cloud_dags(pipeline)
        spec = spec_of(pipeline)
        transform = next(n for n, s in spec.steps_of("sagemaker_transform").items() if s.model == spec.steps[name].writes)
        first = dag.get_task(f"{transform}.model")
        assert f"{name}.check" in first.get_flat_relative_ids(upstream=True)


@pytest.mark.parametrize(("pipeline", "name"), gated("pod"))
def test_a_pod_step_checks_what_it_wrote_and_the_metric_its_log_reported(rendered, s3_lake, pipeline, name):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    step = spec_of(pipeline).steps[name]
    gates = Gates.of(name, step)
    task = rendered(name)
    assert task.gates == gates and task.lake["lake_root"] == CLOUD_ENV["WATER_LAKE"]
    assert task.metric_definitions == [(m.name, m.regex) for m in step.metric_definitions]
    for dataset, (row_format, checks) in gates.outputs.items():  # pods write their partitions themselves
        write_rows(s3_lake / pipeline / dataset / f"ds={DS}", row_format, checks, checks.min_rows)
    if gates.metric is not None:
        write_validation(s3_lake, pipeline, gates.validation, gates.metric.label_column)
    pod = SimpleNamespace(metadata=SimpleNamespace(name="p"))

    def run_with_log(value: float):
        log = [b"starting\n", f"{gates.metric.name}={value};\n".encode()] if gates.metric else [b"done\n"]
        task.pod_manager = SimpleNamespace(read_pod_logs=lambda pod, container, follow=True: iter(log))
        with mock.patch.object(KubernetesPodOperator, "cleanup"):
            task.cleanup(pod=pod, remote_pod=pod)  # a succeeded pod: its log is read before it is deleted
        return task.check(make_context(pipeline))

    assert run_with_log(0.95) is not None
    if gates.metric is not None:
        floor = max(gates.metric.at_least or 0, 0.6 + (gates.metric.above_majority_by or 0))
        with pytest.raises(QualityCheckFailed, match=f"^{name}: check metric failed: {gates.metric.name} "):
            run_with_log(round(floor - 0.05, 4))
    if not gates.outputs:
        return
    first, (row_format, checks) = next(iter(gates.outputs.items()))
    for file in (s3_lake / pipeline / first / f"ds={DS}").iterdir():
        file.unlink()
    with pytest.raises(QualityCheckFailed, match=f"check min_rows failed.*0 rows < {checks.min_rows:,}"):
        run_with_log(0.95)


@pytest.mark.parametrize(("pipeline", "name"), gated("sized_postprocess"))
def test_a_sized_steps_shards_are_checked_before_the_commit(cloud_dags, rendered, s3_lake, pipeline, name):
    from water.operators.quality import ShardsGateOperator

    step = spec_of(pipeline).steps[name]
    check = cloud_dags(pipeline).get_task(step.check_task_id())
    assert isinstance(check, ShardsGateOperator) and check.downstream_task_ids == {step.commit_task_id()}
    row_format, checks = Gates.of(name, step).outputs[step.writes]
    route = next(iter(step.all_routes(spec_of(pipeline).classes, name)))
    decision = {"routes": {route: {"tier": "any", "shards": [{"index": 0}]}}}
    ti = FakeTI({(step.size_task_id(name), "decision"): decision}, dag_id=pipeline)
    shard = s3_lake / pipeline / step.shards_dataset / f"ds={DS}" / f"route={route}" / "shard=0000"
    write_rows(shard, row_format, checks, 0)
    with pytest.raises(QualityCheckFailed, match=f"^{name}: check min_rows failed: 0 rows"):
        task_copy(check).execute(make_context(pipeline, ti))
    write_rows(shard, row_format, checks, checks.min_rows)
    assert task_copy(check).execute(make_context(pipeline, ti))["rows_in"] == checks.min_rows
