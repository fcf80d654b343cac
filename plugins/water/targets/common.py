"""Builders shared by every target: water's own kinds whose logic does not depend on where
the data lives (the lake is reached through water.store on either target).

- drift_guard: the guard (a branch) and its quarantine task.
- sized_postprocess: the sizing branch, the shard plan and the no-predictions task around
  the target's own tier tasks and commit (`tier_task`, `commit_task`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.sdk import XComArg

from water import paths
from water.spec import DriftGuardStep, PipelineSpec, SizedPostprocessStep, Tier, spec_path
from water.targets.base import Built, Target

TierTask = Callable[[Tier, Any | None], Any]  # (tier, shards XComArg or None) -> task


def drift_guard(target: Target, spec: PipelineSpec, name: str, step: DriftGuardStep) -> Built:
    from water.operators.drift import DriftGuardOperator, QuarantineOperator

    stats_task_id = spec.writer(step.reads)
    guard = DriftGuardOperator(
        task_id=name,
        classes=spec.classes,
        policy=step,
        stats_task_id=stats_task_id,
        quarantine_task_id=step.quarantine_task_id,
        slack_conn_id=spec.notifications.slack_conn_id,
        execution_timeout=step.timeout,
        **target.lake_access(spec),
    )
    guard >> QuarantineOperator(
        task_id=step.quarantine_task_id,
        guard_task_id=name,
        guarded=step.guards,
        quarantine=step.writes,
        execution_timeout=timedelta(minutes=30),
        **target.lake_access(spec),
    )
    return Built.one(guard)  # the guarded steps follow it; quarantine is a leaf


def sized_postprocess(
    target: Target,
    spec: PipelineSpec,
    name: str,
    step: SizedPostprocessStep,
    counter: Callable[[str], dict[str, int]],
    tier_task: TierTask,
    commit_task: Callable[[], Any],
) -> Built:
    from water.operators.sizing import NoPredictionsOperator, PlanShardsOperator, SizePostprocessOperator

    stats = next(n for n, s in spec.steps_of("inference_stats").items() if s.reads == step.reads)
    *fixed, largest = step.sizing.tiers
    size = SizePostprocessOperator(
        task_id=step.size_task_id(name),
        policy=step.sizing,
        stats_task_id=stats,
        count_predictions=counter,
        spec_file=str(paths.shown(spec_path(spec.name))),
        tier_task_ids={t.name: step.tier_task_id(name, t.name) for t in fixed},
        plan_task_id=step.plan_task_id,
        no_predictions_task_id=step.no_predictions_task_id,
        execution_timeout=step.timeout,
    )
    plan = PlanShardsOperator(
        task_id=step.plan_task_id, decision_task_id=size.task_id, execution_timeout=timedelta(minutes=5)
    )
    tiers = [tier_task(t, None) for t in fixed]
    fan_out = tier_task(largest, XComArg(plan))  # mapped over the shards
    no_predictions = NoPredictionsOperator(
        task_id=step.no_predictions_task_id,
        slack_conn_id=spec.notifications.slack_conn_id,
        execution_timeout=timedelta(minutes=5),
    )
    commit = commit_task()
    size >> [no_predictions, *tiers, plan]
    plan >> fan_out
    [*tiers, fan_out] >> commit
    return Built(head=size, tail=commit)
