"""One migrated Airflow metadata database for the whole test session, copied where a test needs one.

`airflow db migrate` takes about 15 s on a 2-core machine. Every Airflow home a test makes
(the session's own for in-process DAG runs, a `water run`'s state folder) starts from a copy of
one database migrated once per session, not once per pytest-xdist worker and use: the first
worker to need it migrates under a file lock, the others wait and copy. It lives beside the
workers' temporary folders (pytest keeps the last three sessions' and removes older ones).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
from pathlib import Path

from water.cli.local_airflow import AirflowHome

SHARED = "WATER_TESTS_SHARED_DIR"  # set by tests/conftest.py for the session (and its workers)


@functools.cache
def migrated_home() -> Path:
    """The session's migrated Airflow home (migrated here if no worker has yet)."""
    shared = Path(os.environ[SHARED])
    home = AirflowHome(shared / "migrated-airflow")
    shared.mkdir(parents=True, exist_ok=True)
    with (shared / "migrated-airflow.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        home.migrate(log=lambda _: None)  # a no-op once a worker has migrated it
    return home.path


def copy_migrated_database(home: Path) -> Path:
    """Give the Airflow home `home` a copy of the migrated database (and its marker) unless it has a database."""
    if not (home / "airflow.db").exists():
        home.mkdir(parents=True, exist_ok=True)
        for made in migrated_home().iterdir():
            if made.name == "airflow.db" or made.name.startswith(".migrated-"):
                shutil.copy2(made, home / made.name)
    return home
