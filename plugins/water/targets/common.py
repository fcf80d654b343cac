"""Builders shared by every target: water's own kinds whose logic does not depend on where
the data lives (the lake is reached through water.store on either target).

- drift_guard: the guard (a branch) and its quarantine task.
- sized_postprocess: the sizing branch, each route's shard plan and the no-predictions task
  around the target's own tier tasks and commit (`tier_task`, `commit_task`), and the check
  of the step's gates on the shards before the commit (water.operators.quality).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from airflow.sdk import XComArg

from water import paths
from water.quality import Gates
from water.spec import DriftGuardStep, PipelineSpec, Route, SizedPostprocessStep, Tier, spec_path
from water.targets.base import Built, Node, Target

if TYPE_CHECKING:
    from water.operators.quality import ShardsGateOperator

# (route name, route, tier, shards XComArg or None) -> the route's task for that tier
RouteTierTask = Callable[[str, Route, Tier, XComArg | None], Node]

# The retraction's first task follows the tasks that end a day unpublished (quarantine,
# no_predictions): it runs when one of them succeeded and none failed. When the day
# published, both are skipped and so is it; when a step failed, it is upstream_failed and
# the previous good partition stays.
RETRACT_TRIGGER_RULE = "none_failed_min_one_success"


def retraction(spec: PipelineSpec, name: str, build: Callable[[], Node]) -> Node | None:
    """The publish step's retraction (`build()` makes the target's task or group, its first
    task with RETRACT_TRIGGER_RULE), or None when the step keeps earlier outputs or nothing
    before it can end a day unpublished (a retraction with no upstream would run every day)."""
    return build() if spec.retracts(name) else None


def shards_check(target: Target, spec: PipelineSpec, name: str, step: SizedPostprocessStep) -> ShardsGateOperator | None:
    """The sized step's gates on the shards its sizing decision ran, before the commit swaps
    them into its dataset; None when the step has no checks."""
    from water.operators.quality import ShardsGateOperator

    gates = Gates.of(name, step)
    if gates is None:
        return None
    return ShardsGateOperator(
        task_id=step.check_task_id(),
        gates=gates,
        shards_dataset=step.shards_dataset,
        decision_task_id=step.size_task_id(name),
        trigger_rule="none_failed_min_one_success",  # as the commit's: routes with no rows are skipped
        execution_timeout=step.timeout,
        **target.lake_access(spec),
    )


def drift_guard(target: Target, spec: PipelineSpec, name: str, step: DriftGuardStep) -> Built:
    from water.operators.drift import DriftGuardOperator, QuarantineOperator

    stats_task_id = spec.writer(step.reads)
    assert stats_task_id is not None, step.reads  # the spec's validation: an inference_stats step writes it
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
    tier_task: RouteTierTask,
    commit_task: Callable[[], Node],
) -> Built:
    """The sizing branch, then per route: its tier tasks (the largest mapped over the route's
    shards, planned by its own plan task), all routes in parallel, one commit after them;
    with checks, a check task of every route's shards between (a failed check: no commit)."""
    from water.operators.sizing import NoPredictionsOperator, PlanShardsOperator, SizePostprocessOperator

    stats = spec.counting_step(step.reads)
    assert stats is not None, step.reads  # the spec's validation: an inference_stats step counts it
    routes = step.all_routes(spec.classes, name)
    size = SizePostprocessOperator(
        task_id=step.size_task_id(name),
        routes=routes,
        stats_task_id=stats,
        count_predictions=counter,
        spec_file=str(paths.shown(spec_path(spec.name))),
        field=f"steps.{name}",
        single=not step.routes,
        tier_task_ids={
            r: {t.name: step.tier_task_id(name, r, t.name) for t in route.sizing.tiers} for r, route in routes.items()
        },
        plan_task_ids={r: step.plan_task_id(r) for r in routes},
        no_predictions_task_id=step.no_predictions_task_id,
        execution_timeout=step.timeout,
    )
    no_predictions = NoPredictionsOperator(
        task_id=step.no_predictions_task_id,
        slack_conn_id=spec.notifications.slack_conn_id,
        execution_timeout=timedelta(minutes=5),
    )
    commit = commit_task()
    check = shards_check(target, spec, name, step)
    if check is not None:
        check >> commit
    size >> no_predictions
    for route_name, route in routes.items():
        *fixed, largest = route.sizing.tiers
        plan = PlanShardsOperator(
            task_id=step.plan_task_id(route_name),
            decision_task_id=size.task_id,
            route=route_name,
            execution_timeout=timedelta(minutes=5),
        )
        tiers = [tier_task(route_name, route, t, None) for t in fixed]
        fan_out = tier_task(route_name, route, largest, XComArg(plan))  # mapped over the route's shards
        size >> [*tiers, plan]
        plan >> fan_out
        [*tiers, fan_out] >> (check if check is not None else commit)
    return Built(head=size, tail=commit)
