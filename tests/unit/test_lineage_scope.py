"""Single-process runs (`water run`, `airflow dags test`): each task's OpenLineage event carries
only its own datasets, although the hook lineage collector is one per process
(water.lineage_listener, registered by plugins/water_lineage.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import ROOT

SEEN: dict[str, Any] = {}


def report_lineage(**context: Any) -> None:
    """A hook's report, as an S3 or GCS hook makes it: the collector's input and output assets."""
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    collector.add_input_asset(context=context["task"], uri="s3://first-bucket/raw/data.csv")
    collector.add_output_asset(context=context["task"], uri="s3://first-bucket/features/data.parquet")


def extract_own_lineage(**context: Any) -> None:
    """What the OpenLineage provider would put in this task's event: it has no extractor, so the
    hook lineage collector's (the provider's own ExtractorManager, as its listener calls it)."""
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState

    manager = ExtractorManager()
    lineage = manager.extract_metadata(
        dagrun=context["dag_run"],
        task=context["task"],
        task_instance_state=TaskInstanceState.SUCCESS,
        task_instance=context["ti"],
    )
    SEEN["second"] = [(d.namespace, d.name) for d in [*lineage.inputs, *lineage.outputs]]


@pytest.fixture
def real_collector(monkeypatch):
    """A collector that keeps what hooks report, as when the OpenLineage provider is enabled
    (it registers a hook lineage reader); a fresh one for this test."""
    from airflow.sdk import lineage, plugins_manager

    monkeypatch.setattr(plugins_manager, "get_hook_lineage_readers_plugins", lambda: [lineage.HookLineageReader])
    lineage.get_hook_lineage_collector.cache_clear()
    yield
    lineage.get_hook_lineage_collector.cache_clear()


def test_the_water_plugin_registers_the_listener():
    from airflow.sdk import plugins_manager

    plugins, _ = plugins_manager._get_plugins()
    assert "water_lineage" in {p.name for p in plugins}, f"no water_lineage plugin under {ROOT / 'plugins'}"


def test_a_task_in_the_same_process_does_not_carry_the_previous_tasks_datasets(airflow_db, real_collector, tmp_path):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG("lineage_scope", schedule=None, start_date=datetime(2026, 11, 1, tzinfo=UTC)) as dag:
        first = PythonOperator(task_id="first", python_callable=report_lineage)
        second = PythonOperator(task_id="second", python_callable=extract_own_lineage)
        first >> second
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(tmp_path))
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)  # dag.test() runs a DAG the metadata database knows
    SEEN.clear()
    run = dag.test(logical_date=datetime(2026, 11, 1, tzinfo=UTC))
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state
    assert SEEN["second"] == [], f"the second task's event would carry the first task's datasets: {SEEN['second']}"


def test_the_collector_still_reports_a_tasks_own_datasets(real_collector):
    """Forgetting at the start of a task leaves what the task's own hooks report."""
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    from water.lineage_listener import forget_hook_lineage

    get_hook_lineage_collector().add_input_asset(context=object(), uri="s3://first-bucket/raw/data.csv")
    assert forget_hook_lineage() is True
    assert ExtractorManager().get_hook_lineage() is None  # the earlier task's report is gone
    get_hook_lineage_collector().add_output_asset(context=object(), uri="s3://second-bucket/out/data.parquet")
    lineage = ExtractorManager().get_hook_lineage()
    assert lineage is not None and [(d.namespace, d.name) for d in lineage.outputs] == [
        ("s3://second-bucket", "out/data.parquet")
    ]
