"""The DAG's doc (water.docs.dag_doc): its commands name the spec's own start_date."""

from __future__ import annotations

from datetime import date

from water.docs import dag_doc
from water.spec import load_pipeline


def test_the_run_commands_use_the_specs_start_date():
    spec = load_pipeline("recipe_engagement").model_copy(update={"start_date": date(2027, 3, 14)})
    doc = dag_doc(spec, "local")
    assert "water run recipe_engagement --date 2027-03-14" in doc
    assert "airflow dags test recipe_engagement 2027-03-14" in doc
