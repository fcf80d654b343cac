"""Airflow DAG for the {{name}} pipeline, built from include/pipelines/{{name}}.yaml."""

from water.factory import build_pipeline_dag

dag = build_pipeline_dag("{{name}}")
