"""The cloud target's pods, built as the KubernetesPodOperator builds them (no cluster).

Each pod comes from `build_pod_request_obj()` with the hook patched: image, the entrypoint's
arguments (parsed by the entrypoint's own argparse), resources per tier, labels, namespace,
service account, node selector and tolerations; a mapped shard of the largest tier gets its
row range and its own output folder. OOMKilled detection and the one escalation are checked
with real kubernetes V1Pod objects.
"""

from __future__ import annotations

import argparse
import importlib.util
from datetime import timedelta
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

from tests.contract.cloud import DS, cloud_dag, cloud_settings, demo_spec, make_context, rendered  # noqa: F401

LAKE = "s3://acme-ml-lake/water/recipe_engagement"
IMAGE = "registry.example/water-jobs:2026.11.1"


def build_pod(task, context=None):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    context = {**(context or make_context()), "dag": None}
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
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse = argparse.ArgumentParser.parse_args

    def stop_after_parsing(self, args=None, namespace=None):
        raise Parsed(parse(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", stop_after_parsing), pytest.raises(Parsed) as parsed:
        module.main(args)
    return parsed.value.namespace


def test_preprocess_pod(rendered, demo_spec):
    pod = build_pod(rendered("preprocess"))
    (container,) = pod.spec.containers
    assert container.image == IMAGE
    assert pod.metadata.namespace == "water-jobs" and pod.spec.service_account_name == "water-jobs"
    assert pod.spec.restart_policy == "Never"
    assert container.resources.requests == {"cpu": "500m", "memory": "512Mi"}
    assert container.resources.limits == {"cpu": "1", "memory": "1Gi"}
    assert pod.metadata.labels["pipeline"] == "recipe_engagement" and pod.metadata.labels["ds"] == DS
    args = entrypoint_args(container.args)
    assert args.input == f"{LAKE}/training/ds={DS}"
    assert args.train_output == f"{LAKE}/channels/train/ds={DS}"
    assert args.validation_output == f"{LAKE}/channels/validation/ds={DS}"
    assert args.inference_output == f"{LAKE}/channels/inference/ds={DS}"
    assert args.inference_shard_rows == 250000
    assert {e.name: e.value for e in container.env}["AWS_REGION"] == "eu-west-1"


@pytest.mark.parametrize("tier", ["small", "medium"])
def test_postprocess_tier_pods(rendered, demo_spec, tier):
    task = rendered(f"postprocess_{tier}")
    pod = build_pod(task)
    (container,) = pod.spec.containers
    resources = next(t for t in demo_spec.sizing.tiers if t.name == tier).resources
    assert container.resources.requests == resources.requests.model_dump()
    assert container.resources.limits == resources.limits.model_dump()
    assert pod.metadata.labels["tier"] == tier and pod.metadata.labels["stage"] == "postprocess"
    args = entrypoint_args(container.args)
    assert args.input == f"{LAKE}/predictions/ds={DS}"
    assert args.output == f"{LAKE}/outputs_shards/ds={DS}/shard=0000"  # commit_outputs takes shard 0000
    assert args.row_start is None and args.campaigns.startswith("cook=")
    assert task.on_finish_action.value == "delete_succeeded_pod" and task.get_logs
    assert task.startup_timeout_seconds == 600


def test_mapped_large_shard_gets_its_rows_and_folder(cloud_dag, demo_spec):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    mapped = cloud_dag.get_task("postprocess_large")
    assert isinstance(mapped, MappedOperator)
    shard = {"index": 2, "row_start": 16_000_000, "row_end": 24_000_000}
    task = mapped.unmap({"shard": shard})
    pod = build_pod(task)
    (container,) = pod.spec.containers
    args = entrypoint_args(container.args)
    assert (args.row_start, args.row_end) == (16_000_000, 24_000_000)
    assert args.output == f"{LAKE}/outputs_shards/ds={DS}/shard=0002"
    large = demo_spec.sizing.tiers[-1].resources
    assert isinstance(container.resources, V1ResourceRequirements)
    assert container.resources.limits == large.limits.model_dump()
    assert pod.metadata.labels["tier"] == "large" and pod.metadata.labels["shard"] == "0002"


def test_placement_from_the_spec(cloud_settings, demo_spec):
    from airflow.sdk import DAG, XComArg

    from water.operators.sizing import PlanShardsOperator
    from water.spec import Placement
    from water.targets.cloud import CloudTarget

    placement = Placement.model_validate(
        {
            "node_selector": {"workload": "ml-batch"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "startup_timeout": "15m",
        }
    )
    spec = demo_spec.model_copy(update={"postprocess": demo_spec.postprocess.model_copy(update={"placement": placement})})
    target = CloudTarget(settings=cloud_settings)
    with DAG("placement", schedule=None):
        plan = PlanShardsOperator(task_id="plan_shards", decision_task_id="size_postprocess")
        medium = target.postprocess(spec, spec.sizing.tiers[1], None)
        large = target.postprocess(spec, spec.sizing.tiers[-1], XComArg(plan))
    shard = large.unmap({"shard": {"index": 0, "row_start": 0, "row_end": 10}})
    for task in (medium, shard):
        pod = build_pod(task)
        assert pod.spec.node_selector == {"workload": "ml-batch"}
        (toleration,) = pod.spec.tolerations
        assert (toleration.key, toleration.operator, toleration.value, toleration.effect) == ("dedicated", "Equal", "ml", "NoSchedule")
        assert task.startup_timeout_seconds == int(timedelta(minutes=15).total_seconds())


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
    from water.operators.cloud import oom_killed

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


def test_an_oomkilled_postprocess_pod_reruns_once_on_the_next_tier(rendered, demo_spec):
    task = rendered("postprocess_small")
    first, manager, second = _failing_then(task, pod_with("OOMKilled"))
    with first, manager, second as rerun:
        assert task.execute(make_context()) == "second pod ok"
    rerun.assert_called_once()
    medium = demo_spec.sizing.tiers[1].resources
    assert task.escalated == "medium"
    assert task.container_resources.limits == medium.limits.model_dump()
    assert task.pod is None and task.pod_request_obj is None  # a new pod, not the failed one


def test_other_failures_and_a_second_oom_are_not_retried(rendered):
    from airflow.sdk.exceptions import AirflowException

    task = rendered("postprocess_small")
    first, manager, second = _failing_then(task, pod_with("Error"))
    with first, manager, second as rerun, pytest.raises(AirflowException):
        task.execute(make_context())
    rerun.assert_not_called()

    task = rendered("postprocess_small")

    def oom_again(context):
        raise AirflowException("Pod second returned a failure.")

    first, manager, second = _failing_then(task, pod_with("OOMKilled"), oom_again)
    with first, manager, second as rerun, pytest.raises(AirflowException, match="second"):
        task.execute(make_context())
    rerun.assert_called_once()


def test_the_top_tier_escalates_to_twice_the_memory(cloud_dag):
    task = cloud_dag.get_task("postprocess_large").unmap({"shard": {"index": 0, "row_start": 0, "row_end": 5}})
    first, manager, second = _failing_then(task, pod_with("OOMKilled"))
    with first, manager, second:
        task.execute(make_context())
    assert task.escalated == "large x2 memory"
    assert task.container_resources.limits["memory"] == "6144Mi"
