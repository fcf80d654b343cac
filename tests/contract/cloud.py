"""The cloud target under test: its settings, the shipped specs and a render context
(imported by test_cloud_*.py; the fixtures built on them are in tests/contract/conftest.py).

Every test runs over every spec in include/pipelines/ (`water.spec.pipeline_names()`), and
every expectation comes from the spec: its steps' kinds, datasets, names and settings.
`steps("pod")` lists the (pipeline, step) pairs to parametrize a test with; the `pipeline`
fixture (or a parametrized `pipeline` argument) picks the spec, `cloud_dag` its DAG and
`rendered(task_id)` a task of it rendered for ds=2026-11-01.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pytest

from tests.conftest import FakeTI  # the task instance every operator test uses

DS = "2026-11-01"
DS_NODASH = DS.replace("-", "")

# The settings a deployment sets (names and shapes as water/targets/cloud/target.py documents them).
CLOUD_ENV = {
    "WATER_TARGET": "cloud",
    "WATER_LAKE": "s3://acme-ml-lake/water",
    "WATER_AWS_REGION": "eu-west-1",
    "WATER_AWS_CONN_ID": "aws_default",
    "WATER_GCP_CONN_ID": "google_cloud_default",
    "WATER_GCP_PROJECT": "acme-analytics",
    "WATER_BIGQUERY_LOCATION": "europe-west1",
    "WATER_BQ_STAGING_DATASET": "water_staging",
    "WATER_GCS_STAGING": "gs://acme-water-staging/exchange",
    "WATER_GLUE_ROLE": "water-glue",
    "WATER_GLUE_SCRIPTS": "s3://acme-ml-artifacts/water/glue",
    "WATER_ATHENA_OUTPUT": "s3://acme-ml-artifacts/water/athena",
    "WATER_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/water-sagemaker",
    "WATER_SAGEMAKER_CODE": "s3://acme-ml-artifacts/water/sagemaker",
    "WATER_VERTEX_REGION": "europe-west4",
    "WATER_VERTEX_SERVICE_ACCOUNT": "water-vertex@acme-analytics.iam.gserviceaccount.com",
    "WATER_K8S_NAMESPACE": "water-jobs",
    "WATER_K8S_SERVICE_ACCOUNT": "water-jobs",
    "WATER_JOB_IMAGE": "registry.example/water-jobs",
    "WATER_IMAGE_TAG": "2026.11.1",
    "WATER_DEFERRABLE": "false",
}
LAKE_BUCKET, LAKE_PREFIX = "acme-ml-lake", "water"  # of WATER_LAKE
IMAGE = f"{CLOUD_ENV['WATER_JOB_IMAGE']}:{CLOUD_ENV['WATER_IMAGE_TAG']}"


# --- the shipped specs ---------------------------------------------------------------------


def _pipeline_names() -> list[str]:
    from water.spec import pipeline_names

    return pipeline_names()


PIPELINES = _pipeline_names()


@cache
def spec_of(pipeline: str):
    from water.spec import load_pipeline

    return load_pipeline(pipeline)


def steps(*kinds: str) -> list[Any]:
    """pytest params (pipeline, step name) of every step of these kinds in every shipped spec."""
    return [
        pytest.param(pipeline, name, id=f"{pipeline}.{name}")
        for pipeline in PIPELINES
        for name, step in spec_of(pipeline).steps.items()
        if step.kind in kinds
    ]


def pipelines_with(kind: str) -> list[str]:
    """The shipped pipelines that have a step of this kind."""
    return [p for p in PIPELINES if spec_of(p).steps_of(kind)]


def lake(pipeline: str) -> str:
    """The pipeline's lake root: <WATER_LAKE>/<pipeline>."""
    return f"{CLOUD_ENV['WATER_LAKE']}/{pipeline}"


def partition(pipeline: str, dataset: str) -> str:
    return f"{lake(pipeline)}/{dataset}/ds={DS}"


def staging(pipeline: str, dataset: str) -> str:
    return f"{lake(pipeline)}/{dataset}/_staging/ds={DS}"


def key(pipeline: str, dataset: str, *rest: str) -> str:
    """An object key of the lake bucket inside a dataset's partition."""
    return "/".join([LAKE_PREFIX, pipeline, dataset, f"ds={DS}", *rest])


def rendered_name(template: str, try_number: int = 1) -> str:
    """A water.targets.cloud.sagemaker_name as it renders for ds=2026-11-01."""
    return template.replace("{{ ds_nodash }}", DS_NODASH).replace("{{ ti.try_number }}", str(try_number))


# --- a task as the task runner runs it ----------------------------------------------------

FIRST_SHARD = {"index": 0, "row_start": 0, "row_end": 10}


def task_copy(task):
    """A deep copy of one task that shares its DAG and task group: what a test may change is the
    task's own. (A plain deepcopy of a task copies its DAG, every task of it: seconds a module.)"""
    return copy.deepcopy(task, {id(task.dag): task.dag, id(task.task_group): task.task_group})


