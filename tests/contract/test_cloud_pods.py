"""The cloud target's pods, built as the KubernetesPodOperator builds them (no cluster), for
every pod of every shipped spec.

Each pod comes from `build_pod_request_obj()` with the hook patched: image, the entrypoint's
arguments (parsed by the entrypoint's own argparse), resources, labels, namespace, service
account, node selector and tolerations. A `pod` step gets a `--FLAG <partition URI>` per
dataset it reads and writes; each tier of a `sized_postprocess` step gets that tier's
resources, and a mapped shard of the largest tier gets its row range and its own output
folder. OOMKilled detection and the one escalation are checked with real kubernetes V1Pod
objects. Every expectation comes from the spec.
"""

from __future__ import annotations

import argparse
import importlib.util
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

from tests.contract.cloud import (  # noqa: F401 - fixtures
    DS,
    IMAGE,
    PIPELINES,
    cloud_dag,
    cloud_dags,
    cloud_settings,
    cloud_target,
    make_context,
    partition,
    pipeline,
    pipelines_with,
    rendered,
    spec,
    spec_of,
    steps,
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
    for key, value in labels.items():
        assert pod.metadata.labels[key] == value, key
    assert {e.name: e.value for e in container.env}["AWS_REGION"] == "eu-west-1"
    assert task.on_finish_action.value == "delete_succeeded_pod" and task.get_logs


def sized(pipeline: str):
    """(name, step) of the pipeline's sized_postprocess step."""
    return spec_of(pipeline).step_of("sized_postprocess")


def tier_params(*, largest: bool) -> list:
    """pytest params (pipeline, tier) of every unmapped tier, or of each largest (mapped) tier."""
    params = []
    for pipeline in pipelines_with("sized_postprocess"):
        tiers = sized(pipeline)[1].sizing.tiers
        chosen = tiers[-1:] if largest else tiers[:-1]
        params += [pytest.param(pipeline, t.name, id=f"{pipeline}.{t.name}") for t in chosen]
    return params


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


# --- sized post-processing -----------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "tier"), tier_params(largest=False))
def test_sized_postprocess_tier_pods(rendered, pipeline, tier):
    name, step = sized(pipeline)
    task = rendered(step.tier_task_id(name, tier))
    pod = build_pod(task, pipeline)
    assert_common_pod(pod, task, pipeline, {"stage": name, "tier": tier})
    (container,) = pod.spec.containers
    resources = next(t for t in step.sizing.tiers if t.name == tier).resources
    assert container.resources.requests == resources.requests.model_dump()
    assert container.resources.limits == resources.limits.model_dump()
    args = entrypoint_args(container.args)
    assert container.args[0] == step.entrypoint
    assert args.input == partition(pipeline, step.reads)
    # an unmapped tier writes shard 0000, which the commit takes
    assert args.output == f"{partition(pipeline, step.shards_dataset)}/shard=0000"
    assert args.row_start is None and args.row_end is None
    assert_spec_args(args, step.args)
    assert task.startup_timeout_seconds == int(step.placement.startup_timeout.total_seconds())


@pytest.mark.parametrize(("pipeline", "tier"), tier_params(largest=True))
def test_mapped_largest_tier_shard_gets_its_rows_and_folder(cloud_dags, pipeline, tier):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    name, step = sized(pipeline)
    mapped = cloud_dags(pipeline).get_task(step.tier_task_id(name, tier))
    assert isinstance(mapped, MappedOperator)
    rows = step.sizing.scale_out.rows_per_shard
    shard = {"index": 2, "row_start": 2 * rows, "row_end": 3 * rows}
    task = mapped.unmap({"shard": shard})
    pod = build_pod(task, pipeline)
    assert_common_pod(pod, task, pipeline, {"stage": name, "tier": tier, "shard": "0002"})
    (container,) = pod.spec.containers
    args = entrypoint_args(container.args)
    assert (args.row_start, args.row_end) == (2 * rows, 3 * rows)
    assert args.input == partition(pipeline, step.reads)
    assert args.output == f"{partition(pipeline, step.shards_dataset)}/shard=0002"
    assert_spec_args(args, step.args)
    largest = step.sizing.tiers[-1].resources
    assert isinstance(container.resources, V1ResourceRequirements)
    assert container.resources.limits == largest.limits.model_dump()
    assert container.resources.requests == largest.requests.model_dump()


def test_every_tier_has_its_task(cloud_dag, spec):
    """One task per tier of the sized step, the largest mapped over the shard plan."""
    if not spec.step_of("sized_postprocess"):
        pytest.skip(f"{spec.name} has no sized_postprocess step")
    name, step = spec.step_of("sized_postprocess")
    ids = {t.task_id for t in cloud_dag.tasks}
    assert {step.tier_task_id(name, t.name) for t in step.sizing.tiers} <= ids
    largest = cloud_dag.get_task(step.tier_task_id(name, step.sizing.tiers[-1].name))
    assert step.plan_task_id in largest.upstream_task_ids


# --- placement -----------------------------------------------------------------------------


@pytest.mark.parametrize(("pipeline", "name"), steps("pod", "sized_postprocess"))
def test_placement_from_the_spec(cloud_target, pipeline, name):
    """A step's placement (node selector, tolerations, startup timeout) reaches each of its pods."""
    from airflow.sdk import DAG
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from water.targets.cloud.operators import SizedPodOperator
    from water.spec import Placement

    placement = Placement.model_validate(
        {
            "node_selector": {"workload": "ml-batch"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "startup_timeout": "15m",
        }
    )
    spec = spec_of(pipeline)
    placed = spec.steps[name].model_copy(update={"placement": placement})
    spec = spec.model_copy(update={"steps": {**spec.steps, name: placed}})
    with DAG(f"placement_{pipeline}_{name}", schedule=None) as dag:
        cloud_target.build(spec, name, placed)
    pods = []
    for task in dag.tasks:
        if isinstance(task, MappedOperator) and issubclass(task.operator_class, SizedPodOperator):
            pods.append(task.unmap({"shard": {"index": 0, "row_start": 0, "row_end": 10}}))
        elif isinstance(task, SizedPodOperator):
            pods.append(task)
    expected = [name] if placed.kind == "pod" else [placed.tier_task_id(name, t.name) for t in placed.sizing.tiers]
    assert sorted(t.task_id for t in pods) == sorted(expected)
    for task in pods:
        pod = build_pod(task, pipeline)
        assert pod.spec.node_selector == {"workload": "ml-batch"}
        (toleration,) = pod.spec.tolerations
        assert (toleration.key, toleration.operator, toleration.value, toleration.effect) == ("dedicated", "Equal", "ml", "NoSchedule")
        assert task.startup_timeout_seconds == 15 * 60


# --- OOMKilled: detection and the one escalation -------------------------------------------


def pod_with(reason: str | None, container: str = "base", last_reason: str | None = None) -> V1Pod:
    def state(why):
        return V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=137, reason=why)) if why else V1ContainerState()

    status = V1ContainerStatus(
        name=container, image=IMAGE, image_id="", ready=False, restart_count=0,
        state=state(reason), last_state=state(last_reason),
    )
    return V1Pod(metadata=V1ObjectMeta(name="p", namespace="water-jobs"), status=V1PodStatus(phase="Failed", container_statuses=[status]))


