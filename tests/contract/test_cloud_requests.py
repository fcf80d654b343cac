"""Every request the cloud target's operators send, for every step of every shipped spec,
rendered for ds=2026-11-01 and checked offline.

AWS requests are built by the operators' and hooks' own code (rendered templates, the
operators' integer parsing, GlueJobHook's job config, AthenaHook.run_query, S3Hook calls) and
sent to real botocore clients that validate them against the service models and answer from
canned responses. BigQuery job configurations round-trip through google-cloud-bigquery's job
config classes, and the SQL parses in its dialect. Every expectation comes from the spec.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
import sqlglot
from botocore.exceptions import ParamValidationError
from sqlglot import exp

from tests.contract.cloud import (
    CLOUD_ENV,
    DS,
    DS_NODASH,
    LAKE_BUCKET,
    UPSTREAM_XCOM,
    AwsRecorder,
    FakeTI,
    key,
    make_context,
    model_artifact,
    model_name,
    offline_aws,
    partition,
    rendered_name,
    spec_of,
    staging,
    steps,
    validate,
)

MODIFIED = datetime(2026, 11, 1, 7, tzinfo=UTC)
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ATHENA_OUTPUT = CLOUD_ENV["WATER_ATHENA_OUTPUT"]
SAGEMAKER_CODE = CLOUD_ENV["WATER_SAGEMAKER_CODE"]
GCS_BUCKET, GCS_PREFIX = "acme-water-staging", "exchange"  # of WATER_GCS_STAGING
BQ_LABEL = re.compile(r"^[a-z0-9_-]{0,63}$")
# the kinds whose group writes aside and promotes into the partition
PROMOTING = ("bigquery_sql", "glue_pyspark", "athena_sql", "sagemaker_transform")


def sourcedir(pipeline: str, training: str) -> str:
    return f"{SAGEMAKER_CODE}/{pipeline}/{training}/ds={DS}/sourcedir.tar.gz"


def listing(keys: list[str]) -> dict:
    return {
        "Contents": [{"Key": k, "Size": 1, "LastModified": MODIFIED} for k in keys],
        "KeyCount": len(keys),
        "IsTruncated": False,
    }


# --- SageMaker -----------------------------------------------------------------------------


def _preprocessed(task):
    """The config as the operator sends it: its own integer parsing and role expansion."""
    task.preprocess_config()
    return task.config


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_training"))
def test_training_job_request(rendered, pipeline, name):
    from water.targets.cloud.target import sagemaker_name

    step = spec_of(pipeline).steps[name]
    config = _preprocessed(rendered(f"{name}.fit"))
    validate("sagemaker", "CreateTrainingJob", config)
    assert config["TrainingJobName"] == rendered_name(sagemaker_name(pipeline, name))
    assert config["TrainingJobName"].endswith(f"-{DS_NODASH}-1")
    assert SAGEMAKER_NAME.match(config["TrainingJobName"] + "-1767225600")  # room for the operator's timestamp suffix
    image = config["AlgorithmSpecification"]["TrainingImage"]
    assert image.startswith("141502667606.dkr.ecr.eu-west-1.")
    assert image.endswith(f"/sagemaker-scikit-learn:{step.framework_version}-cpu-py3")
    hp = config["HyperParameters"]
    assert all(isinstance(v, str) for v in hp.values())
    assert hp["sagemaker_program"] == json.dumps(Path(step.entry_point).name)
    assert hp["sagemaker_submit_directory"] == json.dumps(sourcedir(pipeline, name))
    for param, value in step.hyperparameters.items():
        assert json.loads(hp[param]) == value, param
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in config["InputDataConfig"]}
    assert channels == {channel: f"{partition(pipeline, dataset)}/" for channel, dataset in step.reads.items()}
    assert config["OutputDataConfig"]["S3OutputPath"] == partition(pipeline, step.writes)
    assert config["ResourceConfig"] == {
        "InstanceType": step.instance_type,
        "InstanceCount": step.instance_count,
        "VolumeSizeInGB": step.volume_size_gb,
    }
    assert config["StoppingCondition"] == {"MaxRuntimeInSeconds": int(step.max_runtime.total_seconds())}
    assert config["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": m.name, "Regex": m.regex} for m in step.metric_definitions
    ]
    assert {"Key": "pipeline", "Value": pipeline} in config["Tags"]


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_training"))
def test_training_job_name_changes_with_the_try(rendered, pipeline, name):
    second = rendered(f"{name}.fit", make_context(pipeline, FakeTI(UPSTREAM_XCOM[pipeline], try_number=2, dag_id=pipeline)))
    assert second.config["TrainingJobName"].endswith(f"-{DS_NODASH}-2")


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_transform"))
def test_model_and_transform_requests(rendered, pipeline, name):
    from water.targets.cloud.target import sagemaker_name

    spec = spec_of(pipeline)
    step = spec.steps[name]
    training = spec.writer(step.model)
    model = _preprocessed(rendered(f"{name}.model"))
    validate("sagemaker", "CreateModel", model)
    assert model["ModelName"] == model_name(pipeline, name) and SAGEMAKER_NAME.match(model["ModelName"])
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == model_artifact(pipeline, training)  # from <training>.fit's XCom
    assert container["Image"].endswith(f"/sagemaker-scikit-learn:{spec.steps[training].framework_version}-cpu-py3")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == Path(step.entry_point).name
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == sourcedir(pipeline, training)

    transform = _preprocessed(rendered(f"{name}.transform"))
    validate("sagemaker", "CreateTransformJob", transform)
    assert transform["TransformJobName"] == rendered_name(sagemaker_name(pipeline, name))
    assert transform["ModelName"] == model_name(pipeline, name)  # from <name>.model's XCom
    assert transform["TransformInput"]["SplitType"] == "Line"
    assert transform["TransformInput"]["ContentType"] == "text/csv"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"{partition(pipeline, step.input)}/"
    assert transform["TransformOutput"] == {
        "S3OutputPath": staging(pipeline, step.writes),
        "Accept": "text/csv",
        "AssembleWith": "Line",
    }
    assert transform["MaxPayloadInMB"] == step.max_payload_mb
    assert transform["TransformResources"] == {"InstanceType": step.instance_type, "InstanceCount": step.instance_count}


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_training"))
def test_training_job_goes_out_through_the_hook(rendered, pipeline, name):
    """SageMakerHook.create_training_job sends the config as it is: the client accepts it."""
    task = rendered(f"{name}.fit")
    config = _preprocessed(task)
    recorder = AwsRecorder()
    with offline_aws(recorder):
        task.hook.create_training_job(config, wait_for_completion=False, print_log=False)
    (sent,) = recorder.requests("sagemaker", "CreateTrainingJob")
    assert sent["TrainingJobName"] == config["TrainingJobName"]


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_training"))
def test_a_broken_training_config_fails_validation(rendered, pipeline, name):
    config = _preprocessed(rendered(f"{name}.fit"))
    broken = copy.deepcopy(config)
    broken["ResourceConfig"]["InstanceCount"] = "1"  # not parsed to an int
    del broken["RoleArn"]
    with pytest.raises(ParamValidationError) as raised:
        validate("sagemaker", "CreateTrainingJob", broken)
    assert "RoleArn" in str(raised.value) and "InstanceCount" in str(raised.value)


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_training"))
def test_sourcedir_upload_request(rendered, pipeline, name):
    """The training script's folder, with every inference script of the transforms using its model."""
    import io
    import tarfile

    spec = spec_of(pipeline)
    step = spec.steps[name]
    task = rendered(f"{name}.package")
    recorder = AwsRecorder()
    with offline_aws(recorder):
        uri = task.execute(make_context(pipeline))
    assert uri == sourcedir(pipeline, name)
    (put,) = recorder.requests("s3", "PutObject")
    validate("s3", "PutObject", put)
    with tarfile.open(fileobj=io.BytesIO(put["Body"]), mode="r:gz") as tar:
        names = tar.getnames()
    inference = {Path(t.entry_point).name for t in spec.steps_of("sagemaker_transform").values() if t.model == step.writes}
    assert {Path(step.entry_point).name, *inference} <= set(names)


