"""An athena_sql step's UNLOAD can be retried after a partial failure.

Athena's UNLOAD refuses a target prefix that holds objects (HIVE_PATH_ALREADY_EXISTS), and a
try that fails half-way (a timeout, a worker lost, a query failing late) leaves files there.
A retry re-runs only the failed task, so the task that unloads must empty its target itself:
each try lists the staging prefix, deletes what it finds, and only then starts the query.
Run offline (the operator's own code against validating botocore clients), for every
athena_sql step of every shipped spec.
"""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import pytest

from tests.contract.cloud import (
    LAKE_BUCKET,
    UPSTREAM_XCOM,
    AwsRecorder,
    FakeTI,
    make_context,
    offline_aws,
    spec_of,
    staging,
    steps,
    validate,
)


def leftovers(pipeline: str, dataset: str) -> list[str]:
    """What a try that failed half-way left in the staging prefix."""
    prefix = staging(pipeline, dataset).removeprefix(f"s3://{LAKE_BUCKET}/")
    return [f"{prefix}/20261101_000000_00001_abcde_part-0.parquet", f"{prefix}/20261101_000000_00001_abcde_part-1.parquet"]


def run_try(task, pipeline: str, try_number: int, left: list[str]) -> AwsRecorder:
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook

    modified = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    recorder = AwsRecorder(
        responses={
            ("s3", "ListObjectsV2"): {
                "Contents": [{"Key": k, "Size": 1, "LastModified": modified} for k in left],
                "KeyCount": len(left),
                "IsTruncated": False,
            },
            ("s3", "DeleteObjects"): {"Deleted": [{"Key": k} for k in left]},
            ("athena", "StartQueryExecution"): {"QueryExecutionId": f"q-{try_number}"},
            ("athena", "GetQueryExecution"): {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}},
        }
    )
    context = make_context(pipeline, FakeTI(UPSTREAM_XCOM[pipeline], try_number=try_number, dag_id=pipeline))
    with offline_aws(recorder), mock.patch.object(AthenaHook, "get_conn", return_value=recorder.client("athena")):
        assert task.execute(context) == f"q-{try_number}"
    return recorder


@pytest.mark.parametrize(("pipeline", "name"), steps("athena_sql"))
def test_each_try_empties_the_target_before_it_unloads(rendered, pipeline, name):
    step = spec_of(pipeline).steps[name]
    task = rendered(f"{name}.unload")
    prefix = staging(pipeline, step.writes).removeprefix(f"s3://{LAKE_BUCKET}/") + "/"
    assert f"TO '{staging(pipeline, step.writes)}/'" in task.query
    for try_number, left in ((1, []), (2, leftovers(pipeline, step.writes))):  # the retry finds the first try's files
        recorder = run_try(task, pipeline, try_number, left)
        calls = [(service, op) for service, op, _ in recorder.calls]
        assert ("athena", "StartQueryExecution") in calls
        started = calls.index(("athena", "StartQueryExecution"))
        (listing,) = recorder.requests("s3", "ListObjectsV2")
        assert (listing["Bucket"], listing["Prefix"]) == (LAKE_BUCKET, prefix)
        assert calls.index(("s3", "ListObjectsV2")) < started
        deletes = recorder.requests("s3", "DeleteObjects")
        if left:
            (delete,) = deletes
            validate("s3", "DeleteObjects", delete)
            assert sorted(o["Key"] for o in delete["Delete"]["Objects"]) == sorted(left)
            assert calls.index(("s3", "DeleteObjects")) < started
        else:
            assert deletes == []


@pytest.mark.parametrize(("pipeline", "name"), steps("athena_sql"))
def test_nothing_else_in_the_group_runs_before_the_unload(cloud_dags, pipeline, name):
    """A retry re-runs only the failed task: no separate clearing task the retry would skip."""
    dag = cloud_dags(pipeline)
    unload = dag.get_task(f"{name}.unload")
    group = [t for t in dag.tasks if t.task_id.startswith(f"{name}.")]
    assert not any(up.startswith(f"{name}.") for up in unload.upstream_task_ids)
    assert [t.task_id for t in group if not any(u.startswith(f"{name}.") for u in t.upstream_task_ids)] == [unload.task_id]
