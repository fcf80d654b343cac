"""Every DAG in dags/ imports cleanly, carries what operators need, and parses without I/O."""

from __future__ import annotations

from unittest import mock

import pytest

from tests.conftest import ROOT

DAG_FILES = sorted(p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == len(DAG_FILES) >= 1


@pytest.mark.parametrize("dag_id", DAG_FILES)
def test_dag_carries_owner_tags_retries_docs(dagbag, dag_id):
    dag = dagbag.dags.get(dag_id)
    assert dag is not None, f"{dag_id}.py builds no DAG named {dag_id}"
    assert dag.doc_md and dag_id in dag.doc_md and "include/pipelines/" in dag.doc_md
    assert dag.tags and "water" in dag.tags
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{task.task_id} has no owner"
        assert task.retries >= 1, f"{task.task_id} has no retries"
        assert task.execution_timeout is not None, f"{task.task_id} runs external work without a timeout"


@pytest.mark.parametrize("dag_id", DAG_FILES)
def test_graph_is_the_pipeline(dagbag, dag_id):
    dag = dagbag.dags.get(dag_id)
    order = ["extract", "features", "training_set", "preprocess", "train",
             "batch_inference", "inference_stats", "drift_guard", "size_postprocess"]
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.get_task("drift_guard").downstream_task_ids == {"size_postprocess", "quarantine"}
    # The run report closes every run as a teardown: it runs after anything, and never masks a failure.
    report = dag.get_task("run_report")
    assert report.is_teardown and report.upstream_task_ids == {"publish", "quarantine", "no_predictions"}
    assert [t.task_id for t in dag.leaves] == ["run_report"]
    tiers = [f"postprocess_{t}" for t in ("small", "medium", "large")]
    assert dag.get_task("size_postprocess").downstream_task_ids == {"no_predictions", *tiers[:2], "plan_shards"}
    assert dag.get_task("plan_shards").downstream_task_ids == {"postprocess_large"}
    for tier in tiers:
        assert dag.get_task(tier).downstream_task_ids == {"commit_outputs"}
    assert dag.get_task("commit_outputs").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("commit_outputs").downstream_task_ids == {"publish"}
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(dag.get_task("postprocess_large"), MappedOperator)  # fans out over the shards
    assert not isinstance(dag.get_task("postprocess_medium"), MappedOperator)


@pytest.mark.parametrize("dag_id", DAG_FILES)
def test_run_options_are_typed_params(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    force_tier = dag.params.get_param("force_tier")
    assert force_tier.schema["enum"] == [None, "small", "medium", "large"]
    assert force_tier.description
    accept = dag.params.get_param("accept_drift")
    assert accept.value is False and accept.schema["type"] == "boolean" and accept.description
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param("accept_drift").resolve("yes please")


def test_parsing_makes_no_connection_variable_or_db_lookups(airflow_db):
    """As Airflow's own example-DAG test: parsing must not touch connections, variables or the DB."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable
    from sqlalchemy import event

    queries = []

    def count(*args, **kwargs):
        queries.append(args[2])

    engine = airflow_db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        with (
            mock.patch.object(BaseHook, "get_connection", side_effect=AssertionError("connection look-up")) as conn,
            mock.patch.object(Variable, "get", side_effect=AssertionError("variable look-up")) as var,
        ):
            bag = DagBag(str(ROOT / "dags"))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert bag.import_errors == {}
    assert conn.call_count == 0 and var.call_count == 0
    assert queries == []


# --- the cloud target: the same graph, parsed without I/O ------------------------------------


@pytest.fixture(scope="module")
def cloud_parse(airflow_db):
    """The dags/ folder parsed with WATER_TARGET=cloud, counting DB queries and look-ups."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable
    from sqlalchemy import event

    from tests.contract.cloud import CLOUD_ENV

    queries = []

    def count(*args, **kwargs):
        queries.append(args[2])

    event.listen(airflow_db.engine, "before_cursor_execute", count)
    try:
        with (
            pytest.MonkeyPatch.context() as env,
            mock.patch.object(BaseHook, "get_connection", side_effect=AssertionError("connection look-up")) as conn,
            mock.patch.object(Variable, "get", side_effect=AssertionError("variable look-up")) as var,
        ):
            for name, value in CLOUD_ENV.items():
                env.setenv(name, value)
            bag = DagBag(str(ROOT / "dags"))
    finally:
        event.remove(airflow_db.engine, "before_cursor_execute", count)
    return bag, queries, conn.call_count + var.call_count


def test_cloud_target_parses_without_lookups(cloud_parse):
    bag, queries, lookups = cloud_parse
    assert bag.import_errors == {}
    assert sorted(bag.dags) == DAG_FILES
    assert lookups == 0 and queries == []
    for dag in bag.dags.values():
        assert "target:cloud" in dag.tags
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{task.task_id} has no owner"
            assert task.retries >= 1, f"{task.task_id} has no retries"
            assert task.execution_timeout is not None, f"{task.task_id} runs external work without a timeout"


def _stage_graph(dag) -> set[tuple[str, str]]:
    """Edges between stages: a cloud stage may be a task group (extract.query, ...)."""

    def stage(task_id: str) -> str:
        return task_id.split(".", 1)[0]

    return {
        (stage(task.task_id), stage(down))
        for task in dag.tasks
        for down in task.downstream_task_ids
        if stage(task.task_id) != stage(down)
    }


@pytest.mark.parametrize("dag_id", DAG_FILES)
def test_cloud_graph_is_the_local_graph_at_the_stage_level(dagbag, cloud_parse, dag_id):
    local, cloud = dagbag.dags[dag_id], cloud_parse[0].dags[dag_id]
    assert _stage_graph(cloud) == _stage_graph(local)
    assert {t.task_id.split(".", 1)[0] for t in cloud.tasks} == {t.task_id for t in local.tasks}
    for task_id in ("inference_stats", "size_postprocess", "plan_shards", "commit_outputs"):
        assert cloud.get_task(task_id)  # single tasks the sizing and drift code address by id


@pytest.mark.parametrize("dag_id", DAG_FILES)
def test_cloud_dag_serializes_for_the_scheduler(cloud_parse, dag_id):
    """The dag processor stores DAGs serialized: pod resources, tolerations, mapped pods must survive."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = cloud_parse[0].dags[dag_id]
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert sorted(t.task_id for t in back.tasks) == sorted(t.task_id for t in dag.tasks)
    # the scheduler keeps the serialized form (a dict); workers parse the DAG file again
    assert back.get_task("postprocess_small").container_resources["limits"] == dag.get_task("postprocess_small").container_resources.limits
