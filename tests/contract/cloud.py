"""The cloud target under test: settings, the demo DAG and a render context (imported by test_cloud_*.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

DS = "2026-11-01"

# The settings a deployment sets (names and shapes as water/targets/cloud.py documents them).
CLOUD_ENV = {
    "WATER_TARGET": "cloud",
    "WATER_LAKE": "s3://acme-ml-lake/water",
    "WATER_AWS_REGION": "eu-west-1",
    "WATER_AWS_CONN_ID": "aws_default",
    "WATER_GCP_CONN_ID": "google_cloud_default",
    "WATER_GCP_PROJECT": "acme-analytics",
    "WATER_BQ_STAGING_DATASET": "water_staging",
    "WATER_GCS_STAGING": "gs://acme-water-staging/exchange",
    "WATER_GLUE_ROLE": "water-glue",
    "WATER_GLUE_SCRIPTS": "s3://acme-ml-artifacts/water/glue",
    "WATER_ATHENA_OUTPUT": "s3://acme-ml-artifacts/water/athena",
    "WATER_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/water-sagemaker",
    "WATER_SAGEMAKER_CODE": "s3://acme-ml-artifacts/water/sagemaker",
    "WATER_K8S_NAMESPACE": "water-jobs",
    "WATER_K8S_SERVICE_ACCOUNT": "water-jobs",
    "WATER_JOB_IMAGE": "registry.example/water-jobs",
    "WATER_IMAGE_TAG": "2026.11.1",
    "WATER_DEFERRABLE": "false",
}


class FakeTI:
    """The bits of a task instance the templates and operators use: try number and XCom."""

    def __init__(self, xcom: dict[tuple[str, str | None], Any] | None = None, try_number: int = 1):
        self.dag_id, self.task_id = "recipe_engagement", "task"
        self.try_number = try_number
        self.map_index = -1
        self.xcom = dict(xcom or {})
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str, key: str | None = None, **_: Any) -> Any:
        return self.xcom.get((task_ids, key))

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


UPSTREAM_XCOM = {
    ("train.fit", None): {
        "Training": {"ModelArtifacts": {"S3ModelArtifacts": f"s3://acme-ml-lake/water/recipe_engagement/model/ds={DS}/job/output/model.tar.gz"}}
    },
    ("batch_inference.model", None): {"Model": {"ModelName": "water-recipe-engagement-model-20261101-1"}},
}


def make_context(ti: FakeTI | None = None) -> dict[str, Any]:
    return {
        "ds": DS,
        "ds_nodash": DS.replace("-", ""),
        "run_id": f"scheduled__{DS}T06:00:00+00:00",
        "ti": ti or FakeTI(UPSTREAM_XCOM),
        "params": {},
    }


@pytest.fixture(scope="session")
def cloud_settings():
    from water.targets.cloud import CloudSettings

    return CloudSettings.from_environment(CLOUD_ENV)


@pytest.fixture(scope="session")
def demo_spec():
    from water.spec import load_pipeline

    return load_pipeline("recipe_engagement")


@pytest.fixture(scope="session")
def cloud_dag(cloud_settings, demo_spec):
    from water.factory import build_dag
    from water.targets.cloud import CloudTarget

    return build_dag(demo_spec, CloudTarget(settings=cloud_settings))


@pytest.fixture
def rendered(cloud_dag):
    """rendered(task_id) -> a copy of the task with its templates rendered for ds=2026-11-01."""

    def render(task_id: str, context: dict[str, Any] | None = None):
        task = copy.deepcopy(cloud_dag.get_task(task_id))
        task.render_template_fields(context or make_context())
        return task

    return render


class AwsRecorder:
    """Real botocore clients that validate every request against the service model, record
    it, and answer from canned responses instead of sending it (no network)."""

    def __init__(self, region: str = "eu-west-1", responses: dict[tuple[str, str], Any] | None = None):
        import boto3

        self.session = boto3.session.Session(
            aws_access_key_id="offline", aws_secret_access_key="offline", region_name=region
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
    import botocore.session
    import botocore.validate

    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    botocore.validate.validate_parameters(params, model.input_shape)
