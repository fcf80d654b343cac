"""The target-agnostic tasks (drift guard, quarantine, run report) reach the lake through
ObjectStoragePath; in the cloud that is S3 through the Amazon provider's s3fs. Here the same
LakeStore runs against a real S3 API: a moto server on localhost."""

from __future__ import annotations

import json

import pytest

from water import lake
from water.store import LakeStore

BUCKET = "water-lake-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def store(s3_endpoint, monkeypatch):
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    extra = {"endpoint_url": s3_endpoint, "region_name": "eu-west-1"}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_LAKE", json.dumps({"conn_type": "aws", "extra": extra}))
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-1")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield LakeStore(f"s3://{BUCKET}/lake", "recipe_engagement", conn_id="aws_lake"), client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_stats_days_and_json_round_trip(store):
    lake_store, client = store
    for ds in ("2026-11-03", "2026-11-01", "2026-11-02"):
        lake_store.write_json(lake.STATS, ds, "inference_stats.json", {"ds": ds, "class_counts": {"a": 1}})
    assert lake_store.days(lake.STATS) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert lake_store.read_json(lake.STATS, "2026-11-02", "inference_stats.json")["ds"] == "2026-11-02"
    assert lake_store.read_json(lake.STATS, "2026-11-09", "inference_stats.json") is None
    assert "lake/recipe_engagement/stats/ds=2026-11-01/inference_stats.json" in keys(client)


def test_quarantine_moves_a_partition_and_replaces_an_old_one(store):
    lake_store, client = store
    for name in ("part-0.out", "part-1.out"):
        client.put_object(Bucket=BUCKET, Key=f"lake/recipe_engagement/predictions/ds=2026-11-02/{name}", Body=b"1,cook,0.9\n")
    client.put_object(Bucket=BUCKET, Key="lake/recipe_engagement/quarantine/ds=2026-11-02/stale.out", Body=b"old")
    assert lake_store.move_partition(lake.PREDICTIONS, lake.QUARANTINE, "2026-11-02")
    assert keys(client) == [
        "lake/recipe_engagement/quarantine/ds=2026-11-02/part-0.out",
        "lake/recipe_engagement/quarantine/ds=2026-11-02/part-1.out",
    ]
    assert lake_store.remove_partition(lake.QUARANTINE, "2026-11-02") and keys(client) == []
    assert lake_store.move_partition(lake.PREDICTIONS, lake.QUARANTINE, "2026-11-02") is False  # nothing to move


def test_label_counts_read_one_parquet_column(store):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    lake_store, client = store
    buffer = io.BytesIO()
    pq.write_table(pa.table({"user_id": [1, 2, 3, 4], "label": ["cook", "cook", None, "dormant"]}), buffer)
    client.put_object(Bucket=BUCKET, Key="lake/recipe_engagement/training/ds=2026-11-02/part-0.parquet", Body=buffer.getvalue())
    assert lake_store.column_counts(lake.TRAINING, "2026-11-02", "label") == {"cook": 2, "dormant": 1}
