"""The cloud target (WATER_TARGET=cloud): every stage on the real provider operators.

BigQuery -> GCS -> S3 extract, Glue features, Athena training set, Kubernetes pods,
SageMaker training and batch transform, Vertex AI custom training, AutoML tabular and batch
prediction (their data through the GCS exchange, water.targets.cloud.vertex), Athena counts,
S3 -> GCS -> BigQuery publish. The lake is S3 (`<WATER_LAKE>/<pipeline>/<dataset>/ds=YYYY-MM-DD/`,
water.lake). Each stage writes aside (`<pipeline>/<dataset>/_staging/ds=…`) and a promote task
swaps the result into its partition, so a failed step leaves the previous good partition in place.

Deployment-wide settings come from the environment, read at parse time (no network, no
database); `CloudSettings.from_environment()` names every missing or malformed variable.
Connections are referenced by id only; credentials live in the connections (or the pod's
workload identity), never here.

| Variable | Meaning | Example |
|---|---|---|
| `WATER_LAKE` | Lake root on S3 (`s3://bucket/prefix`) | `s3://acme-ml-lake/water` |
| `WATER_AWS_REGION` | AWS region of the lake, Glue, Athena and SageMaker | `eu-west-1` |
| `WATER_AWS_CONN_ID` | Airflow connection id for AWS (default `aws_default`) | `aws_default` |
| `WATER_GCP_CONN_ID` | Airflow connection id for Google Cloud (default `google_cloud_default`) | `google_cloud_default` |
| `WATER_GCP_PROJECT` | Google Cloud project that runs the BigQuery and Vertex AI jobs | `acme-analytics` |
| `WATER_BIGQUERY_LOCATION` | BigQuery location of the source, staging and output datasets, where every BigQuery job runs and is polled (default `US`) | `EU`, `europe-west1` |
| `WATER_BQ_STAGING_DATASET` | BigQuery dataset for the extract's per-day tables (set a default table expiration) | `water_staging` |
| `WATER_GCS_STAGING` | GCS prefix for BigQuery exports and loads, and the exchange of the Vertex AI steps (`gs://bucket/prefix`) | `gs://acme-water-staging/exchange` |
| `WATER_GLUE_ROLE` | IAM role name the Glue jobs run as | `water-glue` |
| `WATER_GLUE_SCRIPTS` | S3 prefix the Glue scripts are uploaded to | `s3://acme-ml-artifacts/water/glue` |
| `WATER_ATHENA_OUTPUT` | S3 prefix for Athena query results | `s3://acme-ml-artifacts/water/athena` |
| `WATER_SAGEMAKER_ROLE_ARN` | IAM role ARN SageMaker training and models run as | `arn:aws:iam::123456789012:role/water-sagemaker` |
| `WATER_SAGEMAKER_CODE` | S3 prefix for the script-mode `sourcedir.tar.gz` | `s3://acme-ml-artifacts/water/sagemaker` |
| `WATER_VERTEX_REGION` | Google Cloud region the Vertex AI jobs, datasets and models are in (in `WATER_GCP_PROJECT`); needed only where a pipeline has a Vertex AI step | `europe-west4` |
| `WATER_VERTEX_SERVICE_ACCOUNT` | Service account email the Vertex AI custom and batch prediction jobs run as (docs/deploy.md, "Vertex AI"); needed only where a pipeline has a Vertex AI step | `water-vertex@acme-analytics.iam.gserviceaccount.com` |
| `WATER_K8S_NAMESPACE` | Kubernetes namespace of the job pods | `water-jobs` |
| `WATER_K8S_SERVICE_ACCOUNT` | Service account of the job pods, their own (docs/k8s/jobs-service-account.yaml): the lake by workload identity, no Airflow role | `water-jobs` |
| `WATER_JOB_IMAGE` | Repository of the job image (the Dockerfile's `jobs` stage) | `registry.example/water-jobs` |
| `WATER_IMAGE_TAG` | Tag of the job image to run | `2026.11.1` |
| `WATER_DEFERRABLE` | `true` to run long waits on the triggerer (operators that support it) | `true` |

Lineage (OpenLineage, issue #17): the provider operators report their own datasets; water's
own operators report the ones the target gives them (`lineage_datasets`, named by
water.lineage), the promote or commit task of a step its inputs and its dataset, a pod its
reads and writes. Job pods get the task's OpenLineage parent in their environment
(LINEAGE_ENV); Glue jobs get the provider's parent-job and transport injection (--conf).

Catalog prerequisites (Athena): each pipeline's Athena SQL reads its lake datasets as
tables of the pipeline's own Glue database (`catalog_database` in its spec, by default
`water_<pipeline>`): external tables over `<lake>/<pipeline>/<dataset>/`, partitioned by
`ds` string with partition projection. The predictions table of an inference_stats step is
created by that step itself (`CREATE EXTERNAL TABLE IF NOT EXISTS`, see
water.targets.cloud.operators.predictions_table_ddl).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from water import paths
from water.lake import Lake
from water.lineage import FILE, DatasetId, dataset_identity, lake_dataset, step_datasets
from water.quality import Gates
from water.spec import (
    AthenaSqlStep,
    BigQuerySqlStep,
    GluePySparkStep,
    InferenceStatsStep,
    PipelineSpec,
    Placement,
    PodStep,
    PublishStep,
    Route,
    SageMakerTrainingStep,
    SageMakerTransformStep,
    SizedPostprocessStep,
    Tier,
    VertexAutoMLTabularStep,
    VertexBatchPredictionStep,
    VertexCustomTrainingStep,
)
from water.targets import common
from water.targets.base import Built, Registry, Target, external, per_shard
from water.targets.cloud import vertex
from water.targets.cloud.lazy import LazyOperator, OperatorRef

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, TaskGroup, XComArg
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from water.targets.cloud.operators import AthenaCounter, S3PromotePartitionOperator, TaskDatasets

# The staged kinds: each writes one dataset aside, then a promote task swaps it in.
StagedStep = BigQuerySqlStep | AthenaSqlStep | GluePySparkStep | SageMakerTransformStep | VertexBatchPredictionStep

REGISTRY = Registry("cloud")

# The operators the cloud target runs that come with a provider's client stack, by import
# path: parsing the DAG file imports none of them, each task imports its own where it runs
# (water.targets.cloud.lazy). Extra links (name -> XCom key) and colours are the classes' own.
BIGQUERY_INSERT_JOB = OperatorRef(
    "airflow.providers.google.cloud.operators.bigquery.BigQueryInsertJobOperator",
    {"BigQuery Table": "bigquery_table", "BigQuery Job Detail": "bigquery_job_detail"},
    "#A1BBFF",
)
BIGQUERY_DELETE_TABLE = OperatorRef(
    "airflow.providers.google.cloud.operators.bigquery.BigQueryDeleteTableOperator", {}, "#81A0FF"
)
BIGQUERY_TO_GCS = OperatorRef(
    "airflow.providers.google.cloud.transfers.bigquery_to_gcs.BigQueryToGCSOperator",
    {"BigQuery Table": "bigquery_table"},
    "#e4e6f0",
)
GCS_TO_BIGQUERY = OperatorRef(
    "airflow.providers.google.cloud.transfers.gcs_to_bigquery.GCSToBigQueryOperator",
    {"BigQuery Table": "bigquery_table"},
    "#f0eee4",
)
GCS_DELETE_OBJECTS = OperatorRef("airflow.providers.google.cloud.operators.gcs.GCSDeleteObjectsOperator")
GCS_TO_S3 = OperatorRef("airflow.providers.amazon.aws.transfers.gcs_to_s3.GCSToS3Operator", {}, "#f0eee4")
S3_TO_GCS = OperatorRef("airflow.providers.google.cloud.transfers.s3_to_gcs.S3ToGCSOperator", {}, "#e09411")
S3_DELETE_OBJECTS = OperatorRef("airflow.providers.amazon.aws.operators.s3.S3DeleteObjectsOperator")
LOCAL_TO_S3 = OperatorRef("airflow.providers.amazon.aws.transfers.local_to_s3.LocalFilesystemToS3Operator")
GLUE_JOB = OperatorRef(
    "airflow.providers.amazon.aws.operators.glue.GlueJobOperator",
    {"AWS Glue Job Run Details": "_link_GlueJobRunDetailsLink"},
    "#ededed",
)
SAGEMAKER_TRAINING = OperatorRef("airflow.providers.amazon.aws.operators.sagemaker.SageMakerTrainingOperator", {}, "#ededed")
SAGEMAKER_MODEL = OperatorRef("airflow.providers.amazon.aws.operators.sagemaker.SageMakerModelOperator", {}, "#ededed")
SAGEMAKER_TRANSFORM = OperatorRef(
    "airflow.providers.amazon.aws.operators.sagemaker.SageMakerTransformOperator",
    {"Amazon SageMaker Transform Job Details": "_link_SageMakerTransformJobLink"},
    "#ededed",
)
VERTEX_CUSTOM_JOB = OperatorRef(
    "airflow.providers.google.cloud.operators.vertex_ai.custom_job.CreateCustomJobOperator",
    {"Vertex AI Custom Job": "custom_job_conf"},
)
VERTEX_DATASET = OperatorRef("water.targets.cloud.vertex_operators.TemplatedCreateDatasetOperator", {"Dataset": "dataset_conf"})
VERTEX_AUTOML_TABULAR = OperatorRef(
    "airflow.providers.google.cloud.operators.vertex_ai.auto_ml.CreateAutoMLTabularTrainingJobOperator",
    {"Vertex AI Model": "model_conf", "Vertex AI Training": "training_conf"},
)
VERTEX_BATCH_PREDICTION = OperatorRef(
    "water.targets.cloud.vertex_operators.VertexBatchPredictionOperator", {"Batch Prediction Job": "batch_prediction_job_conf"}
)
ATHENA_UNLOAD = OperatorRef(
    "water.targets.cloud.extended.AthenaUnloadOperator", {"Query Results": "_link_AthenaQueryResultsLink"}, "#44b5e2"
)
SIZED_POD = OperatorRef("water.targets.cloud.extended.SizedPodOperator")

# IAM actions the cloud target's operators and hooks call; docs/iam/airflow-role-policy.json grants exactly these (tests/contract/test_iam.py).
AWS_ACTIONS = sorted(
    {
        # S3: lake partitions, staging, transfers, Glue scripts, sourcedir, Athena results
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        # Glue: GlueJobOperator (get/create/update the job, run, poll, stop on kill, durable re-attach)
        "glue:BatchStopJobRun",
        "glue:CreateJob",
        "glue:GetJob",
        "glue:GetJobRun",
        "glue:GetJobRuns",
        "glue:GetTags",
        "glue:StartJobRun",
        "glue:TagResource",
        "glue:UntagResource",
        "glue:UpdateJob",
        # Glue Data Catalog, as Athena queries and the predictions table DDL use it
        "glue:CreateTable",
        "glue:GetDatabase",
        "glue:GetPartitions",
        "glue:GetTable",
        # Athena: queries, polling, results, cancel on kill
        "athena:GetQueryExecution",
        "athena:GetQueryResults",
        "athena:StartQueryExecution",
        "athena:StopQueryExecution",
        # SageMaker: training, model, batch transform (incl. the operators' exists-checks)
        "sagemaker:AddTags",
        "sagemaker:CreateModel",
        "sagemaker:CreateTrainingJob",
        "sagemaker:CreateTransformJob",
        "sagemaker:DescribeModel",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:DescribeTransformJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:StopTransformJob",
        # CloudWatch Logs: SageMakerTrainingOperator(print_log=True) tails the job's log
        "logs:DescribeLogStreams",
        "logs:GetLogEvents",
        # IAM: GlueJobHook resolves the role name; Glue and SageMaker are handed their roles
        "iam:GetRole",
        "iam:PassRole",
    }
)

# AWS accounts serving the SageMaker scikit-learn framework image, per region.
SKLEARN_IMAGE_ACCOUNTS = {
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-south-1": "720646828776",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ca-central-1": "341280168497",
    "eu-central-1": "492215442770",
    "eu-north-1": "662702820516",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}


class SettingsError(ValueError):
    """A missing or malformed cloud setting; the message names each environment variable."""


_S3 = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?$"
_GS = r"^gs://[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9](/[^\s]*)?$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"


@dataclass(frozen=True)
class CloudSettings:
    """The deployment's cloud settings; see the table in this module's docstring."""

    lake: str
    aws_region: str
    gcp_project: str
    bq_staging_dataset: str
    gcs_staging: str
    glue_role: str
    glue_scripts: str
    athena_output: str
    sagemaker_role_arn: str
    sagemaker_code: str
    k8s_namespace: str
    k8s_service_account: str
    job_image: str
    image_tag: str
    aws_conn_id: str = "aws_default"
    gcp_conn_id: str = "google_cloud_default"
    deferrable: bool = False
    bigquery_location: str = "US"
    # Only a deployment whose pipelines have Vertex AI steps needs these (CloudTarget.vertex_settings).
    vertex_region: str | None = None
    vertex_service_account: str | None = None

    # field -> (validation regex, what it should look like); a class constant, not a field
    FORMATS: ClassVar[dict[str, tuple[str, str]]] = {
        "lake": (_S3, "s3://bucket/prefix"),
        "aws_region": (r"^[a-z]{2}(-[a-z]+)+-\d$", "an AWS region such as eu-west-1"),
        "gcp_project": (r"^[a-z][a-z0-9\-]{4,28}[a-z0-9]$", "a Google Cloud project id"),
        "bq_staging_dataset": (r"^[A-Za-z0-9_]{1,1024}$", "a BigQuery dataset id (letters, digits, _)"),
        "gcs_staging": (_GS, "gs://bucket/prefix"),
        "glue_role": (r"^[\w+=,.@\-]{1,64}$", "an IAM role name"),
        "glue_scripts": (_S3, "s3://bucket/prefix"),
        "athena_output": (_S3, "s3://bucket/prefix"),
        "sagemaker_role_arn": (r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]+$", "an IAM role ARN"),
        "sagemaker_code": (_S3, "s3://bucket/prefix"),
        "vertex_region": (r"^[a-z]+-[a-z]+\d+$", "a Google Cloud region such as europe-west4"),
        "vertex_service_account": (
            r"^[a-z][a-z0-9\-]{4,28}[a-z0-9]@[a-z][a-z0-9\-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$",
            "a service account email (NAME@PROJECT.iam.gserviceaccount.com)",
        ),
        "k8s_namespace": (r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "a Kubernetes namespace"),
        "k8s_service_account": (r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", "a Kubernetes service account name"),
        "job_image": (r"^[^\s:@]+(:\d+)?(/[^\s:@]+)*$", "an image repository without a tag"),
        "image_tag": (r"^[\w][\w.\-]{0,127}$", "an image tag"),
        "aws_conn_id": (_NAME, "an Airflow connection id"),
        "gcp_conn_id": (_NAME, "an Airflow connection id"),
        "bigquery_location": (r"^(US|EU|[a-z]+-[a-z]+\d+)$", "a BigQuery location such as US, EU or europe-west1"),
    }

    @staticmethod
    def variable(field: str) -> str:
        return f"WATER_{field.upper()}"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CloudSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems = []
        for f in fields(cls):
            name = cls.variable(f.name)
            raw = (env.get(name) or "").strip()
            if not raw:
                if f.default is MISSING:
                    problems.append(f"{name} is not set (the cloud target needs it; see water/targets/cloud/target.py)")
                continue
            if f.name == "deferrable":
                if raw.lower() not in ("true", "false"):
                    problems.append(f"{name}={raw!r} must be true or false")
                values[f.name] = raw.lower() == "true"
                continue
            pattern, shape = cls.FORMATS[f.name]
            if not re.match(pattern, raw):
                problems.append(f"{name}={raw!r} is not {shape}")
            values[f.name] = raw.rstrip("/") if raw.startswith(("s3://", "gs://")) else raw
        if problems:
            raise SettingsError("cloud target settings (WATER_TARGET=cloud):\n  " + "\n  ".join(problems))
        return cls(**values)

    @property
    def job_image_ref(self) -> str:
        return f"{self.job_image}:{self.image_tag}"


@cache
def _ecr_domain(region: str) -> str:
    """The ECR domain suffix of the region's partition, from botocore's own partition data
    (data/partitions.json), read as botocore's resolver reads it but without importing
    botocore, which the DAG file would pay at every parse."""
    found = importlib.util.find_spec("botocore")
    assert found is not None and found.submodule_search_locations, "botocore is installed with the Amazon provider"
    (botocore,) = found.submodule_search_locations
    for partition in json.loads((Path(botocore) / "data" / "partitions.json").read_text())["partitions"]:
        if region in partition["regions"] or re.match(partition["regionRegex"], region):
            dns_suffix: str = partition["outputs"]["dnsSuffix"]
            return dns_suffix
    raise SettingsError(f"WATER_AWS_REGION={region!r} is not a region botocore knows")


def sklearn_image(region: str, framework_version: str) -> str:
    """The SageMaker scikit-learn framework image (CPU, Python 3) for the region."""
    account = SKLEARN_IMAGE_ACCOUNTS.get(region)
    if account is None:
        raise SettingsError(
            f"WATER_AWS_REGION={region!r}: no SageMaker scikit-learn image account known for this region; "
            f"known regions: {', '.join(sorted(SKLEARN_IMAGE_ACCOUNTS))} (add it to SKLEARN_IMAGE_ACCOUNTS "
            "in water/targets/cloud/target.py)"
        )
    return f"{account}.dkr.ecr.{region}.{_ecr_domain(region)}/sagemaker-scikit-learn:{framework_version}-cpu-py3"


def sagemaker_name(pipeline: str, kind: str) -> str:
    """A SageMaker job/model name unique per ds and try: [a-zA-Z0-9-], at most 63 characters
    even after the operators append a -<timestamp> to a name that already exists."""
    stem = re.sub(r"[^a-zA-Z0-9]+", "-", f"water-{pipeline}-{kind}").strip("-")[:32].rstrip("-")
    return f"{stem}-{{{{ ds_nodash }}}}-{{{{ ti.try_number }}}}"


def script_mode_hyperparameters(
    hyperparameters: Mapping[str, Any], program: str, submit_directory: str, region: str
) -> dict[str, str]:
    """Hyperparameters as the SageMaker Python SDK sends them in script mode: JSON-encoded strings."""
    encoded = {str(k): json.dumps(v) for k, v in hyperparameters.items()}
    return {
        **encoded,
        "sagemaker_program": json.dumps(program),
        "sagemaker_submit_directory": json.dumps(submit_directory),
        "sagemaker_region": json.dumps(region),
        "sagemaker_container_log_level": "20",
    }


def glue_job_arguments(args: Mapping[str, Any]) -> dict[str, str]:
    """The Glue job's `--name value` arguments (water.targets.local.engines.glue.glue_arguments passes the same)."""
    return {f"--{name}": str(value).lower() if isinstance(value, bool) else str(value) for name, value in args.items()}


