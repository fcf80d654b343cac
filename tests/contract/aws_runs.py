"""Every AWS call the cloud DAGs' tasks make, recorded offline, on a first and a second run,
as deployed: the settings of helm-values/ with the docs' example placeholders filled in.

Each task that is not a pod is rendered for ds=2026-11-01 and its own `execute()` runs
against tests/contract/cloud.py's AwsRecorder (real botocore clients that validate and record
every request and never send it), answered by `FakeAws`, which remembers what exists: on
the first run nothing does; on the second (a re-run of the day, try 2) the Glue job is there
with tags that differ, so GlueJobOperator(update_config=True) reconciles them. The long
waits run synchronously (WATER_DEFERRABLE=false): the triggerer polls with the same calls.

`iam_requests()` turns each recorded call into the authorizations AWS makes for it: the IAM
action, the resource ARN and the request's condition keys (s3:prefix, iam:PassedToService,
aws:RequestTag/...), including the ones a call implies (HeadBucket is s3:ListBucket with no
prefix; a HeadObject that answers 404 needs s3:ListBucket too; CreateJob passes its role).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from types import SimpleNamespace
from typing import Any
from unittest import mock

from tests.contract.cloud import DS, DS_NODASH, AwsRecorder, FakeTI, offline_aws, rendered_name, spec_of, task_copy, tasks_as_run
from tests.contract.helm import EXAMPLE, deployed_settings, user_values
from tests.contract.iam_simulator import Request

RUNS = ("first", "second")
ACCOUNT, REGION = EXAMPLE["AccountId"], EXAMPLE["Region"]
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/water-airflow/botocore-session-1"  # IRSA's session
NOW = datetime(2026, 11, 1, 7, tzinfo=UTC)
OLD_TAGS = {"owner": "someone-by-hand"}  # on the existing Glue job: removed, and water's added


@dataclass(frozen=True)
class Call:
    task_id: str
    service: str
    operation: str
    params: dict[str, Any]
    status: int  # what FakeAws answered


class Recorder(AwsRecorder):
    """AwsRecorder with HTTP statuses from the answer (S3 answers a missing key with 404), a
    boto3 resource on the same handlers, and the task each call came from."""

    def __init__(self, fake: FakeAws):
        super().__init__(region=REGION, responses=fake.responses())
        self.task_id = ""
        self.statuses: list[int] = []
        self.task_ids: list[str] = []

    def _record(self, params, model, **kwargs):
        super()._record(params, model, **kwargs)
        self.task_ids.append(self.task_id)

    def _answer(self, model, params, **_):
        from botocore.awsrequest import AWSResponse

        answer = self.responses.get((model.service_model.service_name, model.name), {})
        if callable(answer):
            answer = answer(self.calls[-1][2])
        status = answer.pop("HTTPStatusCode", 400 if "Error" in answer else 200)
        self.statuses.append(status)
        return AWSResponse("", status, {}, None), {**answer, "ResponseMetadata": {"HTTPStatusCode": status}}

    def resource(self, service: str):
        resource = self.session.resource(service)
        resource.meta.client.meta.events.register("before-parameter-build", self._record)
        resource.meta.client.meta.events.register("before-call", self._answer)
        return resource

    def recorded(self) -> list[Call]:
        return [
            Call(task, service, operation, params, status)
            for task, (service, operation, params), status in zip(self.task_ids, self.calls, self.statuses, strict=True)
        ]


class FakeAws:
    """Canned answers that remember what exists."""

    def __init__(self, classes: list[str], second_run: bool):
        self.classes = classes
        self.glue_jobs: dict[str, dict[str, str]] = {}
        self.sagemaker: dict[tuple[str, str], dict] = {}  # (name field, name) -> the create request
        self.probed: set[str] = set()  # keys HeadObject was asked for ("folders": no such object)
        self.queries: dict[str, str] = {}  # query id -> workgroup
        self.ids = itertools.count(1)
        self.second_run = second_run

    def responses(self) -> dict[tuple[str, str], Any]:
        missing = {"Error": {"Code": "ValidationException", "Message": "Could not find it"}}

        def glue_job(params):
            name = params["JobName"]
            if name not in self.glue_jobs and self.second_run:
                self.glue_jobs[name] = dict(OLD_TAGS)
            if name not in self.glue_jobs:
                return {"Error": {"Code": "EntityNotFoundException", "Message": f"{name} not found"}}
            return {"Job": {"Name": name, "Role": "old", "Command": {"Name": "glueetl"}}}

        def glue_create(params):
            self.glue_jobs[params["Name"]] = dict(params.get("Tags", {}))
            return {"Name": params["Name"]}

        def glue_tags(params):
            return {"Tags": self.glue_jobs.get(params["ResourceArn"].rsplit("/", 1)[1], {})}

        def described(key: str, status: dict):
            def answer(params):
                if (key, params[key]) not in self.sagemaker:
                    return copy.deepcopy(missing)
                return {**self.sagemaker[key, params[key]], **status}

            return answer

        def created(key: str, arn_key: str, kind: str):
            def answer(params):
                self.sagemaker[key, params[key]] = {k: v for k, v in params.items() if k != "Tags"}
                return {arn_key: f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{params[key].lower()}"}

            return answer

        def head_object(params):
            if params["Key"].endswith("/"):
                self.probed.add(params["Key"])
                return {"Error": {"Code": "404", "Message": "Not Found"}, "HTTPStatusCode": 404}
            return {"ContentLength": 1, "LastModified": NOW, "ETag": '"e"'}

        def listing(params):
            prefix = params.get("Prefix", "")
            if params.get("Delimiter"):
                below = sorted(p for p in self.probed if p.startswith(prefix))
                return {"CommonPrefixes": [{"Prefix": p} for p in below], "KeyCount": len(below), "IsTruncated": False}
            key = f"{prefix.rstrip('/')}/part-{zlib.crc32(prefix.encode()):08x}.parquet"  # one name per folder
            return {"Contents": [{"Key": key, "Size": 1, "LastModified": NOW}], "KeyCount": 1, "IsTruncated": False}

        def start_query(params):
            query_id = f"q-{next(self.ids)}"
            self.queries[query_id] = params.get("WorkGroup", "primary")
            return {"QueryExecutionId": query_id}

        def query(params):
            return {
                "QueryExecution": {
                    "QueryExecutionId": params["QueryExecutionId"],
                    "Status": {"State": "SUCCEEDED"},
                    "WorkGroup": self.queries.get(params["QueryExecutionId"], "primary"),
                    "ResultConfiguration": {"OutputLocation": "s3://results/q.csv"},
                }
            }

        counts = [("class", "n"), *((c, str(100 * (i + 1))) for i, c in enumerate(self.classes))]
        completed_training = {
            "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
            "TrainingStartTime": NOW, "TrainingEndTime": NOW, "ResourceConfig": {"InstanceCount": 1},
            "ModelArtifacts": {"S3ModelArtifacts": "s3://bucket/model.tar.gz"},
        }  # fmt: skip
        return {
            ("sts", "GetCallerIdentity"): {"Account": ACCOUNT, "Arn": PRINCIPAL, "UserId": "AROAEXAMPLE:botocore-session-1"},
            ("iam", "GetRole"): lambda p: {
                "Role": {
                    "Path": "/",
                    "RoleName": p["RoleName"],
                    "RoleId": "AROAEXAMPLEEXAMPLE1",
                    "CreateDate": NOW,
                    "Arn": f"arn:aws:iam::{ACCOUNT}:role/{p['RoleName']}",
                }
            },
            ("glue", "GetJob"): glue_job,
            ("glue", "CreateJob"): glue_create,
            ("glue", "GetTags"): glue_tags,
            ("glue", "StartJobRun"): {"JobRunId": "jr_1"},
            ("glue", "GetJobRun"): {"JobRun": {"Id": "jr_1", "JobRunState": "SUCCEEDED"}},
            ("sagemaker", "DescribeTrainingJob"): described("TrainingJobName", completed_training),
            ("sagemaker", "CreateTrainingJob"): created("TrainingJobName", "TrainingJobArn", "training-job"),
            ("sagemaker", "DescribeModel"): described("ModelName", {"ModelArn": "arn:x", "CreationTime": NOW}),
            ("sagemaker", "CreateModel"): created("ModelName", "ModelArn", "model"),
            ("sagemaker", "DescribeTransformJob"): described("TransformJobName", {"TransformJobStatus": "Completed"}),
            ("sagemaker", "CreateTransformJob"): created("TransformJobName", "TransformJobArn", "transform-job"),
            ("logs", "DescribeLogStreams"): lambda p: {"logStreams": [{"logStreamName": f"{p['logStreamNamePrefix']}algo-1"}]},
            ("logs", "GetLogEvents"): {"events": [], "nextForwardToken": "f/1"},
            ("s3", "HeadObject"): head_object,
            ("s3", "ListObjectsV2"): listing,
            ("s3", "GetObject"): lambda p: {"Body": io.BytesIO(b"x"), "ContentLength": 1},
            ("s3", "DeleteObjects"): {"Deleted": []},
            ("athena", "StartQueryExecution"): start_query,
            ("athena", "GetQueryExecution"): query,
            ("athena", "GetQueryResults"): {
                "ResultSet": {"Rows": [{"Data": [{"VarCharValue": a}, {"VarCharValue": b}]} for a, b in counts]}
            },
        }


# --- the deployed settings and DAGs ----------------------------------------------------------


@cache
def deployed_environ(env: str) -> dict[str, str]:
    """The water settings of helm-values/ENV.yaml as the pods get them; waits synchronous."""
    return {**deployed_settings(user_values(env)), "WATER_DEFERRABLE": "false"}


@cache
def deployed_dag(env: str, pipeline: str):
    from water.factory import build_dag
    from water.targets.cloud.target import CloudSettings, CloudTarget

    target = CloudTarget(settings=CloudSettings.from_environment(deployed_environ(env)))
    return build_dag(spec_of(pipeline), target)


def _xcom(env: str, pipeline: str, try_number: int) -> dict[tuple[str, str], Any]:
    """What the templates and operators pull: each training's model, each transform's model
    name, each sized step's decision (every route on its last tier, one shard)."""
    from water.targets.cloud.target import sagemaker_name

    spec = spec_of(pipeline)
    lake = f"{deployed_environ(env)['WATER_LAKE']}/{pipeline}"
    xcom: dict[tuple[str, str], Any] = {}
    for name, step in spec.steps_of("sagemaker_training").items():
        artifact = f"{lake}/{step.writes}/ds={DS}/job/output/model.tar.gz"
        xcom[(f"{name}.fit", "return_value")] = {"Training": {"ModelArtifacts": {"S3ModelArtifacts": artifact}}}
    for name in spec.steps_of("sagemaker_transform"):
        model = rendered_name(sagemaker_name(pipeline, f"{name}-model"), try_number)
        xcom[(f"{name}.model", "return_value")] = {"Model": {"ModelName": model}}
    for name, step in spec.steps_of("sized_postprocess").items():
        routes = step.all_routes(spec.classes, name)
        decision = {"routes": {r: {"tier": route.sizing.tiers[-1].name, "shards": [{"index": 0}]} for r, route in routes.items()}}
        xcom[(step.size_task_id(name), "decision")] = decision
    return xcom


