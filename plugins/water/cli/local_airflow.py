"""The project's Airflow homes: config, metadata DB, environment — written in one place.

Two homes share the same base settings (the project's dags/ and plugins/ folders, no
examples, LocalExecutor): `water run` uses .water/airflow (SQLite, `airflow dags test`);
`water up` uses .water/stack (a scheduler-driven stack, see water.cli.stack) with its own
settings on top. Afterwards plain Airflow commands work with AIRFLOW_HOME pointing at either,
e.g. `AIRFLOW_HOME=.water/airflow airflow dags test recipe_engagement 2026-11-01` (relative or not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from water import paths

Settings = dict[str, dict[str, str]]


def airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


def statsd_wanted() -> bool:
    return bool(os.environ.get("WATER_STATSD_HOST") or os.environ.get("WATER_STATSD_PORT"))


# The OpenLineage provider's settings every environment shares (helm-values/base.yaml has the
# same; a contract test holds them equal); each environment adds its own transport. Events are
# emitted in a thread: the default forks the task runner, which for `water run` is the whole
# run's process. include_full_task_info (every operator argument in the event) stays off.
LINEAGE = {"namespace": "water", "execute_in_thread": "True"}
# Every environment's transport goes inside the OpenLineage client's transform transport with
# water's transformer: provider operators' partition and object names become the dataset's
# (water.lineage_names; the cluster's Secret has the same, docs/deploy.md).
LINEAGE_NAMES = "water.lineage_names.LakeDatasetNames"


def named_transport(transport: dict[str, Any]) -> dict[str, Any]:
    """`transport` wrapped in the transform transport that names datasets as water does."""
    return {"type": "transform", "transformer_class": LINEAGE_NAMES, "transport": transport}


def base_settings(home: Path) -> Settings:
    """What every Airflow home of the project has."""
    root = paths.project_root()
    return {
        "core": {
            "dags_folder": str(root / "dags"),
            "plugins_folder": str(root / "plugins"),
            "load_examples": "False",
            "executor": "LocalExecutor",
        },
        # An absolute path: Airflow's default is relative to AIRFLOW_HOME as given, and it
        # refuses a relative SQLite path (`AIRFLOW_HOME=.water/airflow airflow …` would fail).
        "database": {"sql_alchemy_conn": f"sqlite:///{home.resolve() / 'airflow.db'}"},
        # Task logs may quote a secret Airflow's masker did not know: only their owner reads them.
        "logging": {
            "base_log_folder": str(home / "logs"),
            "file_task_handler_new_folder_permissions": "0o700",
            "file_task_handler_new_file_permissions": "0o600",
        },
        # Airflow's metrics and the pipelines' own (water.metrics) in DogStatsD form, with tags,
        # to a Datadog agent (or any StatsD listener) at WATER_STATSD_HOST:WATER_STATSD_PORT —
        # on once either is set (a laptop without an agent would log a refused packet per metric).
        "metrics": {
            "statsd_on": str(statsd_wanted()),
            "statsd_datadog_enabled": str(statsd_wanted()),
            "statsd_host": os.environ.get("WATER_STATSD_HOST", "127.0.0.1"),
            "statsd_port": os.environ.get("WATER_STATSD_PORT", "8125"),
            "statsd_prefix": "airflow",
            "statsd_datadog_tags": "env:local,project:water",
        },
        # OpenLineage events of every task and run, one JSON a line (docs/lineage.md).
        "openlineage": {
            **LINEAGE,
            "transport": json.dumps(
                named_transport({"type": "file", "log_file_path": str(paths.lineage_events()), "append": True})
            ),
        },
    }


@dataclass(frozen=True)
class AirflowHome:
    """An AIRFLOW_HOME of this project: the base settings plus `extra` ones, as airflow.cfg and env."""

    path: Path
    extra: Settings = field(default_factory=dict)
    written_by: str = "water run"

    def settings(self) -> Settings:
        merged = {section: dict(values) for section, values in base_settings(self.path).items()}
        for section, values in self.extra.items():
            merged.setdefault(section, {}).update(values)
        return merged

    def environment(self) -> dict[str, str]:
        """Environment variables for any Airflow process of this home."""
        env = {"AIRFLOW_HOME": str(self.path)}
        for section, values in self.settings().items():
            for key, value in values.items():
                env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
        return env

    def write_config(self) -> Path:
        """airflow.cfg with these settings, so AIRFLOW_HOME alone is enough for `airflow`. The home
        and its log folder are private (0700): they hold the config's secrets, the metadata DB, logs."""
        paths.private_dir(self.path)
        paths.private_dir(self.path / "logs")
        paths.private_dir(paths.lineage_dir())  # the file transport appends, it makes no folder
        lines = [f"# Written by `{self.written_by}`; AIRFLOW__* environment variables override it.", ""]
        for section, values in self.settings().items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {value}" for key, value in values.items()]
            lines.append("")
        path = self.path / "airflow.cfg"
        text = "\n".join(lines)
        if not path.exists() or path.read_text() != text or path.stat().st_mode & 0o077:
            paths.write_atomic(path, text, private=True)  # a stack's config holds its secrets
        return path

    def migration_marker(self) -> Path:
        import importlib.metadata

        return self.path / f".migrated-{importlib.metadata.version('apache-airflow')}"

    def _database_present(self) -> bool:
        conn = self.settings().get("database", {}).get("sql_alchemy_conn", f"sqlite:///{self.path / 'airflow.db'}")
        return not conn.startswith("sqlite:") or Path(conn.removeprefix("sqlite:///")).exists()

    def migrate(self, log: Callable[[str], None] = print) -> bool:
        """Create or upgrade the metadata DB once per Airflow version; True if it ran."""
        marker = self.migration_marker()
        if marker.exists() and self._database_present():
            return False
        self.write_config()
        log(f"migrating the Airflow metadata database of {paths.shown(self.path)} …")
        result = subprocess.run(
            [airflow_bin(), "db", "migrate"],
            env={**os.environ, **self.environment()},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        marker.write_text(marker.name.removeprefix(".migrated-"))
        return True


# `water run`'s home (.water/airflow, SQLite).


def run_home() -> AirflowHome:
    return AirflowHome(paths.state_dir() / "airflow")


def write_config() -> Path:
    return run_home().write_config()


def use_in_this_process() -> None:
    """Point this process's Airflow at `water run`'s home (call before importing airflow)."""
    os.environ.update(run_home().environment())


def migrate(log: Callable[[str], None] = print) -> bool:
    return run_home().migrate(log)
