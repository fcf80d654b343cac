"""Partition commits for the local lake: write aside, then swap into place.

A stage writes into staging folders next to its partitions; only when the whole stage
succeeds are the partitions replaced. A failed stage leaves the previous good partitions
as they were.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse


def local_path(uri: str) -> Path:
    """file:///x or /x -> Path('/x'); the local target's lake is a folder."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"the local target needs a file:// lake, got {uri}")
    return Path(unquote(parsed.path))


def file_uri(path: Path) -> str:
    """file:// URI of a local path, without percent-encoding (Spark reads `ds=...` literally)."""
    return f"file://{Path(path).resolve()}"


@contextmanager
def staged(partitions: dict[str, str]) -> Iterator[dict[str, Path]]:
    """Yield a staging folder per partition URI; commit all of them if the block succeeds."""
    token = uuid.uuid4().hex[:8]
    targets = {name: local_path(uri) for name, uri in partitions.items()}
    staging = {name: t.parent / f".staging-{t.name}-{token}" for name, t in targets.items()}
    for folder in staging.values():
        folder.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for name, target in targets.items():
        replace_folder(staging[name], target)


def replace_folder(new: Path, target: Path) -> None:
    old = target.parent / f".replaced-{target.name}-{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def data_files(folder: Path) -> list[Path]:
    """The files a partition holds, without Spark's markers and checksums."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
    )