# --- Glue ----------------------------------------------------------------------------------


def run_glue(task) -> AwsRecorder:
    """GlueJobHook.initialize_job as the operator calls it, for a job that does not exist yet."""
    recorder = AwsRecorder(
        responses={
            ("glue", "GetJob"): {"Error": {"Code": "EntityNotFoundException", "Message": "no such job"}},
            ("iam", "GetRole"): {
                "Role": {
                    "Path": "/",
                    "RoleName": "water-glue",
                    "RoleId": "AROAEXAMPLEEXAMPLE1",
                    "Arn": "arn:aws:iam::123456789012:role/water-glue",
                    "CreateDate": "2026-01-01T00:00:00Z",
                }
            },
            ("glue", "StartJobRun"): {"JobRunId": "jr_1"},
        }
    )
    with (
        offline_aws(recorder),
        mock.patch(
            "airflow.providers.amazon.aws.hooks.glue.GlueJobHook.get_iam_execution_role",
            lambda hook: recorder.client("iam").get_role(RoleName=hook.role_name),
        ),
    ):
        task.hook.initialize_job(task.script_args, task.run_job_kwargs)
    return recorder


@pytest.mark.parametrize(("pipeline", "name"), steps("glue_pyspark"))
def test_glue_create_and_start_requests(rendered, pipeline, name):
    from water.targets.cloud.target import glue_job_arguments

    step = spec_of(pipeline).steps[name]
    recorder = run_glue(rendered(f"{name}.glue_job"))
    (create,) = recorder.requests("glue", "CreateJob")
    (start,) = recorder.requests("glue", "StartJobRun")
    validate("glue", "CreateJob", create)
    validate("glue", "StartJobRun", start)
    assert create["Name"] == start["JobName"] == f"water-{pipeline}-{name}"
    assert create["Role"] == "arn:aws:iam::123456789012:role/water-glue"
    assert create["Command"]["ScriptLocation"] == f"{CLOUD_ENV['WATER_GLUE_SCRIPTS']}/{pipeline}/{Path(step.script).name}"
    assert (create["GlueVersion"], create["WorkerType"], create["NumberOfWorkers"]) == (
        step.glue_version,
        step.worker_type,
        step.workers,
    )
    assert "MaxCapacity" not in create  # workers, not DPUs
    assert "LogUri" not in create  # a field AWS reserves; the script is already on S3, so no s3_bucket
    assert start["Arguments"] == {
        **glue_job_arguments(step.args),
        **{f"--{arg}": partition(pipeline, dataset) for arg, dataset in step.reads.items()},
        "--output_path": staging(pipeline, step.writes),
        "--ds": DS,
    }


