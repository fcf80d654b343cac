"""The lake layout: every stage reads and overwrites its own `ds` partition.

    <lake>/<pipeline>/<dataset>/ds=YYYY-MM-DD/...

The same layout serves both targets; only the root differs (file:// locally, s3:// in the
cloud). The datasets are the ones each spec's steps read and write; operators and the CLI
agree on paths through this module, never through globals.
"""

from __future__ import annotations

from dataclasses import dataclass

# The lake's own datasets, beside those the spec's steps write (water.spec).
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