def bind_ds(sql: str, value: str) -> str:
    """Trino SQL with each `?` outside strings, quoted names and comments replaced by `value`.

    Athena's AthenaOperator has no ExecutionParameters; `value` is a SQL literal that water
    writes itself ("'{{ ds }}'"), never user input.
    """
    out, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c and j + 1 < n and sql[j + 1] == c:
                    j += 2  # an escaped quote
                elif sql[j] == c:
                    break
                else:
                    j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
        elif c == "?":
            out.append(value)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def unload_query(select: str, location: str) -> str:
    """Athena UNLOAD of a SELECT to Parquet files under `location` (which must be empty)."""
    body = select.strip().rstrip(";").strip()
    return f"UNLOAD (\n{body}\n)\nTO '{location.rstrip('/')}/'\nWITH (format = 'PARQUET', compression = 'SNAPPY')"


@dataclass(frozen=True)
class CloudTarget(Target):
    settings: CloudSettings
    name: str = "cloud"
    registry: ClassVar[Registry] = REGISTRY

    @classmethod
    def from_environment(cls) -> CloudTarget:
        return cls(settings=CloudSettings.from_environment())

    # --- what target-agnostic code (drift guard) needs ---------------------------------------

    @property
    def lake_root(self) -> str:
        return self.settings.lake

    @property
    def storage_conn_id(self) -> str:
        return self.settings.aws_conn_id

    # --- helpers ---------------------------------------------------------------------------

    def _lake(self, spec: PipelineSpec) -> Lake:
        return Lake(self.settings.lake, spec.name)

    def _partition(self, spec: PipelineSpec, dataset: str) -> str:
        return self._lake(spec).uri(dataset, "{{ ds }}")

    def _staging(self, spec: PipelineSpec, dataset: str) -> str:
        """Where a stage writes aside: inside its dataset (the same IAM scope), under a `_`
        folder that Athena and the partition readers skip."""
        return self._lake(spec).uri(self._staging_dataset(dataset), "{{ ds }}")

    @staticmethod
    def _staging_dataset(dataset: str) -> str:
        return f"{dataset}/_staging"

    def _aws(self) -> dict[str, Any]:
        return {"aws_conn_id": self.settings.aws_conn_id, "region_name": self.settings.aws_region}

    def _bigquery(self) -> dict[str, Any]:
        """Of every BigQuery operator: a job outside the US multi-region is found (and polled
        by the triggerer) only in its location."""
        return {"gcp_conn_id": self.settings.gcp_conn_id, "location": self.settings.bigquery_location}

    def _gcs(self, spec: PipelineSpec, dataset: str) -> tuple[str, str]:
        """(bucket, object prefix ending in /) of a dataset's exchange folder on GCS."""
        bucket, _, prefix = self.settings.gcs_staging.removeprefix("gs://").partition("/")
        path = "/".join(p for p in (prefix, spec.name, dataset, "ds={{ ds }}") if p)
        return bucket, f"{path}/"

    def _clear_s3(self, uri: str, **kwargs: Any) -> LazyOperator:
        from water.targets.cloud.operators import split_s3_uri

        bucket, key = split_s3_uri(uri)
        return S3_DELETE_OBJECTS(
            task_id="clear_staging", bucket=bucket, prefix=f"{key}/", aws_conn_id=self.settings.aws_conn_id, **kwargs
        )

    def lineage(self, spec: PipelineSpec, inputs: list[str], outputs: list[str]) -> TaskDatasets:
        """(inputs, outputs) of a task by the tables and lake datasets it reads and writes, as
        water.lineage names them on this target."""
        return (
            [dataset_identity(self, spec.name, name) for name in inputs],
            [dataset_identity(self, spec.name, name) for name in outputs],
        )

    def _promote(self, spec: PipelineSpec, name: str, **kwargs: Any) -> S3PromotePartitionOperator:
        """The promote task of step `name`: its staging swapped into its partition. Its lineage
        is the step's (inputs -> the dataset it commits): the step's datasets in one event,
        whatever its provider operators report by themselves."""
        from water.targets.cloud.operators import S3PromotePartitionOperator

        (dataset,) = spec.steps[name].outputs()  # a staged step writes one dataset
        return S3PromotePartitionOperator(
            task_id="promote",
            sources=[self._staging(spec, dataset)],
            destination=self._partition(spec, dataset),
            aws_conn_id=self.settings.aws_conn_id,
            lineage_datasets=step_datasets(spec, self, name),
            **kwargs,
        )

    def _checked_promote(self, spec: PipelineSpec, name: str, step: StagedStep, **kwargs: Any) -> BaseOperator:
        """The promote task of a staged step, after a `check` task of its gates on the staged
        output when it has any: a failed check leaves the day's partition as it was. Returns
        the first of them (what the write connects to)."""
        from water.operators.quality import QualityGateOperator

        promote = self._promote(spec, name, **kwargs)
        gates = Gates.of(name, step)
        if gates is None:
            return promote
        check = QualityGateOperator(
            task_id="check",
            gates=gates,
            locations={dataset: self._staging_dataset(dataset) for dataset in gates.outputs},
            **self.lake_access(spec),
            **kwargs,
        )
        check >> promote
        return check

    def _group(self, group_id: str, tooltip: str) -> TaskGroup:
        from airflow.sdk import TaskGroup

        return TaskGroup(group_id=group_id, tooltip=tooltip)

    def _pod(
        self,
        spec: PipelineSpec,
        task_id: str,
        entrypoint: str,
        args: Mapping[str, Any],
        flags: dict[str, str],
        placement: Placement,
        labels: dict[str, str],
        timeout: timedelta,
    ) -> dict[str, Any]:
        """KubernetesPodOperator arguments shared by every water pod: its own service account
        (no Kubernetes API token; IRSA's role is the lake's objects) and a security context
        that the Pod Security Standards' `restricted` level admits."""
        from water.targets.cloud.operators import pod_arguments

        s = self.settings
        return {
            "task_id": task_id,
            "image": s.job_image_ref,
            "arguments": pod_arguments(entrypoint, args, flags),
            "namespace": s.k8s_namespace,
            "service_account_name": s.k8s_service_account,
            "automount_service_account_token": False,
            "restricted_as": JOB_USER,  # SizedPodOperator's security contexts
            "labels": {"app.kubernetes.io/part-of": "water", "pipeline": spec.name, "ds": "{{ ds }}", **labels},
            "node_selector": dict(placement.node_selector) or None,
            "tolerations": [t.model_dump(exclude_none=True) for t in placement.tolerations] or None,  # V1Toleration fields
            "env_vars": {"AWS_DEFAULT_REGION": s.aws_region, "AWS_REGION": s.aws_region, **lineage_env()},
            "startup_timeout_seconds": int(placement.startup_timeout.total_seconds()),
            "on_finish_action": "delete_succeeded_pod",
            "get_logs": True,
            "deferrable": s.deferrable,
            **external(timeout),
        }

    def sourcedir(self, spec: PipelineSpec, training: str) -> str:
        """Where a SageMaker training step's script-mode code (and its inference handlers) go."""
        return f"{self.settings.sagemaker_code}/{spec.name}/{training}/ds={{{{ ds }}}}/sourcedir.tar.gz"

    def vertex_settings(self) -> tuple[str, str]:
        """(region, service account) of the Vertex AI steps: set only where a pipeline has one,
        so a missing one is an import error of that pipeline's DAG file alone."""
        s = self.settings
        missing = [CloudSettings.variable(f) for f in ("vertex_region", "vertex_service_account") if not getattr(s, f)]
        if missing or s.vertex_region is None or s.vertex_service_account is None:
            raise SettingsError(
                f"cloud target settings: {' and '.join(missing)} not set; the pipeline's Vertex AI steps need them "
                "(see water/targets/cloud/target.py)"
            )
        return s.vertex_region, s.vertex_service_account

    def vertex_place(self, spec: PipelineSpec) -> vertex.VertexPlace:
        """Where the pipeline's Vertex AI work runs (project, region, exchange, service account)."""
        region, service_account = self.vertex_settings()
        return vertex.VertexPlace(
            project=self.settings.gcp_project,
            region=region,
            exchange=self.settings.gcs_staging,
            service_account=service_account,
            pipeline=spec.name,
        )

    def _vertex(self) -> dict[str, Any]:
        """Of every Vertex AI operator: the project, region and connection."""
        s = self.settings
        return {"project_id": s.gcp_project, "region": self.vertex_settings()[0], "gcp_conn_id": s.gcp_conn_id}

    def _clear_gcs(self, task_id: str, folders: list[str], **kwargs: Any) -> LazyOperator:
        """Empties exchange folders (gs://bucket/prefix, one bucket) before they are written."""
        from water.targets.cloud.operators import split_gs_uri

        split = [split_gs_uri(folder) for folder in folders]
        (bucket,) = {b for b, _ in split}
        return GCS_DELETE_OBJECTS(
            task_id=task_id,
            bucket_name=bucket,
            prefix=[f"{p}/" for _, p in split],
            gcp_conn_id=self.settings.gcp_conn_id,
            **kwargs,
        )

    def _to_gcs(self, task_id: str, spec: PipelineSpec, dataset: str, folder: str, **kwargs: Any) -> LazyOperator:
        """A lake partition copied into an exchange folder (gs://…, emptied before)."""
        from water.targets.cloud.operators import split_s3_uri

        lake_bucket, key = split_s3_uri(self._partition(spec, dataset))
        return S3_TO_GCS(
            task_id=task_id,
            bucket=lake_bucket,
            prefix=f"{key}/",
            dest_gcs=f"{folder}/",
            apply_gcs_prefix=True,
            replace=True,
            aws_conn_id=self.settings.aws_conn_id,
            gcp_conn_id=self.settings.gcp_conn_id,
            return_gcs_uris=True,
            deferrable=False,  # its deferrable mode is a Storage Transfer job holding AWS keys: not here
            **kwargs,
        )

    def _to_s3(self, task_id: str, folder: str, staging: str, **kwargs: Any) -> LazyOperator:
        """An exchange folder's files (flattened) copied into a lake staging prefix."""
        from water.targets.cloud.operators import split_gs_uri

        bucket, prefix = split_gs_uri(folder)
        return GCS_TO_S3(
            task_id=task_id,
            gcs_bucket=bucket,
            prefix=f"{prefix}/",
            gcp_conn_id=self.settings.gcp_conn_id,
            dest_aws_conn_id=self.settings.aws_conn_id,
            dest_s3_key=f"{staging}/",
            replace=True,
            keep_directory_structure=False,
            flatten_structure=True,
            **kwargs,
        )

    def counter(self, spec: PipelineSpec, predictions: str, workgroup: str) -> AthenaCounter:
        from water.targets.cloud.operators import AthenaCounter

        s = self.settings
        return AthenaCounter(
            table=f"{spec.name}_{predictions.replace('/', '_')}",
            location=self._lake(spec).dataset_uri(predictions),
            database=spec.database,
            workgroup=workgroup,
            output_location=s.athena_output,
            aws_conn_id=s.aws_conn_id,
            region_name=s.aws_region,
        )


