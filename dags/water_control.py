"""Airflow DAG water_control: control messages and completion events start pipelines (docs/events.md)."""

from water.control import build_control_dag

dag = build_control_dag()
