"""The cloud DAG's Vertex AI operators, run for real against a local stand-in of Vertex AI's
REST API (tests/contract/vertex_standin.py, on 127.0.0.1).

The operators (the Google provider's CreateCustomJobOperator; water's extension of its
CreateBatchPredictionJobOperator), their hooks and google-cloud-aiplatform's JobServiceClient
are the real ones, taken from the cloud DAG of the shipped spec and rendered for DS; only the
hooks' client is pointed at the stand-in (transport="rest": the JSON the API gets). Checked:
the create request carries the job water builds for the spec, the operator polls the job until
it succeeds and returns it, a failed job fails the task with the job's error, killing the task
cancels the job, and no credential reaches a request body or a log line. The deferrable path:
the trigger the operator defers with names the created job, and run against the same stand-in
(the async client over REST; the provider's own default is gRPC) resumes the operator with it.
Batch prediction with an AutoML model (a BatchPredictionJob) runs on the spec's AutoML switch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from google.cloud.aiplatform_v1 import CustomJob, JobState
from google.protobuf import json_format

from tests.contract.cloud import CLOUD_ENV, DS, DS_NODASH, PIPELINES, make_context, spec_of, task_copy
from tests.contract.vertex_standin import VertexStandIn

REGION = CLOUD_ENV["WATER_VERTEX_REGION"]
PROJECT = CLOUD_ENV["WATER_GCP_PROJECT"]
# The workers' identity's access token: the client sends it as its Authorization header, and
# it must appear nowhere else (a request body or URL, a log line, the returned job, an XCom).
TOKEN = "ya29.offline-access-token-0123456789"  # a fake, looked for in what leaves
# The connection's service-account key: never read here (the clients are the stand-in's), and
# never to be seen either.
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nOFFLINE-PRIVATE-KEY-0123456789\n-----END PRIVATE KEY-----\n"
FAILURE = "The replica workerpool0-0 exited with a non-zero status of 1. Examine the logs for details."


def custom_job_steps() -> list[Any]:
    """(pipeline, step) of every step of the shipped specs that runs as a CustomJob: custom
    training, and batch prediction with a custom model (its inference handlers)."""
    return [
        pytest.param(pipeline, name, id=f"{pipeline}.{name}")
        for pipeline in PIPELINES
        for name, step in spec_of(pipeline).steps.items()
        if step.kind == "vertex_custom_training"
        or (step.kind == "vertex_batch_prediction" and getattr(step, "entry_point", None) is not None)
    ]


CUSTOM_JOB_STEPS = custom_job_steps()
TRAINING = next(p for p in CUSTOM_JOB_STEPS if spec_of(p.values[0]).steps[p.values[1]].kind == "vertex_custom_training")
PIPELINE, STEP = TRAINING.values  # the step the tests of one job run


def custom_job_task(dag, step: str):
    """The task of a step that creates its CustomJob: its one CreateCustomJobOperator, as the
    task runner runs it (not yet rendered)."""
    from airflow.providers.google.cloud.operators.vertex_ai.custom_job import CreateCustomJobOperator

    (task,) = [t for t in vertex_tasks(dag, step) if isinstance(t, CreateCustomJobOperator)]
    return task


def vertex_tasks(dag, step: str) -> list:
    """The step's tasks that run a Vertex AI operator, as the task runner runs them."""
    return [
        t.prepare_for_execution()
        for t in dag.tasks
        if t.task_id.startswith(f"{step}.") and "vertex" in getattr(t, "operator_path", "").lower()
    ]


@pytest.fixture
def built(cloud_dags):
    """built(pipeline, step, **overrides) -> the cloud DAG's CreateCustomJobOperator of the
    step, rendered for DS; `overrides` set on it (a poll interval of 0 by default)."""

    def build(pipeline: str = PIPELINE, step: str = STEP, dag=None, **overrides: Any):
        task = custom_job_task(dag or cloud_dags(pipeline), step)
        task = task_copy(task)
        task.render_template_fields(make_context(pipeline))
        for attribute, value in {"poll_interval": 0, **overrides}.items():
            setattr(task, attribute, value)
        return task

    return build


# --- the stand-in, and the hooks' clients pointed at it ----------------------------------