# The OpenLineage provider's macros (its plugin's, airflow.providers.openlineage.plugins.macros)
# each job pod gets in its environment: the task's run as the parent of the job's own events,
# the DAG run as their root. OPENLINEAGE_PARENT_ID / OPENLINEAGE_ROOT_PARENT_ID are
# `namespace/job/run id`, as the OpenLineage integrations read them. A deployment without
# lineage (the provider's plugin then has no macros) renders them empty.
LINEAGE_ENV = {
    "OPENLINEAGE_NAMESPACE": "lineage_job_namespace()",
    "OPENLINEAGE_PARENT_ID": "lineage_parent_id(task_instance)",
    "OPENLINEAGE_PARENT_JOB_NAME": "lineage_job_name(task_instance)",
    "OPENLINEAGE_PARENT_RUN_ID": "lineage_run_id(task_instance)",
    "OPENLINEAGE_ROOT_PARENT_ID": "lineage_root_parent_id(task_instance)",
    "OPENLINEAGE_ROOT_PARENT_RUN_ID": "lineage_root_run_id(task_instance)",
}
LINEAGE_PLUGIN = "OpenLineageProviderPlugin"


def lineage_env() -> dict[str, str]:
    """LINEAGE_ENV as templates of a pod's env_vars (rendered where the task runs)."""
    plugin = f"macros.{LINEAGE_PLUGIN}"
    known = f"macros is defined and {plugin} is defined"
    return {name: f"{{{{ {plugin}.{call} if {known} else '' }}}}" for name, call in LINEAGE_ENV.items()}