class RunTI(FakeTI):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stats_tags: dict[str, str] = {}  # what the resumable operators (Glue) read off the task instance
        # what the OpenLineage provider's macros read (the Glue job's parent-job injection)
        logical_date = datetime(2026, 11, 1, 6, tzinfo=UTC)
        self.dag_run = SimpleNamespace(logical_date=logical_date, run_after=logical_date, conf={}, clear_number=0)

    def get_template_context(self) -> dict[str, Any]:
        return {"dag_run": self.dag_run}


def _context(pipeline: str, task_id: str, ti: FakeTI) -> dict[str, Any]:
    ti.task_id = task_id
    return {
        "ds": DS, "ds_nodash": DS_NODASH, "run_id": f"scheduled__{DS}T06:00:00+00:00",
        "logical_date": datetime(2026, 11, 1, 6, tzinfo=UTC), "ti": ti, "params": {}, "dag": None,
    }  # fmt: skip


def is_pod(task) -> bool:
    """A Kubernetes pod: its AWS calls are the job image's (its own service account), not Airflow's."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    operator_class = getattr(task, "operator_class", type(task))  # a mapped task names its class
    return isinstance(operator_class, type) and issubclass(operator_class, KubernetesPodOperator)


# The connections docs/deploy.md has the Secret water-connections hold (no credentials needed here).
CONNECTIONS = {
    "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}),
    "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({"conn_type": "google_cloud_platform", "extra": {"project": "p"}}),
}


@contextlib.contextmanager
def _offline(recorder: Recorder) -> Iterator[None]:
    """AWS through the recorder, GCS answered locally, no sleeping in polling loops."""
    from airflow.providers.amazon.aws.hooks.glue import GlueJobHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    @contextlib.contextmanager
    def provide_file(hook, object_name=None, bucket_name=None, **_):
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".parquet") as file:
            file.write(b"x")
            file.flush()
            yield file

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, CONNECTIONS))
        stack.enter_context(offline_aws(recorder))
        stack.enter_context(mock.patch.object(S3Hook, "resource", new=property(lambda hook: recorder.resource("s3"))))
        # GlueJobHook makes its own IAM client for the role look-up
        role = lambda hook: recorder.client("iam").get_role(RoleName=hook.role_name)  # noqa: E731
        stack.enter_context(mock.patch.object(GlueJobHook, "get_iam_execution_role", role))
        listing = lambda hook, bucket_name, prefix=None, **_: [f"{prefix or ''}part-00000.parquet"]  # noqa: E731
        stack.enter_context(mock.patch.object(GCSHook, "list", listing))
        stack.enter_context(mock.patch.object(GCSHook, "provide_file", provide_file))
        stack.enter_context(mock.patch.object(GCSHook, "upload", return_value=None))
        stack.enter_context(mock.patch.object(GCSHook, "delete", return_value=None))
        stack.enter_context(mock.patch("time.sleep"))
        yield


@cache
def recorded_calls(env: str, pipeline: str, run: str) -> tuple[Call, ...]:
    """Every AWS call of every task of the pipeline's deployed DAG that is not a pod, on this run."""
    second = run == "second"
    try_number = 2 if second else 1
    spec = spec_of(pipeline)
    fake = FakeAws(spec.classes, second_run=second)
    recorder = Recorder(fake)
    ti = RunTI(_xcom(env, pipeline, try_number), try_number=try_number, dag_id=pipeline)
    dag = deployed_dag(env, pipeline)
    for planned in tasks_as_run(dag):
        if is_pod(planned) or not needs_aws(planned):
            continue
        context = _context(pipeline, planned.task_id, ti)
        task = task_copy(planned)
        task.render_template_fields(context)
        recorder.task_id = task.task_id
        with _offline(recorder):
            try:
                work(task, context)
            except Exception as exc:  # name the task: the traceback alone does not
                raise AssertionError(f"{pipeline}.{task.task_id} ({type(task).__name__}) failed offline: {exc!r}") from exc
    return tuple(recorder.recorded())


