"""Airflow plugin: water's listener that scopes hook lineage to one task (water.lineage_listener)."""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

from water.lineage_listener import task_lineage_scope


class WaterLineagePlugin(AirflowPlugin):
    name = "water_lineage"
    listeners: ClassVar[list[object]] = [task_lineage_scope]
