"""Every request the cloud target's operators send, rendered for ds=2026-11-01 and checked offline.

AWS requests are built by the operators' and hooks' own code (rendered templates, the
operators' integer parsing, GlueJobHook's job config, AthenaHook.run_query, S3Hook calls) and
sent to real botocore clients that validate them against the service models and answer from
canned responses. BigQuery job configurations round-trip through google-cloud-bigquery's job
config classes, and the SQL parses in its dialect.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from unittest import mock

import pytest
import sqlglot
from botocore.exceptions import ParamValidationError
from sqlglot import exp

from tests.contract.cloud import (  # noqa: F401 - fixtures
    DS,
    AwsRecorder,
    FakeTI,
    cloud_dag,
    cloud_settings,
    demo_spec,
    make_context,
    offline_aws,
    rendered,
    validate,
)

LAKE = "s3://acme-ml-lake/water/recipe_engagement"
MODIFIED = datetime(2026, 11, 1, 7, tzinfo=timezone.utc)
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


# --- SageMaker -----------------------------------------------------------------------------


def _preprocessed(task):
    """The config as the operator sends it: its own integer parsing and role expansion."""
    task.preprocess_config()
    return task.config


def test_training_job_request(rendered, demo_spec):
    config = _preprocessed(rendered("train.fit"))
    validate("sagemaker", "CreateTrainingJob", config)
    assert config["TrainingJobName"] == "water-recipe-engagement-train-20261101-1"
    assert SAGEMAKER_NAME.match(config["TrainingJobName"] + "-1767225600")  # room for the operator's timestamp suffix
    image = config["AlgorithmSpecification"]["TrainingImage"]
    assert image.startswith("141502667606.dkr.ecr.eu-west-1.") and image.endswith("/sagemaker-scikit-learn:1.4-2-cpu-py3")
    hp = config["HyperParameters"]
    assert all(isinstance(v, str) for v in hp.values())
    assert hp["sagemaker_program"] == '"train.py"'
    assert hp["sagemaker_submit_directory"] == f'"s3://acme-ml-artifacts/water/sagemaker/recipe_engagement/ds={DS}/sourcedir.tar.gz"'
    assert hp["max_iter"] == "150" and hp["learning_rate"] == "0.1"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in config["InputDataConfig"]}
    assert channels == {
        "train": f"{LAKE}/channels/train/ds={DS}/",
        "validation": f"{LAKE}/channels/validation/ds={DS}/",
    }
    assert config["OutputDataConfig"]["S3OutputPath"] == f"{LAKE}/model/ds={DS}"
    assert config["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert config["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert [m["Name"] for m in config["AlgorithmSpecification"]["MetricDefinitions"]] == [
        m.name for m in demo_spec.training.metric_definitions
    ]


def test_training_job_name_changes_with_the_try(rendered):
    second = rendered("train.fit", make_context(FakeTI(try_number=2)))
    assert second.config["TrainingJobName"].endswith("-20261101-2")


def test_model_and_transform_requests(rendered):
    model = _preprocessed(rendered("batch_inference.model"))
    validate("sagemaker", "CreateModel", model)
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"].endswith("/output/model.tar.gz")  # from train.fit's XCom
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert SAGEMAKER_NAME.match(model["ModelName"])

    transform = _preprocessed(rendered("batch_inference.transform"))
    validate("sagemaker", "CreateTransformJob", transform)
    assert transform["ModelName"] == "water-recipe-engagement-model-20261101-1"
    assert transform["TransformInput"]["SplitType"] == "Line"
    assert transform["TransformInput"]["ContentType"] == "text/csv"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"{LAKE}/channels/inference/ds={DS}/"
    assert transform["TransformOutput"] == {
        "S3OutputPath": f"{LAKE}/predictions/_staging/ds={DS}",
        "Accept": "text/csv",
        "AssembleWith": "Line",
    }
    assert transform["MaxPayloadInMB"] == 6
    assert transform["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}


def test_training_job_goes_out_through_the_hook(rendered):
    """SageMakerHook.create_training_job sends the config as it is: the client accepts it."""
    task = rendered("train.fit")
    config = _preprocessed(task)
    recorder = AwsRecorder()
    with offline_aws(recorder):
        task.hook.create_training_job(config, wait_for_completion=False, print_log=False)
    (sent,) = recorder.requests("sagemaker", "CreateTrainingJob")
    assert sent["TrainingJobName"] == config["TrainingJobName"]


def test_a_broken_training_config_fails_validation(rendered):
    config = _preprocessed(rendered("train.fit"))
    broken = copy.deepcopy(config)
    broken["ResourceConfig"]["InstanceCount"] = "1"  # not parsed to an int
    del broken["RoleArn"]
    with pytest.raises(ParamValidationError) as raised:
        validate("sagemaker", "CreateTrainingJob", broken)
    assert "RoleArn" in str(raised.value) and "InstanceCount" in str(raised.value)


# --- Glue ----------------------------------------------------------------------------------


def run_glue(task) -> AwsRecorder:
    """GlueJobHook.initialize_job as the operator calls it, for a job that does not exist yet."""
    recorder = AwsRecorder(
        responses={
            ("glue", "GetJob"): {"Error": {"Code": "EntityNotFoundException", "Message": "no such job"}},
            ("iam", "GetRole"): {
                "Role": {
                    "Path": "/", "RoleName": "water-glue", "RoleId": "AROAEXAMPLEEXAMPLE1",
                    "Arn": "arn:aws:iam::123456789012:role/water-glue", "CreateDate": "2026-01-01T00:00:00Z",
                }
            },
            ("glue", "StartJobRun"): {"JobRunId": "jr_1"},
        }
    )
    with offline_aws(recorder), mock.patch(
        "airflow.providers.amazon.aws.hooks.glue.GlueJobHook.get_iam_execution_role",
        lambda hook: recorder.client("iam").get_role(RoleName=hook.role_name),
    ):
        task.hook.initialize_job(task.script_args, task.run_job_kwargs)
    return recorder


def test_glue_create_and_start_requests(rendered):
    recorder = run_glue(rendered("features.glue_job"))
    (create,) = recorder.requests("glue", "CreateJob")
    (start,) = recorder.requests("glue", "StartJobRun")
    validate("glue", "CreateJob", create)
    validate("glue", "StartJobRun", start)
    assert create["Role"] == "arn:aws:iam::123456789012:role/water-glue"
    assert create["Command"]["ScriptLocation"] == "s3://acme-ml-artifacts/water/glue/recipe_engagement/recipe_engagement_features.py"
    assert (create["GlueVersion"], create["WorkerType"], create["NumberOfWorkers"]) == ("5.0", "G.1X", 4)
    assert "MaxCapacity" not in create  # workers, not DPUs
    assert "LogUri" not in create  # a field AWS reserves; the script is already on S3, so no s3_bucket
    assert start["Arguments"] == {
        "--output_files": "1",
        "--input_path": f"{LAKE}/raw/ds={DS}",
        "--output_path": f"{LAKE}/features/_staging/ds={DS}",
        "--ds": DS,
    }


def test_glue_arguments_are_what_the_local_target_passes(rendered):
    """Glue gives the script --JOB_NAME then each argument: the same argv as local spark-submit."""
    from water.local.glue import glue_arguments

    args = rendered("features.glue_job").script_args
    local = glue_arguments("job", {k.removeprefix("--"): v for k, v in args.items()})
    cloud = ["--JOB_NAME", "job", *(x for pair in args.items() for x in pair)]
    assert cloud == local


def test_the_glue_script_reads_the_arguments_it_is_given(rendered):
    import importlib.util

    from water import paths

    spec = importlib.util.spec_from_file_location("features_script", paths.include_dir() / "glue/recipe_engagement_features.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = rendered("features.glue_job").script_args
    argv = ["script.py", "--JOB_NAME", "job", *(x for pair in args.items() for x in pair)]
    options = script.resolved_options(argv, script.REQUIRED)
    assert options["input_path"] == f"{LAKE}/raw/ds={DS}" and options["ds"] == DS


# --- Athena --------------------------------------------------------------------------------


def _unload_select(query: str) -> str:
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


def test_training_set_query_request(rendered):
    recorder = run_athena(rendered("training_set.unload"))
    (request,) = recorder.requests("athena", "StartQueryExecution")
    validate("athena", "StartQueryExecution", request)
    assert request["QueryExecutionContext"] == {"Database": "water", "Catalog": "AwsDataCatalog"}
    assert request["ResultConfiguration"] == {"OutputLocation": "s3://acme-ml-artifacts/water/athena"}
    assert request["WorkGroup"] == "primary"
    select, location = _unload_select(request["QueryString"])
    assert location == f"{LAKE}/training/_staging/ds={DS}/"
    tree = sqlglot.parse_one(select, read="trino")
    assert not list(tree.find_all(exp.Placeholder)), "a ? was left unbound"
    literals = [lit.this for lit in tree.find_all(exp.Literal) if lit.is_string]
    assert DS in literals
    assert "(?)" in select  # the comment's question mark is not a parameter


def test_inference_stats_requests(cloud_dag):
    counter = cloud_dag.get_task("inference_stats").counter
    ddl, count = counter.requests(DS)
    for request in (ddl, count):
        validate("athena", "StartQueryExecution", request)
    assert "PARTITIONED BY (`ds` string)" in ddl["QueryString"]
    assert f"LOCATION '{LAKE}/predictions/'" in ddl["QueryString"]
    assert "'storage.location.template'='" + LAKE + "/predictions/ds=${ds}'" in ddl["QueryString"]
    tree = sqlglot.parse_one(count["QueryString"], read="trino")
    assert tree.find(exp.Group) is not None and f"'{DS}'" in count["QueryString"]
    with pytest.raises(ValueError, match="not a YYYY-MM-DD"):
        counter.requests("2026-11-01'; DROP TABLE x; --")


def test_inference_stats_counts_and_writes_the_stats_file(cloud_dag):
    """The operator's own run against offline Athena and S3: counts per class, the JSON, the XCom."""
    import json

    from airflow.providers.amazon.aws.hooks.athena import AthenaHook

    task = copy.deepcopy(cloud_dag.get_task("inference_stats"))
    task.render_template_fields(make_context())
    rows = [("class", "n"), ("cook", "120"), ("browse", "300"), ("dormant", "80")]
    page = {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": a}, {"VarCharValue": b}]} for a, b in rows]}}
    recorder = AwsRecorder(
        responses={
            ("athena", "StartQueryExecution"): lambda params: {"QueryExecutionId": f"q-{len(params['QueryString'])}"},
            ("athena", "GetQueryExecution"): {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}},
            ("athena", "GetQueryResults"): page,
        }
    )
    with offline_aws(recorder), mock.patch.object(AthenaHook, "get_conn", lambda hook: recorder.client("athena")):
        figures = task.execute(make_context())
    assert figures == {"rows": 500, "rows_in": 500, "class_counts": {"cook": 120, "browse": 300, "dormant": 80}}
    (put,) = recorder.requests("s3", "PutObject")
    validate("s3", "PutObject", put)
    assert (put["Bucket"], put["Key"]) == ("acme-ml-lake", f"water/recipe_engagement/stats/ds={DS}/inference_stats.json")
    assert json.loads(put["Body"]) == {"ds": DS, **figures}
    assert len(recorder.requests("athena", "StartQueryExecution")) == 2  # the table DDL, then the count


