"""The cloud target's lineage (issue #17), offline, for every shipped spec.

- water's own cloud operators (the promote and commit tasks, the pods, Athena's unload and
  counts, the packaging, AutoML and Vertex AI tasks; the gates are water.operators.quality's,
  which read what they check and write nothing) answer the OpenLineage provider's
  listener (`get_openlineage_facets_on_complete`, through the provider's ExtractorManager as
  the listener asks) with ≥1 input and ≥1 output, named as water.lineage names them;
- the task that commits a step (promote, commit, a pod, the counts) carries the step's own
  datasets (the day's partition in their `version` facet), so the step graph joins end to end: every lake dataset a step reads is one an
  earlier step wrote, by namespace and name;
- the provider operators' own lineage, where it needs no API call, names the same datasets
  once water's transformer (water.lineage_names, in every environment's transport) has trimmed
  it: S3 -> GCS (a lake partition), GCS -> S3 (a step's staging), SageMaker training and
  transform (channels and model, from their DescribeJob answers). Provider S3 names carry
  the day's partition (`…/ds=YYYY-MM-DD/…`) and a staged step's `_staging` folder; the events
  sent name the dataset, the day in the `version` facet, and every lake dataset a provider
  task reads is one an earlier step wrote. BigQuery's insert job, BigQuery -> GCS and
  GCS -> BigQuery read their job or table from the API at completion: answered offline here
  (the job resource from the rendered configuration and the step's reads), a bigquery_sql
  step joins warehouse tables -> its staging table -> GCS -> S3 staging -> promote, and a
  publish step's table is water.lineage.warehouse_table's `bigquery` name, the provider's own;
- every pod's environment carries the provider's parent macros, rendered for the task;
- every Glue job injects the provider's parent-job and transport information into its run.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from tests.contract.cloud import (
    CLOUD_ENV,
    DS,
    PIPELINES,
    UPSTREAM_XCOM,
    FakeTI,
    as_run,
    make_context,
    model_artifact,
    spec_of,
    steps,
    task_copy,
    tasks_as_run,
)

LOGICAL_DATE = datetime(2026, 11, 1, 6, tzinfo=UTC)


def ids(datasets) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


class LineageTI(FakeTI):
    """A task instance as the provider's macros read it: its DAG run's logical date, conf and clear number."""

    def __init__(self, pipeline: str, task_id: str, map_index: int = -1) -> None:
        super().__init__(UPSTREAM_XCOM[pipeline], dag_id=pipeline, run_id=f"scheduled__{DS}T06:00:00+00:00")
        self.task_id, self.map_index = task_id, map_index
        self.dag_run = SimpleNamespace(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE, conf={}, clear_number=0)

    def get_template_context(self) -> dict[str, Any]:
        return {"dag_run": self.dag_run}


def lineage_of(task) -> Any:
    """What the provider's listener gets for a finished task: ExtractorManager's answer, which
    asks the operator's own get_openlineage_facets_on_complete."""
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    ti = SimpleNamespace(
        task=task, task_id=task.task_id, dag_id=task.dag_id, try_number=1, map_index=-1, get_template_context=lambda: {"ds": DS}
    )
    dagrun = SimpleNamespace(run_id=f"scheduled__{DS}T06:00:00+00:00", dag_id=task.dag_id)
    return ExtractorManager().extract_metadata(dagrun=dagrun, task=task, task_instance_state="success", task_instance=ti)


def operator_path(task) -> str:
    """The operator a stand-in (a mapped one too) builds where its task runs; "" for water's own."""
    return getattr(task, "operator_path", None) or (getattr(task, "partial_kwargs", None) or {}).get("operator_path") or ""


def own_operators(pipeline: str, cloud_dags) -> list[Any]:
    from water.targets.cloud.operators import ReportsLineage

    return [task for task in tasks_as_run(cloud_dags(pipeline)) if isinstance(task, ReportsLineage)]


