"""The cloud retraction of a day that published nothing, for every shipped spec's publish
step, rendered for ds=2026-11-01 and checked offline.

When the day ends unpublished (quarantine, no_predictions), `retract_<publish>` deletes the
BigQuery table's day partition (`table$YYYYMMDD`, the decorator the publish load replaces)
through BigQueryDeleteTableOperator, then the S3 partition the publish step reads through
S3DeleteObjectsOperator. The BigQuery request goes through google-cloud-bigquery's own client
to a stand-in HTTP session; the S3 requests to botocore clients that validate them against
the service model (tests/contract/cloud.py).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from unittest import mock

import pytest

from tests.contract.cloud import DS_NODASH, LAKE_BUCKET, AwsRecorder, key, make_context, offline_aws, spec_of, steps, validate

PROJECT = "acme-analytics"  # WATER_GCP_PROJECT
MODIFIED = datetime(2026, 11, 1, 7, tzinfo=UTC)


class BigQueryStandIn:
    """The HTTP session google-cloud-bigquery's client sends through: records each request and
    answers 204 (deleted) or, for a table that does not exist yet, 404."""

    is_mtls = False

    def __init__(self, missing: bool = False) -> None:
        self.missing, self.requests = missing, []

    def request(self, method, url, data=None, headers=None, **_):
        self.requests.append((method, url))
        answer = mock.Mock(status_code=404 if self.missing else 204, headers={"content-type": "application/json"})
        answer.content = json.dumps({"error": {"code": 404, "message": "Not found: Table"}}).encode() if self.missing else b""
        answer.json.return_value = json.loads(answer.content or b"{}")
        return answer


def run_table_partition(task, pipeline: str, missing: bool = False) -> list[tuple[str, str]]:
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    http = BigQueryStandIn(missing)
    client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(), _http=http)
    connection = {"conn_type": "google_cloud_platform", "extra": {"project": PROJECT}}  # no key: the client is the stand-in's
    with (
        mock.patch.dict(os.environ, {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(connection)}),
        mock.patch.object(BigQueryHook, "project_id", new_callable=mock.PropertyMock, return_value=PROJECT),
        mock.patch.object(BigQueryHook, "get_client", return_value=client),
    ):
        task.execute(make_context(pipeline))
    return http.requests


def publish_steps():
    return [p for p in steps("publish") if spec_of(p.values[0]).retracts(p.values[1])]


@pytest.mark.parametrize(("pipeline", "name"), publish_steps())
def test_the_retraction_follows_the_tasks_that_end_a_day_unpublished(cloud_dag, pipeline, name):
    spec = spec_of(pipeline)
    group = spec.steps[name].retract_task_id(name)
    first, then = cloud_dag.get_task(f"{group}.table_partition"), cloud_dag.get_task(f"{group}.lake_partition")
    assert first.upstream_task_ids == set(spec.nothing_published_endings(name)) != set()
    assert first.trigger_rule == "none_failed_min_one_success"  # not after a failure: the previous partition stays
    assert then.upstream_task_ids == {first.task_id} and then.downstream_task_ids == {"run_report"}


@pytest.mark.parametrize(("pipeline", "name"), publish_steps())
def test_the_retraction_deletes_only_the_days_table_partition(rendered, pipeline, name):
    from google.cloud.bigquery import TableReference

    step = spec_of(pipeline).steps[name]
    dataset, table = step.table.split(".")
    task = rendered(f"{step.retract_task_id(name)}.table_partition")
    reference = TableReference.from_string(task.deletion_dataset_table)
    # the partition decorator: without it the whole table would go
    assert (reference.project, reference.dataset_id, reference.table_id) == (PROJECT, dataset, f"{table}${DS_NODASH}")
    assert task.ignore_if_missing and task.gcp_conn_id == "google_cloud_default"
    assert run_table_partition(task, pipeline) == [
        (
            "DELETE",
            f"https://bigquery.googleapis.com/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/{table}${DS_NODASH}?prettyPrint=false",
        )
    ]
    # a table nothing was ever published to: nothing to retract, and no failure
    assert len(run_table_partition(rendered(task.task_id), pipeline, missing=True)) == 1


@pytest.mark.parametrize(("pipeline", "name"), publish_steps())
def test_the_retraction_deletes_the_days_lake_partition_the_publish_step_read(rendered, pipeline, name):
    from water.targets.cloud.target import AWS_ACTIONS

    step = spec_of(pipeline).steps[name]
    task = rendered(f"{step.retract_task_id(name)}.lake_partition")
    prefix = key(pipeline, step.reads) + "/"
    objects = [prefix + "segment=cook/part-00000.parquet", prefix + "segment=browse/part-00000.parquet"]

    def listing(params):
        keys = [k for k in objects if k.startswith(params["Prefix"])]
        return {
            "Contents": [{"Key": k, "Size": 1, "LastModified": MODIFIED} for k in keys],
            "KeyCount": len(keys),
            "IsTruncated": False,
        }

    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): listing, ("s3", "DeleteObjects"): {"Deleted": []}})
    with offline_aws(recorder):
        task.execute(make_context(pipeline))
    (listed,) = recorder.requests("s3", "ListObjectsV2")
    (deleted,) = recorder.requests("s3", "DeleteObjects")
    validate("s3", "ListObjectsV2", listed)
    validate("s3", "DeleteObjects", deleted)
    assert (listed["Bucket"], listed["Prefix"]) == (LAKE_BUCKET, prefix)  # this day's partition, not its neighbours
    assert deleted["Bucket"] == LAKE_BUCKET and sorted(o["Key"] for o in deleted["Delete"]["Objects"]) == sorted(objects)
    assert {"s3:ListBucket", "s3:DeleteObject"} <= set(AWS_ACTIONS)

    empty = AwsRecorder(responses={("s3", "ListObjectsV2"): {"KeyCount": 0, "IsTruncated": False}})
    with offline_aws(empty):  # a partition already gone: nothing to delete
        rendered(task.task_id).execute(make_context(pipeline))
    assert empty.requests("s3", "DeleteObjects") == []