# --- S3 partitions -------------------------------------------------------------------------


def test_promote_copies_then_removes_stale_and_staged_objects(rendered):
    task = rendered("batch_inference.promote")
    staged = "water/recipe_engagement/predictions/_staging/ds=2026-11-01/"
    current = "water/recipe_engagement/predictions/ds=2026-11-01/"

    def listing(params):
        keys = {
            staged: [staged + "part-00000.csv.out", staged + "part-00001.csv.out", staged + "_SUCCESS"],
            current: [current + "part-00000.csv.out", current + "old.csv.out"],
        }[params["Prefix"]]
        return {"Contents": [{"Key": k, "Size": 1, "LastModified": MODIFIED} for k in keys], "KeyCount": len(keys), "IsTruncated": False}

    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): listing, ("s3", "DeleteObjects"): {"Deleted": []}})
    with offline_aws(recorder):
        figures = task.execute(make_context())
    copies = recorder.requests("s3", "CopyObject")
    for request in copies + recorder.requests("s3", "DeleteObjects") + recorder.requests("s3", "ListObjectsV2"):
        validate("s3", "CopyObject" if "CopySource" in request else "DeleteObjects" if "Delete" in request else "ListObjectsV2", request)
    assert sorted(r["Key"] for r in copies) == [current + "part-00000.csv.out", current + "part-00001.csv.out"]
    deleted = [[o["Key"] for o in r["Delete"]["Objects"]] for r in recorder.requests("s3", "DeleteObjects")]
    assert deleted[0] == [current + "old.csv.out"]  # stale, after the copies
    assert sorted(deleted[1]) == [staged + "part-00000.csv.out", staged + "part-00001.csv.out"]
    assert figures["objects"] == 2 and figures["stale_removed"] == 1


