"""The sizing policy, its decision per route of a sized step, and the branching operator.

Every policy and spec here is built by the test (tests/routes.py writes a routed pipeline and
its job into a temporary project): nothing depends on the shipped specs.
"""

from __future__ import annotations

import re
from itertools import pairwise

import pytest

from tests import routes as routed
from water.sizing import (
    NO_PREDICTIONS,
    CapacityError,
    decide,
    decide_routes,
    describe,
    escalate,
    k8s_resources,
    route_force,
    shard_folders,
)
from water.spec import SizingPolicy

# small <= 1M, medium <= 4M, large <= 8M; 8M/shard, 16 shards: one job for every class
POLICY = SizingPolicy.model_validate(
    routed.sizing(
        [
            {
                "name": "small",
                "max_rows": 1_000_000,
                "resources": {"requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "768Mi"}},
            },
            {
                "name": "medium",
                "max_rows": 4_000_000,
                "resources": {"requests": {"cpu": "500m", "memory": "768Mi"}, "limits": {"cpu": "1", "memory": "1536Mi"}},
            },
            {
                "name": "large",
                "max_rows": 8_000_000,
                "resources": {"requests": {"cpu": "1", "memory": "1536Mi"}, "limits": {"cpu": "2", "memory": "3Gi"}},
            },
        ],
        8_000_000,
        16,
    )
)
SMALL, MEDIUM, LARGE = (t.max_rows for t in POLICY.tiers)
PER_SHARD, MAX_SHARDS = POLICY.scale_out.rows_per_shard, POLICY.scale_out.max_shards
SPEC_FILE = "include/pipelines/routed.yaml"


@pytest.mark.parametrize(
    ("rows", "tier", "shards"),
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


def test_shards_cover_every_row_once():
    rows = PER_SHARD * 3 + 12_345
    shards = decide(POLICY, rows).shards
    assert shards[0]["row_start"] == 0 and shards[-1]["row_end"] == rows
    assert all(a["row_end"] == b["row_start"] for a, b in pairwise(shards))
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


def test_a_tiers_dict_becomes_v1_resource_requirements():
    from kubernetes.client import V1ResourceRequirements

    resources = k8s_resources(POLICY.tiers[1].resources.as_k8s_dict())
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


# --- the branching operator, as the target builds it ---------------------------------------


class FakeTI:
    """inference_stats' figures as its return value; what the operator pushes."""

    def __init__(self, stats):
        self.stats, self.pushed = stats, {}

    def xcom_pull(self, task_ids=None, key="return_value"):
        assert task_ids == "inference_stats" and key in (None, "return_value"), (task_ids, key)
        return self.stats

    def xcom_push(self, key, value):
        self.pushed[key] = value


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The routed pipeline and the same with one job for every class (the demo's policy)."""
    root = tmp_path_factory.mktemp("sizing")
    single = routed.single_form(routed.spec_data())
    single["steps"]["postprocess"]["sizing"] = POLICY.model_dump()
    return {"routes": routed.load_project(root / "routes"), "single": routed.load_project(root / "single", single)}


def built_sizing(spec, counter=None):
    """(the size operator, its step) as the local target's builder makes them (water.targets.common)."""
    from airflow.sdk import DAG

    from water.targets.local.target import LocalTarget

    name, step = spec.step_of("sized_postprocess")
    with DAG(f"sizing_{id(spec)}", schedule=None) as dag:
        LocalTarget(lake_root="file:///nowhere", warehouse_dir="/nowhere").build(spec, name, step)
    op = dag.get_task(step.size_task_id(name))
    op.spec_file = SPEC_FILE
    op.count_predictions = counter or (lambda ds: pytest.fail("counted although inference_stats had the counts"))
    return op, step


def branch(spec, class_counts, force_tier=None, counter=None):
    """(branches, decision) for these class counts."""
    op, _ = built_sizing(spec, counter)
    ti = FakeTI(None if class_counts is None else {"rows": sum(class_counts.values()), "class_counts": class_counts})
    branches = op.choose_branch({"ti": ti, "ds": "2026-11-01", "params": {"force_tier": force_tier}})
    return branches, ti.pushed["decision"]


def test_operator_reuses_inference_stats_and_pushes_the_decision(project):
    counts = {"cook": SMALL, "browse": 5, "dormant": 0, "spam": 0}
    branches, decision = branch(project["single"], counts)
    assert branches == ["postprocess_medium"]
    assert decision["tier"] == "medium" and decision["rows"] == SMALL + 5 and decision["counts_from"] == "inference_stats"
    assert decision["class_counts"] == counts and decision["shards"] == 1 and decision["forced"] is False
    (only,) = decision["routes"].values()
    assert decision["routes"].keys() == {"postprocess"}  # the single form is one route named after the step
    assert only["tier"] == "medium" and only["classes"] == ["cook", "browse", "dormant", "spam"]
    assert "resources" not in only  # the branch's task has them: the next test


def test_each_tier_task_runs_with_its_tiers_resources_from_the_spec(project):
    """The decision picks the branch; resources are the spec's, built into each tier's task."""
    op, step = built_sizing(project["single"])
    for tier in POLICY.tiers:
        task = op.dag.get_task(step.tier_task_id("postprocess", "postprocess", tier.name))
        mapped = tier is POLICY.tiers[-1]  # the largest tier maps over its shards
        resources = task.partial_kwargs["container_resources"] if mapped else task.container_resources
        assert resources == tier.resources.as_k8s_dict()


def test_operator_counts_when_stats_are_missing_and_honours_force_tier(project):
    branches, decision = branch(project["single"], None, "large", counter=lambda ds: {"cook": 3, "browse": 4})
    assert branches == ["plan_shards"]  # the largest tier maps over plan_shards' list
    assert decision["counts_from"] == "counted" and decision["forced"] is True
    assert decision["routes"]["postprocess"]["tier"] == "large"


def test_operator_branches_to_no_predictions_on_zero_rows(project):
    branches, decision = branch(project["single"], {"cook": 0, "browse": 0, "dormant": 0, "spam": 0})
    assert branches == [NO_PREDICTIONS] and decision["shards"] == 0
    assert decision["routes"]["postprocess"]["reason"] == "inference produced no rows"


def test_single_form_capacity_error_names_its_sizing_field(project):
    with pytest.raises(CapacityError) as caught:
        branch(project["single"], {"cook": PER_SHARD * MAX_SHARDS + 1})
    message = str(caught.value)
    assert SPEC_FILE in message
    assert f"steps.postprocess.sizing.scale_out.max_shards to at least {MAX_SHARDS + 1}" in message


# --- per route -----------------------------------------------------------------------------


def route_params() -> list:
    """(route, tier index) of every tier of every route of tests/routes.py's ROUTES."""
    return [
        pytest.param(r, i, id=f"{r}.{t['name']}")
        for r, data in routed.ROUTES.items()
        for i, t in enumerate(data["sizing"]["tiers"])
    ]


def quiet(spec, **rows) -> dict[str, int]:
    """Class counts: these rows, 1 row for every other route's class (so each runs its smallest tier)."""
    return {c: rows.get(c, 1) for c in spec.classes}


@pytest.mark.parametrize(("route", "index"), route_params())
def test_route_at_its_tiers_max_rows_and_one_more(project, route, index):
    spec = project["routes"]
    step = spec.steps["postprocess"]
    tiers = step.routes[route].sizing.tiers
    (cls, *_) = step.routes[route].classes
    at, over = tiers[index], tiers[min(index + 1, len(tiers) - 1)]

    branches, decision = branch(spec, quiet(spec, **{cls: at.max_rows}))
    mine = decision["routes"][route]
    assert (mine["tier"], len(mine["shards"]), mine["rows"]) == (at.name, 1, at.max_rows)
    expected = step.plan_task_id(route) if at is tiers[-1] else step.tier_task_id("postprocess", route, at.name)
    assert expected in branches

    branches, decision = branch(spec, quiet(spec, **{cls: at.max_rows + 1}))
    mine = decision["routes"][route]
    shards = 2 if at is tiers[-1] else 1  # past the largest tier: shards of it
    assert (mine["tier"], len(mine["shards"]), mine["rows"]) == (over.name, shards, at.max_rows + 1)
    expected = step.plan_task_id(route) if over is tiers[-1] else step.tier_task_id("postprocess", route, over.name)
    assert expected in branches
    for other, d in decision["routes"].items():  # the other routes are sized from their own rows
        if other != route:
            assert (d["tier"], d["rows"]) == (step.routes[other].sizing.tiers[0].name, 1)
    assert len(branches) == len(step.routes)  # one branch per route, all in parallel


def test_routes_branch_to_their_own_task_ids(project):
    spec = project["routes"]
    branches, decision = branch(spec, {"cook": 3_000, "browse": 100, "dormant": 2_000, "spam": 40})
    # medium is win_back's largest tier: its branch is its plan task, which its mapped tier follows
    assert branches == ["weekly_menu_medium", "first_cook_nudge_small", "plan_win_back_shards"]
    assert decision["rows"] == 5_140 and decision["class_counts"]["spam"] == 40  # the dropped class is counted
    assert {r: d["rows"] for r, d in decision["routes"].items()} == {
        "weekly_menu": 3_000,
        "first_cook_nudge": 100,
        "win_back": 2_000,
    }
    assert {r: d["classes"] for r, d in decision["routes"].items()} == {
        "weekly_menu": ["cook"],
        "first_cook_nudge": ["browse"],
        "win_back": ["dormant"],
    }
    assert decision["tier"] == "weekly_menu medium · first_cook_nudge small · win_back medium"


def test_a_route_without_rows_is_skipped_while_the_others_run(project):
    spec = project["routes"]
    branches, decision = branch(spec, {"cook": 500, "browse": 0, "dormant": 300, "spam": 7})
    assert branches == ["weekly_menu_small", "win_back_small"]
    skipped = decision["routes"]["first_cook_nudge"]
    assert skipped["tier"] == NO_PREDICTIONS and skipped["shards"] == [] and skipped["rows"] == 0
    assert "no rows" in skipped["reason"] and "browse" in skipped["reason"]
    assert decision["shards"] == 2
    assert "first_cook_nudge no rows" in decision["tier"]
    assert not any(f.startswith("route=first_cook_nudge/") for f in shard_folders(decision))


def test_all_routes_empty_take_the_no_predictions_path(project):
    spec = project["routes"]
    branches, decision = branch(spec, {"cook": 0, "browse": 0, "dormant": 0, "spam": 12})  # only dropped rows
    assert branches == [NO_PREDICTIONS]
    assert all(d["tier"] == NO_PREDICTIONS for d in decision["routes"].values())
    assert decision["shards"] == 0 and shard_folders(decision) == []
    branches, _ = branch(spec, {})
    assert branches == [NO_PREDICTIONS]


@pytest.mark.parametrize(
    ("force_tier", "forced"),
    [
        pytest.param("small", {"weekly_menu": "small", "first_cook_nudge": "small", "win_back": "small"}, id="every-route"),
        pytest.param({"weekly_menu": "large"}, {"weekly_menu": "large"}, id="by-route"),
        pytest.param({"browse": "large"}, {"first_cook_nudge": "large"}, id="by-class"),
        pytest.param({"win_back": "medium", "dormant": "medium"}, {"win_back": "medium"}, id="route-and-class-agree"),
        pytest.param({"weekly_menu": "medium", "dormant": "small"}, {"weekly_menu": "medium", "win_back": "small"}, id="mixed"),
    ],
)
def test_force_tier_per_route(project, force_tier, forced):
    spec = project["routes"]
    step = spec.steps["postprocess"]
    branches, decision = branch(spec, {"cook": 5_000, "browse": 3_000, "dormant": 2_000, "spam": 1}, force_tier)
    for name, d in decision["routes"].items():
        if name in forced:
            assert d["forced"] is True and d["tier"] == forced[name] and "force_tier" in d["reason"], name
        else:  # sized from its rows as on any other day
            assert d["forced"] is False and "force_tier" not in d["reason"], name
        largest = step.routes[name].sizing.tiers[-1].name
        task = step.plan_task_id(name) if d["tier"] == largest else step.tier_task_id("postprocess", name, d["tier"])
        assert task in branches
    assert decision["forced"] is True


@pytest.mark.parametrize(
    ("force_tier", "words"),
    [
        pytest.param(
            {"nope": "small"},
            ("force_tier names ['nope']", "neither a route", "weekly_menu, first_cook_nudge, win_back"),
            id="unknown-route",
        ),
        pytest.param({"spam": "small"}, ("force_tier names ['spam']", "neither a route"), id="dropped-class"),
        pytest.param(
            {"win_back": "large"},
            ("force_tier 'large' is not a tier of route win_back (dormant)", "choose one of small, medium"),
            id="tier-the-route-lacks",
        ),
        pytest.param(
            {"dormant": "huge"},
            ("force_tier 'huge' is not a tier of route win_back", "choose one of small, medium"),
            id="unknown-tier-by-class",
        ),
        pytest.param("large", ("force_tier 'large' is not a tier of route win_back",), id="string-some-route-lacks"),
        pytest.param(
            {"weekly_menu": "small", "cook": "large"},
            ("force_tier names two tiers for route weekly_menu", "'small'", "'large'"),
            id="two-tiers-route-and-class",
        ),
    ],
)
def test_force_tier_per_route_is_validated(project, force_tier, words):
    with pytest.raises(ValueError, match=re.escape(words[0])) as caught:
        branch(project["routes"], {"cook": 5, "browse": 5, "dormant": 5, "spam": 5}, force_tier)
    for said in words:
        assert said in str(caught.value), str(caught.value)


def test_route_force_reads_a_tier_or_a_mapping():
    assert route_force(None, "r", ["a"]) is None and route_force({}, "r", ["a"]) is None
    assert route_force("large", "r", ["a"]) == "large"
    assert route_force({"r": "small"}, "r", ["a", "b"]) == "small"
    assert route_force({"b": "small"}, "r", ["a", "b"]) == "small"
    assert route_force({"other": "small"}, "r", ["a", "b"]) is None
    with pytest.raises(ValueError, match="two tiers for route r"):
        route_force({"a": "small", "b": "large"}, "r", ["a", "b"])


def rank(spec, route: str, d: dict) -> tuple[int, int]:
    """How big a route's work is: (its tier's place, its shards)."""
    names = [t.name for t in spec.steps["postprocess"].routes[route].sizing.tiers]
    return names.index(d["tier"]), len(d["shards"])


def test_the_same_total_is_sized_by_each_routes_share(project):
    """24,000 rows: evenly, or 80/15/5. The heavy route grows, the others shrink."""
    spec = project["routes"]
    even = {"cook": 8_000, "browse": 8_000, "dormant": 8_000, "spam": 0}
    skewed = {"cook": 19_200, "browse": 3_600, "dormant": 1_200, "spam": 0}
    assert sum(even.values()) == sum(skewed.values())
    _, before = branch(spec, even)
    _, after = branch(spec, skewed)
    assert before["rows"] == after["rows"] == 24_000
    summary = {r: (d["tier"], len(d["shards"])) for r, d in before["routes"].items()}
    assert summary == {"weekly_menu": ("large", 1), "first_cook_nudge": ("large", 2), "win_back": ("medium", 2)}
    summary = {r: (d["tier"], len(d["shards"])) for r, d in after["routes"].items()}
    assert summary == {"weekly_menu": ("large", 3), "first_cook_nudge": ("large", 1), "win_back": ("medium", 1)}
    assert rank(spec, "weekly_menu", after["routes"]["weekly_menu"]) > rank(spec, "weekly_menu", before["routes"]["weekly_menu"])
    for other in ("first_cook_nudge", "win_back"):
        assert rank(spec, other, after["routes"][other]) < rank(spec, other, before["routes"][other])
    assert (before["shards"], after["shards"]) == (5, 5)
    assert before["tier"] == "weekly_menu large · first_cook_nudge large × 2 · win_back medium × 2"
    assert after["tier"] == "weekly_menu large × 3 · first_cook_nudge large · win_back medium"
    # each route's shards cover its own rows exactly once
    for d in after["routes"].values():
        assert d["shards"][0]["row_start"] == 0 and d["shards"][-1]["row_end"] == d["rows"]
        assert all(a["row_end"] == b["row_start"] for a, b in pairwise(d["shards"]))


def test_route_capacity_error_names_the_routes_field(project):
    spec = project["routes"]
    scale = spec.steps["postprocess"].routes["weekly_menu"].sizing.scale_out  # 8,000 x 4
    rows = scale.rows_per_shard * scale.max_shards + 1
    with pytest.raises(CapacityError) as caught:
        branch(spec, {"cook": rows, "browse": 1, "dormant": 1})
    message = str(caught.value)
    assert SPEC_FILE in message and f"{rows:,} predictions" in message
    field = "steps.postprocess.routes.weekly_menu.sizing.scale_out"
    assert f"{field}.max_shards to at least {scale.max_shards + 1}" in message
    assert f"{field}.rows_per_shard to at least" in message
    # the same rows spread over the routes fit
    branches, _ = branch(spec, {"cook": rows // 2, "browse": 1, "dormant": 1})
    assert branches[0] == "plan_weekly_menu_shards"


def test_decide_routes_without_the_operator(project):
    routes = project["routes"].steps["postprocess"].routes
    decision = decide_routes(routes, {"cook": 9_000, "browse": 10, "dormant": 0}, None, SPEC_FILE, "steps.postprocess")
    assert decision["rows"] == 9_010 and decision["forced"] is False and decision["shards"] == 3
    assert set(decision["routes"]) == set(routes)
    assert decision["routes"]["weekly_menu"]["class_counts"] == {"cook": 9_000}
    assert decision["routes"]["win_back"]["class_counts"] == {"dormant": 0}


def test_shard_folders_are_each_running_routes_shards():
    decision = {
        "routes": {
            "weekly_menu": {"tier": "large", "shards": [{"index": i} for i in range(3)]},
            "first_cook_nudge": {"tier": NO_PREDICTIONS, "shards": []},
            "win_back": {"tier": "small", "shards": [{"index": 0}]},
        }
    }
    assert shard_folders(decision) == [
        "route=weekly_menu/shard=0000",
        "route=weekly_menu/shard=0001",
        "route=weekly_menu/shard=0002",
        "route=win_back/shard=0000",
    ]
    assert shard_folders({}) == [] and shard_folders({"routes": {}}) == []


def test_describe_one_route_and_several():
    one = {"tier": "large", "shards": [{}, {}, {}]}
    assert describe({"postprocess": one}) == "large × 3"
    assert describe({"postprocess": {"tier": "medium", "shards": [{}]}}) == "medium"
    assert describe({"postprocess": {"tier": NO_PREDICTIONS, "shards": []}}) == "no rows"
    several = {"a": one, "b": {"tier": "small", "shards": [{}]}, "c": {"tier": NO_PREDICTIONS, "shards": []}}
    assert describe(several) == "a large × 3 · b small · c no rows"


def test_plan_task_returns_its_routes_shards(project):
    from water.operators.sizing import PlanShardsOperator

    class DecisionTI:
        def __init__(self, decision):
            self.decision = decision

        def xcom_pull(self, task_ids=None, key=None):
            return self.decision if (task_ids, key) == ("size_postprocess", "decision") else None

    _, decision = branch(project["routes"], {"cook": 20_000, "browse": 5_000, "dormant": 0})
    for route, count in (("weekly_menu", 3), ("first_cook_nudge", 2)):
        plan = PlanShardsOperator(task_id=f"plan_{route}_shards", decision_task_id="size_postprocess", route=route)
        shards = plan.execute({"ti": DecisionTI(decision)})
        assert shards == decision["routes"][route]["shards"] and len(shards) == count
    empty = PlanShardsOperator(task_id="plan_win_back_shards", decision_task_id="size_postprocess", route="win_back")
    with pytest.raises(ValueError, match="no shards for route win_back"):
        empty.execute({"ti": DecisionTI(decision)})


def test_policy_validation_rejects_unordered_tiers():
    data = POLICY.model_dump()
    data["tiers"] = list(reversed(data["tiers"]))
    with pytest.raises(ValueError, match="strictly increasing max_rows"):
        SizingPolicy.model_validate(data)
