"""Test set-up: an Airflow home and water state in a temporary folder, never the developer's.

The environment is set before anything imports Airflow, as Airflow reads it at import.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_STATE = Path(tempfile.mkdtemp(prefix="water-tests-"))

os.environ["WATER_STATE_DIR"] = str(_STATE)
os.environ.pop("WATER_PROJECT_ROOT", None)
os.environ.pop("WATER_LAKE", None)
os.environ.pop("WATER_WAREHOUSE", None)
os.environ.pop("WATER_TARGET", None)
sys.path.insert(0, str(ROOT / "plugins"))

from water.cli import local_airflow  # noqa: E402

local_airflow.use_in_this_process()
local_airflow.write_config()


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata database (once per session)."""
    local_airflow.migrate(log=lambda _: None)
    from airflow import settings

    settings.configure_orm()
    return settings


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


DEMO_SEED = ROOT / "include" / "seeds" / "recipe_engagement.py"
_demo_seed_module = None


def demo_seed():
    """The demo's seed entrypoint (include/seeds/recipe_engagement.py, a script) as a module,
    loaded once."""
    global _demo_seed_module
    if _demo_seed_module is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("water_demo_seed", DEMO_SEED)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        _demo_seed_module = module
    return _demo_seed_module