@pytest.mark.parametrize(("pipeline", "name"), steps("glue_pyspark"))
def test_glue_arguments_are_what_the_local_target_passes(rendered, pipeline, name):
    """Glue gives the script --JOB_NAME then each argument: the same argv as local spark-submit."""
    from water.targets.local.engines.glue import glue_arguments

    args = rendered(f"{name}.glue_job").script_args
    local = glue_arguments("job", {k.removeprefix("--"): v for k, v in args.items()})
    cloud = ["--JOB_NAME", "job", *(x for pair in args.items() for x in pair)]
    assert cloud == local


@pytest.mark.parametrize(("pipeline", "name"), steps("glue_pyspark"))
def test_the_glue_script_reads_the_arguments_it_is_given(rendered, pipeline, name):
    import importlib.util

    from water import paths

    step = spec_of(pipeline).steps[name]
    path = paths.include_dir() / step.script
    module_spec = importlib.util.spec_from_file_location(f"glue_{name}", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    args = rendered(f"{name}.glue_job").script_args
    given = {k.removeprefix("--") for k in args}
    # every argument the script requires is one it is given, and it reads every dataset it is given
    required = set(getattr(script, "REQUIRED", ()))
    assert required <= given, required - given
    source = path.read_text()
    for arg in [*step.reads, "output_path", "ds"]:
        assert f'"{arg}"' in source or f"'{arg}'" in source, f"{step.script} never reads --{arg}"
    if hasattr(script, "resolved_options"):
        argv = ["script.py", "--JOB_NAME", "job", *(x for pair in args.items() for x in pair)]
        options = script.resolved_options(argv, tuple(required))
        for arg, dataset in step.reads.items():
            assert options[arg] == partition(pipeline, dataset)
        assert options["ds"] == DS


# --- Athena --------------------------------------------------------------------------------


def _unload_select(query: str) -> tuple[str, str]:
    match = re.match(r"^UNLOAD \(\n(.*)\n\)\nTO '([^']+)'\nWITH \(format = 'PARQUET', compression = 'SNAPPY'\)$", query, re.S)
    assert match, query
    return match.group(1), match.group(2)


def run_athena(task) -> AwsRecorder:
    """AthenaHook.run_query with what AthenaOperator.execute hands it."""
    recorder = AwsRecorder(responses={("athena", "StartQueryExecution"): {"QueryExecutionId": "q-1"}})
    with offline_aws(recorder):
        task.hook.run_query(
            task.query,
            {"Database": task.database, "Catalog": task.catalog},
            {"OutputLocation": task.output_location},
            None,
            task.workgroup,
        )
    return recorder


def tables_read(tree: exp.Expression) -> set[tuple[str, str]]:
    """(database, table) of every table a query reads, CTEs aside."""
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    return {(t.db, t.name) for t in tree.find_all(exp.Table) if t.name not in ctes}


@pytest.mark.parametrize(("pipeline", "name"), steps("athena_sql"))
def test_athena_sql_query_request(rendered, pipeline, name):
    from water import paths

    spec = spec_of(pipeline)
    step = spec.steps[name]
    recorder = run_athena(rendered(f"{name}.unload"))
    (request,) = recorder.requests("athena", "StartQueryExecution")
    validate("athena", "StartQueryExecution", request)
    assert request["QueryExecutionContext"] == {"Database": spec.database, "Catalog": "AwsDataCatalog"}
    assert request["ResultConfiguration"] == {"OutputLocation": ATHENA_OUTPUT}
    assert request["WorkGroup"] == step.workgroup
    select, location = _unload_select(request["QueryString"])
    assert location == f"{staging(pipeline, step.writes)}/"
    tree = sqlglot.parse_one(select, read="trino")
    assert not list(tree.find_all(exp.Placeholder)), "a ? was left unbound"
    literals = [lit.this for lit in tree.find_all(exp.Literal) if lit.is_string]
    assert DS in literals
    raw = (paths.include_dir() / step.sql).read_text()
    for comment in re.findall(r"(?m)--.*$", raw):
        assert comment in select, f"a comment was changed: {comment}"  # a ? in a comment is not a parameter
    # the tables it reads are the lake datasets it `reads`, in the pipeline's own database
    assert {db for db, _ in tables_read(tree)} <= {"", spec.database}
    assert {table for _, table in tables_read(tree)} == {d.replace("/", "_") for d in step.reads}


@pytest.mark.parametrize(("pipeline", "name"), steps("inference_stats"))
def test_inference_stats_requests(cloud_dags, pipeline, name):
    spec = spec_of(pipeline)
    step = spec.steps[name]
    counter = cloud_dags(pipeline).get_task(name).counter
    ddl, count = counter.requests(DS)
    for request in (ddl, count):
        validate("athena", "StartQueryExecution", request)
        assert request["QueryExecutionContext"] == {"Database": spec.database, "Catalog": "AwsDataCatalog"}
        assert request["WorkGroup"] == step.workgroup
        assert request["ResultConfiguration"] == {"OutputLocation": ATHENA_OUTPUT}
    dataset_uri = partition(pipeline, step.reads).removesuffix(f"/ds={DS}")
    assert "PARTITIONED BY (`ds` string)" in ddl["QueryString"]
    assert f"LOCATION '{dataset_uri}/'" in ddl["QueryString"]
    assert f"'storage.location.template'='{dataset_uri}/ds=${{ds}}'" in ddl["QueryString"]
    assert f"`{counter.table}`" in ddl["QueryString"] and f'"{counter.table}"' in count["QueryString"]
    tree = sqlglot.parse_one(count["QueryString"], read="trino")
    assert tree.find(exp.Group) is not None and f"'{DS}'" in count["QueryString"]
    with pytest.raises(ValueError, match="not a YYYY-MM-DD"):
        counter.requests("2026-11-01'; DROP TABLE x; --")


@pytest.mark.parametrize(("pipeline", "name"), steps("sized_postprocess"))
def test_sizing_counts_with_the_stats_steps_counter(cloud_dags, pipeline, name):
    """When the stats are missing, sizing counts the same predictions the same way: the same
    table, database and workgroup as the inference_stats step over them."""
    spec = spec_of(pipeline)
    step = spec.steps[name]
    dag = cloud_dags(pipeline)
    size = dag.get_task(step.size_task_id(name))
    (stats_name,) = [n for n, s in spec.steps_of("inference_stats").items() if s.reads == step.reads]
    assert size.stats_task_id == stats_name
    mine, theirs = size.count_predictions.requests(DS), dag.get_task(stats_name).counter.requests(DS)
    assert mine == theirs


@pytest.mark.parametrize(("pipeline", "name"), steps("sized_postprocess"))
def test_sizing_counts_in_the_stats_steps_workgroup(cloud_target, pipeline, name):
    """A stats step in another workgroup than primary takes the sizing's fallback count with it."""
    from airflow.sdk import DAG

    spec = spec_of(pipeline)
    step = spec.steps[name]
    (stats_name,) = [n for n, s in spec.steps_of("inference_stats").items() if s.reads == step.reads]
    moved = spec.steps[stats_name].model_copy(update={"workgroup": "water_analytics"})
    spec = spec.model_copy(update={"steps": {**spec.steps, stats_name: moved}})
    with DAG(f"workgroup_{pipeline}", schedule=None) as dag:
        cloud_target.build(spec, stats_name, moved)
        cloud_target.build(spec, name, step)
    size = dag.get_task(step.size_task_id(name))
    assert {r["WorkGroup"] for r in size.count_predictions.requests(DS)} == {"water_analytics"}
    assert size.count_predictions.requests(DS) == dag.get_task(stats_name).counter.requests(DS)


def run_stats(task, pipeline: str, classes: list[str]) -> tuple[dict, AwsRecorder]:
    """The inference_stats operator's own run against offline Athena and S3."""
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook

    rows = [("class", "n"), *((cls, str(100 * (i + 1))) for i, cls in enumerate(classes))]
    page = {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": a}, {"VarCharValue": b}]} for a, b in rows]}}
    recorder = AwsRecorder(
        responses={
            ("athena", "StartQueryExecution"): lambda params: {"QueryExecutionId": f"q-{len(params['QueryString'])}"},
            ("athena", "GetQueryExecution"): {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}},
            ("athena", "GetQueryResults"): page,
        }
    )
    with offline_aws(recorder), mock.patch.object(AthenaHook, "get_conn", return_value=recorder.client("athena")):
        figures = task.execute(make_context(pipeline))
    return figures, recorder


@pytest.mark.parametrize(("pipeline", "name"), steps("inference_stats"))
def test_inference_stats_counts_and_writes_the_stats_file(rendered, pipeline, name):
    """Counts per class (every class of the spec, in its order), the JSON, the XCom."""
    spec = spec_of(pipeline)
    step = spec.steps[name]
    figures, recorder = run_stats(rendered(name), pipeline, spec.classes)
    class_counts = {cls: 100 * (i + 1) for i, cls in enumerate(spec.classes)}
    total = sum(class_counts.values())
    assert figures == {"rows": total, "rows_in": total, "class_counts": class_counts}
    assert list(figures["class_counts"]) == spec.classes
    (put,) = recorder.requests("s3", "PutObject")
    validate("s3", "PutObject", put)
    assert (put["Bucket"], put["Key"]) == (LAKE_BUCKET, key(pipeline, step.writes, "inference_stats.json"))
    assert json.loads(put["Body"]) == {"ds": DS, **figures}
    assert len(recorder.requests("athena", "StartQueryExecution")) == 2  # the table DDL, then the count


@pytest.mark.parametrize(("pipeline", "name"), steps("inference_stats"))
def test_inference_stats_refuses_a_class_the_spec_does_not_declare(rendered, pipeline, name):
    spec = spec_of(pipeline)
    with pytest.raises(ValueError, match="not_a_class"):
        run_stats(rendered(name), pipeline, [*spec.classes, "not_a_class"])


# --- S3 partitions -------------------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "name"), steps(*PROMOTING))
def test_promote_copies_then_removes_stale_and_staged_objects(rendered, pipeline, name):
    step = spec_of(pipeline).steps[name]
    task = rendered(f"{name}.promote")
    assert task.sources == [staging(pipeline, step.writes)] and task.destination == partition(pipeline, step.writes)
    staged = key(pipeline, f"{step.writes}/_staging") + "/"
    current = key(pipeline, step.writes) + "/"

    def answer(params):
        return listing(
            {
                staged: [staged + "part-00000", staged + "part-00001", staged + "_SUCCESS"],
                current: [current + "part-00000", current + "old"],
            }[params["Prefix"]]
        )

    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): answer, ("s3", "DeleteObjects"): {"Deleted": []}})
    with offline_aws(recorder):
        figures = task.execute(make_context(pipeline))
    copies = recorder.requests("s3", "CopyObject")
    for request in copies + recorder.requests("s3", "DeleteObjects") + recorder.requests("s3", "ListObjectsV2"):
        validate(
            "s3",
            "CopyObject" if "CopySource" in request else "DeleteObjects" if "Delete" in request else "ListObjectsV2",
            request,
        )
    assert {r["Bucket"] for r in copies} == {LAKE_BUCKET}
    assert sorted(r["Key"] for r in copies) == [current + "part-00000", current + "part-00001"]
    deleted = [[o["Key"] for o in r["Delete"]["Objects"]] for r in recorder.requests("s3", "DeleteObjects")]
    assert deleted[0] == [current + "old"]  # stale, after the copies
    assert sorted(deleted[1]) == [staged + "part-00000", staged + "part-00001"]
    assert figures["objects"] == 2 and figures["stale_removed"] == 1


