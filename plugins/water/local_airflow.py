"""The project's own Airflow home (.water/airflow): config, metadata DB, environment.

`water run` prepares it; afterwards plain Airflow commands work with AIRFLOW_HOME pointing
here, e.g. `AIRFLOW_HOME=.water/airflow airflow dags test recipe_engagement 2026-11-01`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from water import paths


def airflow_home() -> Path:
    return paths.state_dir() / "airflow"


def airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


def settings() -> dict[str, dict[str, str]]:
    root = paths.project_root()
    return {
        "core": {
            "dags_folder": str(root / "dags"),
            "plugins_folder": str(root / "plugins"),
            "load_examples": "False",
            "executor": "LocalExecutor",
        },
        "logging": {"base_log_folder": str(airflow_home() / "logs")},
    }


def environment() -> dict[str, str]:
    """Environment variables for any Airflow process of this project."""
    env = {"AIRFLOW_HOME": str(airflow_home())}
    for section, values in settings().items():
        for key, value in values.items():
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
    return env


def write_config() -> Path:
    """airflow.cfg with the project's folders, so AIRFLOW_HOME alone is enough for `airflow`."""
    home = airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `water run`; AIRFLOW__* environment variables override it.", ""]
    for section, values in settings().items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    path = home / "airflow.cfg"
    text = "\n".join(lines)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def use_in_this_process() -> None:
    """Point this process's Airflow at the project (call before importing airflow)."""
    for key, value in environment().items():
        os.environ[key] = value


def migrate(log=print) -> bool:
    """Create or upgrade the metadata DB once per Airflow version; True if it ran."""
    import importlib.metadata

    version = importlib.metadata.version("apache-airflow")
    marker = airflow_home() / f".migrated-{version}"
    database = airflow_home() / "airflow.db"
    if marker.exists() and database.exists():
        return False
    write_config()
    log(f"migrating the Airflow metadata database in {airflow_home()} …")
    result = subprocess.run(
        [airflow_bin(), "db", "migrate"],
        env={**os.environ, **environment()},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    marker.write_text(version)
    return True
