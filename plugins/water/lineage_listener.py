"""Each task's OpenLineage event carries only the datasets of that task.

Hooks report what they read and wrote to Airflow's hook lineage collector
(airflow.sdk.lineage.get_hook_lineage_collector), a process-wide singleton that is never
emptied. The OpenLineage provider reads it when a task's own extractor found no datasets
(airflow.providers.openlineage.extractors.manager.ExtractorManager.get_hook_lineage). A
worker runs one task per process, so that is one task's lineage; but `water run` and
`airflow dags test` run every task in one process, where the collector keeps what every
earlier task reported and the next task's event would carry it. The listener below forgets
it as each task starts, before the provider's listener reads it (tryfirst).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import hookimpl

from water.masking import protect_lineage_transport


def forget_hook_lineage() -> bool:
    """Drop the collector and what hooks reported to it; the next hook that reports gets a new one.

    Returns whether there was one (a process where no hook reported anything has none, and
    creating one just to empty it would import every provider's asset handlers)."""
    from airflow.sdk import lineage

    if lineage.get_hook_lineage_collector.cache_info().currsize == 0:
        return False
    lineage.get_hook_lineage_collector.cache_clear()
    return True


class TaskLineageScope:
    """The listener: a task starts with an empty hook lineage collector, and every process masks
    its lineage transport's secrets (water.masking.protect_lineage_transport)."""

    @hookimpl(tryfirst=True)
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        forget_hook_lineage()
        protect_lineage_transport()  # before the provider's listener builds the transport

    @hookimpl
    def on_starting(self, component: Any) -> None:
        # the scheduler and the others send DAG-run events; their logging is Airflow's, masked
        protect_lineage_transport(logs=False)


task_lineage_scope = TaskLineageScope()
