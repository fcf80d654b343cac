"""Provider operators water extends: imported only where their task runs.

The DAG names them by path (water.targets.cloud.lazy), as it names the providers' own, so
parsing a DAG file never imports the providers' modules:

- `AthenaUnloadOperator`: an Athena UNLOAD into a prefix this same task empties first.
- `SizedPodOperator`: a KubernetesPodOperator that takes resources as a plain dict (its tier's,
  from the spec: what escalation reads and doubles), adds a shard's row range, re-runs once on the
  next tier up when its container was OOMKilled, and applies its step's `checks`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Context
from kubernetes.client import (
    V1Capabilities,
    V1Pod,
    V1PodSecurityContext,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecurityContext,
)

from water.operators.quality import check_in_lake
from water.quality import Gates, parse_metrics
from water.sizing import escalate, k8s_resources
from water.spec import SizingPolicy
from water.store import LakeStore
from water.targets.base import LakeAccess
from water.targets.cloud.operators import ReportsLineage, TaskDatasets, empty_prefix

# --- Athena: UNLOAD into an emptied prefix -------------------------------------------------


class AthenaUnloadOperator(ReportsLineage, AthenaOperator):
    """An Athena UNLOAD (`query`) into `location`, emptied first by this same task.

    UNLOAD refuses a target that holds objects (HIVE_PATH_ALREADY_EXISTS), and a try that
    failed half-way leaves some there: emptied in the task itself, every try starts clean.
    Its lineage is its step's lake datasets (`lineage_datasets`), not the catalog tables the
    provider's SQL parser would name (the same lake data under Athena's names).
    """

    template_fields: Sequence[str] = (*AthenaOperator.template_fields, "location")

    def __init__(self, *, location: str, lineage_datasets: TaskDatasets | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.location, self.lineage_datasets = location, lineage_datasets

    def execute(self, context: Context) -> str | None:
        removed = empty_prefix(S3Hook(aws_conn_id=self.aws_conn_id), self.location)
        self.log.info("emptied %s (%d object(s) of an earlier try)", self.location, removed)
        return super().execute(context)


# --- Kubernetes pods -----------------------------------------------------------------------


def oom_killed(pod: V1Pod | None, container: str = "base") -> bool:
    """Whether the pod's `container` was terminated by the kernel for memory (reason OOMKilled)."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    for status in statuses:
        if status.name != container:
            continue
        for state in (status.state, status.last_state):
            if state is not None and state.terminated is not None and state.terminated.reason == "OOMKilled":
                return True
    return False


def restricted_security_contexts(user: int) -> tuple[V1PodSecurityContext, V1SecurityContext]:
    """The pod's and its container's security contexts under the Pod Security Standards'
    `restricted` level, running as `user` (group 0)."""
    return (
        V1PodSecurityContext(
            run_as_non_root=True, run_as_user=user, run_as_group=0, seccomp_profile=V1SeccompProfile(type="RuntimeDefault")
        ),
        V1SecurityContext(
            run_as_non_root=True,
            run_as_user=user,
            allow_privilege_escalation=False,
            capabilities=V1Capabilities(drop=["ALL"]),
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        ),
    )