# Of water's own operators, the one without datasets of its own: a Vertex AI managed dataset
# has no OpenLineage naming (its task's inputs are the exchange folders the AutoML fit reads).
NO_OWN_LINEAGE = {"TemplatedCreateDatasetOperator"}


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_own_operators_report_inputs_and_outputs(pipeline, cloud_dags):
    """Every task of water's own cloud operators: ≥1 input and ≥1 output, named as water.lineage
    names a dataset (no day, no template left), through the provider's ExtractorManager."""
    checked = 0
    for task in own_operators(pipeline, cloud_dags):
        if type(task).__name__ in NO_OWN_LINEAGE:
            continue
        lineage = lineage_of(task)
        assert lineage.inputs and lineage.outputs, (task.task_id, lineage)
        for namespace, name in ids(lineage.inputs) + ids(lineage.outputs):
            assert namespace in ("bigquery", "file") or re.match(r"^(s3|gs)://[a-z0-9.\-]+$", namespace), (
                task.task_id,
                namespace,
            )
            assert "{{" not in name and "ds=" not in name and not name.endswith("/"), (task.task_id, name)
        for dataset in lineage.inputs + lineage.outputs:  # the day's partition of the dataset
            assert dataset.facets["version"].datasetVersion == f"ds={DS}", (task.task_id, dataset.name)
        checked += 1
    assert checked >= len(spec_of(pipeline).steps) // 2, checked  # the promote, commit, pod and count tasks at least


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_step_lineage_joins_end_to_end(pipeline, cloud_dags, cloud_target):
    """For each step, a task of water's carries the step's datasets (water.lineage.step_datasets)
    where water commits the step (promote, commit, pod, counts, gates); and every lake dataset a
    step reads was written by an earlier step's task, by namespace and name."""
    from water.lineage import step_datasets

    spec = spec_of(pipeline)
    events = [(ids(lineage.inputs), ids(lineage.outputs)) for lineage in map(lineage_of, own_operators(pipeline, cloud_dags))]
    written: set[tuple[str, str]] = set()
    lake_namespace = f"s3://{CLOUD_ENV['WATER_LAKE'].removeprefix('s3://').split('/')[0]}"
    uncovered = []
    for name, step in spec.steps.items():  # the spec's order is the DAG's
        inputs, outputs = step_datasets(spec, cloud_target, name)
        carried = [(i, o) for i, o in events if set(inputs) <= set(i) and set(outputs) <= set(o)]
        if not carried:
            uncovered.append((name, step.kind))
            written.update(outputs)  # reported by the provider's operator (checked below) or water's target-agnostic one
            continue
        for read, (namespace, dataset) in zip(step.inputs(), inputs, strict=True):
            if namespace == lake_namespace and spec.writer(read) is not None:  # not a source of the pipeline
                assert (namespace, dataset) in written, f"{name} reads {dataset}, which no earlier step's task wrote"
        written.update(outputs)
    # drift_guard: water.operators (target-agnostic, its own facets); SageMaker training without
    # gates: the provider's training extractor (test_sagemaker_training_names_the_lake_datasets);
    # publish: S3 -> GCS (test_s3_to_gcs_reads_the_lake_dataset), then GCS -> BigQuery's table
    assert {kind for _, kind in uncovered} <= {"drift_guard", "sagemaker_training", "publish"}, uncovered


@pytest.mark.parametrize(("pipeline", "name"), steps("pod", "sized_postprocess"))
def test_pod_env_carries_the_lineage_parent(pipeline, name, cloud_dags):
    """Every job pod's environment: the provider's parent macros rendered for its task instance
    (OPENLINEAGE_PARENT_ID = namespace/dag.task/run id, the root the DAG run), so the job's
    own events join the task's; with no lineage configured (no macros) they render empty."""
    import airflow.providers.openlineage.plugins.macros as macros

    from water.targets.cloud.target import LINEAGE_ENV

    dag = cloud_dags(pipeline)
    pods = [t for t in dag.tasks if operator_path(t).endswith("SizedPodOperator")]
    # a pod step's own task, or the tiers of the (one) sized step: the pods that are no step's
    pods = (
        [t for t in pods if t.task_id == name]
        if spec_of(pipeline).steps[name].kind == "pod"
        else [t for t in pods if t.task_id not in spec_of(pipeline).steps]
    )
    assert pods, name
    for stand_in in pods:
        ti = LineageTI(pipeline, stand_in.task_id)
        context = {**make_context(pipeline, ti), "task_instance": ti, "macros": SimpleNamespace(OpenLineageProviderPlugin=macros)}
        task = as_run(task_copy(stand_in))
        task.render_template_fields(context)
        env = {var.name: var.value for var in task.env_vars}
        expected = {
            "OPENLINEAGE_NAMESPACE": macros.lineage_job_namespace(),
            "OPENLINEAGE_PARENT_ID": macros.lineage_parent_id(ti),
            "OPENLINEAGE_PARENT_JOB_NAME": f"{pipeline}.{stand_in.task_id}",
            "OPENLINEAGE_PARENT_RUN_ID": macros.lineage_run_id(ti),
            "OPENLINEAGE_ROOT_PARENT_ID": macros.lineage_root_parent_id(ti),
            "OPENLINEAGE_ROOT_PARENT_RUN_ID": macros.lineage_root_run_id(ti),
        }
        assert set(LINEAGE_ENV) == set(expected)
        assert {k: env.get(k) for k in expected} == expected
        assert (
            env["OPENLINEAGE_PARENT_ID"]
            == f"{expected['OPENLINEAGE_NAMESPACE']}/{pipeline}.{stand_in.task_id}/{env['OPENLINEAGE_PARENT_RUN_ID']}"
        )
        assert env["AWS_REGION"] == CLOUD_ENV["WATER_AWS_REGION"]

        disabled = as_run(task_copy(stand_in))
        disabled.render_template_fields({**context, "macros": SimpleNamespace()})
        assert {var.name: var.value for var in disabled.env_vars if var.name in expected} == dict.fromkeys(expected, "")