@pytest.mark.parametrize(("pipeline", "name"), steps(*PROMOTING))
def test_promote_refuses_an_empty_staging_prefix(rendered, pipeline, name):
    task = rendered(f"{name}.promote")
    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): {"KeyCount": 0, "IsTruncated": False}})
    with offline_aws(recorder), pytest.raises(FileNotFoundError, match="nothing to promote"):
        task.execute(make_context(pipeline))
    assert recorder.requests("s3", "CopyObject") == [] and recorder.requests("s3", "DeleteObjects") == []


@pytest.mark.parametrize(("pipeline", "name"), steps("sized_postprocess"))
def test_commit_takes_the_shards_the_decision_planned(rendered, pipeline, name):
    spec = spec_of(pipeline)
    step = spec.steps[name]
    task = rendered(step.commit_task_id())
    root = key(pipeline, step.shards_dataset) + "/"
    folder = f"{spec.classes[0]}"  # whatever the entrypoint writes inside its shard folder

    def answer(params):
        prefix = params["Prefix"]
        shard = prefix[len(root) :].rstrip("/") if prefix.startswith(root) else None
        return listing([f"{prefix}{folder}/part-{shard}.parquet"] if shard else [])

    routes = step.all_routes(spec.classes, name)
    first = next(iter(routes))
    decision = {
        "routes": {
            r: {"tier": route.sizing.tiers[-1].name, "shards": [{"index": 0}, {"index": 1}] if r == first else [{"index": 0}]}
            for r, route in routes.items()
        }
    }
    ti = FakeTI({(step.size_task_id(name), "decision"): decision}, dag_id=pipeline)
    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): answer, ("s3", "DeleteObjects"): {"Deleted": []}})
    with offline_aws(recorder):
        figures = task.execute(make_context(pipeline, ti))
    copies = recorder.requests("s3", "CopyObject")
    for request in copies:
        validate("s3", "CopyObject", request)
    planned = [(r, i) for r, d in decision["routes"].items() for i in range(len(d["shards"]))]
    assert sorted(r["Key"] for r in copies) == sorted(
        key(pipeline, step.writes, folder, f"part-route={r}/shard={i:04d}.parquet") for r, i in planned
    )
    assert figures["objects"] == len(planned)
    assert task.trigger_rule == "none_failed_min_one_success"