class SizedPodOperator(ReportsLineage, KubernetesPodOperator):
    """A pod sized by a plain resources dict; re-run once one tier up when OOMKilled.

    `container_resources` may be a {"requests", "limits"} dict (the tier's, from the spec; a
    mapped tier gets it through partial()): it becomes V1ResourceRequirements here.
    `restricted_as` (a uid) sets the security contexts of restricted_security_contexts.
    `shard` ({index, row_start, row_end}) appends --row-start/--row-end; `shard_flag` names
    the output flag whose URI gets `/shard=NNNN` (0000 for an unmapped tier). With an
    `escalation` policy, a container killed for memory is re-run once with
    water.sizing.escalate's resources: the rule the local target follows.

    With `gates` (the step's checks), a pod that succeeded is checked before the task ends:
    what it wrote (its output partitions, read through water.store from `lake`) and the
    metrics its log reported by `metric_definitions` (read once the pod is done, before it
    is deleted, as SageMaker reads a training job's log). A failed check fails the task.

    Its lineage (`lineage_datasets`) is the lake datasets of its reads and writes partitions:
    the provider extracts nothing from a pod. The job inside gets the task's OpenLineage
    parent in its environment (water.targets.cloud.target.LINEAGE_ENV) for its own events.
    """

    def __init__(
        self,
        *,
        container_resources: dict[str, dict[str, str]] | V1ResourceRequirements | None = None,
        shard: dict[str, int] | None = None,
        shard_flag: str | None = None,
        escalation: SizingPolicy | None = None,
        gates: Gates | None = None,
        lake: LakeAccess | None = None,
        metric_definitions: list[tuple[str, str]] | None = None,
        restricted_as: int | None = None,
        lineage_datasets: TaskDatasets | None = None,
        **kwargs: Any,
    ) -> None:
        if restricted_as is not None:
            kwargs["security_context"], kwargs["container_security_context"] = restricted_security_contexts(restricted_as)
        self.gates, self.lake = gates, (lake.copy() if lake else None)
        self.metric_definitions = list(metric_definitions or [])
        self.reported_metrics: dict[str, float] = {}
        self.resources_dict: dict[str, dict[str, str]] | None = None
        if isinstance(container_resources, dict):
            self.resources_dict = dict(container_resources)
            container_resources = k8s_resources(self.resources_dict)
        arguments = list(kwargs.pop("arguments", None) or [])
        if shard_flag:
            flag = f"--{shard_flag}"
            at = arguments.index(flag) + 1
            arguments[at] = f"{arguments[at].rstrip('/')}/shard={(shard or {}).get('index', 0):04d}"
        if shard:
            arguments += ["--row-start", str(shard["row_start"]), "--row-end", str(shard["row_end"])]
            kwargs["labels"] = {**(kwargs.get("labels") or {}), "shard": f"{shard['index']:04d}"}
        super().__init__(container_resources=container_resources, arguments=arguments, **kwargs)
        self.shard, self.shard_flag, self.escalation = shard, shard_flag, escalation
        self.lineage_datasets = lineage_datasets
        self.escalated: str | None = None

    def _final_pod(self) -> V1Pod | None:
        """The pod as the cluster last saw it (a failed pod is kept: delete_succeeded_pod)."""
        if self.pod is not None:
            try:
                pod: V1Pod = self.pod_manager.read_pod(self.pod)  # pod_manager: an unannotated property
                return pod
            except Exception:
                self.log.warning("could not re-read pod %s; using its last known state", _pod_name(self.pod))
        return self.remote_pod

    def _escalation(self, error: Exception) -> dict[str, dict[str, str]] | None:
        """Bigger resources when this first attempt died of OOM and a policy allows one more."""
        if self.escalation is None or self.escalated is not None or self.resources_dict is None:
            return None
        if not oom_killed(self._final_pod(), self.base_container_name):
            return None
        label, bigger = escalate(self.escalation, self.resources_dict)
        self.log.warning(
            "%s: container OOMKilled at memory limit %s; re-running once as %s (limit %s)",
            error.__class__.__name__,
            self.resources_dict["limits"]["memory"],
            label,
            bigger["limits"]["memory"],
        )
        self.escalated = label
        return bigger

    def _rerun(self, context: Context, bigger: dict[str, dict[str, str]]) -> Any:
        self.resources_dict = bigger
        self.container_resources = k8s_resources(bigger)
        # A new pod (new name suffix); the failed one is labelled already-checked, so not reattached.
        self.pod = self.pod_request_obj = self.remote_pod = None
        return self.execute_sync(context)  # the second pod is watched from the worker

    def _escalating(self, context: Context, watch: Callable[[], Any]) -> Any:
        """Watch the pod (`watch()`); an OOMKilled one re-runs once, bigger; then the gates."""
        try:
            result = watch()
        except Exception as error:
            bigger = self._escalation(error)
            if bigger is None:
                raise
            result = self._rerun(context, bigger)
        self.check(context)
        return result

    def execute(self, context: Context) -> Any:
        return self._escalating(context, lambda: super(SizedPodOperator, self).execute(context))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        return self._escalating(context, lambda: super(SizedPodOperator, self).trigger_reentry(context, event))

    def cleanup(
        self, pod: V1Pod, remote_pod: V1Pod, xcom_result: dict[str, Any] | None = None, context: Context | None = None
    ) -> None:
        if self.metric_definitions and pod is not None and not self._killed:
            self.reported_metrics = self._metrics_from_log(pod)  # before a succeeded pod is deleted
        super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)

    def _metrics_from_log(self, pod: V1Pod) -> dict[str, float]:
        try:
            logs = self.pod_manager.read_pod_logs(pod, self.base_container_name, follow=False)
            return parse_metrics((raw.decode("utf-8", "backslashreplace") for raw in logs), self.metric_definitions)
        except Exception as exc:
            self.log.warning("could not read the metrics from pod %s's log: %s", _pod_name(pod), exc)
            return {}

    def check(self, context: Context) -> dict[str, Any] | None:
        """The step's gates on what the pod wrote and reported; QualityCheckFailed names the failures."""
        if self.gates is None:
            return None
        if self.lake is None:
            raise ValueError(f"{self.task_id}: gates to check but no lake to read (lake=)")
        store = LakeStore(self.lake["lake_root"], self.lake["pipeline"], self.lake.get("storage_conn_id"))
        ds = context["ds"]
        written = {dataset: store.files(dataset, ds) for dataset in self.gates.outputs}
        metrics = self.reported_metrics if self.metric_definitions else None
        figures = check_in_lake(self.gates, store, ds, written, metrics)
        self.log.info("%s: checks passed: %s", self.gates.step, json.dumps(figures, sort_keys=True, default=str))
        return figures


def _pod_name(pod: V1Pod) -> str | None:
    return pod.metadata.name if pod.metadata is not None else None
