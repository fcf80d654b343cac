"""The cloud target's pods, built as the KubernetesPodOperator builds them (no cluster), for
every pod of every shipped spec, and of a routed spec of the tests' own (tests/routes.py).

Each pod comes from `build_pod_request_obj()` with the hook patched: image, the entrypoint's
arguments (parsed by the entrypoint's own argparse), resources, labels, namespace, service
account, node selector and tolerations. A `pod` step gets a `--FLAG <partition URI>` per
dataset it reads and writes; each tier of each route of a `sized_postprocess` step gets
that tier's resources, labels naming its route and tier, `--classes` (when the step has
routes) and its output folder `<shards>/route=R/shard=NNNN`; a mapped shard of a route's
largest tier gets its row range and its own shard folder. OOMKilled detection and the one escalation are checked with real kubernetes V1Pod
objects. Every expectation comes from the spec.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from unittest import mock

import pytest
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
    V1ResourceRequirements,
)

from tests import routes
from tests.contract.cloud import (
    DS,
    IMAGE,
    LAKE_BUCKET,
    PIPELINES,
    UPSTREAM_XCOM,
    AwsRecorder,
    FakeTI,
    as_run,
    key,
    make_context,
    offline_aws,
    partition,
    pipelines_with,
    spec_of,
    steps,
    task_copy,
    tasks_as_run,
)


def build_pod(task, pipeline: str, context=None):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    context = {**(context or make_context(pipeline)), "dag": None}
    task.render_template_fields(context)
    with mock.patch.object(KubernetesPodOperator, "hook", new_callable=mock.PropertyMock) as hook:
        hook.return_value.is_in_cluster = False
        return task.build_pod_request_obj(context)


class Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


def entrypoint_args(argv: list[str]) -> argparse.Namespace:
    """The pod's args as the entrypoint's own argparse reads them (it stops right after)."""
    from water import paths

    script, *args = argv
    path = paths.include_dir() / script  # the job image runs `python <script>` in /opt/airflow/include
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    with mock.patch.object(sys, "path", [str(path.parent), *sys.path]):  # as `python <script>`: its helpers import
        module_spec.loader.exec_module(module)
    parse = argparse.ArgumentParser.parse_args

    def stop_after_parsing(self, args=None, namespace=None):
        raise Parsed(parse(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", stop_after_parsing), pytest.raises(Parsed) as parsed:
        module.main(args)
    return parsed.value.namespace


def flag(args: argparse.Namespace, name: str):
    """The value argparse parsed for --name (dashes become underscores)."""
    return getattr(args, name.replace("-", "_"))


def assert_spec_args(args: argparse.Namespace, spec_args: dict) -> None:
    """Each spec argument reached the entrypoint (argparse may have converted its type)."""
    for name, value in spec_args.items():
        parsed = flag(args, name)
        assert parsed == value or str(parsed) == str(value), (name, parsed, value)


def assert_common_pod(pod, task, pipeline: str, labels: dict[str, str]) -> None:
    (container,) = pod.spec.containers
    assert container.image == IMAGE
    assert pod.metadata.namespace == "water-jobs" and pod.spec.service_account_name == "water-jobs"
    assert pod.spec.restart_policy == "Never"
    assert pod.metadata.labels["pipeline"] == pipeline and pod.metadata.labels["ds"] == DS
    for label, value in labels.items():
        assert pod.metadata.labels[label] == value, label
    assert {e.name: e.value for e in container.env}["AWS_REGION"] == "eu-west-1"
    assert task.on_finish_action.value == "delete_succeeded_pod" and task.get_logs


# --- pod steps -----------------------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "name"), steps("pod"))
def test_pod_step_pod(rendered, pipeline, name):
    step = spec_of(pipeline).steps[name]
    task = rendered(name)
    pod = build_pod(task, pipeline)
    assert_common_pod(pod, task, pipeline, {"stage": name})
    (container,) = pod.spec.containers
    assert container.resources.requests == step.resources.requests.model_dump()
    assert container.resources.limits == step.resources.limits.model_dump()
    assert task.startup_timeout_seconds == int(step.placement.startup_timeout.total_seconds())
    args = entrypoint_args(container.args)
    assert container.args[0] == step.entrypoint
    for name_, dataset in step.reads.items():
        assert flag(args, name_) == partition(pipeline, dataset), name_
    for name_, output in step.writes.items():
        assert flag(args, name_) == partition(pipeline, output.dataset), name_
    assert_spec_args(args, step.args)
    assert task.execution_timeout == step.timeout


# --- sized post-processing: every route and tier -------------------------------------------
# Over each shipped spec's sized step (one job for every class is one route, named after the
# step) and ROUTED: tests/routes.py's pipeline with three routes, written to a temporary
# project and built on the cloud target, so that routes are covered whatever the shipped
# specs declare.

ROUTED = routes.NAME
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # Kubernetes' label value syntax


def routed_data() -> dict:
    """The routed spec of this module: weekly_menu also reads the stats (an extra read, --menus)."""
    data = routes.spec_data()
    data["steps"]["postprocess"]["routes"]["weekly_menu"]["reads"] = {"menus": "stats"}
    return data


def sized_pipelines() -> list[str]:
    return [*pipelines_with("sized_postprocess"), ROUTED]


def route_tiers(pipeline: str) -> dict[str, list[str]]:
    """route -> its tier names, read at collection (the routed spec's from its data)."""
    if pipeline == ROUTED:
        return {r: [t["name"] for t in d["sizing"]["tiers"]] for r, d in routed_data()["steps"]["postprocess"]["routes"].items()}
    spec = spec_of(pipeline)
    name, step = spec.step_of("sized_postprocess")
    return {r: [t.name for t in route.sizing.tiers] for r, route in step.all_routes(spec.classes, name).items()}


def tier_params(*, largest: bool) -> list:
    """pytest params (pipeline, route, tier): every unmapped tier, or each route's largest (mapped) tier."""
    return [
        pytest.param(pipeline, route, tier, id=f"{pipeline}.{route}.{tier}")
        for pipeline in sized_pipelines()
        for route, tiers in route_tiers(pipeline).items()
        for tier in (tiers[-1:] if largest else tiers[:-1])
    ]


@pytest.fixture(scope="session")
def routed_project(tmp_path_factory, cloud_target):
    """(project root, spec, cloud DAG) of ROUTED."""
    from water.factory import build_dag

    root = tmp_path_factory.mktemp("routed_cloud")
    spec = routes.load_project(root, routed_data())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WATER_PROJECT_ROOT", str(root))
        dag = build_dag(spec, cloud_target)
    return root, spec, dag


class Sized:
    """A pipeline's sized step on the cloud target: its routes, tasks and a render context."""

    def __init__(self, pipeline: str, spec, dag, xcom) -> None:
        self.pipeline, self.spec, self.dag, self.xcom = pipeline, spec, dag, xcom
        self.name, self.step = spec.step_of("sized_postprocess")
        self.routes = self.step.all_routes(spec.classes, self.name)

    def context(self, ti=None):
        return make_context(self.pipeline, ti or FakeTI(self.xcom, dag_id=self.pipeline))

    def task_id(self, route: str, tier: str) -> str:
        return self.step.tier_task_id(self.name, route, tier)

    def task(self, route: str, tier: str, shard: dict | None = None):
        """A fresh copy of the route's tier task as it runs (a mapped one unmapped for `shard`)."""
        task = self.dag.get_task(self.task_id(route, tier))
        return as_run(task, shard) if shard is not None else as_run(task_copy(task))

    def tier(self, route: str, tier: str):
        return next(t for t in self.routes[route].sizing.tiers if t.name == tier)

    def pod(self, task):
        return build_pod(task, self.pipeline, self.context())


@pytest.fixture
def sized(pipeline, cloud_dags, routed_project, monkeypatch) -> Sized:
    if pipeline == ROUTED:
        root, spec, dag = routed_project
        monkeypatch.setenv("WATER_PROJECT_ROOT", str(root))  # the pods' entrypoints are the project's
        return Sized(pipeline, spec, dag, {})
    return Sized(pipeline, spec_of(pipeline), cloud_dags(pipeline), UPSTREAM_XCOM[pipeline])


def assert_route_pod(sized: Sized, task, route: str, tier: str, shard: str = "0000") -> argparse.Namespace:
    """Build the pod of a route's tier task and check what every such pod has; returns the
    entrypoint's parsed args."""
    pod = sized.pod(task)
    labels = pod.metadata.labels
    assert_common_pod(pod, task, sized.pipeline, {"stage": sized.name})
    assert labels.get("shard") == (shard if task.shard else None)
    for label, value in (("route", route), ("tier", tier)):
        assert LABEL_VALUE.match(labels[label]) and len(labels[label]) <= 63, (label, labels[label])
        assert labels[label].replace("-", "_") == value, (label, labels[label])
    (container,) = pod.spec.containers
    assert isinstance(container.resources, V1ResourceRequirements)
    resources = sized.tier(route, tier).resources
    assert container.resources.requests == resources.requests.model_dump()
    assert container.resources.limits == resources.limits.model_dump()
    the_route = sized.routes[route]
    assert container.args[0] == the_route.entrypoint
    if sized.step.routes:  # each route's pod reads only its classes
        at = container.args.index("--classes")
        assert container.args[at + 1] == ",".join(the_route.classes)
    else:  # one job for every class: no filter
        assert "--classes" not in container.args
    args = entrypoint_args(container.args)
    assert args.input == partition(sized.pipeline, sized.step.reads)
    for name_, dataset in the_route.reads.items():
        assert flag(args, name_) == partition(sized.pipeline, dataset), name_
    assert args.output == f"{partition(sized.pipeline, sized.step.shards_dataset)}/route={route}/shard={shard}"
    assert_spec_args(args, the_route.args)
    return args


@pytest.mark.parametrize(("pipeline", "route", "tier"), tier_params(largest=False))
def test_sized_postprocess_tier_pods(sized, pipeline, route, tier):
    task = sized.task(route, tier)
    args = assert_route_pod(sized, task, route, tier)  # an unmapped tier writes shard 0000, which the commit takes
    assert args.row_start is None and args.row_end is None
    assert task.startup_timeout_seconds == int(sized.routes[route].placement.startup_timeout.total_seconds())
    assert task.execution_timeout == sized.step.timeout


@pytest.mark.parametrize(("pipeline", "route", "tier"), tier_params(largest=True))
def test_mapped_largest_tier_shard_gets_its_rows_and_folder(sized, pipeline, route, tier):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(sized.dag.get_task(sized.task_id(route, tier)), MappedOperator)
    rows = sized.routes[route].sizing.scale_out.rows_per_shard
    shard = {"index": 2, "row_start": 2 * rows, "row_end": 3 * rows}
    args = assert_route_pod(sized, sized.task(route, tier, shard), route, tier, shard="0002")
    assert (args.row_start, args.row_end) == (2 * rows, 3 * rows)  # rows of the route's classes


@pytest.mark.parametrize("pipeline", sized_pipelines())
def test_every_route_and_tier_has_its_task(sized, pipeline):
    """One task per tier of each route, each route's largest mapped over its own shard plan."""
    ids = {t.task_id for t in sized.dag.tasks}
    size = sized.dag.get_task(sized.step.size_task_id(sized.name))
    branches = {sized.step.no_predictions_task_id}
    for route, tiers in route_tiers(pipeline).items():
        assert {sized.task_id(route, t) for t in tiers} <= ids
        plan = sized.step.plan_task_id(route)
        largest = sized.dag.get_task(sized.task_id(route, tiers[-1]))
        assert largest.upstream_task_ids == {plan}
        branches |= {plan, *(sized.task_id(route, t) for t in tiers[:-1])}
    assert size.downstream_task_ids == branches
    if pipeline == ROUTED:
        assert set(route_tiers(pipeline)) == {"weekly_menu", "first_cook_nudge", "win_back"}


@pytest.mark.parametrize("pipeline", sized_pipelines())
def test_commit_takes_every_running_routes_shards(sized, pipeline):
    """S3CommitShardsOperator: the shard folders of the routes the decision ran, and only those."""
    from water.sizing import decide_routes

    routes_ = list(sized.routes)
    first, *others = routes_
    largest = sized.routes[first].sizing.tiers[-1]
    counts = dict.fromkeys(sized.spec.classes, 0)
    counts[sized.routes[first].classes[0]] = largest.max_rows + 1  # two shards of its largest tier
    if others:
        counts[sized.routes[others[-1]].classes[0]] = 1  # the last route runs; any in between has no rows
    decision = decide_routes(sized.routes, counts, single=not sized.step.routes)
    ti = FakeTI({**sized.xcom, (sized.step.size_task_id(sized.name), "decision"): decision}, dag_id=pipeline)
    task = task_copy(sized.dag.get_task(sized.step.commit_task_id()))
    context = sized.context(ti)
    task.render_template_fields(context)
    root = partition(pipeline, sized.step.shards_dataset)
    expected = [f"{root}/route={first}/shard=0000", f"{root}/route={first}/shard=0001"]
    if others:
        expected.append(f"{root}/route={others[-1]}/shard=0000")
    assert task.source_uris(context) == expected

    shards_key = key(pipeline, sized.step.shards_dataset) + "/"

    def answer(params):  # each shard folder holds one file per class of its route
        prefix = params["Prefix"]
        folder = prefix[len(shards_key) :].rstrip("/")
        if not prefix.startswith(shards_key) or "/shard=" not in folder:
            return {"Contents": [], "KeyCount": 0, "IsTruncated": False}
        route, shard = folder.removeprefix("route=").split("/shard=")
        keys = [f"{prefix}class={c}/part-{route}-{shard}.parquet" for c in sized.routes[route].classes]
        contents = [{"Key": k, "Size": 1, "LastModified": datetime(2026, 11, 1, 7, tzinfo=UTC)} for k in keys]
        return {"Contents": contents, "KeyCount": len(keys), "IsTruncated": False}

    recorder = AwsRecorder(responses={("s3", "ListObjectsV2"): answer, ("s3", "DeleteObjects"): {"Deleted": []}})
    with offline_aws(recorder):
        figures = task.execute(context)
    listed = {r["Prefix"] for r in recorder.requests("s3", "ListObjectsV2") if r["Prefix"].startswith(shards_key)}
    assert listed == {uri.removeprefix(f"s3://{LAKE_BUCKET}/") + "/" for uri in expected}  # no other route's folder
    copied = sorted(r["Key"] for r in recorder.requests("s3", "CopyObject"))
    ran = [r for r, d in decision["routes"].items() if d["tier"] != "no_predictions"]
    assert copied == sorted(
        key(pipeline, sized.step.writes, f"class={c}", f"part-{r}-{i:04d}.parquet")
        for r in ran
        for i in range(len(decision["routes"][r]["shards"]))
        for c in sized.routes[r].classes
    )
    assert figures["objects"] == len(copied)
    assert not any("route=" in k for k in copied)  # the outputs partition has no route folders


# --- placement -----------------------------------------------------------------------------


def placement_params() -> list:
    return [*steps("pod", "sized_postprocess"), pytest.param(ROUTED, "postprocess", id=f"{ROUTED}.postprocess")]


@pytest.mark.parametrize(("pipeline", "name"), placement_params())
def test_placement_from_the_spec(cloud_target, routed_project, monkeypatch, pipeline, name):
    """A step's placement (a route's, with routes: node selector, tolerations, startup
    timeout) reaches each of its pods."""
    from airflow.sdk import DAG

    from water.spec import Placement
    from water.targets.cloud.extended import SizedPodOperator

    placement = Placement.model_validate(
        {
            "node_selector": {"workload": "ml-batch"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "startup_timeout": "15m",
        }
    )
    if pipeline == ROUTED:
        root, spec, _ = routed_project
        monkeypatch.setenv("WATER_PROJECT_ROOT", str(root))
    else:
        spec = spec_of(pipeline)
    step = spec.steps[name]
    if getattr(step, "routes", None):
        placed = step.model_copy(
            update={"routes": {r: route.model_copy(update={"placement": placement}) for r, route in step.routes.items()}}
        )
    else:
        placed = step.model_copy(update={"placement": placement})
    spec = spec.model_copy(update={"steps": {**spec.steps, name: placed}})
    with DAG(f"placement_{pipeline}_{name}", schedule=None) as dag:
        cloud_target.build(spec, name, placed)
    pods = [task for task in tasks_as_run(dag) if isinstance(task, SizedPodOperator)]
    if placed.kind == "pod":
        expected = [name]
    else:
        expected = [
            placed.tier_task_id(name, r, t.name)
            for r, route in placed.all_routes(spec.classes, name).items()
            for t in route.sizing.tiers
        ]
    assert sorted(t.task_id for t in pods) == sorted(expected)
    for task in pods:
        pod = build_pod(task, pipeline, make_context(pipeline, FakeTI(dag_id=pipeline)))
        assert pod.spec.node_selector == {"workload": "ml-batch"}
        (toleration,) = pod.spec.tolerations
        assert (toleration.key, toleration.operator, toleration.value, toleration.effect) == (
            "dedicated",
            "Equal",
            "ml",
            "NoSchedule",
        )
        assert task.startup_timeout_seconds == 15 * 60


# --- OOMKilled: detection and the one escalation -------------------------------------------


def pod_with(reason: str | None, container: str = "base", last_reason: str | None = None) -> V1Pod:
    def state(why):
        return V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=137, reason=why)) if why else V1ContainerState()

    status = V1ContainerStatus(
        name=container,
        image=IMAGE,
        image_id="",
        ready=False,
        restart_count=0,
        state=state(reason),
        last_state=state(last_reason),
    )
    return V1Pod(
        metadata=V1ObjectMeta(name="p", namespace="water-jobs"), status=V1PodStatus(phase="Failed", container_statuses=[status])
    )