def glue_tasks(pipeline: str, cloud_dags) -> list[Any]:
    return [as_run(t) for t in cloud_dags(pipeline).tasks if operator_path(t).endswith("GlueJobOperator")]


@pytest.mark.parametrize("pipeline", [p for p in PIPELINES if spec_of(p).steps_of("glue_pyspark")])
def test_glue_job_gets_its_parent_and_never_the_transport(pipeline, cloud_dags, monkeypatch):
    """Each Glue job run's arguments: the provider's spark.openlineage parent (this task's run,
    the DAG run as root), which the OpenLineage Spark listener of the Glue job reads; never the
    deployment's transport, whose API key would then sit in the job run's arguments."""
    import airflow.providers.openlineage.plugins.macros as macros
    import airflow.providers.openlineage.utils.spark as spark_utils
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    # the deployment's transport (helm-values: HTTP), as the provider's listener holds it
    http = HttpTransport(
        HttpConfig(
            url="http://lineage.example:5000", endpoint="api/v1/lineage", auth=ApiKeyTokenProvider({"apiKey": "s3cr3t-key"})
        )
    )
    client = SimpleNamespace(transport=http)
    listener = SimpleNamespace(adapter=SimpleNamespace(get_or_create_openlineage_client=lambda: client))
    monkeypatch.setattr(spark_utils, "get_openlineage_listener", lambda: listener)
    jobs = glue_tasks(pipeline, cloud_dags)
    assert jobs
    for job in jobs:
        assert job.openlineage_inject_parent_job_info and not job.openlineage_inject_transport_info
        ti = LineageTI(pipeline, job.task_id)
        job.render_template_fields(make_context(pipeline, ti))
        args = job._build_script_args({**make_context(pipeline, ti), "task_instance": ti})
        conf = dict(part.split("=", 1) for part in args["--conf"].split(" --conf "))
        assert conf["spark.openlineage.parentJobName"] == f"{pipeline}.{job.task_id}"
        assert conf["spark.openlineage.parentRunId"] == macros.lineage_run_id(ti)
        assert conf["spark.openlineage.rootParentRunId"] == macros.lineage_root_run_id(ti)
        assert conf["spark.openlineage.rootParentJobName"] == pipeline
        assert not any(key.startswith("spark.openlineage.transport") for key in conf)
        assert "s3cr3t-key" not in repr(args) and "lineage.example" not in repr(args)
        assert {k: v for k, v in args.items() if k != "--conf"} == job.script_args


# --- the provider operators' own lineage, offline, as water's transformer sends it -----------

TRANSFERS = ("S3ToGCSOperator", "GCSToS3Operator")
SAGEMAKER = ("SageMakerTrainingOperator", "SageMakerTransformOperator")


def lake_ids(target, pipeline: str, *datasets: str) -> list[tuple[str, str]]:
    from water.lineage import lake_dataset

    return [lake_dataset(target.lake_root, pipeline, d) for d in datasets]


def provider_tasks(pipeline: str, cloud_dags, *suffixes: str) -> list[Any]:
    return [t for t in cloud_dags(pipeline).tasks if operator_path(t).endswith(suffixes)]


