"""The cloud target (WATER_TARGET=cloud): every stage on the real provider operators.

BigQuery -> GCS -> S3 extract, Glue features, Athena training set, Kubernetes pods,
SageMaker training and batch transform, Athena counts, S3 -> GCS -> BigQuery publish. The
lake is S3 (`<WATER_LAKE>/<pipeline>/<dataset>/ds=YYYY-MM-DD/`, water.lake). Each stage
writes aside (`<pipeline>/<dataset>/_staging/ds=…`) and a promote task swaps the result
into its partition, so a failed step leaves the previous good partition in place.

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
| `WATER_GCP_PROJECT` | Google Cloud project that runs the BigQuery jobs | `acme-analytics` |
| `WATER_BQ_STAGING_DATASET` | BigQuery dataset for the extract's per-day tables (set a default table expiration) | `water_staging` |
| `WATER_GCS_STAGING` | GCS prefix for BigQuery exports and loads (`gs://bucket/prefix`) | `gs://acme-water-staging/exchange` |
| `WATER_GLUE_ROLE` | IAM role name the Glue jobs run as | `water-glue` |
| `WATER_GLUE_SCRIPTS` | S3 prefix the Glue scripts are uploaded to | `s3://acme-ml-artifacts/water/glue` |
| `WATER_ATHENA_DATABASE` | Glue Data Catalog database for Athena queries | `water` |
| `WATER_ATHENA_OUTPUT` | S3 prefix for Athena query results | `s3://acme-ml-artifacts/water/athena` |
| `WATER_SAGEMAKER_ROLE_ARN` | IAM role ARN SageMaker training and models run as | `arn:aws:iam::123456789012:role/water-sagemaker` |
| `WATER_SAGEMAKER_CODE` | S3 prefix for the script-mode `sourcedir.tar.gz` | `s3://acme-ml-artifacts/water/sagemaker` |
| `WATER_K8S_NAMESPACE` | Kubernetes namespace of the job pods | `water-jobs` |
| `WATER_K8S_SERVICE_ACCOUNT` | Service account of the job pods (S3 access by workload identity) | `water-jobs` |
| `WATER_JOB_IMAGE` | Repository of the job image (the Dockerfile's `jobs` stage) | `registry.example/water-jobs` |
| `WATER_IMAGE_TAG` | Tag of the job image to run | `2026.11.1` |
| `WATER_DEFERRABLE` | `true` to run long waits on the triggerer (operators that support it) | `true` |

Catalog prerequisites (Athena): the training-set SQL reads `features` and
`engagement_labels` from `WATER_ATHENA_DATABASE` (external tables over the lake, partitioned
by `ds` string with partition projection). The predictions table
`<pipeline>_predictions` is created by inference_stats itself (`CREATE EXTERNAL TABLE IF
NOT EXISTS`, see water.operators.cloud.predictions_table_ddl).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import MISSING, dataclass, fields
from datetime import timedelta
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from water import lake, paths
from water.lake import Lake
from water.spec import Placement, PipelineSpec, Tier
from water.targets.base import Target, external, per_shard

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
        "glue:StartJobRun",
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
    athena_database: str
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

    # field -> (validation regex, what it should look like); a class constant, not a field
    FORMATS: ClassVar[dict[str, tuple[str, str]]] = {
        "lake": (_S3, "s3://bucket/prefix"),
        "aws_region": (r"^[a-z]{2}(-[a-z]+)+-\d$", "an AWS region such as eu-west-1"),
        "gcp_project": (r"^[a-z][a-z0-9\-]{4,28}[a-z0-9]$", "a Google Cloud project id"),
        "bq_staging_dataset": (r"^[A-Za-z0-9_]{1,1024}$", "a BigQuery dataset id (letters, digits, _)"),
        "gcs_staging": (_GS, "gs://bucket/prefix"),
        "glue_role": (r"^[\w+=,.@\-]{1,64}$", "an IAM role name"),
        "glue_scripts": (_S3, "s3://bucket/prefix"),
        "athena_database": (r"^[a-z0-9_]{1,255}$", "a Glue catalog database name (lower case, digits, _)"),
        "athena_output": (_S3, "s3://bucket/prefix"),
        "sagemaker_role_arn": (r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]+$", "an IAM role ARN"),
        "sagemaker_code": (_S3, "s3://bucket/prefix"),
        "k8s_namespace": (r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "a Kubernetes namespace"),
        "k8s_service_account": (r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", "a Kubernetes service account name"),
        "job_image": (r"^[^\s:@]+(:\d+)?(/[^\s:@]+)*$", "an image repository without a tag"),
        "image_tag": (r"^[\w][\w.\-]{0,127}$", "an image tag"),
        "aws_conn_id": (_NAME, "an Airflow connection id"),
        "gcp_conn_id": (_NAME, "an Airflow connection id"),
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
                    problems.append(f"{name} is not set (the cloud target needs it; see water/targets/cloud.py)")
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



@lru_cache(maxsize=None)
def _ecr_domain(region: str) -> str:
    """The ECR domain suffix of the region's partition, from botocore's own endpoint data."""
    import botocore.exceptions
    import botocore.loaders
    import botocore.regions

    resolver = botocore.regions.EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))
    try:
        return resolver.get_partition_dns_suffix(resolver.get_partition_for_region(region))
    except botocore.exceptions.UnknownRegionError:
        raise SettingsError(f"WATER_AWS_REGION={region!r} is not a region botocore knows") from None


def sklearn_image(region: str, framework_version: str) -> str:
    """The SageMaker scikit-learn framework image (CPU, Python 3) for the region."""
    account = SKLEARN_IMAGE_ACCOUNTS.get(region)
    if account is None:
        raise SettingsError(
            f"WATER_AWS_REGION={region!r}: no SageMaker scikit-learn image account known for this region; "
            f"known regions: {', '.join(sorted(SKLEARN_IMAGE_ACCOUNTS))} (add it to SKLEARN_IMAGE_ACCOUNTS "
            "in water/targets/cloud.py)"
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
    """The Glue job's `--name value` arguments (water.local.glue.glue_arguments passes the same)."""
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
        return self._lake(spec).uri(f"{dataset}/_staging", "{{ ds }}")

    def _aws(self) -> dict[str, Any]:
        return {"aws_conn_id": self.settings.aws_conn_id, "region_name": self.settings.aws_region}

    def _gcs(self, spec: PipelineSpec, dataset: str) -> tuple[str, str]:
        """(bucket, object prefix ending in /) of a dataset's exchange folder on GCS."""
        bucket, _, prefix = self.settings.gcs_staging.removeprefix("gs://").partition("/")
        path = "/".join(p for p in (prefix, spec.name, dataset, "ds={{ ds }}") if p)
        return bucket, f"{path}/"

    def _clear_s3(self, uri: str, **kwargs: Any) -> Any:
        from airflow.providers.amazon.aws.operators.s3 import S3DeleteObjectsOperator
        from water.operators.cloud import split_s3_uri

        bucket, key = split_s3_uri(uri)
        return S3DeleteObjectsOperator(
            task_id="clear_staging", bucket=bucket, prefix=f"{key}/", aws_conn_id=self.settings.aws_conn_id, **kwargs
        )

    def _promote(self, spec: PipelineSpec, dataset: str, **kwargs: Any) -> Any:
        from water.operators.cloud import S3PromotePartitionOperator

        return S3PromotePartitionOperator(
            task_id="promote",
            sources=[self._staging(spec, dataset)],
            destination=self._partition(spec, dataset),
            aws_conn_id=self.settings.aws_conn_id,
            **kwargs,
        )

    def _group(self, group_id: str, tooltip: str):
        from airflow.sdk import TaskGroup

        return TaskGroup(group_id=group_id, tooltip=tooltip)

    # --- stages ----------------------------------------------------------------------------

    def extract(self, spec: PipelineSpec) -> Any:
        from airflow.providers.amazon.aws.transfers.gcs_to_s3 import GCSToS3Operator
        from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator
        from airflow.providers.google.cloud.operators.gcs import GCSDeleteObjectsOperator
        from airflow.providers.google.cloud.transfers.bigquery_to_gcs import BigQueryToGCSOperator

        s = self.settings
        timeout = external(spec.extract.timeout)
        table_id = f"{spec.name}_raw_{{{{ ds_nodash }}}}"
        gcs_bucket, gcs_prefix = self._gcs(spec, lake.RAW)
        with self._group("extract", "BigQuery SQL -> Parquet on GCS -> S3 raw/ds=…") as group:
            query = BigQueryInsertJobOperator(
                task_id="query",
                configuration={
                    "query": {
                        "query": (paths.include_dir() / spec.extract.sql).read_text(),
                        "useLegacySql": False,
                        "parameterMode": "NAMED",
                        "queryParameters": [
                            {"name": "ds", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "{{ ds }}"}}
                        ],
                        "destinationTable": {"projectId": s.gcp_project, "datasetId": s.bq_staging_dataset, "tableId": table_id},
                        "writeDisposition": "WRITE_TRUNCATE",
                        "createDisposition": "CREATE_IF_NEEDED",
                    },
                    "labels": {"pipeline": spec.name, "stage": "extract"},
                },
                project_id=s.gcp_project,
                gcp_conn_id=s.gcp_conn_id,
                deferrable=s.deferrable,
                **timeout,
            )
            clear_export = GCSDeleteObjectsOperator(
                task_id="clear_export", bucket_name=gcs_bucket, prefix=gcs_prefix, gcp_conn_id=s.gcp_conn_id, **timeout
            )
            export = BigQueryToGCSOperator(
                task_id="export",
                source_project_dataset_table=f"{s.gcp_project}.{s.bq_staging_dataset}.{table_id}",
                destination_cloud_storage_uris=[f"gs://{gcs_bucket}/{gcs_prefix}part-*.parquet"],
                export_format="PARQUET",
                compression="SNAPPY",
                project_id=s.gcp_project,
                gcp_conn_id=s.gcp_conn_id,
                deferrable=s.deferrable,
                **timeout,
            )
            staging = self._staging(spec, lake.RAW)
            to_s3 = GCSToS3Operator(
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
            query >> clear_export >> export >> self._clear_s3(staging, **timeout) >> to_s3 >> self._promote(spec, lake.RAW, **timeout)
        return group

    def features(self, spec: PipelineSpec) -> Any:
        from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
        from airflow.providers.amazon.aws.transfers.local_to_s3 import LocalFilesystemToS3Operator
        from water.operators.cloud import split_s3_uri

        s, stage = self.settings, spec.features
        timeout = external(stage.timeout)
        script = paths.include_dir() / stage.script
        script_uri = f"{s.glue_scripts}/{spec.name}/{script.name}"
        scripts_bucket, script_key = split_s3_uri(script_uri)
        with self._group("features", "Glue PySpark job -> features/ds=…") as group:
            upload = LocalFilesystemToS3Operator(
                task_id="upload_script",
                filename=str(script),
                dest_bucket=scripts_bucket,
                dest_key=script_key,
                replace=True,
                aws_conn_id=s.aws_conn_id,
                **external(timedelta(minutes=10)),
            )
            job = GlueJobOperator(
                task_id="glue_job",
                job_name=f"water-{spec.name}-features",
                job_desc=f"water {spec.name}: {stage.script}",
                script_location=script_uri,
                script_args=glue_job_arguments(
                    {
                        **stage.args,
                        "input_path": self._partition(spec, lake.RAW),
                        "output_path": self._staging(spec, lake.FEATURES),
                        "ds": "{{ ds }}",
                    }
                ),
                iam_role_name=s.glue_role,
                create_job_kwargs={
                    "GlueVersion": stage.glue_version,
                    "WorkerType": stage.worker_type,
                    "NumberOfWorkers": stage.workers,
                    "Timeout": max(1, int(stage.timeout.total_seconds() // 60)),
                    "Tags": {"pipeline": spec.name},
                },
                update_config=True,  # spec changes (workers, version) reach the existing job
                wait_for_completion=True,
                stop_job_run_on_kill=True,
                deferrable=s.deferrable,
                **self._aws(),
                **timeout,
            )
            upload >> job >> self._promote(spec, lake.FEATURES, **timeout)
        return group

    def training_set(self, spec: PipelineSpec) -> Any:
        from airflow.providers.amazon.aws.operators.athena import AthenaOperator

        s, stage = self.settings, spec.training_set
        timeout = external(stage.timeout)
        staging = self._staging(spec, lake.TRAINING)
        select = bind_ds((paths.include_dir() / stage.sql).read_text(), "'{{ ds }}'")
        with self._group("training_set", "Athena UNLOAD -> training/ds=…") as group:
            unload = AthenaOperator(
                task_id="unload",
                query=unload_query(select, staging),
                database=s.athena_database,
                output_location=s.athena_output,
                workgroup=stage.workgroup,
                sleep_time=10,
                deferrable=s.deferrable,
                **self._aws(),
                **timeout,
            )
            self._clear_s3(staging, **timeout) >> unload >> self._promote(spec, lake.TRAINING, **timeout)
        return group

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
        """KubernetesPodOperator arguments shared by every water pod."""
        from kubernetes.client import V1Toleration

        from water.operators.cloud import pod_arguments

        s = self.settings
        return {
            "task_id": task_id,
            "image": s.job_image_ref,
            "arguments": pod_arguments(entrypoint, args, flags),
            "namespace": s.k8s_namespace,
            "service_account_name": s.k8s_service_account,
            "labels": {"app.kubernetes.io/part-of": "water", "pipeline": spec.name, "ds": "{{ ds }}", **labels},
            "node_selector": dict(placement.node_selector) or None,
            "tolerations": [V1Toleration(**t.model_dump(exclude_none=True)) for t in placement.tolerations] or None,
            "env_vars": {"AWS_DEFAULT_REGION": s.aws_region, "AWS_REGION": s.aws_region},
            "startup_timeout_seconds": int(placement.startup_timeout.total_seconds()),
            "on_finish_action": "delete_succeeded_pod",
            "get_logs": True,
            "deferrable": s.deferrable,
            **external(timeout),
        }

    def preprocess(self, spec: PipelineSpec) -> Any:
        from water.operators.cloud import SizedPodOperator

        stage = spec.preprocess
        flags = {
            "input": self._partition(spec, lake.TRAINING),
            "train-output": self._partition(spec, lake.CHANNEL_TRAIN),
            "validation-output": self._partition(spec, lake.CHANNEL_VALIDATION),
            "inference-output": self._partition(spec, lake.CHANNEL_INFERENCE),
        }
        return SizedPodOperator(
            container_resources=stage.resources.as_k8s_dict(),
            **self._pod(spec, "preprocess", stage.entrypoint, stage.args, flags, stage.placement, {"stage": "preprocess"}, stage.timeout),
        )

    def _sourcedir(self, spec: PipelineSpec) -> str:
        return f"{self.settings.sagemaker_code}/{spec.name}/ds={{{{ ds }}}}/sourcedir.tar.gz"

    def train(self, spec: PipelineSpec) -> Any:
        from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator

        from water.operators.cloud import PackageSourceDirOperator

        s, stage = self.settings, spec.training
        entry = Path(stage.entry_point)
        channels = {"train": lake.CHANNEL_TRAIN, "validation": lake.CHANNEL_VALIDATION}
        with self._group("train", "SageMaker script-mode training -> model/ds=…") as group:
            package = PackageSourceDirOperator(
                task_id="package",
                folder=str(paths.include_dir() / entry.parent),
                destination=self._sourcedir(spec),
                aws_conn_id=s.aws_conn_id,
                **external(timedelta(minutes=10)),
            )
            fit = SageMakerTrainingOperator(
                task_id="fit",
                config={
                    "TrainingJobName": sagemaker_name(spec.name, "train"),
                    "AlgorithmSpecification": {
                        "TrainingImage": sklearn_image(s.aws_region, stage.framework_version),
                        "TrainingInputMode": "File",
                        "MetricDefinitions": [{"Name": m.name, "Regex": m.regex} for m in stage.metric_definitions],
                    },
                    "HyperParameters": script_mode_hyperparameters(
                        stage.hyperparameters, entry.name, self._sourcedir(spec), s.aws_region
                    ),
                    "InputDataConfig": [
                        {
                            "ChannelName": name,
                            "DataSource": {
                                "S3DataSource": {
                                    "S3DataType": "S3Prefix",
                                    "S3Uri": f"{self._partition(spec, dataset)}/",
                                    "S3DataDistributionType": "FullyReplicated",
                                }
                            },
                            "ContentType": "text/csv",
                            "CompressionType": "None",
                        }
                        for name, dataset in channels.items()
                    ],
                    "OutputDataConfig": {"S3OutputPath": self._partition(spec, lake.MODEL)},
                    "ResourceConfig": {
                        "InstanceType": stage.instance_type,
                        "InstanceCount": stage.instance_count,
                        "VolumeSizeInGB": stage.volume_size_gb,
                    },
                    "StoppingCondition": {"MaxRuntimeInSeconds": int(stage.max_runtime.total_seconds())},
                    "RoleArn": s.sagemaker_role_arn,
                    "Tags": [{"Key": "pipeline", "Value": spec.name}, {"Key": "ds", "Value": "{{ ds }}"}],
                },
                wait_for_completion=True,
                print_log=True,
                check_interval=30,
                check_if_job_exists=True,
                action_if_job_exists="timestamp",
                deferrable=s.deferrable,
                **self._aws(),
                **external(stage.max_runtime + timedelta(minutes=15)),  # queueing and upload on top of the job's own limit
            )
            package >> fit
        return group

    def batch_inference(self, spec: PipelineSpec) -> Any:
        from airflow.providers.amazon.aws.operators.sagemaker import SageMakerModelOperator, SageMakerTransformOperator

        s, stage = self.settings, spec.inference
        timeout = external(stage.timeout)
        image = sklearn_image(s.aws_region, spec.training.framework_version)
        staging = self._staging(spec, lake.PREDICTIONS)
        with self._group("batch_inference", "SageMaker model + batch transform -> predictions/ds=…") as group:
            model = SageMakerModelOperator(
                task_id="model",
                config={
                    "ModelName": sagemaker_name(spec.name, "model"),
                    "PrimaryContainer": {
                        "Image": image,
                        "ModelDataUrl": "{{ ti.xcom_pull(task_ids='train.fit')['Training']['ModelArtifacts']['S3ModelArtifacts'] }}",
                        "Environment": {
                            "SAGEMAKER_PROGRAM": Path(stage.entry_point).name,
                            "SAGEMAKER_SUBMIT_DIRECTORY": self._sourcedir(spec),
                            "SAGEMAKER_REGION": s.aws_region,
                            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                        },
                    },
                    "ExecutionRoleArn": s.sagemaker_role_arn,
                    "Tags": [{"Key": "pipeline", "Value": spec.name}, {"Key": "ds", "Value": "{{ ds }}"}],
                },
                **self._aws(),
                **external(timedelta(minutes=10)),
            )
            transform = SageMakerTransformOperator(
                task_id="transform",
                config={
                    "TransformJobName": sagemaker_name(spec.name, "transform"),
                    "ModelName": "{{ ti.xcom_pull(task_ids='batch_inference.model')['Model']['ModelName'] }}",
                    "BatchStrategy": "MultiRecord",
                    "MaxPayloadInMB": stage.max_payload_mb,
                    "TransformInput": {
                        "DataSource": {
                            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{self._partition(spec, lake.CHANNEL_INFERENCE)}/"}
                        },
                        "ContentType": "text/csv",
                        "SplitType": "Line",
                        "CompressionType": "None",
                    },
                    "TransformOutput": {"S3OutputPath": staging, "Accept": "text/csv", "AssembleWith": "Line"},
                    "TransformResources": {"InstanceType": stage.instance_type, "InstanceCount": stage.instance_count},
                    "Tags": [{"Key": "pipeline", "Value": spec.name}, {"Key": "ds", "Value": "{{ ds }}"}],
                },
                wait_for_completion=True,
                check_interval=30,
                check_if_job_exists=True,
                action_if_job_exists="timestamp",
                deferrable=s.deferrable,
                **self._aws(),
                **timeout,
            )
            model >> self._clear_s3(staging, **timeout) >> transform >> self._promote(spec, lake.PREDICTIONS, **timeout)
        return group

    def _counter(self, spec: PipelineSpec):
        from water.operators.cloud import AthenaCounter

        s = self.settings
        return AthenaCounter(
            table=f"{spec.name}_predictions",
            location=self._lake(spec).dataset_uri(lake.PREDICTIONS),
            database=s.athena_database,
            workgroup=spec.training_set.workgroup,
            output_location=s.athena_output,
            aws_conn_id=s.aws_conn_id,
            region_name=s.aws_region,
        )

    def inference_stats(self, spec: PipelineSpec) -> Any:
        from water.operators.cloud import AthenaInferenceStatsOperator

        return AthenaInferenceStatsOperator(
            task_id="inference_stats",
            counter=self._counter(spec),
            classes=spec.classes,
            destination=self._partition(spec, lake.STATS),
            **external(spec.inference.timeout),
        )

    def prediction_counter(self, spec: PipelineSpec) -> Callable[[str], dict[str, int]]:
        return self._counter(spec)

    def postprocess(self, spec: PipelineSpec, tier: Tier, shards: Any | None) -> Any:
        from water.operators.cloud import SizedPodOperator
        from water.operators.sizing import postprocess_task_id

        stage = spec.postprocess
        flags = {"input": self._partition(spec, lake.PREDICTIONS), "output": self._partition(spec, lake.POSTPROCESS_SHARDS)}
        arguments = {
            **self._pod(
                spec, postprocess_task_id(tier.name), stage.entrypoint, stage.args, flags, stage.placement,
                {"stage": "postprocess", "tier": tier.name}, stage.timeout,
            ),
            "container_resources": tier.resources.as_k8s_dict(),
            "shard_flag": "output",
            "escalation": spec.sizing,
        }
        return per_shard(SizedPodOperator, arguments, shards)

    def commit_outputs(self, spec: PipelineSpec, decision_task_id: str) -> Any:
        from water.operators.cloud import S3CommitShardsOperator

        return S3CommitShardsOperator(
            task_id="commit_outputs",
            shards_root=self._partition(spec, lake.POSTPROCESS_SHARDS),
            destination=self._partition(spec, lake.OUTPUTS),
            decision_task_id=decision_task_id,
            aws_conn_id=self.settings.aws_conn_id,
            trigger_rule="none_failed_min_one_success",
            **external(spec.postprocess.timeout),
        )

    def publish(self, spec: PipelineSpec) -> Any:
        from airflow.providers.google.cloud.operators.gcs import GCSDeleteObjectsOperator
        from airflow.providers.google.cloud.transfers.gcs_to_bigquery import GCSToBigQueryOperator
        from airflow.providers.google.cloud.transfers.s3_to_gcs import S3ToGCSOperator

        from water.operators.cloud import split_s3_uri

        s = self.settings
        timeout = external(spec.publish.timeout)
        bucket, prefix = self._gcs(spec, lake.OUTPUTS)
        lake_bucket, outputs_key = split_s3_uri(self._partition(spec, lake.OUTPUTS))
        dataset_prefix = prefix.removesuffix("ds={{ ds }}/")
        with self._group("publish", "S3 outputs/ds=… -> GCS -> the BigQuery table's ds partition") as group:
            clear = GCSDeleteObjectsOperator(
                task_id="clear_export", bucket_name=bucket, prefix=prefix, gcp_conn_id=s.gcp_conn_id, **timeout
            )
            to_gcs = S3ToGCSOperator(
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
            load = GCSToBigQueryOperator(
                task_id="load",
                bucket=bucket,
                source_objects=[f"{prefix}*.parquet"],
                destination_project_dataset_table=f"{s.gcp_project}.{spec.publish.table}${{{{ ds_nodash }}}}",
                source_format="PARQUET",
                write_disposition="WRITE_TRUNCATE",
                create_disposition="CREATE_IF_NEEDED",
                autodetect=True,
                time_partitioning={"type": "DAY", "field": "ds"},
                # ds=…/segment=… folders become columns, as the local warehouse reads them
                extra_config={"hivePartitioningOptions": {"mode": "AUTO", "sourceUriPrefix": f"gs://{bucket}/{dataset_prefix}"}},
                project_id=s.gcp_project,
                gcp_conn_id=s.gcp_conn_id,
                deferrable=s.deferrable,
                **timeout,
            )
            clear >> to_gcs >> load
        return group
