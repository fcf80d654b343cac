"""Fixtures of the contract tests: the cloud target under test and every shipped pipeline's DAG
on it (the plain helpers and constants they use live in tests/contract/cloud.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.cloud import CLOUD_ENV, PIPELINES, make_context, spec_of, task_copy


@pytest.fixture(scope="session")
def cloud_settings():
    from water.targets.cloud.target import CloudSettings

    return CloudSettings.from_environment(CLOUD_ENV)


@pytest.fixture(scope="session")
def cloud_target(cloud_settings):
    from water.targets.cloud.target import CloudTarget

    return CloudTarget(settings=cloud_settings)


@pytest.fixture(scope="session")
def cloud_dags(cloud_target):
    """dag_of(pipeline) -> the pipeline's DAG on the cloud target (built once per session)."""
    from water.factory import build_dag

    built: dict[str, Any] = {}

    def dag_of(pipeline: str):
        if pipeline not in built:
            built[pipeline] = build_dag(spec_of(pipeline), cloud_target)
        return built[pipeline]

    return dag_of


@pytest.fixture(params=PIPELINES)
def pipeline(request) -> str:
    """Each shipped pipeline in turn (a test may parametrize `pipeline` itself instead)."""
    return request.param


@pytest.fixture
def spec(pipeline):
    return spec_of(pipeline)


@pytest.fixture
def cloud_dag(cloud_dags, pipeline):
    return cloud_dags(pipeline)


@pytest.fixture
def rendered(cloud_dag, pipeline):
    """rendered(task_id) -> the pipeline's task as the task runner runs it (`prepare_for_execution`:
    a provider operator's stand-in builds the operator), its templates rendered for ds=2026-11-01."""

    def render(task_id: str, context: dict[str, Any] | None = None):
        task = task_copy(cloud_dag.get_task(task_id)).prepare_for_execution()
        task.render_template_fields(context or make_context(pipeline))
        return task

    return render