def provider_lineage(pipeline: str, stand_in) -> Any:
    """A provider operator's own lineage, offline: the GCS <-> S3 transfers' on start (no API);
    SageMaker training's and transform's on complete, from what execute keeps of their
    DescribeJob answers (built here from the rendered request and the model's XCom)."""
    spec = spec_of(pipeline)
    step = spec.steps[stand_in.task_id.split(".")[0]]
    task = as_run(task_copy(stand_in))
    task.render_template_fields(make_context(pipeline))
    if operator_path(stand_in).endswith(TRANSFERS):
        return task.get_openlineage_facets_on_start()
    if operator_path(stand_in).endswith("SageMakerTrainingOperator"):
        task.serialized_training_data = {
            "InputDataConfig": task.config["InputDataConfig"],
            "ModelArtifacts": {"S3ModelArtifacts": model_artifact(pipeline, stand_in.task_id.split(".")[0])},
        }
    else:
        task.serialized_transform = task.config
        task.serialized_model = {"PrimaryContainer": {"ModelDataUrl": model_artifact(pipeline, spec.writer(step.model) or "")}}
    return task.get_openlineage_facets_on_complete(None)


def as_sent(lineage) -> Any:
    """The task's event with the provider's datasets as every environment's transport sends it:
    through water's transformer (water.lineage_names.LakeDatasetNames)."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.uuid import generate_new_uuid

    from water.lineage_names import LakeDatasetNames

    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=LOGICAL_DATE.isoformat(),
        run=Run(runId=str(generate_new_uuid())),
        job=Job(namespace="water", name="task"),
        inputs=copy.deepcopy(lineage.inputs),
        outputs=copy.deepcopy(lineage.outputs),
    )
    sent = LakeDatasetNames({}).transform(event)
    for dataset in sent.inputs + sent.outputs:  # the day the task touched, as water's own operators carry it
        if dataset.namespace.startswith(("s3://", "gs://")):
            assert dataset.facets["version"].datasetVersion == f"ds={DS}", dataset.name
    return sent


def sorted_ids(datasets) -> list[tuple[str, str]]:
    return sorted(ids(datasets))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_s3_to_gcs_reads_the_lake_dataset(pipeline, cloud_dags, cloud_target):
    """S3ToGCSOperator's own lineage (on start, no API), as sent: each copy reads one of its
    step's lake datasets, by water's name; together its step's copies read all of them."""
    from water.spec import is_table

    spec = spec_of(pipeline)
    read: dict[str, list[tuple[str, str]]] = {}
    for stand_in in provider_tasks(pipeline, cloud_dags, "S3ToGCSOperator"):
        name = stand_in.task_id.split(".")[0]
        sent = as_sent(provider_lineage(pipeline, stand_in))
        (dataset,) = ids(sent.inputs)
        assert dataset in lake_ids(cloud_target, pipeline, *spec.steps[name].inputs()), (stand_in.task_id, dataset)
        read.setdefault(name, []).append(dataset)
        assert sent.outputs and all(d.namespace.startswith("gs://") for d in sent.outputs)
    for name, datasets in read.items():
        step_reads = [d for d in spec.steps[name].inputs() if not is_table(d)]
        assert sorted(set(datasets)) == sorted(lake_ids(cloud_target, pipeline, *step_reads)), name


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_gcs_to_s3_writes_the_step_dataset(pipeline, cloud_dags, cloud_target):
    """GCSToS3Operator's own lineage (on start, no API), as sent: its output, a step's staging,
    is exactly the dataset the step's promote task commits, by water's name."""
    tasks = provider_tasks(pipeline, cloud_dags, "GCSToS3Operator")
    spec = spec_of(pipeline)
    assert tasks or not spec.steps_of("bigquery_sql")
    for stand_in in tasks:
        step = spec.steps[stand_in.task_id.split(".")[0]]
        sent = as_sent(provider_lineage(pipeline, stand_in))
        assert ids(sent.outputs) == lake_ids(cloud_target, pipeline, *step.outputs())


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_training"))
def test_sagemaker_training_names_the_lake_datasets(pipeline, name, cloud_dags, cloud_target):
    """SageMakerTrainingOperator's own lineage, as sent: the channels' and the model's lake
    datasets, exactly the step's (one each, the model's objects merged into its dataset)."""
    step = spec_of(pipeline).steps[name]
    sent = as_sent(provider_lineage(pipeline, cloud_dags(pipeline).get_task(f"{name}.fit")))
    assert sorted_ids(sent.inputs) == sorted(lake_ids(cloud_target, pipeline, *step.inputs()))
    assert ids(sent.outputs) == lake_ids(cloud_target, pipeline, *step.outputs())


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_transform"))
def test_sagemaker_transform_names_the_lake_datasets(pipeline, name, cloud_dags, cloud_target):
    """SageMakerTransformOperator's own lineage, as sent: the input partition is the step's input
    dataset, the staged output its written one (the provider names a model only when it is a
    model package, which a transform step's model is not)."""
    step = spec_of(pipeline).steps[name]
    sent = as_sent(provider_lineage(pipeline, cloud_dags(pipeline).get_task(f"{name}.transform")))
    assert ids(sent.inputs) == lake_ids(cloud_target, pipeline, step.input)
    assert ids(sent.outputs) == lake_ids(cloud_target, pipeline, *step.outputs())


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_provider_tasks_read_what_earlier_steps_wrote(pipeline, cloud_dags, cloud_target):
    """The graph joins through the provider operators too: every lake dataset a provider task
    reads (as sent) is a dataset of the pipeline, and one an earlier step wrote unless it is a
    source of the pipeline, by namespace and name."""
    from water.lineage import step_datasets
    from water.spec import is_table

    spec = spec_of(pipeline)
    datasets = {d for step in spec.steps.values() for d in step.inputs() + step.outputs() if not is_table(d)}
    named = dict(zip(lake_ids(cloud_target, pipeline, *datasets), datasets, strict=True))
    tasks = provider_tasks(pipeline, cloud_dags, *TRANSFERS, *SAGEMAKER)
    written: set[tuple[str, str]] = set()
    checked = 0
    for name in spec.steps:  # the spec's order is the DAG's
        for stand_in in [t for t in tasks if t.task_id.split(".")[0] == name]:
            for dataset in ids(as_sent(provider_lineage(pipeline, stand_in)).inputs):
                if not dataset[0].startswith("s3://"):
                    continue  # an exchange folder on GCS: the step's own
                assert dataset in named, f"{stand_in.task_id} reads {dataset}: not a dataset of {pipeline}"
                if spec.writer(named[dataset]) is not None:
                    assert dataset in written, f"{stand_in.task_id} reads {dataset}, which no earlier step wrote"
                checked += 1
        written.update(step_datasets(spec, cloud_target, name)[1])
    assert checked or not tasks


