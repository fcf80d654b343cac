"""A step's data-quality gates as a task: what it wrote, read through water.store (file:// or s3://).

The cloud target runs these where a step's output is staged: between the write and the promote
task, so an output that fails its checks never replaces the day's partition, and everything
downstream is upstream_failed (nothing publishes). The local target checks inside each stage,
before its swap (water.targets.local.operators), with the same water.quality logic.

- `QualityGateOperator`: the step's datasets at `locations` (dataset -> the lake dataset
  path holding the day's output, e.g. its `_staging` copy).
- `ShardsGateOperator`: a sized step's output as the shard folders its sizing decision ran,
  before the commit swaps them in.
- `TrainingGateOperator`: a training job's metrics (a subclass says where they come from)
  against the gate, with the validation channel's labels for the majority-class baseline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import BaseOperator, Context

from water import lineage
from water.quality import Gates, PartitionFile
from water.store import LakeStore


def check_in_lake(
    gates: Gates,
    store: LakeStore,
    ds: str,
    written: Mapping[str, Iterable[PartitionFile]],
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Enforce `gates` on `written` (dataset -> its files) and `metrics`; the validation channel's
    labels are read from the lake. Raises water.quality.QualityCheckFailed naming the step."""
    validation = None
    if gates.metric is not None and gates.validation is not None and metrics is not None:
        validation = store.files(gates.validation, ds)
    return gates.enforce(written, metrics, validation)


class QualityGateOperator(BaseOperator):
    """The step's checks on the partitions it wrote, before they are promoted."""

    ui_color = "#e6f5e1"

    def __init__(
        self,
        *,
        gates: Gates,
        pipeline: str,
        lake_root: str,
        storage_conn_id: str | None = None,
        locations: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gates, self.pipeline, self.lake_root, self.storage_conn_id = gates, pipeline, lake_root, storage_conn_id
        self.locations = dict(locations or {})  # dataset -> lake dataset path to read it at

    @property
    def store(self) -> LakeStore:
        return LakeStore(self.lake_root, self.pipeline, self.storage_conn_id)

    def written(self, context: Context) -> dict[str, list[PartitionFile]]:
        ds = context["ds"]
        return {dataset: self.store.files(self.locations.get(dataset, dataset), ds) for dataset in self.gates.outputs}

    def reported_metrics(self, context: Context) -> dict[str, float] | None:
        return None

    def execute(self, context: Context) -> dict[str, Any]:
        self.lineage_run: tuple[str, dict[str, Any]] = (context["ds"], {})
        written = self.written(context)
        figures = check_in_lake(self.gates, self.store, context["ds"], written, self.reported_metrics(context))
        self.log.info("%s: checks passed: %s", self.gates.step, json.dumps(figures, sort_keys=True, default=str))
        self.lineage_run = (context["ds"], figures)
        self.lineage_written = written  # its columns are read (one footer or header) only for the lineage event
        rows = [f["rows"] for d, f in figures.items() if d in self.gates.outputs]
        return {**({"rows_in": sum(rows)} if rows else {}), "checks": figures}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the gate reads what the step wrote (where it was staged) and writes nothing."""
        from water.quality import columns

        ds, figures = lineage.ran(self)
        written: dict[str, list[PartitionFile]] = getattr(self, "lineage_written", {})
        inputs = [
            lineage.Seen(
                lineage.lake_dataset(self.lake_root, self.pipeline, self.locations.get(dataset, dataset)),
                lineage.partition_of(ds),
                columns(written.get(dataset, []), row_format) or None,
                (figures.get(dataset) or {}).get("rows"),
            )
            for dataset, (row_format, _) in self.gates.outputs.items()
        ]
        return lineage.operator_lineage(inputs, [])


class ShardsGateOperator(QualityGateOperator):
    """A sized step's checks on the shard folders its sizing decision ran (every route's), together."""

    def __init__(self, *, shards_dataset: str, decision_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shards_dataset, self.decision_task_id = shards_dataset, decision_task_id

    def written(self, context: Context) -> dict[str, list[PartitionFile]]:
        from water.sizing import shard_folders

        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision") or {}
        root = self.store.lake.uri(self.shards_dataset, context["ds"])
        files = [
            (f"{relative}/{name}", opener)
            for relative in shard_folders(decision)
            for name, opener in self.store.files_under(f"{root}/{relative}")
        ]
        return dict.fromkeys(self.gates.outputs, files)


class TrainingGateOperator(QualityGateOperator):
    """The training gate on the metrics an upstream task reported (`reported_metrics`)."""

    def __init__(self, *, training_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_task_id = training_task_id

    def reported_metrics(self, context: Context) -> dict[str, float] | None:  # pragma: no cover - abstract
        raise NotImplementedError