def work(task, context: dict[str, Any]) -> None:
    """The task's work: execute(), or for a branch operator the choice it makes (skipping the
    other branches needs the metadata database)."""
    if hasattr(task, "choose_branch"):
        task.choose_branch(context)
    else:
        task.execute(context)


def needs_aws(task) -> bool:
    """Whether the task calls AWS through the Amazon provider's hooks: an AWS connection on it
    or on the helper it runs (the inference_stats counter)."""
    holders = [task, *vars(task).values()]
    return any(getattr(holder, name, None) for holder in holders for name in ("aws_conn_id", "dest_aws_conn_id"))


def through_object_storage(task) -> bool:
    """The target-agnostic tasks (drift guard, quarantine, run report) reach the lake through
    ObjectStoragePath (s3fs on aiobotocore), which these recorders do not see:
    tests/contract/test_lake_store_s3.py runs that code against an S3 server instead."""
    return bool(getattr(task, "storage_conn_id", None))


# --- recorded calls -> IAM authorizations ----------------------------------------------------

S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
}
NO_PERMISSION = {("sts", "GetCallerIdentity")}  # answers any caller, whatever its policies


def _tags(tags) -> dict[str, Any]:
    """aws:RequestTag/KEY and aws:TagKeys of a request's tags (a map or a Key/Value list)."""
    if isinstance(tags, list):
        tags = {t["Key"]: t["Value"] for t in tags}
    if not tags:
        return {}
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags)}