# The user the job pods run as: the official Airflow image's `airflow` (uid 50000, group 0),
# which the jobs image (Dockerfile) is built on and runs as.
JOB_USER = 50000


def code_lineage(folder: str | Path, root: str, pipeline: str, step: str) -> TaskDatasets:
    """Lineage of a task that uploads a step's code: the folder of include/ -> its place under
    `root` (`<root>/<pipeline>/<step>/ds=…/…`, named without the day, as the lake's datasets)."""
    return [(FILE, str(paths.include_dir() / folder))], [lake_dataset(root, pipeline, step)]


def exchange_dataset(place: vertex.VertexPlace, dataset: str) -> DatasetId:
    """A dataset's GCS exchange folder (VertexPlace.folder without its day) as water.lineage names it."""
    return lake_dataset(place.exchange, place.pipeline, dataset)


def _tags(spec: PipelineSpec) -> list[dict[str, str]]:
    return [{"Key": "pipeline", "Value": spec.name}, {"Key": "ds", "Value": "{{ ds }}"}]


@REGISTRY.builds("bigquery_sql")
def bigquery_sql(target: CloudTarget, spec: PipelineSpec, name: str, step: BigQuerySqlStep) -> Built:
    """BigQuery SQL into a per-day staging table -> Parquet on GCS -> S3 -> promote."""
    s = target.settings
    timeout = external(step.timeout)
    table_id = f"{spec.name}_{step.writes.replace('/', '_')}_{{{{ ds_nodash }}}}"
    gcs_bucket, gcs_prefix = target._gcs(spec, step.writes)
    with target._group(name, f"BigQuery SQL -> Parquet on GCS -> S3 {step.writes}/ds=…") as group:
        query = BIGQUERY_INSERT_JOB(
            task_id="query",
            configuration={
                "query": {
                    "query": (paths.include_dir() / step.sql).read_text(),
                    "useLegacySql": False,
                    "parameterMode": "NAMED",
                    "queryParameters": [
                        {"name": "ds", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "{{ ds }}"}}
                    ],
                    "destinationTable": {"projectId": s.gcp_project, "datasetId": s.bq_staging_dataset, "tableId": table_id},
                    "writeDisposition": "WRITE_TRUNCATE",
                    "createDisposition": "CREATE_IF_NEEDED",
                },
                "labels": {"pipeline": spec.name, "stage": name},
            },
            project_id=s.gcp_project,
            deferrable=s.deferrable,
            **target._bigquery(),
            **timeout,
        )
        clear_export = GCS_DELETE_OBJECTS(
            task_id="clear_export", bucket_name=gcs_bucket, prefix=gcs_prefix, gcp_conn_id=s.gcp_conn_id, **timeout
        )
        export = BIGQUERY_TO_GCS(
            task_id="export",
            source_project_dataset_table=f"{s.gcp_project}.{s.bq_staging_dataset}.{table_id}",
            destination_cloud_storage_uris=[f"gs://{gcs_bucket}/{gcs_prefix}part-*.parquet"],
            export_format="PARQUET",
            compression="SNAPPY",
            project_id=s.gcp_project,
            deferrable=s.deferrable,
            **target._bigquery(),
            **timeout,
        )
        staging = target._staging(spec, step.writes)
        to_s3 = GCS_TO_S3(
            task_id="to_s3",
            gcs_bucket=gcs_bucket,
            prefix=gcs_prefix,
            gcp_conn_id=s.gcp_conn_id,
            dest_aws_conn_id=s.aws_conn_id,
            dest_s3_key=f"{staging}/",
            replace=True,
            keep_directory_structure=False,
            flatten_structure=True,
            **timeout,
        )
        promote = target._checked_promote(spec, name, step, **timeout)
        query >> clear_export >> export >> target._clear_s3(staging, **timeout) >> to_s3 >> promote
    return Built.one(group)


