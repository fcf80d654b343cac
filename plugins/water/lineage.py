"""OpenLineage dataset identities: the one place that names water's datasets for lineage.

Every step's lineage event names its inputs and outputs as the provider extractors name
the same stores, so the graph joins across steps and with provider operators' own events:

    lake dataset   s3://bucket/prefix  -> ("s3://bucket", "prefix/<pipeline>/<dataset>")
                   gs://bucket/prefix  -> ("gs://bucket", "prefix/<pipeline>/<dataset>")
                   file:///path        -> ("file", "/path/<pipeline>/<dataset>")
    table          cloud (BigQuery)    -> ("bigquery", "<project>.<dataset>.<table>")
                   local warehouse     -> ("file", "<warehouse_dir>/<dataset>/<table>")

The identity is the dataset, never its `ds=` partition: a run's partition travels in a
facet (the `version` facet, see below), so the same dataset joins across days and steps.
Provider operators name partitions and objects; water.lineage_names, the transformer of every
environment's transport, trims those names to these before an event is sent.
Stdlib only at import time; the OpenLineage client is imported by the functions that need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from water.spec import is_table

if TYPE_CHECKING:
    from water.spec import PipelineSpec

DatasetId = tuple[str, str]  # (namespace, name)

BIGQUERY = "bigquery"
FILE = "file"


def _uri_dataset(uri: str) -> DatasetId:
    """(namespace, name) of an object-store or local URI, as the provider's extractors name it."""
    parts = urlsplit(uri)
    if parts.scheme in ("s3", "s3a", "gs", "gcs"):
        scheme = {"s3a": "s3", "gcs": "gs"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{parts.netloc}", parts.path.strip("/")
    if parts.scheme == "file":
        return FILE, str(PurePosixPath(unquote(parts.path)))
    if not parts.scheme:  # a plain local path
        return FILE, str(PurePosixPath(uri))
    raise ValueError(f"no OpenLineage naming for {uri!r}: expected s3://, gs:// or file://")


def lake_dataset(lake_root: str, pipeline: str, dataset: str) -> DatasetId:
    """(namespace, name) of a pipeline's lake dataset (not one `ds=` partition of it)."""
    return _uri_dataset(f"{lake_root.rstrip('/')}/{pipeline}/{dataset}")


def warehouse_table(table: str, *, gcp_project: str | None = None, warehouse_dir: str | None = None) -> DatasetId:
    """(namespace, name) of a warehouse `dataset.table`: BigQuery's in the cloud (`gcp_project`),
    the table's folder under the local warehouse (`warehouse_dir`) locally."""
    if gcp_project is not None:
        return BIGQUERY, f"{gcp_project}.{table}"
    if warehouse_dir is not None:
        return FILE, str(PurePosixPath(warehouse_dir, *table.split(".")))
    raise ValueError("warehouse_table needs gcp_project (cloud) or warehouse_dir (local)")


def dataset_identity(target: Any, pipeline: str, name: str) -> DatasetId:
    """(namespace, name) of a step's input or output `name` (a table or a lake dataset) on `target`."""
    if not is_table(name):
        return lake_dataset(target.lake_root, pipeline, name)
    settings = getattr(target, "settings", None)
    project = getattr(settings, "gcp_project", None)
    if project is not None:
        return warehouse_table(name, gcp_project=project)
    warehouse_dir = getattr(target, "warehouse_dir", None)
    if warehouse_dir is not None:
        return warehouse_table(name, warehouse_dir=str(warehouse_dir))
    raise ValueError(f"target {type(target).__name__} has no warehouse for table {name!r}")


def step_datasets(spec: PipelineSpec, target: Any, name: str) -> tuple[list[DatasetId], list[DatasetId]]:
    """(inputs, outputs) of step `name` of `spec` on `target` (any target: it has lake_root;
    the cloud one's settings name the GCP project, the local one has warehouse_dir)."""
    step = spec.steps[name]
    return (
        [dataset_identity(target, spec.name, n) for n in step.inputs()],
        [dataset_identity(target, spec.name, n) for n in step.outputs()],
    )


# --- What a task read and wrote, as OpenLineage datasets --------------------------------------
#
# The partition a task read or wrote travels in the standard `version` facet
# (DatasetVersionDatasetFacet): datasetVersion is the partition's path below the dataset,
# "ds=2026-11-01" (a shard: "ds=2026-11-01/route=cook/shard=0000"). A partition the task
# removed (a retraction, a release from quarantine) adds the `lifecycleStateChange` facet
# TRUNCATE: the dataset stays, that partition's rows are gone. The columns go in the `schema`
# facet, the rows in the `inputStatistics` / `outputStatistics` facets, where water knows them.


@dataclass(frozen=True)
class Seen:
    """One dataset a task read or wrote, and what water knows of it."""

    identity: DatasetId
    partition: str | None = None  # "ds=YYYY-MM-DD[/…]", below the dataset
    columns: Mapping[str, str] | None = None  # name -> type (water.quality's type names)
    rows: int | None = None
    deleted: bool = False  # the task removed this partition


def partition_of(ds: str | None, below: str = "") -> str | None:
    """The `version` of a dataset a task touched on `ds`: "ds=…", with a deeper path if any."""
    if ds is None:
        return None
    return f"ds={ds}" + (f"/{below.strip('/')}" if below.strip("/") else "")


def _facets(seen: Seen) -> dict[str, Any]:
    from openlineage.client.facet_v2 import dataset_version_dataset, lifecycle_state_change_dataset, schema_dataset

    facets: dict[str, Any] = {}
    if seen.columns:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=name, type=kind) for name, kind in seen.columns.items()]
        )
    if seen.partition is not None:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=seen.partition)
    if seen.deleted:
        facets["lifecycleStateChange"] = lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.TRUNCATE
        )
    return facets


def input_dataset(seen: Seen) -> Any:
    """An openlineage.client.event_v2.InputDataset with water's facets."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import input_statistics_input_dataset

    stats: dict[str, Any] = (
        {}
        if seen.rows is None
        else {"inputStatistics": input_statistics_input_dataset.InputStatisticsInputDatasetFacet(rowCount=seen.rows)}
    )
    return InputDataset(namespace=seen.identity[0], name=seen.identity[1], facets=_facets(seen), inputFacets=stats)


def output_dataset(seen: Seen) -> Any:
    """An openlineage.client.event_v2.OutputDataset with water's facets."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    stats: dict[str, Any] = (
        {}
        if seen.rows is None
        else {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=seen.rows)}
    )
    return OutputDataset(namespace=seen.identity[0], name=seen.identity[1], facets=_facets(seen), outputFacets=stats)


def operator_lineage(inputs: Iterable[Seen], outputs: Iterable[Seen]) -> Any:
    """What a water operator's get_openlineage_facets_on_complete returns (the provider's OperatorLineage)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=[input_dataset(s) for s in inputs], outputs=[output_dataset(s) for s in outputs])


def ran(operator: object) -> tuple[str | None, dict[str, Any]]:
    """(ds, figures) a water operator kept as `lineage_run` when it ran in this process; (None, {})
    when it did not (its event then names its datasets without partition or figures)."""
    found: tuple[str | None, dict[str, Any]] | None = getattr(operator, "lineage_run", None)
    return found or (None, {})
