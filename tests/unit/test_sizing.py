"""The sizing policy and the branching operator that applies it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from water.operators.sizing import SizePostprocessOperator
from water.sizing import NO_PREDICTIONS, CapacityError, decide, escalate, k8s_resources
from water.spec import SizingPolicy, load_pipeline

SIZED_NAME, SIZED = load_pipeline("recipe_engagement").step_of("sized_postprocess")
POLICY = SIZED.sizing  # small <= 1M, medium <= 4M, large <= 8M; 8M/shard, 16 shards
SMALL, MEDIUM, LARGE = (t.max_rows for t in POLICY.tiers)
PER_SHARD, MAX_SHARDS = POLICY.scale_out.rows_per_shard, POLICY.scale_out.max_shards


@pytest.mark.parametrize(
    "rows,tier,shards",
    [
        (1, "small", 1),
        (SMALL, "small", 1),
        (SMALL + 1, "medium", 1),
        (MEDIUM, "medium", 1),
        (MEDIUM + 1, "large", 1),
        (LARGE, "large", 1),
        (LARGE + 1, "large", 2),
        (PER_SHARD * 5 + 1, "large", 6),
        (PER_SHARD * MAX_SHARDS, "large", MAX_SHARDS),
    ],
)
def test_boundaries(rows, tier, shards):
    decision = decide(POLICY, rows)
    assert decision.tier == tier
    assert len(decision.shards) == shards
    expected = next(t for t in POLICY.tiers if t.name == tier).resources.as_k8s_dict()
    assert decision.resources == expected


def test_shards_cover_every_row_once():
    rows = PER_SHARD * 3 + 12_345
    shards = decide(POLICY, rows).shards
    assert shards[0]["row_start"] == 0 and shards[-1]["row_end"] == rows
    assert all(a["row_end"] == b["row_start"] for a, b in zip(shards, shards[1:]))
    assert all(s["row_end"] - s["row_start"] <= PER_SHARD for s in shards)
    assert [s["index"] for s in shards] == list(range(len(shards)))


def test_zero_rows_take_the_no_predictions_path():
    decision = decide(POLICY, 0, {"cook": 0})
    assert decision.tier == NO_PREDICTIONS and decision.shards == [] and decision.rows == 0


def test_over_capacity_says_what_to_change():
    rows = PER_SHARD * MAX_SHARDS + 1
    with pytest.raises(CapacityError) as caught:
        decide(POLICY, rows, spec_file="include/pipelines/recipe_engagement.yaml")
    message = str(caught.value)
    assert "include/pipelines/recipe_engagement.yaml" in message
    assert f"sizing.scale_out.max_shards to at least {MAX_SHARDS + 1}" in message
    assert "sizing.scale_out.rows_per_shard" in message


def test_force_tier_overrides_and_is_validated():
    decision = decide(POLICY, 10, force_tier="large")
    assert decision.tier == "large" and decision.forced and len(decision.shards) == 1
    assert decide(POLICY, LARGE * 2, force_tier="small").tier == "small"
    with pytest.raises(ValueError, match="choose one of small, medium, large"):
        decide(POLICY, 10, force_tier="huge")


def test_xcom_dict_becomes_v1_resource_requirements():
    from kubernetes.client import V1ResourceRequirements

    resources = k8s_resources(decide(POLICY, MEDIUM).resources)
    assert isinstance(resources, V1ResourceRequirements)
    assert resources.limits == {"cpu": "1", "memory": "1536Mi"}
    assert resources.requests == {"cpu": "500m", "memory": "768Mi"}


def test_escalation_goes_one_tier_up_then_doubles():
    small, medium, large = (t.resources.as_k8s_dict() for t in POLICY.tiers)
    assert escalate(POLICY, small) == ("medium", medium)
    assert escalate(POLICY, medium) == ("large", large)
    label, doubled = escalate(POLICY, large)
    assert label == "large x2 memory"
    assert doubled["limits"]["memory"] == "6144Mi" and doubled["requests"]["memory"] == "3072Mi"
    assert doubled["limits"]["cpu"] == large["limits"]["cpu"]


class FakeTI:
    def __init__(self, stats):
        self.stats, self.pushed = stats, {}

    def xcom_pull(self, task_ids=None, key="return_value"):
        return self.stats

    def xcom_push(self, key, value):
        self.pushed[key] = value


def operator(counter=None):
    return SizePostprocessOperator(
        task_id=SIZED.size_task_id(SIZED_NAME),
        policy=POLICY,
        stats_task_id="inference_stats",
        count_predictions=counter or (lambda ds: pytest.fail("counted although inference_stats had the counts")),
        spec_file="include/pipelines/recipe_engagement.yaml",
        tier_task_ids={t.name: SIZED.tier_task_id(SIZED_NAME, t.name) for t in POLICY.tiers[:-1]},
        plan_task_id=SIZED.plan_task_id,
        no_predictions_task_id=SIZED.no_predictions_task_id,
    )


def test_operator_reuses_inference_stats_and_pushes_the_decision():
    ti = FakeTI({"rows": SMALL + 5, "class_counts": {"cook": SMALL, "browse": 5, "dormant": 0}})
    branch = operator().choose_branch({"ti": ti, "ds": "2026-11-01", "params": {"force_tier": None}})
    assert branch == "postprocess_medium"
    decision = ti.pushed["decision"]
    assert decision["tier"] == "medium" and decision["rows"] == SMALL + 5 and decision["counts_from"] == "inference_stats"
    assert decision["class_counts"] == {"cook": SMALL, "browse": 5, "dormant": 0}
    assert decision["resources"]["limits"]["memory"] == "1536Mi"


def test_operator_counts_when_stats_are_missing_and_honours_force_tier():
    ti = FakeTI(None)
    branch = operator(counter=lambda ds: {"cook": 3, "browse": 4}).choose_branch(
        {"ti": ti, "ds": "2026-11-01", "params": {"force_tier": "large"}}
    )
    assert branch == "plan_shards"  # the largest tier maps over plan_shards' list
    assert ti.pushed["decision"]["counts_from"] == "counted" and ti.pushed["decision"]["forced"] is True


def test_operator_branches_to_no_predictions_on_zero_rows():
    ti = FakeTI({"rows": 0, "class_counts": {"cook": 0, "browse": 0, "dormant": 0}})
    assert operator().choose_branch({"ti": ti, "ds": "2026-11-01", "params": {}}) == NO_PREDICTIONS


def test_policy_validation_rejects_unordered_tiers():
    data = POLICY.model_dump()
    data["tiers"] = list(reversed(data["tiers"]))
    with pytest.raises(ValueError, match="strictly increasing max_rows"):
        SizingPolicy.model_validate(data)