class TableAnswer:
    """A BigQuery client offline: get_table answers the table's resource (the table itself for a
    `$YYYYMMDD` partition decorator, as the API does), with one column."""

    def get_table(self, table: str):
        from google.cloud.bigquery import SchemaField, Table

        return Table(table.partition("$")[0], schema=[SchemaField("id", "STRING")])


@pytest.mark.parametrize(("pipeline", "name"), steps("publish"))
def test_gcs_to_bigquery_writes_the_warehouse_table(pipeline, name, cloud_dags, cloud_target, monkeypatch):
    """GCSToBigQueryOperator's own lineage (on complete: it reads the table from the API, answered
    offline here): its output is the published table as water.lineage names it, so the publish
    step's output joins the warehouse table's readers."""
    from unittest import mock

    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    from water.lineage import step_datasets

    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", '{"conn_type": "google_cloud_platform"}')  # no credentials: no call
    spec = spec_of(pipeline)
    task = as_run(task_copy(cloud_dags(pipeline).get_task(f"{name}.load")))
    task.render_template_fields(make_context(pipeline))
    with mock.patch.object(BigQueryHook, "get_client", return_value=TableAnswer()):
        lineage = task.get_openlineage_facets_on_complete(None)
    _, outputs = step_datasets(spec, cloud_target, name)
    assert ids(lineage.outputs) == outputs
    assert lineage.inputs and all(
        d.namespace == f"gs://{CLOUD_ENV['WATER_GCS_STAGING'][5:].split('/')[0]}" for d in lineage.inputs
    )


# --- a bigquery_sql step: its insert job and export, from their API answers --------------------

QUERY_JOB_ID = "airflow_water_query_job"  # what execute keeps of the job it ran (job_id)


class JobAnswer(TableAnswer):
    """A BigQuery client offline that also answers get_job: the given job resource, as the
    client's QueryJob (what the insert job's lineage reads `_properties` of)."""

    project = CLOUD_ENV["WATER_GCP_PROJECT"]

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job

    def get_job(self, job_id: str, **_: Any):
        from google.cloud.bigquery import QueryJob

        assert job_id == self.job["jobReference"]["jobId"], job_id
        return QueryJob.from_api_repr(copy.deepcopy(self.job), self)