def _s3_requests(call: Call) -> list[Request]:
    op, p, why = call.operation, call.params, f"{call.task_id}: s3 {call.operation}"
    bucket = f"arn:aws:s3:::{p['Bucket']}"
    if op == "HeadBucket":  # SageMakerHook's "does the input bucket exist"
        return [Request("s3:ListBucket", bucket, {}, why)]
    if op in ("ListObjectsV2", "ListObjects"):
        context = {"s3:prefix": p.get("Prefix", "")}
        if p.get("Delimiter"):
            context["s3:delimiter"] = p["Delimiter"]
        if p.get("MaxKeys") is not None:
            context["s3:max-keys"] = str(p["MaxKeys"])
        return [Request("s3:ListBucket", bucket, context, why)]
    if op == "GetBucketLocation":
        return [Request("s3:GetBucketLocation", bucket, {}, why)]
    if op == "CopyObject":
        source = p["CopySource"]
        source = f"{source['Bucket']}/{source['Key']}" if isinstance(source, dict) else source.lstrip("/")
        return [
            Request("s3:GetObject", f"arn:aws:s3:::{source}", {}, why),
            Request("s3:PutObject", f"{bucket}/{p['Key']}", {}, why),
        ]
    if op == "DeleteObjects":
        return [Request("s3:DeleteObject", f"{bucket}/{o['Key']}", {}, why) for o in p["Delete"]["Objects"]]
    action = S3_OBJECT_ACTIONS[op]
    found = [Request(action, f"{bucket}/{p['Key']}", {}, why)]
    if op == "HeadObject" and call.status == 404:  # S3 says 404, not 403, only to a caller that may list
        found.append(Request("s3:ListBucket", bucket, {}, f"{why} of a missing key (404, not 403)"))
    return found