def test_oom_killed_reads_the_containers_termination_reason():
    from water.targets.cloud.extended import oom_killed

    assert oom_killed(pod_with("OOMKilled"))
    assert oom_killed(pod_with(None, last_reason="OOMKilled"))
    assert not oom_killed(pod_with("Error"))
    assert not oom_killed(pod_with("OOMKilled", container="istio-proxy"))  # a sidecar's OOM is not ours
    assert not oom_killed(V1Pod(metadata=V1ObjectMeta(name="p"), status=V1PodStatus(phase="Pending")))
    assert not oom_killed(None)


def _failing_then(task, final_pod, second_run=None):
    """Patch the pod operator: the first pod fails; the cluster reports `final_pod`."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import AirflowException

    task.pod = V1Pod(metadata=V1ObjectMeta(name="first", namespace="water-jobs"))
    manager = mock.MagicMock()
    manager.read_pod.return_value = final_pod
    return (
        mock.patch.object(KubernetesPodOperator, "execute", side_effect=AirflowException("Pod first returned a failure.")),
        mock.patch.object(KubernetesPodOperator, "pod_manager", new_callable=mock.PropertyMock, return_value=manager),
        mock.patch.object(KubernetesPodOperator, "execute_sync", side_effect=second_run or (lambda context: "second pod ok")),
    )


def _memory(quantity: str) -> Decimal:
    from water.spec import parse_quantity

    return parse_quantity(quantity)


@pytest.mark.parametrize(("pipeline", "route", "tier"), tier_params(largest=False))
def test_an_oomkilled_tier_pod_reruns_once_on_the_next_bigger_tier(sized, pipeline, route, tier):
    task = sized.task(route, tier)
    task.render_template_fields(sized.context())
    first, manager, second = _failing_then(task, pod_with("OOMKilled"))
    with first, manager, second as rerun:
        assert task.execute(sized.context()) == "second pod ok"
    rerun.assert_called_once()
    tiers = sized.routes[route].sizing.tiers
    own = sized.tier(route, tier).resources
    bigger = next((t for t in tiers if _memory(t.resources.limits.memory) > _memory(own.limits.memory)), None)
    if bigger is None:  # no tier of the route has more memory: twice its own
        assert task.escalated == f"{tiers[-1].name} x2 memory"
        assert _memory(task.container_resources.limits["memory"]) == 2 * _memory(own.limits.memory)
    else:  # the route's own next tier, not another route's
        assert task.escalated == bigger.name
        assert task.container_resources.limits == bigger.resources.limits.model_dump()
        assert task.container_resources.requests == bigger.resources.requests.model_dump()
    assert task.pod is None and task.pod_request_obj is None  # a new pod, not the failed one


@pytest.mark.parametrize(("pipeline", "route", "tier"), tier_params(largest=False))
def test_other_failures_and_a_second_oom_are_not_retried(sized, pipeline, route, tier):
    from airflow.sdk.exceptions import AirflowException

    task = sized.task(route, tier)
    task.render_template_fields(sized.context())
    first, manager, second = _failing_then(task, pod_with("Error"))
    with first, manager, second as rerun, pytest.raises(AirflowException):
        task.execute(sized.context())
    rerun.assert_not_called()

    task = sized.task(route, tier)
    task.render_template_fields(sized.context())

    def oom_again(context):
        raise AirflowException("Pod second returned a failure.")

    first, manager, second = _failing_then(task, pod_with("OOMKilled"), oom_again)
    with first, manager, second as rerun, pytest.raises(AirflowException, match="second"):
        task.execute(sized.context())
    rerun.assert_called_once()


@pytest.mark.parametrize(("pipeline", "route", "tier"), tier_params(largest=True))
def test_the_top_tier_escalates_to_twice_the_memory(sized, pipeline, route, tier):
    task = sized.task(route, tier, {"index": 0, "row_start": 0, "row_end": 5})
    first, manager, second = _failing_then(task, pod_with("OOMKilled"))
    with first, manager, second:
        task.execute(sized.context())
    top = sized.routes[route].sizing.tiers[-1].resources
    assert task.escalated == f"{tier} x2 memory"
    assert _memory(task.container_resources.limits["memory"]) == 2 * _memory(top.limits.memory)
    assert _memory(task.container_resources.requests["memory"]) == 2 * _memory(top.requests.memory)
    assert task.container_resources.limits["cpu"] == top.limits.cpu


def test_every_shipped_spec_is_covered():
    """The parametrized tests above run over every spec: none is silently left out."""
    from water.spec import pipeline_names

    assert pipeline_names() == PIPELINES and PIPELINES
    covered = {p.values[0] for p in steps("pod", "sized_postprocess")}
    with_pods = {p for p in PIPELINES if spec_of(p).steps_of("pod") or spec_of(p).steps_of("sized_postprocess")}
    assert covered == with_pods
    assert {p.values[0] for p in tier_params(largest=True)} == set(pipelines_with("sized_postprocess")) | {ROUTED}
    assert ROUTED not in PIPELINES  # the tests' own routed spec is never mistaken for a shipped one