def test_promote_refuses_an_empty_staging_prefix(rendered):
    task = rendered("features.promote")
    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): {"KeyCount": 0, "IsTruncated": False}})
    with offline_aws(recorder), pytest.raises(FileNotFoundError, match="nothing to promote"):
        task.execute(make_context())
    assert recorder.requests("s3", "CopyObject") == [] and recorder.requests("s3", "DeleteObjects") == []


def test_commit_outputs_takes_the_shards_the_decision_planned(rendered):
    task = rendered("commit_outputs")
    root = "water/recipe_engagement/outputs_shards/ds=2026-11-01/"

    def listing(params):
        prefix = params["Prefix"]
        if prefix.startswith(root):
            shard = prefix[len(root) :].rstrip("/")
            keys = [f"{prefix}segment=cook/part-{shard}.parquet"]
        else:
            keys = []
        return {"Contents": [{"Key": k, "Size": 1, "LastModified": MODIFIED} for k in keys], "KeyCount": len(keys), "IsTruncated": False}

    decision = {"tier": "large", "shards": [{"index": 0}, {"index": 1}]}
    ti = FakeTI({("size_postprocess", "decision"): decision})
    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): listing, ("s3", "DeleteObjects"): {"Deleted": []}})
    with offline_aws(recorder):
        figures = task.execute(make_context(ti))
    copies = recorder.requests("s3", "CopyObject")
    for request in copies:
        validate("s3", "CopyObject", request)
    assert sorted(r["Key"] for r in copies) == [
        "water/recipe_engagement/outputs/ds=2026-11-01/segment=cook/part-shard=0000.parquet",
        "water/recipe_engagement/outputs/ds=2026-11-01/segment=cook/part-shard=0001.parquet",
    ]
    assert figures["objects"] == 2
    assert task.trigger_rule == "none_failed_min_one_success"


