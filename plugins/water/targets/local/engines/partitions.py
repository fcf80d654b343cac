"""Partition commits for the local lake: write aside, then swap into place.

A stage writes into staging folders next to its partitions; only when the whole stage
succeeds are the partitions replaced. A failed stage leaves the previous good partitions
as they were.

Staging folders (and the old partitions being swapped out) are named after the process
that made them (`.staging-ds=….pid<PID>.<token>`): what a killed process left behind is
removed by the next stage writing beside it, or the next `water run` (`remove_dead_debris`),
while a live process's folders are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import psutil

DEBRIS_PREFIXES = (".staging-", ".replaced-")
_OWNER = re.compile(r"\.pid(\d+)\.[0-9a-f]+$")
_TAG = re.compile(r"(\.pid\d+\.[0-9a-f]+|-[0-9a-f]{8})$")  # the owner tag, or the token of older names
_OWN_STAGING: set[Path] = set()  # this process's staging folders, while their stage runs
_OWN_STAGING_LOCK = threading.Lock()


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
    targets = {name: local_path(uri) for name, uri in partitions.items()}
    staging = {name: t.parent / f".staging-{t.name}{_owner_tag()}" for name, t in targets.items()}
    for folder in {t.parent for t in targets.values()}:
        remove_dead_debris(folder, depth=0)
    with _OWN_STAGING_LOCK:
        _OWN_STAGING.update(staging.values())
    try:
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
    finally:
        with _OWN_STAGING_LOCK:
            _OWN_STAGING.difference_update(staging.values())


def replace_folder(new: Path, target: Path) -> None:
    old = target.parent / f".replaced-{target.name}{_owner_tag()}"
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _owner_tag() -> str:
    return f".pid{os.getpid()}.{uuid.uuid4().hex[:8]}"


def owner_alive(folder: Path) -> bool:
    """Whether the process that made this staging folder still runs (False for folders named
    before owners were, which no live process makes any more)."""
    owner = _OWNER.search(folder.name)
    return owner is not None and psutil.pid_exists(int(owner.group(1)))


def remove_dead_debris(root: Path, depth: int = 3) -> list[Path]:
    """Remove the staging and swapped-out folders under root (down to `depth` folders below)
    whose owner process is gone; returns them."""
    removed: list[Path] = []
    try:
        entries = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(DEBRIS_PREFIXES):
            if owner_alive(entry):
                continue
            partition = entry.parent / _TAG.sub("", entry.name.removeprefix(".replaced-"))
            if entry.name.startswith(".replaced-") and not partition.exists():
                entry.rename(partition)  # killed mid-swap: the previous partition comes back
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif depth > 0 and not entry.name.startswith("."):
            removed += remove_dead_debris(entry, depth - 1)
    return removed


def discard_own_staging() -> list[Path]:
    """Remove this process's staging folders now (an interrupted run exits without its stage
    cleaning up); returns them."""
    with _OWN_STAGING_LOCK:
        folders = list(_OWN_STAGING)
        _OWN_STAGING.clear()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return folders


def data_files(folder: Path) -> list[Path]:
    """The files a partition holds, without Spark's markers and checksums."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))


def local_files(folder: Path) -> list[tuple[str, Callable[[], BinaryIO]]]:
    """A partition's data files as water.quality reads them: (path relative to it, opener)."""
    return [(str(p.relative_to(folder)), _reader(p)) for p in data_files(folder)]


def _reader(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")
