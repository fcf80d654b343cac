"""Airflow DAG for the customer_value pipeline, built from include/pipelines/customer_value.yaml."""

from water.factory import build_pipeline_dag

dag = build_pipeline_dag("customer_value")