def test_sourcedir_upload_request(rendered):
    import io
    import tarfile

    task = rendered("train.package")
    recorder = AwsRecorder()
    with offline_aws(recorder):
        uri = task.execute(make_context())
    assert uri == f"s3://acme-ml-artifacts/water/sagemaker/recipe_engagement/ds={DS}/sourcedir.tar.gz"
    (put,) = recorder.requests("s3", "PutObject")
    body = put["Body"]
    validate("s3", "PutObject", put)
    names = tarfile.open(fileobj=io.BytesIO(body), mode="r:gz").getnames()
    assert {"train.py", "inference.py"} <= set(names)


def test_every_aws_call_seen_is_in_aws_actions(rendered):
    """What the recorded requests needed, in IAM actions, is what AWS_ACTIONS lists."""
    from water.targets.cloud import AWS_ACTIONS

    s3_actions = {
        "ListObjectsV2": ["s3:ListBucket"],
        "CopyObject": ["s3:GetObject", "s3:PutObject"],
        "DeleteObjects": ["s3:DeleteObject"],
        "HeadBucket": ["s3:ListBucket"],  # SageMakerHook checks the channels' buckets and prefixes
        "HeadObject": ["s3:GetObject"],
    }
    staged = {"Contents": [{"Key": "water/recipe_engagement/raw/_staging/ds=2026-11-01/a", "Size": 1, "LastModified": MODIFIED}], "KeyCount": 1}
    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): staged})
    with offline_aws(recorder):
        rendered("extract.promote").execute(make_context())
        rendered("train.package").execute(make_context())
        fit = rendered("train.fit")
        fit.hook.create_training_job(_preprocessed(fit), wait_for_completion=False, print_log=False)
    calls = [*recorder.calls, *run_glue(rendered("features.glue_job")).calls, *run_athena(rendered("training_set.unload")).calls]
    assert {service for service, _, _ in calls} == {"s3", "glue", "iam", "athena", "sagemaker"}
    needed = set()
    for service, operation, _ in calls:
        needed.update(s3_actions.get(operation, [f"{service}:{operation}"]))
    assert needed <= set(AWS_ACTIONS), sorted(needed - set(AWS_ACTIONS))
    for action in ("sagemaker:CreateTrainingJob", "sagemaker:CreateModel", "sagemaker:CreateTransformJob",
                   "glue:CreateJob", "glue:StartJobRun", "athena:StartQueryExecution", "iam:PassRole"):
        assert action in AWS_ACTIONS