@pytest.fixture
def vertex(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy in the environment is not asked for 127.0.0.1
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with VertexStandIn() as standin:
        yield standin


@pytest.fixture
def hook_client(vertex, monkeypatch):
    """The JobServiceClient of CustomJobHook and BatchPredictionJobHook: the real client over
    REST, pointed at the stand-in and authenticated by a token, with the deployment's GCP
    connection defined (a service-account key in it). The regions the hooks asked a client for
    are kept in the list it yields."""
    from airflow.providers.google.cloud.hooks.vertex_ai.batch_prediction_job import BatchPredictionJobHook
    from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import CustomJobHook
    from google.oauth2.credentials import Credentials

    key = {"type": "service_account", "project_id": PROJECT, "private_key_id": "0", "private_key": PRIVATE_KEY}
    connection = {"conn_type": "google_cloud_platform", "extra": {"project": PROJECT, "keyfile_dict": json.dumps(key)}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CLOUD_ENV['WATER_GCP_CONN_ID'].upper()}", json.dumps(connection))
    # valid for an hour: refreshing would ask Google's token endpoint (google-auth's clock is naive UTC)
    credentials = Credentials(token=TOKEN, expiry=datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1))
    client = vertex.job_service_client(credentials)
    regions: list[str | None] = []

    def get_job_service_client(hook, region=None):
        regions.append(region)
        return client

    with (
        mock.patch.object(CustomJobHook, "get_job_service_client", get_job_service_client),
        mock.patch.object(BatchPredictionJobHook, "get_job_service_client", get_job_service_client),
    ):
        yield regions


def parsed(body: dict[str, Any]) -> CustomJob:
    """A request body as google-cloud-aiplatform reads it, strictly (an unknown field raises)."""
    return CustomJob.wrap(json_format.ParseDict(body, CustomJob.pb(CustomJob())))


def seconds(duration: timedelta) -> str:
    return f"{int(duration.total_seconds())}s"


# --- the operator, polling ----------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "name"), CUSTOM_JOB_STEPS)
def test_the_request_is_the_built_custom_job_and_the_job_is_polled_to_success(vertex, hook_client, built, pipeline, name):
    step = spec_of(pipeline).steps[name]
    operator = built(pipeline, name)
    context = make_context(pipeline)
    result = operator.execute(context)

    (create,) = vertex.requests_to("POST", "customJobs")
    assert create.path == f"/v1/projects/{PROJECT}/locations/{REGION}/customJobs"
    assert hook_client and set(hook_client) == {REGION}
    # the request is the CustomJob water built for the spec, rendered for the day, and only it
    body = create.json
    assert parsed(body) == CustomJob(operator.custom_job)
    # in the wire form (the proto3 JSON mapping, camelCase), with the spec's settings
    assert "{{" not in create.body.decode() and DS_NODASH in body["displayName"]
    pool = body["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"] == {"machineType": step.machine_type}
    assert pool["pythonPackageSpec"]["executorImageUri"] == step.executor_image
    assert body["jobSpec"]["serviceAccount"] == CLOUD_ENV["WATER_VERTEX_SERVICE_ACCOUNT"]
    timeout = step.max_runtime if step.kind == "vertex_custom_training" else step.timeout
    assert body["jobSpec"]["scheduling"]["timeout"] == seconds(timeout)
    if step.kind == "vertex_custom_training":  # the script's data, model and hyperparameters
        exchange = f"{CLOUD_ENV['WATER_GCS_STAGING']}/{pipeline}"
        env = {v["name"]: v["value"] for v in pool["pythonPackageSpec"]["env"]}
        assert env["AIP_TRAINING_DATA_URI"].startswith(f"{exchange}/{step.reads['train']}/ds={DS}/")
        assert body["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"].startswith(f"{exchange}/{step.writes}/ds={DS}")
        args = pool["pythonPackageSpec"]["args"]
        for parameter, value in step.hyperparameters.items():
            assert args[args.index(f"--{parameter}") + 1] == str(value)

    # polled by name until it succeeded: RUNNING for the stand-in's running polls, then SUCCEEDED
    (job,) = vertex.jobs
    gets = vertex.requests_to("GET", "customJobs")
    assert [g.path for g in gets] == [f"/v1/{job}"] * (vertex.running_polls + 1)
    assert vertex.jobs[job].body["state"] == "JOB_STATE_SUCCEEDED"

    # the job as the API last answered it: the operator's return value (its XCom)
    assert result["name"] == job
    assert result["state"] == JobState.JOB_STATE_SUCCEEDED
    assert result["display_name"] == body["displayName"]
    assert result["job_spec"]["worker_pool_specs"][0]["machine_spec"]["machine_type"] == step.machine_type
    assert result["end_time"]
    job_id = job.rsplit("/", 1)[1]
    assert context["ti"].pushed["custom_job_id"] == job_id
    assert context["ti"].pushed["custom_job_conf"] == {"custom_job_id": job_id}


