"""The lake layout: every stage reads and overwrites its own `ds` partition.

    <lake>/<pipeline>/<dataset>/ds=YYYY-MM-DD/...

The same layout serves both targets; only the root differs (file:// locally, s3:// in the
cloud). Operators and the CLI agree on paths through this module, never through globals.
"""

from __future__ import annotations

from dataclasses import dataclass

RAW = "raw"
FEATURES = "features"
LABELS = "engagement_labels"
TRAINING = "training"
CHANNEL_TRAIN = "channels/train"
CHANNEL_VALIDATION = "channels/validation"
CHANNEL_INFERENCE = "channels/inference"
MODEL = "model"
PREDICTIONS = "predictions"
STATS = "stats"
OUTPUTS = "outputs"
POSTPROCESS_SHARDS = "outputs_shards"  # post-processing writes here, shard by shard, before the commit
QUARANTINE = "quarantine"  # predictions the drift guard held back
REPORTS = "reports"  # the run report (report.html, run.json)


@dataclass(frozen=True)
class Lake:
    root: str  # URI of the lake root, e.g. file:///repo/.water/lake or s3://bucket/lake
    pipeline: str

    def uri(self, dataset: str, ds: str) -> str:
        """URI of one partition; `ds` may be a template such as "{{ ds }}"."""
        return f"{self.root.rstrip('/')}/{self.pipeline}/{dataset}/ds={ds}"

    def dataset_uri(self, dataset: str) -> str:
        return f"{self.root.rstrip('/')}/{self.pipeline}/{dataset}"
