"""The target-agnostic tasks (drift guard, quarantine, run report) reach the lake through
ObjectStoragePath; in the cloud that is S3 through the Amazon provider's s3fs. Here the same
LakeStore runs against a real S3 API: a moto server on localhost, for every shipped spec's
datasets (its stats, predictions, quarantine and labelled source)."""

from __future__ import annotations

import json

import pytest

from tests.contract.cloud import PIPELINES, spec_of
from water.spec import DriftGuardStep
from water.store import LakeStore

BUCKET = "water-lake-test"


def datasets(pipeline: str) -> dict[str, str]:
    """The datasets the target-agnostic tasks touch, from the spec (its first inference_stats
    step's stats and predictions, and its quarantine)."""
    spec = spec_of(pipeline)
    stats = next(iter(spec.steps_of("inference_stats").values()), None)
    if stats is None:
        pytest.skip(f"{pipeline} has no inference_stats step")
    guard = spec.step_of("drift_guard")
    return {
        "stats": stats.writes,
        "predictions": stats.reads,
        "quarantine": guard[1].writes if guard else DriftGuardStep.model_fields["writes"].default,
    }


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(params=PIPELINES)
def store(request, s3_endpoint, monkeypatch):
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    extra = {"endpoint_url": s3_endpoint, "region_name": "eu-west-1"}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_LAKE", json.dumps({"conn_type": "aws", "extra": extra}))
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-1")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield LakeStore(f"s3://{BUCKET}/lake", request.param, conn_id="aws_lake"), client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_stats_days_and_json_round_trip(store):
    lake_store, client = store
    pipeline = lake_store.pipeline
    stats = datasets(pipeline)["stats"]
    for ds in ("2026-11-03", "2026-11-01", "2026-11-02"):
        lake_store.write_json(stats, ds, "inference_stats.json", {"ds": ds, "class_counts": {"a": 1}})
    assert lake_store.days(stats) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert lake_store.read_json(stats, "2026-11-02", "inference_stats.json")["ds"] == "2026-11-02"
    assert lake_store.read_json(stats, "2026-11-09", "inference_stats.json") is None
    assert f"lake/{pipeline}/{stats}/ds=2026-11-01/inference_stats.json" in keys(client)


def test_quarantine_moves_a_partition_and_replaces_an_old_one(store):
    lake_store, client = store
    pipeline = lake_store.pipeline
    predictions, quarantine = datasets(pipeline)["predictions"], datasets(pipeline)["quarantine"]
    line = f"1,{spec_of(pipeline).classes[0]},0.9\n".encode()
    for name in ("part-0.out", "part-1.out"):
        client.put_object(Bucket=BUCKET, Key=f"lake/{pipeline}/{predictions}/ds=2026-11-02/{name}", Body=line)
    client.put_object(Bucket=BUCKET, Key=f"lake/{pipeline}/{quarantine}/ds=2026-11-02/stale.out", Body=b"old")
    assert lake_store.move_partition(predictions, quarantine, "2026-11-02")
    assert keys(client) == [
        f"lake/{pipeline}/{quarantine}/ds=2026-11-02/part-0.out",
        f"lake/{pipeline}/{quarantine}/ds=2026-11-02/part-1.out",
    ]
    assert lake_store.remove_partition(quarantine, "2026-11-02") and keys(client) == []
    assert lake_store.move_partition(predictions, quarantine, "2026-11-02") is False  # nothing to move


def test_label_counts_read_one_parquet_column(store):
    """The labelled lake source's label column, counted per class (the drift baseline's kind of read)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    lake_store, client = store
    spec = spec_of(lake_store.pipeline)
    labelled = {name: column for name, column in spec.label_sources().items() if "." not in name}
    if not labelled:
        pytest.skip(f"{spec.name} has no labelled lake source")
    (source, column), *_ = labelled.items()
    first, second = spec.classes[:2]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2, 3, 4], column: [first, first, None, second]}), buffer)
    client.put_object(Bucket=BUCKET, Key=f"lake/{spec.name}/{source}/ds=2026-11-02/part-0.parquet", Body=buffer.getvalue())
    assert lake_store.column_counts(source, "2026-11-02", column) == {first: 2, second: 1}