def test_a_failed_job_fails_the_task_with_the_jobs_error(vertex, hook_client, built):
    vertex.fail_with = FAILURE
    with pytest.raises(RuntimeError, match="exited with a non-zero status of 1") as failed:
        built().execute(make_context(PIPELINE))
    assert str(failed.value) == FAILURE
    assert [j.body["state"] for j in vertex.jobs.values()] == ["JOB_STATE_FAILED"]
    assert len(vertex.requests_to("GET", "customJobs")) == vertex.running_polls + 1


def test_an_invalid_job_is_refused_before_anything_runs(vertex, hook_client, built):
    """What the API answers a job without a worker pool: the task fails on the create."""
    from google.api_core.exceptions import BadRequest

    operator = built()
    operator.custom_job = {**operator.custom_job, "job_spec": {**operator.custom_job["job_spec"], "worker_pool_specs": []}}
    with pytest.raises(BadRequest, match="workerPoolSpecs is required"):
        operator.execute(make_context(PIPELINE))
    assert vertex.jobs == {} and vertex.requests_to("GET", "customJobs") == []


def test_killing_the_task_cancels_the_job(vertex, hook_client, built):
    vertex.running_polls = 10**6  # runs until cancelled
    operator = built(poll_interval=0.02)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            operator.execute(make_context(PIPELINE))
        except BaseException as error:  # handed to the test
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    while not vertex.requests_to("GET", "customJobs") and time.monotonic() < deadline:
        time.sleep(0.01)
    operator.on_kill()
    worker.join(timeout=5)

    (cancel,) = vertex.requests_to("POST", "customJobs", verb="cancel")
    (job,) = vertex.jobs
    assert cancel.path == f"/v1/{job}:cancel"
    assert vertex.jobs[job].body["state"] == "JOB_STATE_CANCELLED"
    assert [str(e) for e in outcome] == ["The CustomJob has been cancelled."]


