"""Where things live: the project tree, its include/ folder, and the local state folder.

Read from the environment only; safe to call at DAG parse time.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root (dags/, plugins/, include/); WATER_PROJECT_ROOT overrides."""
    override = os.environ.get("WATER_PROJECT_ROOT")
    return Path(override).resolve() if override else Path(__file__).resolve().parents[2]


def shown(path: Path | str) -> Path:
    """A path as people read it: relative to the project root when it lies inside."""
    resolved = Path(path).resolve()
    return resolved.relative_to(project_root()) if resolved.is_relative_to(project_root()) else Path(path)


def include_dir() -> Path:
    return project_root() / "include"


def pipelines_dir() -> Path:
    return include_dir() / "pipelines"


def state_dir() -> Path:
    """Local working state (.water/): AIRFLOW_HOME, the local lake, run summaries. Git-ignored."""
    override = os.environ.get("WATER_STATE_DIR")
    return Path(override).resolve() if override else project_root() / ".water"


def lake_uri() -> str:
    """Root of the lake for the local target; WATER_LAKE overrides (any ObjectStoragePath URI)."""
    return os.environ.get("WATER_LAKE") or f"file://{state_dir() / 'lake'}"


def warehouse_dir() -> Path:
    """The local stand-in for BigQuery: source tables as Parquet folders, published tables in DuckDB."""
    override = os.environ.get("WATER_WAREHOUSE")
    return Path(override).resolve() if override else state_dir() / "warehouse"


def lineage_dir() -> Path:
    """Where local runs' OpenLineage events go (docs/lineage.md)."""
    return state_dir() / "lineage"


def lineage_events() -> Path:
    """The local OpenLineage events, one JSON event a line, appended by every local Airflow process."""
    return lineage_dir() / "events.jsonl"


def private_dir(path: Path) -> Path:
    """A folder only its owner can enter (0700), made if missing, tightened if it was not."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Write a whole file so that a reader sees the old text or the new, never a half (a temp
    file beside it, fsynced, renamed over). `private`: mode 0600 even if the file existed."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600 if private else 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without setting it (os.umask would race other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022
