"""Airflow DAG for the recipe_engagement_vertex pipeline, built from include/pipelines/recipe_engagement_vertex.yaml."""

from water.factory import build_pipeline_dag

dag = build_pipeline_dag("recipe_engagement_vertex")
