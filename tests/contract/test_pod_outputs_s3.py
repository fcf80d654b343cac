"""The pod entrypoints write no zero-byte "folder" objects on S3. Needs no service of its
own: a moto S3 server on localhost, in this process (as tests/contract/test_lake_store_s3.py).

pyarrow's S3FileSystem writes a `<prefix>/` object for every folder level it is asked to
create, and back into a folder it empties. Inside a SageMaker input prefix (the channels
the preprocess pod writes) such an object is an input file to the training job and to the
batch transform, and every other reader has to skip it. Here each entrypoint of every
shipped spec's pods runs with the arguments its cloud task gives it (the lake on S3, the
day's partitions), on seeded inputs, twice: after each run the lake bucket holds no key
ending in "/", and the second run replaced what the first wrote (and a stray file put in
between) instead of adding to it. The routes that read more than the predictions (the
day's raw events) are left out; they write through the same helper as the route that runs.
"""

from __future__ import annotations

import importlib.util
import sys
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.contract.cloud import DS, LAKE_BUCKET, PIPELINES, as_run, key, make_context, spec_of, task_copy
from water import paths

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def s3():
    """A boto3 client of an S3 server on localhost; boto3 and pyarrow in this process use it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
        }.items():  # fmt: skip
            env.setenv(name, value)
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        client.create_bucket(Bucket=LAKE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield client
    server.stop()


def keys(client) -> list[str]:
    return sorted(
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=LAKE_BUCKET)
        for o in page.get("Contents", [])
    )


@pytest.fixture
def lake(s3):
    yield s3
    for name in keys(s3):
        s3.delete_object(Bucket=LAKE_BUCKET, Key=name)


def load_script(relative: str):
    path = paths.include_dir() / relative
    module_spec = importlib.util.spec_from_file_location(f"pod_outputs_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    with mock.patch.object(sys, "path", [str(path.parent), *sys.path]):  # as `python <script>`: its helpers import
        module_spec.loader.exec_module(module)
    return module


# --- what runs, with what ---------------------------------------------------------------------


def pod_runs(pipeline: str) -> list[tuple[str, str]]:
    """(task id, output flag) of the pods that run here, in pipeline order: every `pod` step,
    and the first tier of each route of a `sized_postprocess` step that reads only the predictions."""
    spec = spec_of(pipeline)
    runs = []
    for name in spec.order():
        step = spec.steps[name]
        if step.kind == "pod":
            runs += [(name, flag) for flag in step.writes]
        elif step.kind == "sized_postprocess":
            for route_name, route in step.all_routes(spec.classes, name).items():
                if not route.reads:
                    runs.append((step.tier_task_id(name, route_name, route.sizing.tiers[0].name), "output"))
    return runs


def seed(client, pipeline: str) -> None:
    """The inputs of the first pods: the day's training set (Parquet, the columns the pod that
    reads it asks for) and, where no pod writes them, the predictions (CSV lines id,class,confidence)."""
    spec = spec_of(pipeline)
    classes = spec.classes
    first = next(step for name in spec.order() if (step := spec.steps[name]).kind == "pod")
    script = load_script(first.entrypoint)
    features = getattr(script, "FEATURES", ())
    counts = getattr(script, "COUNT_COLUMNS", features)
    n = 60
    columns = {
        "user_id": pa.array(range(n), pa.int64()),
        "customer_key": pa.array([f"c{i:04d}" for i in range(n)]),
        "platform": pa.array([("ios", "android", "web")[i % 3] for i in range(n)]),
        **{
            name: pa.array([float((i * (j + 3)) % 17) for i in range(n)])
            for j, name in enumerate(dict.fromkeys([*features, *counts]))
        },
        "label": pa.array([classes[i % len(classes)] for i in range(n)]),
        "split": pa.array(["validation" if i % 5 == 0 else "train" for i in range(n)]),
    }
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), buffer)
    client.put_object(
        Bucket=LAKE_BUCKET, Key=key(pipeline, first.reads["input"], "part-0.parquet"), Body=buffer.getvalue().to_pybytes()
    )
    if not any(s.kind == "pod" and "predictions" in [o.dataset for o in s.writes.values()] for s in spec.steps.values()):
        lines = "".join(f"{i},{classes[i % len(classes)]},{0.5 + (i % 5) / 10}\n" for i in range(n))
        client.put_object(Bucket=LAKE_BUCKET, Key=key(pipeline, "predictions", "part-0.csv.out"), Body=lines.encode())


def arguments(cloud_dags, pipeline: str, task_id: str) -> list[str]:
    task = as_run(task_copy(cloud_dags(pipeline).get_task(task_id)))
    task.render_template_fields(make_context(pipeline))
    return list(task.arguments)


def output_prefix(argv: list[str], flag: str) -> str:
    uri = argv[argv.index(f"--{flag}") + 1]
    assert uri.startswith(f"s3://{LAKE_BUCKET}/"), uri
    return uri.removeprefix(f"s3://{LAKE_BUCKET}/") + "/"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pod_entrypoints_write_no_folder_objects(lake, cloud_dags, pipeline):
    runs = pod_runs(pipeline)
    assert runs, f"{pipeline} has no pods"
    seed(lake, pipeline)
    for task_id in dict.fromkeys(task_id for task_id, _ in runs):
        argv = arguments(cloud_dags, pipeline, task_id)
        prefixes = [output_prefix(argv, flag) for t, flag in runs if t == task_id]
        script = load_script(argv[0])
        script.main(argv[1:])
        first = {p: [k for k in keys(lake) if k.startswith(p)] for p in prefixes}
        assert all(first.values()), f"{task_id} wrote nothing into {[p for p, found in first.items() if not found]}"
        for prefix in prefixes:  # what a run before this one left
            lake.put_object(Bucket=LAKE_BUCKET, Key=f"{prefix}stale-part.csv", Body=b"stale\n")
        script.main(argv[1:])
        folders = [k for k in keys(lake) if k.endswith("/")]
        assert folders == [], f"{task_id} ({argv[0]}) left folder objects: {folders}"
        again = {p: [k for k in keys(lake) if k.startswith(p)] for p in prefixes}
        assert again == first, f"{task_id}: a second run did not replace the first's output"


def test_the_check_sees_what_pyarrow_does_to_a_folder(lake):
    """What the entrypoints no longer do: pyarrow's own create_dir leaves folder objects."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(f"s3://{LAKE_BUCKET}/water/p/d/ds={DS}")
    fs.create_dir(root, recursive=True)
    assert f"water/p/d/ds={DS}/" in keys(lake)


def test_an_output_folder_on_s3_is_emptied_without_folder_objects(lake):
    from water.job_output import folder, output_folder

    prefix = f"water/p/d/ds={DS}"
    for name in ("part-0.csv", "segment=a/part-1.parquet"):
        lake.put_object(Bucket=LAKE_BUCKET, Key=f"{prefix}/{name}", Body=b"x")
    lake.put_object(Bucket=LAKE_BUCKET, Key=f"{prefix}-other/keep.csv", Body=b"x")  # a sibling with the same stem
    fs, root = output_folder(f"s3://{LAKE_BUCKET}/{prefix}")
    assert keys(lake) == [f"{prefix}-other/keep.csv"]
    assert folder(fs, f"{root}/segment=b") == f"{root}/segment=b" and keys(lake) == [f"{prefix}-other/keep.csv"]
    with pytest.raises(ValueError, match="whole bucket"):
        output_folder(f"s3://{LAKE_BUCKET}")
