"""Every DAG in dags/ imports cleanly, carries what operators need, and parses without I/O."""

from __future__ import annotations

from unittest import mock

import pytest

from tests.conftest import ROOT

DAG_FILES = sorted(p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
# the pipelines' DAGs (a spec each); the others (water_control) are water's own
PIPELINE_DAGS = [d for d in DAG_FILES if (ROOT / "include" / "pipelines" / f"{d}.yaml").is_file()]


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


def _spec(dag_id):
    from water.spec import load_pipeline

    return load_pipeline(dag_id)


def _stage(task_id: str) -> str:
    """The step (or single task) a task belongs to: a cloud step may be a task group (extract.query, ...)."""
    return task_id.split(".", 1)[0]


def _step_tasks(dag, spec, name: str) -> list:
    """The tasks a step's builder made: its task or group, or for a sized step its sizing branch."""
    step = spec.steps[name]
    ids = {step.size_task_id(name)} if step.kind == "sized_postprocess" else {name}
    return [t for t in dag.tasks if _stage(t.task_id) in ids]


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_graph_is_the_spec(dagbag, dag_id):
    """Every step is there, and it runs after the steps whose datasets it reads."""
    dag, spec = dagbag.dags[dag_id], _spec(dag_id)
    task_ids = {t.task_id for t in dag.tasks}
    for name, ups in spec.upstream().items():
        first = {t.task_id for t in _step_tasks(dag, spec, name)}
        assert first, f"step {name} ({spec.steps[name].kind}) built no task"
        for up in ups:
            reached = set().union(*(t.get_flat_relative_ids(upstream=False) for t in _step_tasks(dag, spec, up)))
            assert first & reached, f"{name} does not run after {up}, whose datasets it reads"
    # The run report closes every run as a teardown after every leaf: it never masks a failure.
    report = dag.get_task("run_report")
    assert report.is_teardown and [t.task_id for t in dag.leaves] == ["run_report"]
    assert "run_report" in task_ids


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_sized_postprocess_branches_per_tier(dagbag, dag_id):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag, spec = dagbag.dags[dag_id], _spec(dag_id)
    sized = spec.step_of("sized_postprocess")
    if not sized:
        pytest.skip(f"{dag_id} has no sized_postprocess step")
    name, step = sized
    size = dag.get_task(step.size_task_id(name))
    commit = dag.get_task(step.commit_task_id())
    # with checks, every route's shards are checked together before the commit swaps them in
    after_tiers = dag.get_task(step.check_task_id()) if step.checks else commit
    if step.checks:
        assert after_tiers.downstream_task_ids == {commit.task_id}
        assert after_tiers.trigger_rule == "none_failed_min_one_success"
    expected_branches = {step.no_predictions_task_id}
    for route_name, route in step.all_routes(spec.classes, name).items():
        *fixed, largest = [step.tier_task_id(name, route_name, t.name) for t in route.sizing.tiers]
        plan = step.plan_task_id(route_name)
        expected_branches |= {*fixed, plan}
        assert dag.get_task(plan).downstream_task_ids == {largest}
        for tier in (*fixed, largest):
            assert dag.get_task(tier).downstream_task_ids == {after_tiers.task_id}
        assert isinstance(dag.get_task(largest), MappedOperator)  # fans out over the route's shards
        assert not any(isinstance(dag.get_task(t), MappedOperator) for t in fixed)
    assert size.downstream_task_ids == expected_branches  # every route's tiers, in parallel
    assert commit.trigger_rule == "none_failed_min_one_success"


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_drift_guard_gates_what_reads_the_guarded_dataset(dagbag, dag_id):
    dag, spec = dagbag.dags[dag_id], _spec(dag_id)
    guard = spec.step_of("drift_guard")
    if not guard:
        pytest.skip(f"{dag_id} has no drift guard")
    name, step = guard
    task = dag.get_task(name)
    guarded = spec.guarded_steps()
    assert guarded, "a guard that gates nothing"
    assert step.quarantine_task_id in task.downstream_task_ids
    assert set(task.continue_task_ids) <= task.downstream_task_ids
    heads = {n: {t.task_id for t in _step_tasks(dag, spec, n)} for n in guarded}
    assert set(task.continue_task_ids) <= set().union(*heads.values())
    assert all(ids & set(task.continue_task_ids) for ids in heads.values()), "a guarded step the guard never continues to"


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_run_options_are_typed_params(dagbag, dag_id):
    from airflow.sdk.exceptions import ParamValidationError

    dag, spec = dagbag.dags[dag_id], _spec(dag_id)
    sized = spec.step_of("sized_postprocess")
    if sized:
        _, step = sized
        force_tier = dag.params.get_param("force_tier")
        assert force_tier.description and force_tier.value is None
        if not step.routes:  # one job: one of its tiers
            assert force_tier.schema["enum"] == [None, *(t.name for t in step.sizing.tiers)]
        else:  # a tier for every route, or {route or class: one of its route's tiers}
            for route_name, route in step.routes.items():
                for key in (route_name, *route.classes):
                    for tier in route.sizing.tiers:
                        assert force_tier.resolve({key: tier.name}) == {key: tier.name}
            with pytest.raises(ParamValidationError):
                force_tier.resolve({"no_such_route": step.routes[next(iter(step.routes))].sizing.tiers[0].name})
        with pytest.raises(ParamValidationError):
            force_tier.resolve("no_such_tier")
    else:
        assert "force_tier" not in dag.params
    if spec.step_of("drift_guard"):
        accept = dag.params.get_param("accept_drift")
        assert accept.value is False and accept.schema["type"] == "boolean" and accept.description
        with pytest.raises(ParamValidationError):
            dag.params.get_param("accept_drift").resolve("yes please")
    else:
        assert "accept_drift" not in dag.params


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
    """Edges between steps (and single tasks), groups collapsed."""
    return {
        (_stage(task.task_id), _stage(down))
        for task in dag.tasks
        for down in task.downstream_task_ids
        if _stage(task.task_id) != _stage(down)
    }


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_cloud_graph_is_the_local_graph_at_the_stage_level(dagbag, cloud_parse, dag_id):
    local, cloud = dagbag.dags[dag_id], cloud_parse[0].dags[dag_id]
    assert _stage_graph(cloud) == _stage_graph(local)
    assert {_stage(t.task_id) for t in cloud.tasks} == {t.task_id for t in local.tasks}
    roles = _spec(dag_id).roles()
    for role in ("stats", "decision", "drift"):
        if roles[role]:
            assert cloud.get_task(roles[role])  # single tasks the sizing and drift code address by id


@pytest.mark.parametrize("dag_id", PIPELINE_DAGS)
def test_cloud_dag_serializes_for_the_scheduler(cloud_parse, dag_id):
    """The dag processor stores DAGs serialized: every task, mapped pods included, must survive,
    named (and linked) as the operator it runs, which a provider operator's stand-in builds
    only where the task runs (water.targets.cloud.lazy)."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = cloud_parse[0].dags[dag_id]
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    # the scheduler keeps the serialized form (a dict); workers parse the DAG file again
    shown = {t.task_id: (t.operator_name, sorted(t.extra_links)) for t in back.tasks}
    assert shown == {t.task_id: (t.operator_name, sorted(link.name for link in t.operator_extra_links)) for t in dag.tasks}
    spec = _spec(dag_id)
    pods = [task_id for task_id, (name, _) in shown.items() if name == "SizedPodOperator"]
    assert bool(pods) == any(s.kind in ("pod", "sized_postprocess") for s in spec.steps.values())


# --- the control DAG (water.control) ----------------------------------------------------------


@pytest.mark.parametrize("target", ["local", "cloud"])
def test_control_dag_watches_the_control_queue_and_starts_mapped_runs(dagbag, cloud_parse, target):
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.serialization.serialized_objects import DagSerialization

    from water import events
    from water.triggers.amqp import AmqpMessageTrigger

    dag = (dagbag if target == "local" else cloud_parse[0]).dags["water_control"]
    assert PIPELINE_DAGS and "water_control" not in PIPELINE_DAGS
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, AmqpMessageTrigger) and watcher.trigger.settings.queue == events.CONTROL_QUEUE
    assert watcher.trigger.settings.amqp_conn_id == events.AMQP_CONN_ID
    start = dag.get_task("start")
    assert isinstance(start, MappedOperator) and start.operator_class is TriggerDagRunOperator
    assert start.partial_kwargs["skip_when_already_exists"] is True
    assert dag.get_task("dispatch").downstream_task_ids == {"start"}
    assert f"target:{target}" in dag.tags and dag.max_active_runs == 1
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert {t.task_id for t in back.tasks} == {"dispatch", "start", "bind_events"}
