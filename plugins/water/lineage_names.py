"""Provider operators' lake names trimmed to the dataset: the transformer of every environment's
OpenLineage transport (docs/lineage.md, "Dataset names").

water names a lake dataset, never one day of it (water.lineage): ("s3://bucket",
"prefix/PIPELINE/DATASET"), the day in the `version` facet. The provider operators name what
they touch: a partition (`…/DATASET/ds=2026-11-01`), a step's staging
(`…/DATASET/_staging/ds=2026-11-01/`), an object in one (`…/ds=2026-11-01/part-0.parquet`,
a model `…/ds=2026-11-01/job/output/model.tar.gz`). The client's transform transport hands each
event to `LakeDatasetNames` before its own transport sends it; every such name becomes the
dataset's, as OpenLineage's Spark integration trims partition folders, so both join one node.

The OpenLineage client imports this module in every process that sends events: stdlib and
the client only.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from openlineage.client.transport.transform import EventTransformer

log = logging.getLogger(__name__)

# A day's folder, with a step's `_staging` folder right before it, and anything below it.
PARTITION = re.compile(r"/(?:_staging/)?(?P<day>ds=\d{4}-\d{2}-\d{2})(?:/.*)?$")
LAKE_SCHEMES = ("s3://", "gs://")
FILE = "file"  # water.lineage.FILE
DATASET_FACETS = ("facets", "inputFacets", "outputFacets")


def split_partition(namespace: str, name: str) -> tuple[str, str | None]:
    """(the dataset's name, the day "ds=YYYY-MM-DD") of a lake partition's or object's name in
    an s3://, gs:// or file namespace; (name, None) for any other name (a table, no day in it)."""
    if not (namespace.startswith(LAKE_SCHEMES) or namespace == FILE):
        return name, None
    found = PARTITION.search(name.rstrip("/"))
    if found is None or found.start() == 0:  # no day, or nothing above it to name
        return name, None
    return name[: found.start()], found["day"]


def _version_facet(day: str) -> Any:
    from openlineage.client.facet_v2 import dataset_version_dataset

    return dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=day)


def lake_datasets(datasets: list[Any]) -> list[Any]:
    """Copies of an event's inputs (or outputs), each partition or object named as its dataset,
    its day in the `version` facet unless it has one; those that end up with one namespace and
    name merged into the first (its facets, plus the keys only the others have)."""
    merged: dict[tuple[str, str], Any] = {}
    for dataset in datasets:
        renamed = copy.copy(dataset)
        for key in DATASET_FACETS:
            if hasattr(renamed, key):
                setattr(renamed, key, dict(getattr(renamed, key) or {}))
        renamed.name, day = split_partition(dataset.namespace, dataset.name)
        if day is not None and "version" not in renamed.facets:
            renamed.facets["version"] = _version_facet(day)
        first = merged.setdefault((renamed.namespace, renamed.name), renamed)
        if first is not renamed:
            for key in (k for k in DATASET_FACETS if hasattr(first, k)):
                for facet, value in (getattr(renamed, key, None) or {}).items():
                    getattr(first, key).setdefault(facet, value)
    return list(merged.values())


class LakeDatasetNames(EventTransformer):
    """The transform transport's transformer: the event's inputs and outputs by lake_datasets.
    Never drops an event: one it cannot rename is sent as it came."""

    def transform(self, event: Any) -> Any:
        try:
            renamed = {side: lake_datasets(getattr(event, side)) for side in ("inputs", "outputs") if getattr(event, side, None)}
        except Exception:
            log.warning("water: an OpenLineage event's dataset names left as they came", exc_info=True)
            return event
        for side, datasets in renamed.items():
            setattr(event, side, datasets)
        return event