def query_job_answer(task, reads: list[str]) -> dict[str, Any]:
    """The job resource BigQuery answers for the rendered insert job once DONE: its configuration
    (jobType QUERY) and, in statistics.query.referencedTables, the tables its SQL read: the
    step's `reads` (`dataset.table`, in the job's project, as BigQuery resolves them)."""
    referenced = [dict(zip(("datasetId", "tableId"), read.split("."), strict=True)) for read in reads]
    return {
        "kind": "bigquery#job",
        "jobReference": {"projectId": task.project_id, "jobId": QUERY_JOB_ID, "location": task.location},
        "configuration": {**copy.deepcopy(task.configuration), "jobType": "QUERY"},
        "status": {"state": "DONE"},
        "statistics": {
            "query": {
                "statementType": "SELECT",
                "referencedTables": [{"projectId": task.project_id, **table} for table in referenced],
            }
        },
    }


def rendered_task(pipeline: str, cloud_dags, task_id: str) -> Any:
    task = as_run(task_copy(cloud_dags(pipeline).get_task(task_id)))
    task.render_template_fields(make_context(pipeline))
    return task


def bigquery_lineage(task, client: TableAnswer, monkeypatch) -> Any:
    """A BigQuery operator's own lineage on complete, its client answered offline (no credentials:
    no call); an API error the provider swallowed fails here."""
    from unittest import mock

    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", '{"conn_type": "google_cloud_platform"}')
    with mock.patch.object(BigQueryHook, "get_client", return_value=client):
        lineage = task.get_openlineage_facets_on_complete(None)
    assert "errorMessage" not in lineage.run_facets, lineage.run_facets.get("errorMessage")
    return lineage


def insert_job_lineage(pipeline: str, name: str, cloud_dags, monkeypatch) -> Any:
    """The `query` task's lineage, as sent, from the job BigQuery answers for its rendered configuration."""
    task = rendered_task(pipeline, cloud_dags, f"{name}.query")
    task.job_id = QUERY_JOB_ID
    job = query_job_answer(task, spec_of(pipeline).steps[name].reads)
    return as_sent(bigquery_lineage(task, JobAnswer(job), monkeypatch))


@pytest.mark.parametrize(("pipeline", "name"), steps("bigquery_sql"))
def test_bigquery_insert_job_reads_the_step_tables(pipeline, name, cloud_dags, cloud_target, monkeypatch):
    """BigQueryInsertJobOperator's own lineage (on complete: its job and tables from the API,
    answered offline from its rendered configuration), as sent: its inputs are exactly the step's
    warehouse tables as water.lineage names them, its output the staging table the export reads."""
    from water.lineage import step_datasets

    sent = insert_job_lineage(pipeline, name, cloud_dags, monkeypatch)
    inputs, _ = step_datasets(spec_of(pipeline), cloud_target, name)
    export = rendered_task(pipeline, cloud_dags, f"{name}.export")
    assert sorted_ids(sent.inputs) == sorted(inputs)
    assert ids(sent.outputs) == [("bigquery", export.source_project_dataset_table)]


@pytest.mark.parametrize(("pipeline", "name"), steps("bigquery_sql"))
def test_bigquery_step_joins_through_gcs_to_the_lake(pipeline, name, cloud_dags, cloud_target, monkeypatch):
    """BigQueryToGCSOperator's own lineage (on complete: its source table from the API), as sent:
    it reads the table the insert job wrote and writes the exchange folder (water.lineage's name
    of it) the GCS -> S3 copy reads, whose staging is the dataset the promote task commits:
    warehouse tables -> staging table -> GCS -> S3 staging -> promote, by namespace and name."""
    from water.lineage import lake_dataset, step_datasets

    inputs, outputs = step_datasets(spec_of(pipeline), cloud_target, name)
    query = insert_job_lineage(pipeline, name, cloud_dags, monkeypatch)
    export = as_sent(bigquery_lineage(rendered_task(pipeline, cloud_dags, f"{name}.export"), TableAnswer(), monkeypatch))
    to_s3 = as_sent(provider_lineage(pipeline, cloud_dags(pipeline).get_task(f"{name}.to_s3")))
    promote = lineage_of(as_run(cloud_dags(pipeline).get_task(f"{name}.promote")))
    assert ids(export.inputs) == ids(query.outputs)
    assert ids(export.outputs) == ids(to_s3.inputs)
    assert ids(to_s3.inputs) == [lake_dataset(CLOUD_ENV["WATER_GCS_STAGING"], pipeline, spec_of(pipeline).steps[name].writes)]
    assert ids(to_s3.outputs) == ids(promote.outputs) == outputs
    assert sorted_ids(promote.inputs) == sorted_ids(query.inputs) == sorted(inputs)