@REGISTRY.builds("glue_pyspark")
def glue_pyspark(target: CloudTarget, spec: PipelineSpec, name: str, step: GluePySparkStep) -> Built:
    """The script uploaded to WATER_GLUE_SCRIPTS -> GlueJobOperator -> promote."""
    from water.targets.cloud.operators import split_s3_uri

    s = target.settings
    timeout = external(step.timeout)
    script = paths.include_dir() / step.script
    script_uri = f"{s.glue_scripts}/{spec.name}/{script.name}"
    scripts_bucket, script_key = split_s3_uri(script_uri)
    with target._group(name, f"Glue PySpark job -> {step.writes}/ds=…") as group:
        upload = LOCAL_TO_S3(
            task_id="upload_script",
            filename=str(script),
            dest_bucket=scripts_bucket,
            dest_key=script_key,
            replace=True,
            aws_conn_id=s.aws_conn_id,
            **external(timedelta(minutes=10)),
        )
        job = GLUE_JOB(
            task_id="glue_job",
            job_name=f"water-{spec.name}-{name}",
            job_desc=f"water {spec.name}: {step.script}",
            script_location=script_uri,
            script_args=glue_job_arguments(
                {
                    **step.args,
                    **{arg: target._partition(spec, dataset) for arg, dataset in step.reads.items()},
                    "output_path": target._staging(spec, step.writes),
                    "ds": "{{ ds }}",
                }
            ),
            iam_role_name=s.glue_role,
            create_job_kwargs={
                "GlueVersion": step.glue_version,
                "WorkerType": step.worker_type,
                "NumberOfWorkers": step.workers,
                "Timeout": max(1, int(step.timeout.total_seconds() // 60)),
                "Tags": {"pipeline": spec.name},
            },
            update_config=True,  # spec changes (workers, version) reach the existing job
            # the Spark job's own OpenLineage events name this task's run as their parent. The
            # transport is not injected: it would copy the lineage backend's API key into the
            # job run's arguments, readable by anyone with glue:GetJobRun (docs/lineage.md)
            openlineage_inject_parent_job_info=True,
            openlineage_inject_transport_info=False,
            wait_for_completion=True,
            stop_job_run_on_kill=True,
            deferrable=s.deferrable,
            **target._aws(),
            **timeout,
        )
        upload >> job >> target._checked_promote(spec, name, step, **timeout)
    return Built.one(group)


@REGISTRY.builds("athena_sql")
def athena_sql(target: CloudTarget, spec: PipelineSpec, name: str, step: AthenaSqlStep) -> Built:
    """Athena UNLOAD to Parquet in the pipeline's catalog database (? bound to ds) -> promote.
    The unload task empties its staging prefix itself, so a retry after a partial failure runs."""
    s = target.settings
    timeout = external(step.timeout)
    staging = target._staging(spec, step.writes)
    select = bind_ds((paths.include_dir() / step.sql).read_text(), "'{{ ds }}'")
    with target._group(name, f"Athena UNLOAD -> {step.writes}/ds=…") as group:
        unload = ATHENA_UNLOAD(
            task_id="unload",
            query=unload_query(select, staging),
            location=staging,
            database=spec.database,
            output_location=s.athena_output,
            workgroup=step.workgroup,
            sleep_time=10,
            lineage_datasets=step_datasets(spec, target, name),
            deferrable=s.deferrable,
            **target._aws(),
            **timeout,
        )
        unload >> target._checked_promote(spec, name, step, **timeout)
    return Built.one(group)


@REGISTRY.builds("pod")
def pod(target: CloudTarget, spec: PipelineSpec, name: str, step: PodStep) -> Built:
    flags = {
        **{flag: target._partition(spec, dataset) for flag, dataset in step.reads.items()},
        **{flag: target._partition(spec, out.dataset) for flag, out in step.writes.items()},
    }
    return Built.one(
        SIZED_POD(
            container_resources=step.resources.as_k8s_dict(),
            # the pod writes its partitions itself: its gates run once it succeeded
            gates=Gates.of(name, step),
            lake=target.lake_access(spec),
            metric_definitions=[(m.name, m.regex) for m in step.metric_definitions],
            lineage_datasets=step_datasets(spec, target, name),  # its reads and writes partitions' datasets
            **target._pod(spec, name, step.entrypoint, step.args, flags, step.placement, {"stage": name}, step.timeout),
        )
    )


@REGISTRY.builds("sagemaker_training")
def sagemaker_training(target: CloudTarget, spec: PipelineSpec, name: str, step: SageMakerTrainingStep) -> Built:
    """sourcedir.tar.gz packaged from the script's folder -> SageMaker script-mode training."""
    from water.targets.cloud.operators import PackageSourceDirOperator, SageMakerTrainingGateOperator

    s = target.settings
    entry = Path(step.entry_point)
    sourcedir = target.sourcedir(spec, name)
    with target._group(name, f"SageMaker script-mode training -> {step.writes}/ds=…") as group:
        package = PackageSourceDirOperator(
            task_id="package",
            folder=str(paths.include_dir() / entry.parent),
            destination=sourcedir,
            aws_conn_id=s.aws_conn_id,
            lineage_datasets=code_lineage(entry.parent, s.sagemaker_code, spec.name, name),
            **external(timedelta(minutes=10)),
        )
        fit = SAGEMAKER_TRAINING(
            task_id="fit",
            config={
                "TrainingJobName": sagemaker_name(spec.name, name),
                "AlgorithmSpecification": {
                    "TrainingImage": sklearn_image(s.aws_region, step.framework_version),
                    "TrainingInputMode": "File",
                    "MetricDefinitions": [{"Name": m.name, "Regex": m.regex} for m in step.metric_definitions],
                },
                "HyperParameters": script_mode_hyperparameters(step.hyperparameters, entry.name, sourcedir, s.aws_region),
                "InputDataConfig": [
                    {
                        "ChannelName": channel,
                        "DataSource": {
                            "S3DataSource": {
                                "S3DataType": "S3Prefix",
                                "S3Uri": f"{target._partition(spec, dataset)}/",
                                "S3DataDistributionType": "FullyReplicated",
                            }
                        },
                        "ContentType": "text/csv",
                        "CompressionType": "None",
                    }
                    for channel, dataset in step.reads.items()
                ],
                "OutputDataConfig": {"S3OutputPath": target._partition(spec, step.writes)},
                "ResourceConfig": {
                    "InstanceType": step.instance_type,
                    "InstanceCount": step.instance_count,
                    "VolumeSizeInGB": step.volume_size_gb,
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": int(step.max_runtime.total_seconds())},
                "RoleArn": s.sagemaker_role_arn,
                "Tags": _tags(spec),
            },
            wait_for_completion=True,
            print_log=True,
            check_interval=30,
            check_if_job_exists=True,
            action_if_job_exists="timestamp",
            deferrable=s.deferrable,
            **target._aws(),
            **external(step.max_runtime + timedelta(minutes=15)),  # queueing and upload on top of the job's own limit
        )
        package >> fit
        gates = Gates.of(name, step)
        if gates is not None:  # on the job's final metrics: the transform never gets a model below it
            fit >> SageMakerTrainingGateOperator(
                task_id="check",
                gates=gates,
                training_task_id=fit.task_id,
                **target.lake_access(spec),
                **external(timedelta(minutes=30)),
            )
    return Built.one(group)


@REGISTRY.builds("sagemaker_transform")
def sagemaker_transform(target: CloudTarget, spec: PipelineSpec, name: str, step: SageMakerTransformStep) -> Built:
    """A SageMaker model from the training step's artifact -> batch transform -> promote."""
    s = target.settings
    timeout = external(step.timeout)
    training_name = spec.writer(step.model)
    training = spec.steps.get(training_name or "")
    assert training_name and isinstance(training, SageMakerTrainingStep), step.model  # the spec's validation
    image = sklearn_image(s.aws_region, training.framework_version)
    staging = target._staging(spec, step.writes)
    with target._group(name, f"SageMaker model + batch transform -> {step.writes}/ds=…") as group:
        model = SAGEMAKER_MODEL(
            task_id="model",
            config={
                "ModelName": sagemaker_name(spec.name, f"{name}-model"),
                "PrimaryContainer": {
                    "Image": image,
                    "ModelDataUrl": (
                        f"{{{{ ti.xcom_pull(task_ids='{training_name}.fit')['Training']['ModelArtifacts']['S3ModelArtifacts'] }}}}"
                    ),
                    "Environment": {
                        "SAGEMAKER_PROGRAM": Path(step.entry_point).name,
                        "SAGEMAKER_SUBMIT_DIRECTORY": target.sourcedir(spec, training_name),
                        "SAGEMAKER_REGION": s.aws_region,
                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    },
                },
                "ExecutionRoleArn": s.sagemaker_role_arn,
                "Tags": _tags(spec),
            },
            **target._aws(),
            **external(timedelta(minutes=10)),
        )
        transform = SAGEMAKER_TRANSFORM(
            task_id="transform",
            config={
                "TransformJobName": sagemaker_name(spec.name, name),
                "ModelName": f"{{{{ ti.xcom_pull(task_ids='{name}.model')['Model']['ModelName'] }}}}",
                "BatchStrategy": "MultiRecord",
                "MaxPayloadInMB": step.max_payload_mb,
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{target._partition(spec, step.input)}/"}
                    },
                    "ContentType": "text/csv",
                    "SplitType": "Line",
                    "CompressionType": "None",
                },
                "TransformOutput": {"S3OutputPath": staging, "Accept": "text/csv", "AssembleWith": "Line"},
                "TransformResources": {"InstanceType": step.instance_type, "InstanceCount": step.instance_count},
                "Tags": _tags(spec),
            },
            wait_for_completion=True,
            check_interval=30,
            check_if_job_exists=True,
            action_if_job_exists="timestamp",
            deferrable=s.deferrable,
            **target._aws(),
            **timeout,
        )
        model >> target._clear_s3(staging, **timeout) >> transform >> target._checked_promote(spec, name, step, **timeout)
    return Built.one(group)


@REGISTRY.builds("vertex_custom_training")
def vertex_custom_training(target: CloudTarget, spec: PipelineSpec, name: str, step: VertexCustomTrainingStep) -> Built:
    """Channels S3 -> GCS, the script's folder as a Python package -> a Vertex AI CustomJob
    (water.targets.cloud.vertex.custom_training_job) -> the model's files GCS -> S3 staging ->
    the training gate on its metrics.json -> promote."""
    from water.targets.cloud.operators import PythonPackageToGCSOperator, StagedMetricsGateOperator

    s = target.settings
    place = target.vertex_place(spec)
    transfer = external(timedelta(minutes=30))
    staging = target._staging(spec, step.writes)
    channels = {channel: place.folder(dataset) for channel, dataset in step.reads.items()}
    with target._group(name, f"Vertex AI custom training -> {step.writes}/ds=…") as group:
        clear = target._clear_gcs("clear_exchange", [*channels.values(), place.model_dir(step.writes)], **transfer)
        to_gcs = [
            target._to_gcs(f"to_gcs_{channel}", spec, step.reads[channel], folder, **transfer)
            for channel, folder in channels.items()
        ]
        package = PythonPackageToGCSOperator(
            task_id="package",
            folder=str(paths.include_dir() / Path(step.entry_point).parent),
            destination=place.code(name),
            gcp_conn_id=s.gcp_conn_id,
            lineage_datasets=code_lineage(Path(step.entry_point).parent, place.exchange, spec.name, f"_code/{name}"),
            **external(timedelta(minutes=10)),
        )
        fit = VERTEX_CUSTOM_JOB(
            task_id="fit",
            custom_job=vertex.custom_training_job(place, name, step),
            deferrable=s.deferrable,
            poll_interval=30,
            **target._vertex(),
            **external(step.max_runtime + timedelta(minutes=30)),  # queueing and provisioning on top of the job's own limit
        )
        to_s3 = target._to_s3("to_s3", place.model_dir(step.writes), staging, **transfer)
        clear >> to_gcs >> fit
        package >> fit >> target._clear_s3(staging, **transfer) >> to_s3
        promote = target._promote(spec, name, **transfer)
        gates = Gates.of(name, step)
        if gates is None:
            to_s3 >> promote
        else:  # on the metrics the script wrote beside the model: a model below the gate is never promoted
            (
                to_s3
                >> StagedMetricsGateOperator(
                    task_id="check",
                    gates=gates,
                    model_location=target._staging_dataset(step.writes),
                    **target.lake_access(spec),
                    **transfer,
                )
                >> promote
            )
    return Built.one(group)


@REGISTRY.builds("vertex_automl_tabular")
def vertex_automl_tabular(target: CloudTarget, spec: PipelineSpec, name: str, step: VertexAutoMLTabularStep) -> Built:
    """Channels S3 -> GCS -> a managed tabular dataset -> AutoML tabular training -> the
    model's reference (model.json) into staging, gated on the model's evaluation -> promote."""
    from water.targets.cloud.operators import AutoMLModelOperator

    s = target.settings
    place = target.vertex_place(spec)
    transfer = external(timedelta(minutes=30))
    channels = {channel: place.folder(dataset) for channel, dataset in step.reads.items()}
    dataset_id = f"{{{{ ti.xcom_pull(task_ids='{name}.dataset', key='dataset_id') }}}}"
    with target._group(name, f"Vertex AI AutoML tabular -> {step.writes}/ds=…") as group:
        clear = target._clear_gcs("clear_exchange", list(channels.values()), **transfer)
        to_gcs = [
            target._to_gcs(f"to_gcs_{channel}", spec, step.reads[channel], folder, **transfer)
            for channel, folder in channels.items()
        ]
        dataset = VERTEX_DATASET(
            task_id="dataset",
            dataset=vertex.tabular_dataset(place, name, step),
            **target._vertex(),
            **transfer,  # the import of the day's CSV files
        )
        fit = VERTEX_AUTOML_TABULAR(
            task_id="fit",
            **vertex.automl_arguments(place, name, step, dataset_id),
            gcp_conn_id=s.gcp_conn_id,
            **external(step.timeout),
        )
        metric = step.metric_check()
        register = AutoMLModelOperator(
            task_id="register",
            training_task_id=f"{name}.fit",
            project_id=s.gcp_project,
            region=place.region,
            staging=target._staging_dataset(step.writes),
            train_dataset=step.reads["train"],
            target_column=step.target_column,
            metric_name=(metric.name if metric else None) or step.objective_metric,
            gates=Gates.of(name, step),
            gcp_conn_id=s.gcp_conn_id,
            lineage_datasets=target.lineage(spec, [step.reads["train"]], [step.writes]),
            **target.lake_access(spec),
            **transfer,
        )
        clear >> to_gcs >> dataset >> fit >> register >> target._promote(spec, name, **transfer)
    return Built.one(group)


@REGISTRY.builds("vertex_batch_prediction")
def vertex_batch_prediction(target: CloudTarget, spec: PipelineSpec, name: str, step: VertexBatchPredictionStep) -> Built:
    """A custom model: input and model S3 -> GCS, the inference handlers and the handler driver
    as a Python package -> a CustomJob running them -> predictions GCS -> S3 staging. An AutoML
    model: the input as JSON Lines instances -> a BatchPredictionJob -> its JSON Lines as CSV
    lines into staging. Then the checks and promote."""
    from water.targets.cloud.operators import AutoMLInstancesOperator, AutoMLPredictionsOperator, PythonPackageToGCSOperator

    s = target.settings
    place = target.vertex_place(spec)
    timeout = external(step.timeout)
    transfer = external(timedelta(minutes=30))
    staging = target._staging(spec, step.writes)
    output = place.folder(step.writes)
    if step.entry_point is not None:
        entry = Path(step.entry_point)
        with target._group(name, f"Vertex AI CustomJob: the inference handlers -> {step.writes}/ds=…") as group:
            clear = target._clear_gcs(
                "clear_exchange", [place.folder(step.input), place.model_dir(step.model), output], **transfer
            )
            inputs = [
                target._to_gcs("to_gcs_input", spec, step.input, place.folder(step.input), **transfer),
                target._to_gcs("to_gcs_model", spec, step.model, place.model_dir(step.model), **transfer),
            ]
            package = PythonPackageToGCSOperator(
                task_id="package",
                folder=str(paths.include_dir() / entry.parent),
                destination=place.code(name),
                extra_files={vertex.DRIVER: str(Path(__file__).parents[1] / "local" / "engines" / vertex.DRIVER)},
                with_sources=True,
                gcp_conn_id=s.gcp_conn_id,
                lineage_datasets=code_lineage(entry.parent, place.exchange, spec.name, f"_code/{name}"),
                **external(timedelta(minutes=10)),
            )
            predict = VERTEX_CUSTOM_JOB(
                task_id="predict",
                custom_job=vertex.batch_prediction_custom_job(place, name, step),
                deferrable=s.deferrable,
                poll_interval=30,
                **target._vertex(),
                **timeout,
            )
            to_s3 = target._to_s3("to_s3", output, staging, **transfer)
            clear >> inputs >> predict
            (
                package
                >> predict
                >> target._clear_s3(staging, **transfer)
                >> to_s3
                >> target._checked_promote(spec, name, step, **transfer)
            )
        return Built.one(group)
    model = f"{{{{ ti.xcom_pull(task_ids='{name}.instances')['model'] }}}}"
    with target._group(name, f"Vertex AI batch prediction (AutoML model) -> {step.writes}/ds=…") as group:
        instances = AutoMLInstancesOperator(
            task_id="instances",
            input_dataset=step.input,
            model_dataset=step.model,
            destination=place.folder(step.input),
            gcp_conn_id=s.gcp_conn_id,
            lineage_datasets=(target.lineage(spec, [step.input, step.model], [])[0], [exchange_dataset(place, step.input)]),
            **target.lake_access(spec),
            **transfer,
        )
        clear = target._clear_gcs("clear_exchange", [output], **transfer)
        predict = VERTEX_BATCH_PREDICTION(
            task_id="predict",
            batch_prediction_job=vertex.batch_prediction_job(place, name, step, model),
            **vertex.batch_prediction_arguments(place, name, step, model),
            gcp_conn_id=s.gcp_conn_id,
            deferrable=s.deferrable,
            poll_interval=30,
            lineage_datasets=([exchange_dataset(place, step.input)], [exchange_dataset(place, step.writes)]),
            **timeout,
        )
        convert = AutoMLPredictionsOperator(
            task_id="convert",
            source=output,
            destination=target._staging_dataset(step.writes),
            classes=spec.classes,
            gcp_conn_id=s.gcp_conn_id,
            lineage_datasets=([exchange_dataset(place, step.writes)], target.lineage(spec, [], [step.writes])[1]),
            **target.lake_access(spec),
            **transfer,
        )
        [instances, clear] >> predict >> convert >> target._checked_promote(spec, name, step, **transfer)
    return Built.one(group)


@REGISTRY.builds("inference_stats")
def inference_stats(target: CloudTarget, spec: PipelineSpec, name: str, step: InferenceStatsStep) -> Built:
    from water.targets.cloud.operators import AthenaInferenceStatsOperator

    return Built.one(
        AthenaInferenceStatsOperator(
            task_id=name,
            counter=target.counter(spec, step.reads, step.workgroup),
            classes=spec.classes,
            destination=target._partition(spec, step.writes),
            lineage_datasets=step_datasets(spec, target, name),
            **external(step.timeout),
        )
    )


REGISTRY.builds("drift_guard")(common.drift_guard)  # target-agnostic: the lake through water.store


@REGISTRY.builds("sized_postprocess")
def sized_postprocess(target: CloudTarget, spec: PipelineSpec, name: str, step: SizedPostprocessStep) -> Built:
    from water.targets.cloud.operators import S3CommitShardsOperator

    def tier_task(route_name: str, route: Route, tier: Tier, shards: XComArg | None) -> BaseOperator | MappedOperator:
        flags = {
            "input": target._partition(spec, step.reads),
            **{flag: target._partition(spec, dataset) for flag, dataset in route.reads.items()},
            "output": f"{target._partition(spec, step.shards_dataset)}/route={route_name}",
        }
        args = {**route.args, **({"classes": ",".join(route.classes)} if step.routes else {})}
        # route and tier in the pod's labels: a cluster's cost tools split the work by them
        labels = {"stage": name, "route": route_name.replace("_", "-"), "tier": tier.name.replace("_", "-")}
        arguments = {
            **target._pod(
                spec,
                step.tier_task_id(name, route_name, tier.name),
                route.entrypoint,
                args,
                flags,
                route.placement,
                labels,
                step.timeout,
            ),
            "container_resources": tier.resources.as_k8s_dict(),
            "shard_flag": "output",
            "escalation": route.sizing,
            # its reads and writes partitions' datasets (a shard's rows of them)
            "lineage_datasets": target.lineage(spec, [step.reads, *route.reads.values()], [step.shards_dataset]),
        }
        return per_shard(SIZED_POD, arguments, shards)

    def commit_task() -> S3CommitShardsOperator:
        return S3CommitShardsOperator(
            task_id=step.commit_task_id(),
            shards_root=target._partition(spec, step.shards_dataset),
            destination=target._partition(spec, step.writes),
            decision_task_id=step.size_task_id(name),
            aws_conn_id=target.settings.aws_conn_id,
            lineage_datasets=step_datasets(spec, target, name),
            trigger_rule="none_failed_min_one_success",
            **external(step.timeout),
        )

    # the same Athena workgroup as the inference_stats step that counts these predictions
    stats = spec.steps.get(spec.counting_step(step.reads) or "")
    assert isinstance(stats, InferenceStatsStep), step.reads  # the spec's validation: a sized step's reads are counted
    counter = target.counter(spec, step.reads, stats.workgroup)
    return common.sized_postprocess(target, spec, name, step, counter, tier_task, commit_task)


@REGISTRY.builds("publish")
def publish(target: CloudTarget, spec: PipelineSpec, name: str, step: PublishStep) -> Built:
    """S3 partition -> GCS -> the BigQuery table's ds partition (WRITE_TRUNCATE); with
    `when_nothing_published: retract`, its retraction (retract_published) for a day that ends unpublished."""
    from water.targets.cloud.operators import split_s3_uri

    s = target.settings
    timeout = external(step.timeout)
    bucket, prefix = target._gcs(spec, step.reads)
    lake_bucket, outputs_key = split_s3_uri(target._partition(spec, step.reads))
    dataset_prefix = prefix.removesuffix("ds={{ ds }}/")
    with target._group(name, f"S3 {step.reads}/ds=… -> GCS -> the BigQuery table's ds partition") as group:
        clear = GCS_DELETE_OBJECTS(
            task_id="clear_export", bucket_name=bucket, prefix=prefix, gcp_conn_id=s.gcp_conn_id, **timeout
        )
        to_gcs = S3_TO_GCS(
            task_id="to_gcs",
            bucket=lake_bucket,
            prefix=f"{outputs_key}/",
            dest_gcs=f"gs://{bucket}/{prefix}",
            apply_gcs_prefix=True,
            replace=True,
            aws_conn_id=s.aws_conn_id,
            gcp_conn_id=s.gcp_conn_id,
            return_gcs_uris=True,
            deferrable=False,  # its deferrable mode is a Storage Transfer job holding AWS keys: not here
            **timeout,
        )
        load = GCS_TO_BIGQUERY(
            task_id="load",
            bucket=bucket,
            source_objects=[f"{prefix}*.parquet"],
            destination_project_dataset_table=f"{s.gcp_project}.{step.table}${{{{ ds_nodash }}}}",
            source_format="PARQUET",
            write_disposition="WRITE_TRUNCATE",
            create_disposition="CREATE_IF_NEEDED",
            autodetect=True,
            time_partitioning={"type": "DAY", "field": "ds"},
            schema_update_options=["ALLOW_FIELD_ADDITION"],  # a step that writes a new column adds it
            # ds=…/segment=… folders become columns, as the local warehouse reads them
            extra_config={"hivePartitioningOptions": {"mode": "AUTO", "sourceUriPrefix": f"gs://{bucket}/{dataset_prefix}"}},
            project_id=s.gcp_project,
            deferrable=s.deferrable,
            **target._bigquery(),
            **timeout,
        )
        clear >> to_gcs >> load
    retract = common.retraction(spec, name, lambda: retract_published(target, spec, name, step))
    return Built(group, group, on_nothing_published=retract)


def retract_published(target: CloudTarget, spec: PipelineSpec, name: str, step: PublishStep) -> TaskGroup:
    """The day ended unpublished: delete the BigQuery table's ds partition (the decorator
    `table$YYYYMMDD` the load replaces; nothing if the table does not exist yet), then the
    S3 partition the publish step reads."""
    from water.targets.cloud.operators import split_s3_uri

    s = target.settings
    timeout = external(step.timeout)
    lake_bucket, outputs_key = split_s3_uri(target._partition(spec, step.reads))
    task_id = step.retract_task_id(name)
    with target._group(task_id, f"the day published nothing: retract {step.table} ds=… and {step.reads}/ds=…") as group:
        rows = BIGQUERY_DELETE_TABLE(
            task_id="table_partition",
            deletion_dataset_table=f"{s.gcp_project}.{step.table}${{{{ ds_nodash }}}}",
            ignore_if_missing=True,
            trigger_rule=common.RETRACT_TRIGGER_RULE,
            **target._bigquery(),
            **timeout,
        )
        outputs = S3_DELETE_OBJECTS(
            task_id="lake_partition", bucket=lake_bucket, prefix=f"{outputs_key}/", aws_conn_id=s.aws_conn_id, **timeout
        )
        rows >> outputs
    return group
