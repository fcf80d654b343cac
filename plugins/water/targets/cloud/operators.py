"""Operators of the cloud target that the providers do not ship.

Everything else the cloud target runs is a provider operator as it comes (BigQuery, Glue,
Athena, SageMaker, transfers) or one water extends (water.targets.cloud.extended). These few
fill the gaps, built on the providers' hooks, which they import only when they run: the DAG
file imports this module, and parsing it must not import the providers' client stacks.

- `S3PromotePartitionOperator`: swaps a staged prefix into a lake partition (write aside,
  then promote), so a failed step leaves the previous good partition in place.
- `S3CommitShardsOperator`: the same for the post-processing shards the sizing decision chose.
- `PackageSourceDirOperator`: tars a script-mode source directory and uploads it to S3.
- `AthenaInferenceStatsOperator`: counts predictions per class with an Athena aggregate and
  writes `stats/ds=…/inference_stats.json`, as the local target does.
- `SageMakerTrainingGateOperator`: a training step's `checks.metric` on the job's final
  metrics (DescribeTrainingJob's FinalMetricDataList).
- Vertex AI: `PythonPackageToGCSOperator` (a script's folder as the Python package a CustomJob
  installs), `StagedMetricsGateOperator` (the training gate on the metrics.json beside a staged
  model), `AutoMLModelOperator` (an AutoML model's reference, model.json, gated on its
  evaluation), `AutoMLInstancesOperator` and `AutoMLPredictionsOperator` (a batch prediction's
  JSON Lines in and out of the lake's CSV lines, water.vertex_predictions).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context

from water import lineage
from water.lineage import DatasetId
from water.operators.quality import QualityGateOperator, TrainingGateOperator, check_in_lake
from water.quality import Gates
from water.store import LakeStore

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.athena import AthenaHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.openlineage.extractors import OperatorLineage

DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PREDICTION_COLUMNS = (
    ("id", "string"),
    ("class", "string"),
    ("confidence", "double"),
)  # water's inference contract: the id may be a number or a string


def split_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key/prefix') of s3://bucket/key/prefix; ValueError for anything else."""
    match = re.match(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?$", uri)
    if not match:
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    return match.group(1), (match.group(2) or "").strip("/")


def checked_ds(ds: str) -> str:
    if not DS.match(str(ds)):
        raise ValueError(f"ds {ds!r} is not a YYYY-MM-DD date")
    return str(ds)


# --- lineage ---------------------------------------------------------------------------------

# (inputs, outputs) of a task as water.lineage names them: what the cloud target gives each
# of water's own operators when it builds the task (water.targets.cloud.target).
TaskDatasets = tuple[list[DatasetId], list[DatasetId]]


class ReportsLineage:
    """Of water's own cloud operators: the OpenLineage provider's listener asks each finished
    task for its datasets (`get_openlineage_facets_on_complete`); these answer with the
    `lineage_datasets` the target gave them (water.lineage identities, the same the provider
    extractors and the local target name), so the graph joins across steps."""

    lineage_datasets: TaskDatasets | None = None
    lineage_rows: int | None = None  # rows the task wrote, where it counted them

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        if self.lineage_datasets is None:  # not given: the base class's own answer, if it has one
            own = getattr(super(), "get_openlineage_facets_on_complete", None)
            if own is not None:
                found: OperatorLineage[Any, Any] = own(task_instance)
                return found
        inputs, outputs = self.lineage_datasets or ([], [])
        day = lineage.partition_of(_ds_of(task_instance))
        reported: OperatorLineage[Any, Any] = lineage.operator_lineage(
            [lineage.Seen(identity, day) for identity in inputs],
            [lineage.Seen(identity, day, rows=self.lineage_rows) for identity in outputs],
        )
        return reported


def _ds_of(task_instance: Any) -> str | None:
    """The day the task ran for, from the task instance the listener passes (None if it has no context)."""
    try:
        ds = task_instance.get_template_context().get("ds")
    except Exception:  # a task instance without a context: the event names the datasets without a day
        return None
    return str(ds) if ds else None


# --- S3 partitions -------------------------------------------------------------------------


class S3PromotePartitionOperator(ReportsLineage, BaseOperator):
    """Replaces the objects under `destination` with those under `sources` (then removes the sources).

    New objects are copied in first and stale ones deleted after, so the partition is never
    empty; a failure before this task leaves the previous partition untouched. Copies are
    single CopyObject requests (objects up to 5 GB each).
    """

    template_fields: Sequence[str] = ("sources", "destination")
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        sources: list[str],
        destination: str,
        aws_conn_id: str | None = "aws_default",
        allow_empty: bool = False,
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sources, self.destination, self.lineage_datasets = list(sources), destination, lineage_datasets
        self.aws_conn_id, self.allow_empty = aws_conn_id, allow_empty

    def source_uris(self, context: Context) -> list[str]:
        return list(self.sources)

    def plan(self, hook: S3Hook, sources: list[str]) -> list[tuple[str, str, str]]:
        """(source bucket, source key, relative name) of every object to promote."""
        objects: dict[str, tuple[str, str]] = {}
        for uri in sources:
            bucket, prefix = split_s3_uri(uri)
            for key in hook.list_keys(bucket_name=bucket, prefix=f"{prefix}/") or []:
                name = key[len(prefix) + 1 :]
                if not name or name.endswith(("/", "_$folder$")) or Path(name).name.startswith(("_", ".")):
                    continue  # folder markers, _SUCCESS and the like are not data
                if name in objects:
                    raise FileExistsError(f"two sources hold {name}: {objects[name][1]} and {key}")
                objects[name] = (bucket, key)
        return [(bucket, key, name) for name, (bucket, key) in sorted(objects.items())]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        sources = self.source_uris(context)
        objects = self.plan(hook, sources)
        if not objects and not self.allow_empty:
            raise FileNotFoundError(f"nothing to promote into {self.destination}: {', '.join(sources)} hold no data")
        dest_bucket, dest_prefix = split_s3_uri(self.destination)
        keep = set()
        for bucket, key, name in objects:
            target = f"{dest_prefix}/{name}"
            hook.copy_object(key, target, source_bucket_name=bucket, dest_bucket_name=dest_bucket)
            keep.add(target)
        stale = [k for k in hook.list_keys(bucket_name=dest_bucket, prefix=f"{dest_prefix}/") or [] if k not in keep]
        if stale:
            hook.delete_objects(dest_bucket, stale)
        for bucket in {b for b, _, _ in objects}:
            hook.delete_objects(bucket, [key for b, key, _ in objects if b == bucket])
        self.log.info("promoted %d object(s) into %s, removed %d stale", len(objects), self.destination, len(stale))
        return {"objects": len(objects), "stale_removed": len(stale), "destination": self.destination}


class S3CommitShardsOperator(S3PromotePartitionOperator):
    """Promotes `<shards_root>/route=R/shard=NNNN`: every shard of every route the sizing decision ran."""

    template_fields: Sequence[str] = ("shards_root", "destination")

    def __init__(self, *, shards_root: str, decision_task_id: str, **kwargs: Any) -> None:
        super().__init__(sources=[], **kwargs)
        self.shards_root, self.decision_task_id = shards_root, decision_task_id

    def source_uris(self, context: Context) -> list[str]:
        from water.sizing import shard_folders

        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision") or {}
        return [f"{self.shards_root.rstrip('/')}/{relative}" for relative in shard_folders(decision)]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        missing = [uri for uri in self.source_uris(context) if not self.plan(hook, [uri])]
        if missing:
            raise FileNotFoundError(f"post-processing shards missing or empty: {', '.join(missing)}")
        return super().execute(context)


# --- SageMaker source directory ------------------------------------------------------------


def sourcedir_tarball(folder: Path) -> bytes:
    """A reproducible sourcedir.tar.gz of the folder (sorted, fixed mtimes, no caches)."""
    buffer = io.BytesIO()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if not files:
        raise FileNotFoundError(f"no files to package in {folder}")
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    return buffer.getvalue()


class PackageSourceDirOperator(ReportsLineage, BaseOperator):
    """Uploads `folder` as sourcedir.tar.gz to `destination` (an s3:// URI) for script mode."""

    template_fields: Sequence[str] = ("destination",)

    def __init__(
        self,
        *,
        folder: str,
        destination: str,
        aws_conn_id: str | None = "aws_default",
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.folder, self.destination, self.aws_conn_id = folder, destination, aws_conn_id
        self.lineage_datasets = lineage_datasets

    def execute(self, context: Context) -> str:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket, key = split_s3_uri(self.destination)
        data = sourcedir_tarball(Path(self.folder))
        S3Hook(aws_conn_id=self.aws_conn_id).load_bytes(data, key=key, bucket_name=bucket, replace=True)
        self.log.info("uploaded %s (%d bytes) to %s", self.folder, len(data), self.destination)
        return self.destination


# --- S3: emptying a prefix (extended.AthenaUnloadOperator's first step) ----------------------


def empty_prefix(hook: S3Hook, uri: str) -> int:
    """Deletes every object under the s3:// folder `uri`; how many there were."""
    bucket, key = split_s3_uri(uri)
    keys = hook.list_keys(bucket_name=bucket, prefix=f"{key}/") or []
    if keys:
        hook.delete_objects(bucket, keys)
    return len(keys)


# --- Athena: counting predictions ----------------------------------------------------------


def predictions_table_ddl(table: str, location: str) -> str:
    """An external table over the transform output (CSV `id,class,confidence`), ds by partition projection."""
    columns = ", ".join(f"`{name}` {kind}" for name, kind in PREDICTION_COLUMNS)
    location = location.rstrip("/")
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{table}` ({columns}) "
        "PARTITIONED BY (`ds` string) "
        "ROW FORMAT DELIMITED FIELDS TERMINATED BY ',' "
        f"LOCATION '{location}/' "
        "TBLPROPERTIES ("
        "'projection.enabled'='true', 'projection.ds.type'='date', 'projection.ds.format'='yyyy-MM-dd', "
        "'projection.ds.range'='2000-01-01,NOW', 'projection.ds.interval'='1', 'projection.ds.interval.unit'='DAYS', "
        f"'storage.location.template'='{location}/ds=${{ds}}')"
    )


def class_counts_query(table: str, ds: str) -> str:
    """Rows per class of one ds. A blank line of the transform output (AssembleWith=Line ends
    every answer with a newline, an answer may end with one itself) reads as a row with an
    empty id and no class: not a prediction, so not counted. A line with an id but no class
    is counted, and its missing class refused by the caller."""
    (key, _), (label, _), _ = PREDICTION_COLUMNS
    blank = f"trim(coalesce(\"{key}\", '')) = '' AND \"{label}\" IS NULL"
    return f'SELECT "{label}", count(*) AS n FROM "{table}" WHERE ds = \'{checked_ds(ds)}\' AND NOT ({blank}) GROUP BY "{label}"'


class AthenaCounter:
    """Rows per predicted class of one ds, by an Athena aggregate over the predictions (never a load).

    A plain object (not a lambda) so the sizing operator can hold it: `counter(ds) -> {class: rows}`.
    """

    def __init__(
        self,
        *,
        table: str,
        location: str,
        database: str,
        workgroup: str,
        output_location: str,
        aws_conn_id: str | None,
        region_name: str | None,
        sleep_time: int = 5,
    ) -> None:
        self.table, self.location, self.database, self.workgroup = table, location, database, workgroup
        self.output_location, self.aws_conn_id, self.region_name = output_location, aws_conn_id, region_name
        self.sleep_time = sleep_time

    def requests(self, ds: str) -> list[dict[str, Any]]:
        """The StartQueryExecution requests (table DDL, then the count), as AthenaHook.run_query sends them."""
        return [
            {
                "QueryString": query,
                "QueryExecutionContext": {"Database": self.database, "Catalog": "AwsDataCatalog"},
                "ResultConfiguration": {"OutputLocation": self.output_location},
                "WorkGroup": self.workgroup,
            }
            for query in (predictions_table_ddl(self.table, self.location), class_counts_query(self.table, ds))
        ]

    def _run(self, hook: AthenaHook, request: dict[str, Any]) -> str:
        query_id = hook.run_query(
            request["QueryString"],
            request["QueryExecutionContext"],
            request["ResultConfiguration"],
            workgroup=request["WorkGroup"],
        )
        state = hook.poll_query_status(query_id, sleep_time=self.sleep_time)
        if state != "SUCCEEDED":
            raise RuntimeError(f"Athena query {query_id} ended {state}: {hook.get_state_change_reason(query_id)}")
        return query_id

    def __call__(self, ds: str) -> dict[str, int]:
        from airflow.providers.amazon.aws.hooks.athena import AthenaHook

        hook = AthenaHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        ddl, count = self.requests(ds)
        self._run(hook, ddl)
        query_id = self._run(hook, count)
        counts: dict[str, int] = {}
        pages = hook.get_query_results_paginator(query_id)
        if pages is None:  # the hook's answer for a query not (or no longer) SUCCEEDED
            raise RuntimeError(f"Athena query {query_id}: no results to read")
        for page in pages:
            for row in page["ResultSet"]["Rows"]:
                cls, n = (cell.get("VarCharValue") for cell in row["Data"])
                if (cls, n) == ("class", "n"):
                    continue  # the header row
                if cls is None:
                    raise ValueError(f"{self.location}/ds={ds}: {n} prediction line(s) with an id but no class")
                counts[str(cls)] = counts.get(str(cls), 0) + int(n)
        return dict(sorted(counts.items()))


class AthenaInferenceStatsOperator(ReportsLineage, BaseOperator):
    """Counts the day's predictions per class (Athena) and writes stats/ds=…/inference_stats.json.

    Returns {"rows", "rows_in", "class_counts"}: the sizing operator reuses it.
    """

    template_fields: Sequence[str] = ("destination",)

    def __init__(
        self,
        *,
        counter: AthenaCounter,
        classes: list[str],
        destination: str,
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.counter, self.classes, self.destination = counter, list(classes), destination
        self.lineage_datasets = lineage_datasets

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        started = time.monotonic()
        ds = context["ds"]
        counts = self.counter(ds)
        unknown = set(counts) - set(self.classes)
        if unknown:
            raise ValueError(f"predictions hold classes the spec does not declare: {sorted(unknown)}")
        class_counts = {c: counts.get(c, 0) for c in self.classes}
        figures = {"rows_in": sum(class_counts.values()), "rows": sum(class_counts.values()), "class_counts": class_counts}
        bucket, key = split_s3_uri(f"{self.destination.rstrip('/')}/inference_stats.json")
        S3Hook(aws_conn_id=self.counter.aws_conn_id).load_string(
            json.dumps({"ds": ds, **figures}, indent=2, sort_keys=True), key=key, bucket_name=bucket, replace=True
        )
        self.log.info("inference stats for ds=%s: %s (%.1f s)", ds, figures, time.monotonic() - started)
        return figures


# --- SageMaker training: the gate on its final metrics --------------------------------------


def final_metrics(description: dict[str, Any]) -> dict[str, float]:
    """A training job's final metrics by name: DescribeTrainingJob's FinalMetricDataList, the last
    value each of its MetricDefinitions captured in the job's log."""
    return {m["MetricName"]: float(m["Value"]) for m in description.get("FinalMetricDataList") or []}


class SageMakerTrainingGateOperator(TrainingGateOperator):
    """The training gate on the job's final metrics, from the DescribeTrainingJob answer its fit
    task returned (`{"Training": ...}`): no call of its own. The model is left where SageMaker
    put it, but the transform that would use it does not run (upstream_failed)."""

    def reported_metrics(self, context: Context) -> dict[str, float]:
        result = context["ti"].xcom_pull(task_ids=self.training_task_id) or {}
        return final_metrics(result.get("Training") or {})


# --- Kubernetes pods -----------------------------------------------------------------------


def pod_arguments(
    entrypoint: str,
    arguments: Mapping[str, Any],
    flags: dict[str, str],
) -> list[str]:
    """The container's args, as the local pod runner builds them: the script, `--name value`
    for each spec argument, then each input/output flag's URI (SizedPodOperator adds a
    shard's --row-start/--row-end)."""
    argv = [entrypoint]
    for name, value in arguments.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    for flag, uri in flags.items():
        argv += [f"--{flag}", uri]
    return argv


# --- Vertex AI: the code a CustomJob runs, a training's metrics, AutoML's model and predictions --


def split_gs_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'object/prefix') of gs://bucket/object/prefix; ValueError for anything else."""
    match = re.match(r"^gs://([a-z0-9][a-z0-9._\-]{1,220}[a-z0-9])(?:/(.*))?$", uri)
    if not match:
        raise ValueError(f"{uri!r} is not a gs://bucket/prefix URI")
    return match.group(1), (match.group(2) or "").strip("/")


def _package_files(folder: Path, extra: Mapping[str, Path]) -> dict[str, Path]:
    """Relative name -> file of what the package holds: the folder (no caches), then `extra`."""
    files = {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    if not files:
        raise FileNotFoundError(f"no files to package in {folder}")
    return dict(sorted({**files, **extra}.items()))


def python_package(folder: Path, extra: Mapping[str, Path] | None = None) -> bytes:
    """A reproducible source distribution (`trainer-0.0.0.tar.gz`) of the folder as the Python
    package `trainer` (water.targets.cloud.vertex.PACKAGE), with `extra` files beside its own:
    what a Vertex AI CustomJob's python_package_spec installs before `python -m trainer.<script>`.
    The same folder gives the same bytes (sorted entries, fixed times and owners, gzip without
    a timestamp); setup.py is plain setuptools, as old as the prebuilt images' Python has."""
    from water.targets.cloud.vertex import PACKAGE, PACKAGE_VERSION

    files = _package_files(folder, extra or {})
    root = f"{PACKAGE}-{PACKAGE_VERSION}"
    folders = sorted({str(Path(name).parent) for name in files} - {"."})
    data = ['"*"', *(json.dumps(f"{sub}/*") for sub in folders)]
    setup = (
        "from setuptools import setup\n\n"
        f'setup(name="{PACKAGE}", version="{PACKAGE_VERSION}", packages=["{PACKAGE}"], '
        f'package_data={{"{PACKAGE}": [{", ".join(data)}]}}, include_package_data=True)\n'
    )
    metadata = f"Metadata-Version: 1.0\nName: {PACKAGE}\nVersion: {PACKAGE_VERSION}\nSummary: water: {folder.name}\n"
    entries: dict[str, bytes] = {"PKG-INFO": metadata.encode(), "setup.py": setup.encode()}
    if "__init__.py" not in files:
        entries[f"{PACKAGE}/__init__.py"] = b""
    entries.update({f"{PACKAGE}/{name}": path.read_bytes() for name, path in files.items()})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(entries.items()):
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


class PythonPackageToGCSOperator(ReportsLineage, BaseOperator):
    """Uploads `folder` (and `extra_files`: name -> path, packaged beside it) as the Python
    package a Vertex AI CustomJob installs, `<destination>/trainer-0.0.0.tar.gz`; with
    `with_sources`, the same files unpacked under `<destination>/src/` too (the handler
    driver's --code-dir, read through the job's /gcs mount), replacing what was there."""

    template_fields: Sequence[str] = ("destination",)

    def __init__(
        self,
        *,
        folder: str,
        destination: str,
        extra_files: Mapping[str, str] | None = None,
        with_sources: bool = False,
        gcp_conn_id: str = "google_cloud_default",
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.folder, self.destination, self.gcp_conn_id = folder, destination, gcp_conn_id
        self.lineage_datasets = lineage_datasets
        self.extra_files, self.with_sources = dict(extra_files or {}), with_sources

    def execute(self, context: Context) -> str:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        from water.targets.cloud.vertex import PACKAGE, PACKAGE_VERSION

        hook = GCSHook(gcp_conn_id=self.gcp_conn_id)
        bucket, prefix = split_gs_uri(self.destination)
        extra = {name: Path(path) for name, path in self.extra_files.items()}
        data = python_package(Path(self.folder), extra)
        package = f"{prefix}/{PACKAGE}-{PACKAGE_VERSION}.tar.gz"
        hook.upload(bucket_name=bucket, object_name=package, data=data, mime_type="application/gzip")
        if self.with_sources:
            for stale in hook.list(bucket_name=bucket, prefix=f"{prefix}/src/") or []:
                hook.delete(bucket_name=bucket, object_name=stale)
            for name, path in _package_files(Path(self.folder), extra).items():
                hook.upload(bucket_name=bucket, object_name=f"{prefix}/src/{name}", data=path.read_bytes())
        self.log.info("uploaded %s (%d bytes) to gs://%s/%s", self.folder, len(data), bucket, package)
        return f"gs://{bucket}/{package}"


class StagedMetricsGateOperator(QualityGateOperator):
    """The training gate on the metrics a training script wrote beside its model
    (`metrics.json`: {"metrics": {name: value}}), read from the model's staged copy before it
    is promoted: a model below the gate never replaces the day's partition."""

    def __init__(self, *, model_location: str, metrics_file: str = "metrics.json", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_location, self.metrics_file = model_location, metrics_file

    def reported_metrics(self, context: Context) -> dict[str, float]:
        found = self.store.read_json(self.model_location, context["ds"], self.metrics_file)
        metrics = (found or {}).get("metrics")
        if not isinstance(metrics, dict):
            where = self.store.lake.uri(self.model_location, context["ds"])
            raise FileNotFoundError(f"{where}/{self.metrics_file}: no {{'metrics': {{...}}}} written by the training script")
        return {str(name): float(value) for name, value in metrics.items()}


def evaluation_accuracy(evaluations: Sequence[Mapping[str, Any]]) -> float:
    """Accuracy of a classification model from its evaluation's confusion matrix (Vertex AI's
    ModelEvaluation.metrics.confusionMatrix.rows: true class by predicted class): the share of
    the diagonal. The first evaluation that has a confusion matrix counts."""
    for evaluation in evaluations:
        matrix = ((evaluation.get("metrics") or {}).get("confusionMatrix") or {}).get("rows")
        if not matrix:
            continue
        rows = [[float(v) for v in row] for row in matrix]
        total = sum(map(sum, rows))
        if total <= 0:
            raise ValueError("the model's evaluation confusion matrix counts no rows")
        return sum(row[i] for i, row in enumerate(rows) if i < len(row)) / total
    raise ValueError("the model has no classification evaluation with a confusion matrix")


class AutoMLModelOperator(ReportsLineage, BaseOperator):
    """An AutoML model as the lake keeps it: `model.json` in the model's staging, naming the
    Vertex AI model the training task made (its `model_id` XCom), the target column and the
    features in the training set's order (the train channel's header: what the batch
    prediction's instances name), and the accuracy of the model's own evaluation. With the
    step's `checks.metric` the gate runs first on that accuracy (as `validation:accuracy`)."""

    def __init__(
        self,
        *,
        training_task_id: str,
        project_id: str,
        region: str,
        staging: str,
        train_dataset: str,
        target_column: str,
        metric_name: str,
        pipeline: str,
        lake_root: str,
        storage_conn_id: str | None = None,
        gates: Gates | None = None,
        gcp_conn_id: str = "google_cloud_default",
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gates, self.store = gates, LakeStore(lake_root, pipeline, storage_conn_id)
        self.lineage_datasets = lineage_datasets
        self.training_task_id, self.project_id, self.region = training_task_id, project_id, region
        self.staging, self.train_dataset, self.target_column = staging, train_dataset, target_column
        self.metric_name, self.gcp_conn_id = metric_name, gcp_conn_id

    def evaluations(self, model: str) -> list[dict[str, Any]]:
        from airflow.providers.google.cloud.hooks.vertex_ai.model_service import ModelServiceHook
        from google.cloud.aiplatform_v1 import ModelEvaluation

        client = ModelServiceHook(gcp_conn_id=self.gcp_conn_id).get_model_service_client(self.region)
        return [ModelEvaluation.to_dict(e) for e in client.list_model_evaluations(parent=model)]

    def features(self, ds: str) -> list[str]:
        for name, opener in self.store.files(self.train_dataset, ds):
            with opener() as handle:
                header = handle.readline().decode().strip()
            if header:
                columns = next(csv.reader([header]))
                if self.target_column not in columns:
                    raise ValueError(f"{self.train_dataset} {name}: no {self.target_column!r} column in {columns}")
                return [c for c in columns if c != self.target_column]
        raise FileNotFoundError(f"{self.store.lake.uri(self.train_dataset, ds)}: no training file with a header")

    def execute(self, context: Context) -> dict[str, Any]:
        ds = context["ds"]
        model_id = context["ti"].xcom_pull(task_ids=self.training_task_id, key="model_id")
        if not model_id:
            raise ValueError(f"{self.training_task_id} returned no model_id: the AutoML training made no model")
        model = f"projects/{self.project_id}/locations/{self.region}/models/{model_id}"
        metrics = {self.metric_name: evaluation_accuracy(self.evaluations(model))}
        figures = check_in_lake(self.gates, self.store, ds, {}, metrics) if self.gates is not None else {}
        reference = {
            "engine": "vertex_automl_tabular",
            "model": model,
            "target_column": self.target_column,
            "features": self.features(ds),
            "metrics": metrics,
        }
        self.store.remove_partition(self.staging, ds)
        self.store.write_json(self.staging, ds, "model.json", reference)
        self.log.info("AutoML model %s: %s; checks: %s", model, metrics, json.dumps(figures, sort_keys=True, default=str))
        return reference


class AutoMLInstancesOperator(ReportsLineage, BaseOperator):
    """The input partition's CSV lines (no header, the id first) as JSON Lines instances in the
    exchange (`destination`, one `<file>.jsonl` per input file, replacing what was there), for
    the AutoML model the model partition's `model.json` names (water.vertex_predictions).
    Returns {"model": the model's resource name, "files", "instances"}: the batch prediction's model."""

    template_fields: Sequence[str] = ("destination",)

    def __init__(
        self,
        *,
        input_dataset: str,
        model_dataset: str,
        destination: str,
        pipeline: str,
        lake_root: str,
        storage_conn_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_dataset, self.model_dataset, self.destination = input_dataset, model_dataset, destination
        self.lineage_datasets = lineage_datasets
        self.pipeline, self.lake_root, self.storage_conn_id, self.gcp_conn_id = pipeline, lake_root, storage_conn_id, gcp_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        from water.vertex_predictions import instances_jsonl

        ds = context["ds"]
        store = LakeStore(self.lake_root, self.pipeline, self.storage_conn_id)
        reference = store.read_json(self.model_dataset, ds, "model.json")
        if not reference or not reference.get("model") or not reference.get("features"):
            raise FileNotFoundError(f"{store.lake.uri(self.model_dataset, ds)}/model.json: no AutoML model reference")
        hook = GCSHook(gcp_conn_id=self.gcp_conn_id)
        bucket, prefix = split_gs_uri(self.destination)
        for stale in hook.list(bucket_name=bucket, prefix=f"{prefix}/") or []:
            hook.delete(bucket_name=bucket, object_name=stale)
        files = instances = 0
        for name, opener in store.files(self.input_dataset, ds):
            with opener() as handle:
                rows = handle.read().decode().splitlines()
            lines = list(instances_jsonl(rows, reference["features"], source=name))
            if not lines:
                continue
            hook.upload(bucket_name=bucket, object_name=f"{prefix}/{Path(name).name}.jsonl", data="\n".join(lines) + "\n")
            files, instances = files + 1, instances + len(lines)
        if not instances:
            raise FileNotFoundError(f"{store.lake.uri(self.input_dataset, ds)}: no rows to predict")
        self.lineage_rows = instances
        self.log.info("%d instance(s) in %d file(s) to %s for %s", instances, files, self.destination, reference["model"])
        return {"model": reference["model"], "files": files, "instances": instances}


class AutoMLPredictionsOperator(ReportsLineage, BaseOperator):
    """A BatchPredictionJob's JSON Lines output under `source` (its predictions_NNNNN.jsonl)
    as CSV lines `id,class,confidence` in `destination` (a lake dataset path: the step's
    staging), replacing what was there; an errors_NNNNN.jsonl that holds a line fails the task."""

    template_fields: Sequence[str] = ("source",)

    def __init__(
        self,
        *,
        source: str,
        destination: str,
        classes: list[str],
        pipeline: str,
        lake_root: str,
        storage_conn_id: str | None = None,
        gcp_conn_id: str = "google_cloud_default",
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source, self.destination, self.classes = source, destination, list(classes)
        self.lineage_datasets = lineage_datasets
        self.pipeline, self.lake_root, self.storage_conn_id, self.gcp_conn_id = pipeline, lake_root, storage_conn_id, gcp_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        from water.vertex_predictions import prediction_lines

        ds = context["ds"]
        hook = GCSHook(gcp_conn_id=self.gcp_conn_id)
        bucket, prefix = split_gs_uri(self.source)
        names = sorted(hook.list(bucket_name=bucket, prefix=f"{prefix}/") or [])
        for name in (n for n in names if Path(n).name.startswith("errors_")):
            errors = hook.download(bucket_name=bucket, object_name=name).decode()
            if errors.strip():
                first = errors.strip().splitlines()[0][:500]
                raise ValueError(f"gs://{bucket}/{name}: the batch prediction failed for some instances, e.g. {first}")
        predictions = [n for n in names if Path(n).name.startswith("predictions_")]
        if not predictions:
            raise FileNotFoundError(f"{self.source}: no predictions_*.jsonl written by the batch prediction")
        store = LakeStore(self.lake_root, self.pipeline, self.storage_conn_id)
        store.remove_partition(self.destination, ds)
        rows = 0
        for i, name in enumerate(predictions):
            text = hook.download(bucket_name=bucket, object_name=name).decode()
            lines = list(prediction_lines(text.splitlines(), self.classes, source=f"gs://{bucket}/{name}"))
            store.write_text(self.destination, ds, f"part-{i:05d}.csv", "".join(f"{line}\n" for line in lines))
            rows += len(lines)
        self.lineage_rows = rows
        self.log.info("%d prediction(s) from %d file(s) of %s", rows, len(predictions), self.source)
        return {"files": len(predictions), "rows": rows}