def iam_requests(call: Call) -> list[Request]:
    """The authorizations AWS makes for one recorded call."""
    service, op, p = call.service, call.operation, call.params
    why = f"{call.task_id}: {service} {op}"
    arn = f"arn:aws:{service}:{REGION}:{ACCOUNT}"
    if (service, op) in NO_PERMISSION:
        return []
    if service == "s3":
        return _s3_requests(call)
    if service == "glue":
        if op in ("GetTags", "TagResource", "UntagResource"):
            context = _tags(p.get("TagsToAdd")) if op == "TagResource" else {}
            if op == "UntagResource":
                context = {"aws:TagKeys": sorted(p["TagsToRemove"])}
            return [Request(f"glue:{op}", p["ResourceArn"], context, why)]
        name = p.get("JobName") or p["Name"]
        found = [Request(f"glue:{op}", f"{arn}:job/{name}", _tags(p.get("Tags")) if op == "CreateJob" else {}, why)]
        role = p.get("Role") or p.get("JobUpdate", {}).get("Role")
        if op in ("CreateJob", "UpdateJob") and role:
            found.append(Request("iam:PassRole", role, {"iam:PassedToService": "glue.amazonaws.com"}, why))
        return found
    if service == "iam":
        return [Request(f"iam:{op}", f"arn:aws:iam::{ACCOUNT}:role/{p['RoleName']}", {}, why)]
    if service == "athena":
        workgroup = p.get("WorkGroup", "primary")
        return [Request(f"athena:{op}", f"{arn}:workgroup/{workgroup}", {}, why)]
    if service == "sagemaker":
        kind, key, role = {
            "CreateTrainingJob": ("training-job", "TrainingJobName", "RoleArn"),
            "DescribeTrainingJob": ("training-job", "TrainingJobName", None),
            "CreateModel": ("model", "ModelName", "ExecutionRoleArn"),
            "DescribeModel": ("model", "ModelName", None),
            "CreateTransformJob": ("transform-job", "TransformJobName", None),
            "DescribeTransformJob": ("transform-job", "TransformJobName", None),
        }[op]
        resource = f"{arn}:{kind}/{p[key].lower()}"  # SageMaker ARNs carry the name lower-cased
        found = [Request(f"sagemaker:{op}", resource, _tags(p.get("Tags")) if op.startswith("Create") else {}, why)]
        if p.get("Tags"):  # creating with tags is also sagemaker:AddTags on the new resource
            found.append(Request("sagemaker:AddTags", resource, _tags(p["Tags"]), why))
        if role:
            found.append(Request("iam:PassRole", p[role], {"iam:PassedToService": "sagemaker.amazonaws.com"}, why))
        return found
    if service == "logs":
        group = f"{arn}:log-group:{p['logGroupName']}"
        if op == "GetLogEvents":
            return [Request("logs:GetLogEvents", f"{group}:log-stream:{p['logStreamName']}", {}, why)]
        return [Request(f"logs:{op}", group, {}, why)]
    raise AssertionError(f"no IAM mapping for {service} {op} ({why}): add it to tests/contract/aws_runs.py")


def run_requests(env: str, pipeline: str, run: str) -> list[Request]:
    return [r for call in recorded_calls(env, pipeline, run) for r in iam_requests(call)]


def operations(env: str, pipeline: str, run: str) -> set[tuple[str, str]]:
    return {(c.service, c.operation) for c in recorded_calls(env, pipeline, run)}


def every_recorded_action() -> set[str]:
    """The IAM actions every run of every shipped pipeline needs, under each environment's settings."""
    from tests.contract.cloud import PIPELINES
    from tests.contract.helm import ENVIRONMENTS

    return {r.action for env in ENVIRONMENTS for p in PIPELINES for run in RUNS for r in run_requests(env, p, run)}
