"""Test set-up: an Airflow home and water state in a temporary folder, never the developer's.

The environment is set before anything imports Airflow, as Airflow reads it at import.
"""

from __future__ import annotations

import functools
import gc
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
# Speed only, for every process the tests start (the results do not change): the training and
# transform pods' OpenMP threads sleep instead of spinning while they wait, which on a 2-core
# machine shared with another worker's pipeline made `train` 3x slower; local Spark's short jobs
# compile with the JIT's first tier only and collect with the serial GC (the features job: 40 %
# less CPU, a third of the wall time on a loaded machine). Set either yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
sys.path.insert(0, str(ROOT / "plugins"))

from water.cli import local_airflow  # noqa: E402

local_airflow.use_in_this_process()
local_airflow.write_config()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests import machine

    machine.skip_spark_without_java(items, machine.java())


def pytest_collection_finish(session: pytest.Session) -> None:
    """Speed only: what is alive once the tests are collected (Airflow, the providers, the test
    modules, their specs) lives as long as the session. Frozen, the garbage collector no longer
    walks it in every full collection."""
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Speed only: at exit the interpreter collects garbage again and again while it clears its
    modules, walking everything the tests left (a worker took 8 s to exit, CPU-bound); frozen
    objects are left to the end of the process."""
    gc.freeze()


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


def pytest_sessionstart(session: pytest.Session) -> None:
    """Where the session's workers share files (tests/airflow_database.py): beside their own
    temporary folders under pytest-xdist, the session's own without it."""
    from tests import airflow_database

    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    os.environ.setdefault(airflow_database.SHARED, str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base))


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata database (a copy of the session's, tests/airflow_database.py)."""
    from tests.airflow_database import copy_migrated_database

    copy_migrated_database(local_airflow.run_home().path)
    local_airflow.migrate(log=lambda _: None)  # a no-op on the copy
    from airflow import settings

    settings.configure_orm()
    return settings


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


DEMO_SEED = ROOT / "include" / "seeds" / "recipe_engagement.py"


@functools.cache
def demo_seed():
    """The demo's seed entrypoint (include/seeds/recipe_engagement.py, a script) as a module,
    loaded once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("water_demo_seed", DEMO_SEED)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


class FakeTI:
    """A task instance as operators use it: XCom by (task id, key), what they push, the try number."""

    def __init__(
        self,
        xcom: dict[tuple[str, str], object] | None = None,
        try_number: int = 1,
        dag_id: str = "pipeline",
        run_id: str = "manual__test",
    ) -> None:
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, "task"
        self.try_number, self.map_index = try_number, -1
        self.xcom = dict(xcom or {})
        self.pushed: dict[str, object] = {}

    def xcom_pull(self, task_ids: str | None = None, key: str | None = None, **_: object) -> object:
        return self.xcom.get((task_ids, key or "return_value"))

    def xcom_push(self, key: str, value: object) -> None:
        """Kept in `pushed`, and pulled by later tasks as this task's (set `task_id` to the task's)."""
        self.pushed[key] = value
        self.xcom[(self.task_id, key)] = value


def make_task_context(ds: str, xcom: dict[tuple[str, str], object] | None = None, params: dict | None = None) -> dict:
    """The context a task's execute gets for ds, its task instance a FakeTI holding `xcom`
    ({(task id, key): value}); the `task_context` fixture, for a helper that is not a test."""
    ti = FakeTI(xcom, run_id=f"manual__{ds}")
    return {"ds": ds, "ds_nodash": ds.replace("-", ""), "run_id": ti.run_id, "ti": ti, "params": params or {}}


@pytest.fixture
def task_context():
    """make_task_context(ds, xcom={(task id, key): value}, params={...}) -> the context a task's execute gets."""
    return make_task_context


def import_errors_beside_the_demo(tmp_path: Path, monkeypatch, specs: dict[str, bytes]) -> dict[str, str]:
    """Each spec (name -> file bytes) as a pipeline with its own DAG file in a copy of the
    project beside the demo, parsed by a DagBag: the demo still loads; the import errors by
    DAG file name."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    shutil.copytree(ROOT / "include", tmp_path / "include")
    (tmp_path / "dags").mkdir()
    demo_dag = ROOT / "dags" / "recipe_engagement.py"
    shutil.copy(demo_dag, tmp_path / "dags")
    for name, data in specs.items():
        (tmp_path / "include" / "pipelines" / f"{name}.yaml").write_bytes(data)
        (tmp_path / "dags" / f"{name}.py").write_text(demo_dag.read_text().replace("recipe_engagement", name))
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(tmp_path))
    bag = DagBag(str(tmp_path / "dags"))
    assert "recipe_engagement" in bag.dags
    return {Path(path).stem: str(error) for path, error in bag.import_errors.items()}
