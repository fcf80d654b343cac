"""Every BigQuery operator runs its job in WATER_BIGQUERY_LOCATION.

BigQuery finds a job by project, id and location; without a location only a job in the US
multi-region is found, so a deferrable operator's trigger polling a job in `europe-west1`
(or the operator re-attaching to one on a retry) gets "job not found". The contract tests'
settings use a single region for that reason.
"""

from __future__ import annotations

import pytest

from tests.contract.cloud import CLOUD_ENV, PIPELINES, as_run, make_context, spec_of, tasks_as_run


def bigquery_tasks(dag) -> list:
    """The DAG's tasks that run a BigQuery job or call the BigQuery API."""
    return [
        t
        for t in tasks_as_run(dag)
        if type(t).__module__.startswith("airflow.providers.google") and "BigQuery" in type(t).__name__
    ]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_bigquery_operator_has_the_location(cloud_dags, cloud_settings, pipeline):
    assert cloud_settings.bigquery_location == CLOUD_ENV["WATER_BIGQUERY_LOCATION"] != "US"
    tasks = bigquery_tasks(cloud_dags(pipeline))
    spec = spec_of(pipeline)
    # an extract runs a query and an export, a publish a load (and a retraction its delete)
    expected = 2 * len(spec.steps_of("bigquery_sql")) + len(spec.steps_of("publish"))
    assert len(tasks) >= expected > 0
    missing = {t.task_id: t.location for t in tasks if t.location != cloud_settings.bigquery_location}
    assert missing == {}, f"BigQuery operators without WATER_BIGQUERY_LOCATION: {missing}"


def test_a_deferred_query_job_is_polled_in_its_location(cloud_target, cloud_settings):
    """What the triggerer gets: the deferred query job's trigger names the job's location."""
    from unittest import mock

    from airflow.providers.google.cloud.operators.bigquery import BigQueryInsertJobOperator
    from airflow.sdk.exceptions import TaskDeferred

    from water.factory import build_dag
    from water.targets.cloud.target import CloudSettings, CloudTarget

    deferring = CloudTarget(settings=CloudSettings.from_environment({**CLOUD_ENV, "WATER_DEFERRABLE": "true"}))
    pipeline = next(p for p in PIPELINES if spec_of(p).steps_of("bigquery_sql"))
    name = next(iter(spec_of(pipeline).steps_of("bigquery_sql")))
    task = as_run(build_dag(spec_of(pipeline), deferring).get_task(f"{name}.query"))
    assert task.deferrable

    def submitted(operator, context):
        operator._job = mock.Mock(job_id="job-1", running=lambda: True)
        operator.hook = mock.Mock(location=None)  # the connection names no location either
        return "job-1"

    with mock.patch.object(BigQueryInsertJobOperator, "submit_job", submitted), pytest.raises(TaskDeferred) as deferred:
        task.execute(make_context(pipeline))
    assert deferred.value.trigger.location == cloud_settings.bigquery_location


@pytest.mark.parametrize("value", ["US", "EU", "europe-west1", "us-east4", "northamerica-northeast1"])
def test_the_location_setting_accepts_bigquery_locations(value):
    from water.targets.cloud.target import CloudSettings

    assert CloudSettings.from_environment({**CLOUD_ENV, "WATER_BIGQUERY_LOCATION": value}).bigquery_location == value


def test_the_location_defaults_to_the_us_and_refuses_a_typo():
    from water.targets.cloud.target import CloudSettings, SettingsError

    env = {k: v for k, v in CLOUD_ENV.items() if k != "WATER_BIGQUERY_LOCATION"}
    assert CloudSettings.from_environment(env).bigquery_location == "US"
    with pytest.raises(SettingsError, match=r"WATER_BIGQUERY_LOCATION='Europe West 1'.*BigQuery location"):
        CloudSettings.from_environment({**env, "WATER_BIGQUERY_LOCATION": "Europe West 1"})