def test_no_credential_leaves_in_a_request_or_a_log(vertex, hook_client, built, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # the client's own request logging included
    context = make_context(PIPELINE)
    result = built().execute(context)

    assert len(vertex.requests) >= 2
    for request in vertex.requests:
        # the workers' identity authenticates each request, in its header and only there
        assert request.header("Authorization") == f"Bearer {TOKEN}"
        others = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        assert TOKEN not in f"{request.path} {request.query} {others} {request.body.decode()}"
    secret = PRIVATE_KEY.splitlines()[1]
    assert secret not in "".join(r.text() for r in vertex.requests)
    logs = caplog.text + capsys.readouterr().out  # the task's log lines (structlog) and the libraries'
    assert "Custom Job" in logs and "completed" in logs
    for what in (logs, json.dumps([result, context["ti"].pushed], default=str)):
        assert TOKEN not in what and secret not in what
    # nor does the job carry one: no variable of its environment is a secret
    env = vertex.requests_to("POST", "customJobs")[0].json["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["env"]
    secretish = [v["name"] for v in env if any(w in v["name"].upper() for w in ("SECRET", "TOKEN", "PASSWORD", "KEY"))]
    assert secretish == []


# --- the deferrable path ------------------------------------------------------------------


@pytest.fixture(scope="module")
def deferring_dag():
    """The pipeline's DAG on the cloud target with WATER_DEFERRABLE=true."""
    from water.factory import build_dag
    from water.targets.cloud.target import CloudSettings, CloudTarget

    target = CloudTarget(settings=CloudSettings.from_environment({**CLOUD_ENV, "WATER_DEFERRABLE": "true"}))
    return build_dag(spec_of(PIPELINE), target)


def first_event(trigger, vertex: VertexStandIn) -> dict[str, Any]:
    """The trigger run as the triggerer runs it, its hook's async client over REST against the
    stand-in: the payload of its first event."""
    from google.api_core.client_options import ClientOptions
    from google.auth.aio.credentials import StaticCredentials
    from google.cloud.aiplatform_v1 import JobServiceAsyncClient

    regions: list[str | None] = []

    async def run() -> dict[str, Any]:
        client = JobServiceAsyncClient(
            credentials=StaticCredentials(token=TOKEN),
            transport="rest_asyncio",
            client_options=ClientOptions(api_endpoint=vertex.endpoint),
        )

        async def get_job_service_client(hook, region=None):
            regions.append(region)
            return client

        try:
            with mock.patch.object(type(trigger.async_hook), "get_job_service_client", get_job_service_client):
                event = await anext(trigger.run())
        finally:
            await client.transport.close()
        return event.payload

    payload = asyncio.run(run())
    assert set(regions) == {REGION}
    return payload


def test_the_deferred_trigger_polls_the_created_job_to_success(vertex, hook_client, built, deferring_dag):
    """The trigger the operator defers with names the job it created (it is serialized to the
    triggerer); run against the stand-in (the async client over REST; the provider's default
    is gRPC), its event resumes the operator with the succeeded job."""
    from airflow.providers.google.cloud.triggers.vertex_ai import CustomJobTrigger
    from airflow.sdk.exceptions import TaskDeferred

    operator = built(dag=deferring_dag)
    assert operator.deferrable
    with pytest.raises(TaskDeferred) as deferral:
        operator.execute(make_context(PIPELINE))
    (job,) = vertex.jobs
    assert vertex.requests_to("GET", "customJobs") == []  # the worker polls nothing: the triggerer does
    assert deferral.value.method_name == "execute_complete"

    classpath, kwargs = deferral.value.trigger.serialize()
    assert classpath == f"{CustomJobTrigger.__module__}.{CustomJobTrigger.__qualname__}"
    assert kwargs == {
        "project_id": PROJECT,
        "location": REGION,
        "custom_job_id": job.rsplit("/", 1)[1],
        "gcp_conn_id": CLOUD_ENV["WATER_GCP_CONN_ID"],
        "impersonation_chain": None,
        "poll_interval": 0,
    }
    trigger = CustomJobTrigger(**kwargs)  # as the triggerer rebuilds it
    assert trigger.serialize() == (classpath, kwargs)

    event = first_event(trigger, vertex)
    gets = vertex.requests_to("GET", "customJobs")
    assert [g.path for g in gets] == [f"/v1/{job}"] * (vertex.running_polls + 1)
    assert {g.header("Authorization") for g in gets} == {f"Bearer {TOKEN}"}
    assert event["status"] == "success"
    assert TOKEN not in json.dumps(event)

    result = operator.execute_complete(make_context(PIPELINE), event)
    assert result["name"] == job and result["state"] == JobState.JOB_STATE_SUCCEEDED


def test_a_deferred_failed_job_fails_the_resumed_task(vertex, hook_client, built, deferring_dag):
    from airflow.sdk.exceptions import TaskDeferred

    vertex.fail_with = FAILURE
    operator = built(dag=deferring_dag)
    with pytest.raises(TaskDeferred) as deferral:
        operator.execute(make_context(PIPELINE))
    event = first_event(deferral.value.trigger, vertex)
    assert event == {"status": "error", "message": FAILURE}
    with pytest.raises(RuntimeError, match="non-zero status") as failed:
        operator.execute_complete(make_context(PIPELINE), event)
    assert str(failed.value) == FAILURE


# --- batch prediction with an AutoML model: a BatchPredictionJob ---------------------------

MODEL = f"projects/{PROJECT}/locations/{REGION}/models/4242"  # what `<step>.instances` found


@pytest.fixture(scope="module")
def automl_dags(tmp_path_factory):
    """dags(deferrable) -> the Vertex example switched to AutoML (the spec's documented option:
    train on vertex_automl_tabular, batch_inference without a script) on the cloud target."""
    import yaml

    from tests.conftest import ROOT
    from tests.helpers import switched_to_automl, vertex_spec_data
    from water.factory import build_dag
    from water.spec import load_spec
    from water.targets.cloud.target import CloudSettings, CloudTarget

    path = tmp_path_factory.mktemp("automl") / f"{PIPELINE}.yaml"
    path.write_text(yaml.safe_dump(switched_to_automl(vertex_spec_data())))
    spec = load_spec(path, include_dir=ROOT / "include")

    def dags(deferrable: bool = False):
        env = {**CLOUD_ENV, "WATER_DEFERRABLE": str(deferrable).lower()}
        return build_dag(spec, CloudTarget(settings=CloudSettings.from_environment(env)))

    return dags


def batch_prediction(dag, **overrides: Any):
    """The DAG's batch prediction task (the provider's CreateBatchPredictionJobOperator, as water
    extends it), rendered for DS with the model `<step>.instances` found."""
    from airflow.providers.google.cloud.operators.vertex_ai.batch_prediction_job import CreateBatchPredictionJobOperator

    from tests.conftest import FakeTI

    (task,) = [task_copy(t) for t in vertex_tasks(dag, "batch_inference") if isinstance(t, CreateBatchPredictionJobOperator)]
    task.render_template_fields(make_context(PIPELINE, FakeTI({("batch_inference.instances", "return_value"): {"model": MODEL}})))
    for attribute, value in {"poll_interval": 0, **overrides}.items():
        setattr(task, attribute, value)
    return task


def test_the_batch_prediction_request_is_the_built_job_and_it_is_polled_to_success(vertex, hook_client, automl_dags):
    from google.cloud.aiplatform_v1 import BatchPredictionJob

    operator = batch_prediction(automl_dags())
    context = make_context(PIPELINE)
    result = operator.execute(context)

    (create,) = vertex.requests_to("POST", "batchPredictionJobs")
    assert create.path == f"/v1/projects/{PROJECT}/locations/{REGION}/batchPredictionJobs"
    assert set(hook_client) == {REGION}
    body = create.json
    sent = BatchPredictionJob.wrap(json_format.ParseDict(body, BatchPredictionJob.pb(BatchPredictionJob())))
    assert sent == BatchPredictionJob(operator.batch_prediction_job)
    exchange = f"{CLOUD_ENV['WATER_GCS_STAGING']}/{PIPELINE}"
    step = spec_of(PIPELINE).steps["batch_inference"]
    assert "{{" not in create.body.decode() and body["model"] == MODEL
    assert body["inputConfig"]["instancesFormat"] == "jsonl"
    assert body["inputConfig"]["gcsSource"]["uris"][0].startswith(f"{exchange}/{step.input}/ds={DS}/")
    assert body["outputConfig"]["gcsDestination"]["outputUriPrefix"].startswith(f"{exchange}/{step.writes}/ds={DS}")
    assert body["dedicatedResources"]["machineSpec"] == {"machineType": step.machine_type}
    assert body["serviceAccount"] == CLOUD_ENV["WATER_VERTEX_SERVICE_ACCOUNT"]

    (job,) = vertex.jobs
    gets = vertex.requests_to("GET", "batchPredictionJobs")
    assert [g.path for g in gets] == [f"/v1/{job}"] * (vertex.running_polls + 1)
    assert result["name"] == job and result["state"] == JobState.JOB_STATE_SUCCEEDED
    assert context["ti"].pushed["batch_prediction_job_id"] == job.rsplit("/", 1)[1]
    assert {r.header("Authorization") for r in vertex.requests} == {f"Bearer {TOKEN}"}


def test_a_failed_batch_prediction_fails_the_task_with_the_jobs_error(vertex, hook_client, automl_dags):
    vertex.fail_with = FAILURE
    with pytest.raises(Exception, match="JOB_STATE_FAILED: The replica workerpool0-0 exited"):
        batch_prediction(automl_dags()).execute(make_context(PIPELINE))
    assert [j.body["state"] for j in vertex.jobs.values()] == ["JOB_STATE_FAILED"]


def test_a_deferred_batch_prediction_is_polled_by_its_trigger(vertex, hook_client, automl_dags):
    from airflow.providers.google.cloud.triggers.vertex_ai import CreateBatchPredictionJobTrigger
    from airflow.sdk.exceptions import TaskDeferred

    operator = batch_prediction(automl_dags(deferrable=True))
    assert operator.deferrable
    with pytest.raises(TaskDeferred) as deferral:
        operator.execute(make_context(PIPELINE))
    (job,) = vertex.jobs
    assert vertex.requests_to("GET", "batchPredictionJobs") == []
    classpath, kwargs = deferral.value.trigger.serialize()
    assert classpath == f"{CreateBatchPredictionJobTrigger.__module__}.{CreateBatchPredictionJobTrigger.__qualname__}"
    assert {k: kwargs[k] for k in ("project_id", "location", "job_id", "conn_id")} == {
        "project_id": PROJECT,
        "location": REGION,
        "job_id": job.rsplit("/", 1)[1],
        "conn_id": CLOUD_ENV["WATER_GCP_CONN_ID"],
    }
    trigger = CreateBatchPredictionJobTrigger(**kwargs)  # as the triggerer rebuilds it
    assert trigger.serialize() == (classpath, kwargs)

    event = first_event(trigger, vertex)
    gets = vertex.requests_to("GET", "batchPredictionJobs")
    assert [g.path for g in gets] == [f"/v1/{job}"] * (vertex.running_polls + 1)
    assert event["status"] == "success"
    context = make_context(PIPELINE)
    result = operator.execute_complete(context, event)
    assert result["name"] == job and result["state"] == JobState.JOB_STATE_SUCCEEDED
    assert context["ti"].pushed["batch_prediction_job_id"] == job.rsplit("/", 1)[1]
