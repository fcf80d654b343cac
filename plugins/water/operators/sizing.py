"""The sizing operator: each route's own share of the predictions picks its post-processing branch.

Target-agnostic. It reuses the counts inference_stats already took (rows per class); only
when they are missing does it count again, with the target's counter (a pushed-down
aggregate, never a load). Each route is sized from the rows of its own classes
(water.sizing.decide_routes): the same total can send most of the work to one route one day
and to another the next. The decision goes to XCom as `decision` ({rows, class_counts,
routes: {route: {tier, rows, class_counts, shards, forced, reason, classes}}, tier, shards}).

A route's largest tier is mapped over its shards. Airflow maps only over a task's return
value, and a branch that skips ends its task before the return value is pushed; so for that
tier the branch leads to the route's plan task, which returns the shard list to map over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseBranchOperator, BaseOperator, Context

from water.sizing import NO_PREDICTIONS, decide_routes
from water.spec import Route


class SizePostprocessOperator(BaseBranchOperator):
    """Branch to each route's tier task (or the no-predictions task) from its classes' rows."""

    figure_keys = ("decision",)  # XCom keys beyond the return value that carry figures (metrics)

    ui_color = "#fff3d6"

    def __init__(
        self,
        *,
        routes: dict[str, Route],
        stats_task_id: str,
        count_predictions: Callable[[str], dict[str, int]],
        spec_file: str,
        field: str,
        single: bool,
        tier_task_ids: dict[str, dict[str, str]],
        plan_task_ids: dict[str, str],
        no_predictions_task_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.routes = dict(routes)
        self.stats_task_id = stats_task_id
        self.count_predictions = count_predictions
        self.spec_file, self.field, self.single = spec_file, field, single
        self.tier_task_ids, self.plan_task_ids = tier_task_ids, dict(plan_task_ids)
        self.no_predictions_task_id = no_predictions_task_id

    def counts(self, context: Context) -> tuple[dict[str, int], str]:
        stats = context["ti"].xcom_pull(task_ids=self.stats_task_id)
        if isinstance(stats, dict) and isinstance(stats.get("class_counts"), dict):
            return {k: int(v) for k, v in stats["class_counts"].items()}, self.stats_task_id
        self.log.info("no counts from %s; counting the predictions", self.stats_task_id)
        return self.count_predictions(context["ds"]), "counted"

    def choose_branch(self, context: Context) -> list[str]:
        class_counts, source = self.counts(context)
        force_tier = (context.get("params") or {}).get("force_tier") or None
        decision = decide_routes(self.routes, class_counts, force_tier, self.spec_file, self.field, self.single)
        figures = {**decision, "counts_from": source}
        for name, route in figures["routes"].items():
            self.log.info("route %s (%s): %s", name, ", ".join(route["classes"]), route["reason"])
        context["ti"].xcom_push(key="decision", value=figures)
        branches = []
        for name, route in decision["routes"].items():
            if route["tier"] == NO_PREDICTIONS:
                continue  # a route with no rows is skipped, and noted in its reason
            largest = self.routes[name].sizing.tiers[-1].name
            branches.append(self.plan_task_ids[name] if route["tier"] == largest else self.tier_task_ids[name][route["tier"]])
        return branches or [self.no_predictions_task_id]


class PlanShardsOperator(BaseOperator):
    """Returns one route's shards from the sizing decision: the list its largest tier maps over."""

    def __init__(self, *, decision_task_id: str, route: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision_task_id, self.route = decision_task_id, route

    def execute(self, context: Context) -> list[dict[str, int]]:
        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision") or {}
        route = (decision.get("routes") or {}).get(self.route) or {}
        shards = list(route.get("shards") or [])
        if not shards:
            raise ValueError(f"no shards for route {self.route} in {self.decision_task_id}'s decision: {decision}")
        self.log.info("route %s: %d shard(s) of %s rows: %s", self.route, len(shards), route["rows"], shards)
        return shards


class NoPredictionsOperator(BaseOperator):
    """Inference produced nothing: say so loudly (Slack) and end the run as a flagged success."""

    ui_color = "#ffe0e0"

    def __init__(self, *, slack_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slack_conn_id = slack_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from water import notify

        message = f"{self.dag_id} ds={context['ds']}: inference produced no predictions; nothing to post-process or publish"
        self.log.warning(message)
        notify.send(notify.notice_for(context, NO_PREDICTIONS, message, facts={"rows": "0"}), self.slack_conn_id)
        return {"flag": NO_PREDICTIONS, "message": message}
