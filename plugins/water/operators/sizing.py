"""The sizing operator: the inference output's row count picks the post-processing branch.

Target-agnostic. It reuses the counts inference_stats already took (rows, rows per class);
only when they are missing does it count again, with the target's counter (a pushed-down
aggregate, never a load). The decision goes to XCom as `decision` ({tier, rows,
class_counts, shards, resources, forced, reason}).

The largest tier is mapped over the decision's shards. Airflow maps only over a task's
return value, and a branch that skips ends its task before the return value is pushed; so
for that tier the branch leads to `plan_shards`, which returns the shard list to map over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseBranchOperator, BaseOperator

from water.sizing import NO_PREDICTIONS, decide
from water.spec import SizingPolicy


class SizePostprocessOperator(BaseBranchOperator):
    """Branch to the tier's task (or the no-predictions task) from the number of predictions."""

    ui_color = "#fff3d6"

    def __init__(
        self,
        *,
        policy: SizingPolicy,
        stats_task_id: str,
        count_predictions: Callable[[str], dict[str, int]],
        spec_file: str,
        tier_task_ids: dict[str, str],
        plan_task_id: str,
        no_predictions_task_id: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        self.stats_task_id = stats_task_id
        self.count_predictions = count_predictions
        self.spec_file = spec_file
        self.tier_task_ids, self.plan_task_id = dict(tier_task_ids), plan_task_id
        self.no_predictions_task_id = no_predictions_task_id

    def counts(self, context: Any) -> tuple[dict[str, int], str]:
        stats = context["ti"].xcom_pull(task_ids=self.stats_task_id)
        if isinstance(stats, dict) and isinstance(stats.get("class_counts"), dict):
            return {k: int(v) for k, v in stats["class_counts"].items()}, self.stats_task_id
        self.log.info("no counts from %s; counting the predictions", self.stats_task_id)
        return self.count_predictions(context["ds"]), "counted"

    def choose_branch(self, context: Any) -> str:
        class_counts, source = self.counts(context)
        force_tier = (context.get("params") or {}).get("force_tier") or None
        decision = decide(self.policy, sum(class_counts.values()), class_counts, force_tier, self.spec_file)
        figures = {**decision.as_dict(), "counts_from": source}
        self.log.info("sizing decision: %s", figures)
        context["ti"].xcom_push(key="decision", value=figures)
        if decision.tier == NO_PREDICTIONS:
            return self.no_predictions_task_id
        if decision.tier == self.policy.tiers[-1].name:
            return self.plan_task_id  # the largest tier maps over the planned shards
        return self.tier_task_ids[decision.tier]


class PlanShardsOperator(BaseOperator):
    """Returns the sizing decision's shards: the list the largest tier's task maps over."""

    def __init__(self, *, decision_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision_task_id = decision_task_id

    def execute(self, context: Any) -> list[dict[str, int]]:
        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision")
        shards = list((decision or {}).get("shards") or [])
        if not shards:
            raise ValueError(f"no shards in {self.decision_task_id}'s decision: {decision}")
        self.log.info("%d shard(s) of %s rows: %s", len(shards), decision["rows"], shards)
        return shards


class NoPredictionsOperator(BaseOperator):
    """Inference produced nothing: say so loudly (Slack) and end the run as a flagged success."""

    ui_color = "#ffe0e0"

    def __init__(self, *, slack_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slack_conn_id = slack_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from water import notify

        message = f"{self.dag_id} ds={context['ds']}: inference produced no predictions; nothing to post-process or publish"
        self.log.warning(message)
        notify.send(notify.notice_for(context, NO_PREDICTIONS, message, facts={"rows": "0"}), self.slack_conn_id)
        return {"flag": NO_PREDICTIONS, "message": message}