# --- BigQuery ------------------------------------------------------------------------------


def test_extract_query_job_config(rendered):
    from google.cloud.bigquery import QueryJobConfig

    task = rendered("extract.query")
    config = task.configuration
    job = QueryJobConfig.from_api_repr(config)
    assert job.to_api_repr() == config
    assert job.use_legacy_sql is False
    assert job.write_disposition == "WRITE_TRUNCATE"
    assert job.destination.table_id == "recipe_engagement_raw_20261101"
    assert job.destination.dataset_id == "water_staging" and job.destination.project == "acme-analytics"
    (param,) = job.query_parameters
    assert (param.name, param.type_, str(param.value)) == ("ds", "DATE", DS)
    tree = sqlglot.parse_one(config["query"]["query"], read="bigquery")
    assert {p.name for p in tree.find_all(exp.Parameter)} == {"ds"}
    assert task.project_id == "acme-analytics" and task.gcp_conn_id == "google_cloud_default"


def test_export_and_transfer_paths(rendered):
    export = rendered("extract.export")
    assert export.export_format == "PARQUET"
    assert export.source_project_dataset_table == "acme-analytics.water_staging.recipe_engagement_raw_20261101"
    assert export.destination_cloud_storage_uris == [
        f"gs://acme-water-staging/exchange/recipe_engagement/raw/ds={DS}/part-*.parquet"
    ]
    clear = rendered("extract.clear_export")
    assert (clear.bucket_name, clear.prefix) == ("acme-water-staging", f"exchange/recipe_engagement/raw/ds={DS}/")
    to_s3 = rendered("extract.to_s3")
    assert to_s3.prefix == clear.prefix and to_s3.flatten_structure
    assert to_s3.dest_s3_key == f"{LAKE}/raw/_staging/ds={DS}/"


def test_publish_load_job_config(rendered):
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from google.cloud.bigquery import LoadJobConfig

    task = rendered("publish.load")
    with mock.patch.object(BigQueryHook, "project_id", new_callable=mock.PropertyMock, return_value="acme-analytics"):
        task.hook = BigQueryHook.__new__(BigQueryHook)  # no connection look-up; split_tablename needs none
        task.src_fmt_configs = {}  # as execute() sets them before building the configuration
        task.source_uris = [f"gs://{task.bucket}/{o}" for o in task.source_objects]
        config = task._use_existing_table()
    job = LoadJobConfig.from_api_repr(config)
    assert job.to_api_repr() == config
    load = config["load"]
    assert load["destinationTable"] == {"projectId": "acme-analytics", "datasetId": "ml", "tableId": "engagement_segments$20261101"}
    assert load["writeDisposition"] == "WRITE_TRUNCATE" and load["sourceFormat"] == "PARQUET"
    assert load["timePartitioning"] == {"type": "DAY", "field": "ds"}
    assert load["hivePartitioningOptions"]["sourceUriPrefix"] == "gs://acme-water-staging/exchange/recipe_engagement/outputs/"
    assert load["sourceUris"] == [f"gs://acme-water-staging/exchange/recipe_engagement/outputs/ds={DS}/*.parquet"]
    to_gcs = rendered("publish.to_gcs")
    assert (to_gcs.bucket, to_gcs.prefix) == ("acme-ml-lake", f"water/recipe_engagement/outputs/ds={DS}/")
    assert to_gcs.dest_gcs == f"gs://acme-water-staging/exchange/recipe_engagement/outputs/ds={DS}/"