@pytest.mark.parametrize(("pipeline", "name"), steps("sized_postprocess"))
def test_commit_refuses_a_missing_shard(rendered, pipeline, name):
    spec = spec_of(pipeline)
    step = spec.steps[name]
    task = rendered(step.commit_task_id())
    route_name, route = next(iter(step.all_routes(spec.classes, name).items()))
    decision = {"routes": {route_name: {"tier": route.sizing.tiers[-1].name, "shards": [{"index": 0}, {"index": 1}]}}}
    ti = FakeTI({(step.size_task_id(name), "decision"): decision}, dag_id=pipeline)
    first = key(pipeline, step.shards_dataset, f"route={route_name}", "shard=0000") + "/"
    recorder = AwsRecorder(
        responses={("s3", "ListObjectsV2"): lambda p: listing([first + "part-0.parquet"] if p["Prefix"] == first else [])}
    )
    with offline_aws(recorder), pytest.raises(FileNotFoundError, match=f"route={route_name}/shard=0001"):
        task.execute(make_context(pipeline, ti))
    assert recorder.requests("s3", "CopyObject") == []


def test_every_aws_call_seen_is_in_aws_actions(rendered, spec, cloud_dag):
    """What the recorded requests of this pipeline needed, in IAM actions, is what AWS_ACTIONS lists."""
    from water.targets.cloud.target import AWS_ACTIONS

    pipeline = spec.name
    s3_actions = {
        "ListObjectsV2": ["s3:ListBucket"],
        "CopyObject": ["s3:GetObject", "s3:PutObject"],
        "DeleteObjects": ["s3:DeleteObject"],
        "HeadBucket": ["s3:ListBucket"],  # SageMakerHook checks the channels' buckets and prefixes
        "HeadObject": ["s3:GetObject"],
    }
    calls = []
    for name, step in spec.steps.items():
        if step.kind in PROMOTING:
            staged = key(pipeline, f"{step.writes}/_staging", "a")
            recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): listing([staged])})
            with offline_aws(recorder):
                rendered(f"{name}.promote").execute(make_context(pipeline))
            calls += recorder.calls
        if step.kind == "sagemaker_training":
            recorder = AwsRecorder()
            with offline_aws(recorder):
                rendered(f"{name}.package").execute(make_context(pipeline))
                fit = rendered(f"{name}.fit")
                fit.hook.create_training_job(_preprocessed(fit), wait_for_completion=False, print_log=False)
            calls += recorder.calls
        if step.kind == "glue_pyspark":
            calls += run_glue(rendered(f"{name}.glue_job")).calls
        if step.kind == "athena_sql":
            calls += run_athena(rendered(f"{name}.unload")).calls
        if step.kind == "inference_stats":
            calls += run_stats(rendered(name), pipeline, spec.classes)[1].calls
    kinds = {step.kind for step in spec.steps.values()}
    expected = {"s3"}
    expected |= {"athena"} if kinds & {"athena_sql", "inference_stats"} else set()
    expected |= {"glue", "iam"} if "glue_pyspark" in kinds else set()
    expected |= {"sagemaker"} if "sagemaker_training" in kinds else set()
    assert {service for service, _, _ in calls} == expected
    needed = set()
    for service, operation, _ in calls:
        needed.update(s3_actions.get(operation, [f"{service}:{operation}"]))
    assert needed <= set(AWS_ACTIONS), sorted(needed - set(AWS_ACTIONS))
    # what the operators call beyond these offline runs (waits, stops, the roles they pass)
    by_kind = {
        "sagemaker_training": ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "iam:PassRole"],
        "sagemaker_transform": ["sagemaker:CreateModel", "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob"],
        "glue_pyspark": ["glue:CreateJob", "glue:StartJobRun", "glue:GetJobRun", "iam:PassRole"],
        "athena_sql": ["athena:StartQueryExecution", "athena:GetQueryExecution"],
        "inference_stats": ["athena:StartQueryExecution", "athena:GetQueryResults", "glue:CreateTable"],
    }
    for kind in kinds & set(by_kind):
        assert set(by_kind[kind]) <= set(AWS_ACTIONS), kind


