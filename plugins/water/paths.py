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