def test_oom_killed_reads_the_containers_termination_reason():
    from water.targets.cloud.operators import oom_killed

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


@pytest.mark.parametrize(("pipeline", "tier"), tier_params(largest=False))
def test_an_oomkilled_tier_pod_reruns_once_on_the_next_bigger_tier(rendered, pipeline, tier):
    name, step = sized(pipeline)
    task = rendered(step.tier_task_id(name, tier))
    first, manager, second = _failing_then(task, pod_with("OOMKilled"))
    with first, manager, second as rerun:
        assert task.execute(make_context(pipeline)) == "second pod ok"
    rerun.assert_called_once()
    own = next(t for t in step.sizing.tiers if t.name == tier).resources
    bigger = next((t for t in step.sizing.tiers if _memory(t.resources.limits.memory) > _memory(own.limits.memory)), None)
    if bigger is None:  # no tier has more memory: twice its own
        assert task.escalated == f"{step.sizing.tiers[-1].name} x2 memory"
        assert _memory(task.container_resources.limits["memory"]) == 2 * _memory(own.limits.memory)
    else:
        assert task.escalated == bigger.name
        assert task.container_resources.limits == bigger.resources.limits.model_dump()
        assert task.container_resources.requests == bigger.resources.requests.model_dump()
    assert task.pod is None and task.pod_request_obj is None  # a new pod, not the failed one


@pytest.mark.parametrize(("pipeline", "tier"), tier_params(largest=False))
def test_other_failures_and_a_second_oom_are_not_retried(rendered, pipeline, tier):
    from airflow.sdk.exceptions import AirflowException

    name, step = sized(pipeline)
    task_id = step.tier_task_id(name, tier)
    task = rendered(task_id)
    first, manager, second = _failing_then(task, pod_with("Error"))
    with first, manager, second as rerun, pytest.raises(AirflowException):
        task.execute(make_context(pipeline))
    rerun.assert_not_called()

    task = rendered(task_id)

    def oom_again(context):
        raise AirflowException("Pod second returned a failure.")

    first, manager, second = _failing_then(task, pod_with("OOMKilled"), oom_again)
    with first, manager, second as rerun, pytest.raises(AirflowException, match="second"):
        task.execute(make_context(pipeline))
    rerun.assert_called_once()


@pytest.mark.parametrize(("pipeline", "tier"), tier_params(largest=True))
def test_the_top_tier_escalates_to_twice_the_memory(cloud_dags, pipeline, tier):
    name, step = sized(pipeline)
    mapped = cloud_dags(pipeline).get_task(step.tier_task_id(name, tier))
    task = mapped.unmap({"shard": {"index": 0, "row_start": 0, "row_end": 5}})
    first, manager, second = _failing_then(task, pod_with("OOMKilled"))
    with first, manager, second:
        task.execute(make_context(pipeline))
    top = step.sizing.tiers[-1].resources
    assert task.escalated == f"{tier} x2 memory"
    assert _memory(task.container_resources.limits["memory"]) == 2 * _memory(top.limits.memory)
    assert _memory(task.container_resources.requests["memory"]) == 2 * _memory(top.requests.memory)
    assert task.container_resources.limits["cpu"] == top.limits.cpu


def test_every_shipped_spec_is_covered():
    """The parametrized tests above run over every spec: none is silently left out."""
    from water.spec import pipeline_names

    assert PIPELINES == pipeline_names() and PIPELINES
    covered = {p.values[0] for p in steps("pod", "sized_postprocess")}
    with_pods = {p for p in PIPELINES if spec_of(p).steps_of("pod") or spec_of(p).steps_of("sized_postprocess")}
    assert covered == with_pods