# --- BigQuery ------------------------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "name"), steps("bigquery_sql"))
def test_bigquery_sql_query_job_config(rendered, pipeline, name):
    from google.cloud.bigquery import QueryJobConfig

    step = spec_of(pipeline).steps[name]
    task = rendered(f"{name}.query")
    config = task.configuration
    job = QueryJobConfig.from_api_repr(config)
    assert job.to_api_repr() == config
    assert job.use_legacy_sql is False
    assert job.write_disposition == "WRITE_TRUNCATE"
    assert job.destination.table_id == f"{pipeline}_{step.writes.replace('/', '_')}_{DS_NODASH}"
    assert job.destination.dataset_id == "water_staging" and job.destination.project == "acme-analytics"
    (param,) = job.query_parameters
    assert (param.name, param.type_, str(param.value)) == ("ds", "DATE", DS)
    assert config["labels"] == {"pipeline": pipeline, "stage": name}
    assert all(BQ_LABEL.match(v) for v in config["labels"].values()), config["labels"]
    tree = sqlglot.parse_one(config["query"]["query"], read="bigquery")
    assert {p.name for p in tree.find_all(exp.Parameter)} == {"ds"}
    # the tables it reads are the warehouse tables it `reads`
    assert {f"{db}.{table}" for db, table in tables_read(tree)} == set(step.reads)
    assert task.project_id == "acme-analytics" and task.gcp_conn_id == "google_cloud_default"