def as_run(task, shard: dict[str, int] | None = None):
    """The operator the task runner runs for `task`: `prepare_for_execution()`, which a provider
    operator's stand-in (water.targets.cloud.lazy) answers with the operator itself; a mapped
    task unmapped first, for `shard` (its first shard by default)."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    if isinstance(task, MappedOperator):
        task = task.unmap({"shard": shard or FIRST_SHARD})
    return task.prepare_for_execution()


def tasks_as_run(dag) -> list:
    """as_run() of every task of the DAG (a mapped one for its first shard)."""
    return [as_run(task) for task in dag.tasks]


# --- the upstream XComs the templates pull (a task instance: tests.conftest.FakeTI) ----------


def model_artifact(pipeline: str, training: str) -> str:
    """Where the training step `training` of `pipeline` left its model (its `<name>.fit` XCom)."""
    dataset = spec_of(pipeline).steps[training].writes
    return f"{partition(pipeline, dataset)}/job/output/model.tar.gz"


def model_name(pipeline: str, transform: str) -> str:
    """The SageMaker model the transform step's `<name>.model` task created."""
    from water.targets.cloud.target import sagemaker_name

    return rendered_name(sagemaker_name(pipeline, f"{transform}-model"))


def upstream_xcom(pipeline: str) -> dict[tuple[str, str], Any]:
    """The XComs a pipeline's templates pull, from its spec: each SageMaker training step's
    `<name>.fit` and each transform step's `<name>.model`."""
    spec = spec_of(pipeline)
    xcom: dict[tuple[str, str], Any] = {}
    for name in spec.steps_of("sagemaker_training"):
        xcom[(f"{name}.fit", "return_value")] = {
            "Training": {"ModelArtifacts": {"S3ModelArtifacts": model_artifact(pipeline, name)}}
        }
    for name in spec.steps_of("sagemaker_transform"):
        xcom[(f"{name}.model", "return_value")] = {"Model": {"ModelName": model_name(pipeline, name)}}
    return xcom


UPSTREAM_XCOM = {pipeline: upstream_xcom(pipeline) for pipeline in PIPELINES}


def make_context(pipeline: str, ti: FakeTI | None = None) -> dict[str, Any]:
    return {
        "ds": DS,
        "ds_nodash": DS_NODASH,
        "run_id": f"scheduled__{DS}T06:00:00+00:00",
        "ti": ti or FakeTI(UPSTREAM_XCOM[pipeline], dag_id=pipeline),
        "params": {},
    }


# --- offline AWS ---------------------------------------------------------------------------


@cache
def botocore_loader():
    """One botocore data loader for every session the tests make. Each new session reads the
    service models' JSON again (megabytes each: about 10 s of the contract tests on 2 cores);
    the files, and so the models, are the same."""
    import botocore.loaders

    return botocore.loaders.create_loader()


def botocore_session():
    """A new botocore session that reads its service models through `botocore_loader()`."""
    import botocore.session

    session = botocore.session.get_session()
    session.register_component("data_loader", botocore_loader())
    return session


class AwsRecorder:
    """Real botocore clients that validate every request against the service model, record
    it, and answer from canned responses instead of sending it (no network)."""

    def __init__(self, region: str = "eu-west-1", responses: dict[tuple[str, str], Any] | None = None):
        import boto3

        self.session = boto3.session.Session(
            aws_access_key_id="offline", aws_secret_access_key="offline", region_name=region, botocore_session=botocore_session()
        )
        self.responses = dict(responses or {})  # (service, Operation) -> dict | callable(params) -> dict
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._clients: dict[str, Any] = {}

    def client(self, service: str):
        if service not in self._clients:
            client = self.session.client(service)
            client.meta.events.register("before-parameter-build", self._record)
            client.meta.events.register("before-call", self._answer)
            self._clients[service] = client
        return self._clients[service]

    def _record(self, params, model, **_):
        body = params.get("Body")
        if hasattr(body, "read"):  # a streamed upload: record its bytes, leave the stream as it was
            position = body.tell()
            params = {**params, "Body": body.read()}
            body.seek(position)
        params = copy.deepcopy(params)
        self.calls.append((model.service_model.service_name, model.name, params))

    def _answer(self, model, params, **_):
        from botocore.awsrequest import AWSResponse

        service, operation = model.service_model.service_name, model.name
        answer = self.responses.get((service, operation), {})
        if callable(answer):
            answer = answer(self.calls[-1][2])
        status = 400 if "Error" in answer else 200
        return AWSResponse("", status, {}, None), {**answer, "ResponseMetadata": {"HTTPStatusCode": status}}

    def requests(self, service: str, operation: str) -> list[dict[str, Any]]:
        return [params for s, op, params in self.calls if (s, op) == (service, operation)]


def offline_aws(recorder: AwsRecorder):
    """Every Amazon provider hook talks to the recorder's clients."""
    from unittest import mock

    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    return mock.patch.object(AwsGenericHook, "conn", new=property(lambda hook: recorder.client(hook.client_type)))


def validate(service: str, operation: str, params: dict[str, Any]) -> None:
    """botocore's own validation of one request against the service model (raises when invalid)."""
    import botocore.validate

    model = botocore_session().get_service_model(service).operation_model(operation)
    botocore.validate.validate_parameters(params, model.input_shape)
