"""The lake as Airflow's ObjectStoragePath sees it: one code path for file:// and s3://.

Target-agnostic tasks (drift guard, quarantine, run report) read and write the lake through
this; the target supplies the root URI and, in the cloud, the connection id for the store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from water.lake import Lake

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from water.quality import PartitionFile

_DS = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class LakeStore:
    root: str
    pipeline: str
    conn_id: str | None = None

    @property
    def lake(self) -> Lake:
        return Lake(self.root, self.pipeline)

    def _path(self, uri: str) -> ObjectStoragePath:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri, conn_id=self.conn_id) if self.conn_id else ObjectStoragePath(uri)

    def partition(self, dataset: str, ds: str) -> ObjectStoragePath:
        return self._path(self.lake.uri(dataset, ds))

    def days(self, dataset: str) -> list[str]:
        """The ds of every partition of a dataset, oldest first."""
        folder = self._path(self.lake.dataset_uri(dataset))
        if not folder.exists():
            return []
        found = (_DS.match(child.name) for child in folder.iterdir())
        return sorted(m.group(1) for m in found if m)

    def read_json(self, dataset: str, ds: str, name: str) -> dict[str, Any] | None:
        path = self.partition(dataset, ds) / name
        return json.loads(path.read_text()) if path.exists() else None

    def write_json(self, dataset: str, ds: str, name: str, value: dict[str, Any]) -> str:
        return self.write_text(dataset, ds, name, json.dumps(value, indent=2, sort_keys=True, default=str))

    def write_text(self, dataset: str, ds: str, name: str, text: str) -> str:
        folder = self.partition(dataset, ds)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if path.protocol in ("file", "local", ""):  # a reader sees the old file or the new, never half
            from pathlib import Path

            from water import paths

            paths.write_atomic(Path(path.path), text)
        else:  # an object store's PUT replaces the object whole
            path.write_text(text)
        return str(path)

    def files(self, dataset: str, ds: str) -> list[PartitionFile]:
        """The data files of one partition as water.quality reads them (see files_under)."""
        return self.files_under(self.lake.uri(dataset, ds))

    def files_under(self, uri: str) -> list[PartitionFile]:
        """(path relative to `uri`, opener) of every data file under a folder: files and folders
        named `_…` or `.…` (markers, checksums, staging) are not data. Nothing is read yet."""
        folder = self._path(uri)
        if not folder.exists():
            return []
        base = folder.path.rstrip("/") + "/"
        found: list[PartitionFile] = []
        for file in sorted(folder.fs.find(folder.path)):
            relative = file[len(base) :] if file.startswith(base) else file.rsplit("/", 1)[-1]
            if relative and not any(part.startswith((".", "_")) for part in relative.split("/")):
                found.append((relative, partial(folder.fs.open, file, "rb")))
        return found

    def remove_partition(self, dataset: str, ds: str) -> bool:
        folder = self.partition(dataset, ds)
        if not folder.exists():
            return False
        folder.fs.rm(folder.path, recursive=True)
        return True

    def move_partition(self, source: str, destination: str, ds: str) -> bool:
        """Move source/ds=… to destination/ds=…, replacing what was there. False if absent."""
        src, dst = self.partition(source, ds), self.partition(destination, ds)
        if not src.exists():
            return False
        self.remove_partition(destination, ds)
        dst.mkdir(parents=True, exist_ok=True)
        # File by file: a rename on a local disk, copy + delete on S3 (s3fs's recursive mv
        # trips over the folder's own key).
        prefix = src.path.rstrip("/") + "/"
        for file in src.fs.find(src.path):
            src.fs.mv(file, dst.path.rstrip("/") + "/" + file[len(prefix) :])
        if src.fs.exists(src.path):  # the emptied folder, on a local disk
            src.fs.rm(src.path, recursive=True)
        return True

    def column_counts(self, dataset: str, ds: str, column: str) -> dict[str, int]:
        """Rows per value of one column over a Parquet partition (reads that column only)."""
        import pyarrow.parquet as pq

        counts: dict[str, int] = {}
        folder = self.partition(dataset, ds)
        for child in sorted(folder.iterdir(), key=lambda p: p.name):
            if child.name.startswith((".", "_")) or not child.name.endswith(".parquet"):
                continue
            with child.open("rb") as handle:
                table = pq.read_table(handle, columns=[column])
            grouped = table.group_by(column).aggregate([(column, "count")])
            for value, n in zip(grouped[column].to_pylist(), grouped[f"{column}_count"].to_pylist(), strict=True):
                if value is not None:
                    counts[str(value)] = counts.get(str(value), 0) + int(n)
        return dict(sorted(counts.items()))