@pytest.mark.parametrize(("pipeline", "name"), steps("bigquery_sql"))
def test_bigquery_export_and_transfer_paths(rendered, pipeline, name):
    step = spec_of(pipeline).steps[name]
    exchange = f"{GCS_PREFIX}/{pipeline}/{step.writes}/ds={DS}/"
    export = rendered(f"{name}.export")
    assert export.export_format == "PARQUET"
    table = f"{pipeline}_{step.writes.replace('/', '_')}_{DS_NODASH}"
    assert export.source_project_dataset_table == f"acme-analytics.water_staging.{table}"
    assert export.destination_cloud_storage_uris == [f"gs://{GCS_BUCKET}/{exchange}part-*.parquet"]
    clear = rendered(f"{name}.clear_export")
    assert (clear.bucket_name, clear.prefix) == (GCS_BUCKET, exchange)
    to_s3 = rendered(f"{name}.to_s3")
    assert to_s3.prefix == clear.prefix and to_s3.flatten_structure
    assert to_s3.dest_s3_key == f"{staging(pipeline, step.writes)}/"


@pytest.mark.parametrize(("pipeline", "name"), steps("publish"))
def test_publish_load_job_config(rendered, pipeline, name):
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from google.cloud.bigquery import LoadJobConfig

    step = spec_of(pipeline).steps[name]
    dataset, table = step.table.split(".")
    exchange = f"gs://{GCS_BUCKET}/{GCS_PREFIX}/{pipeline}/{step.reads}/"
    task = rendered(f"{name}.load")
    with mock.patch.object(BigQueryHook, "project_id", new_callable=mock.PropertyMock, return_value="acme-analytics"):
        task.hook = BigQueryHook.__new__(BigQueryHook)  # no connection look-up; split_tablename needs none
        task.src_fmt_configs = {}  # as execute() sets them before building the configuration
        task.source_uris = [f"gs://{task.bucket}/{o}" for o in task.source_objects]
        config = task._use_existing_table()
    job = LoadJobConfig.from_api_repr(config)
    assert job.to_api_repr() == config
    load = config["load"]
    assert load["destinationTable"] == {"projectId": "acme-analytics", "datasetId": dataset, "tableId": f"{table}${DS_NODASH}"}
    assert load["writeDisposition"] == "WRITE_TRUNCATE" and load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY", "field": "ds"}
    assert load["hivePartitioningOptions"]["sourceUriPrefix"] == exchange
    assert load["sourceUris"] == [f"{exchange}ds={DS}/*.parquet"]
    to_gcs = rendered(f"{name}.to_gcs")
    assert (to_gcs.bucket, to_gcs.prefix) == (LAKE_BUCKET, key(pipeline, step.reads) + "/")
    assert to_gcs.dest_gcs == f"{exchange}ds={DS}/"
