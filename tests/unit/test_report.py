"""The run report page: self-contained, escaped, and showing the figures it embeds."""

from __future__ import annotations

import json
import re

import pytest

from water import report

RECORD = {
    "dag_id": "recipe_engagement",
    "ds": "2026-11-02",
    "run_id": "manual__<x>",
    "target": "local",
    "state": "success",
    "failed_tasks": [],
    "duration_seconds": 93.4,
    "conf": {},
    # which task holds which figure: the demo spec's roles (water.spec.PipelineSpec.roles)
    "roles": {
        "stats": "inference_stats",
        "stats_dataset": "stats",
        "training": "train",
        "objective_metric": "validation:accuracy",
        "drift": "drift_guard",
        "quarantine": "quarantine",
        "decision": "size_postprocess",
        "publish": "publish",
    },
    "decision": {
        "tier": "weekly_menu medium · first_cook_nudge small · win_back small",
        "rows": 2_500_000,
        "shards": 3,
        "routes": {
            "weekly_menu": {"classes": ["cook"], "tier": "medium", "rows": 1_500_000, "shards": [{}], "reason": "…"},
            "first_cook_nudge": {"classes": ["browse"], "tier": "small", "rows": 625_000, "shards": [{}], "reason": "…"},
            "win_back": {"classes": ["dormant"], "tier": "small", "rows": 375_000, "shards": [{}], "reason": "…"},
        },
    },
    "previous_routes": {"weekly_menu": {"classes": ["cook"], "tier": "small", "rows": 1_000_000, "shards": 1}},
    "drift": {
        "verdict": "warn",
        "psi": 0.1658,
        "js": 0.2011,
        "baseline": "previous run ds=2026-11-01",
        "shares": {"cook": 0.6, "browse": 0.25, "dormant": 0.15},
        "baseline_shares": {"cook": 0.4, "browse": 0.35, "dormant": 0.25},
    },
    "tasks": [
        {
            "task_id": "inference_stats",
            "state": "success",
            "seconds": 1.2,
            "figures": {
                "rows_in": 2_500_000,
                "rows": 2_500_000,
                "class_counts": {"cook": 1_500_000, "browse": 625_000, "dormant": 375_000},
            },
        },
        {"task_id": "train", "state": "success", "seconds": 50.0, "figures": {"metrics": {"validation:accuracy": 0.8412}}},
        {"task_id": "publish", "state": "success", "seconds": 0.4, "figures": {"rows_in": 2_500_000, "rows_out": 2_500_000}},
    ],
}
HISTORY = [
    {
        "ds": "2026-11-01",
        "rows": 2_400_000,
        "shares": {"cook": 0.4, "browse": 0.35, "dormant": 0.25},
        "psi": None,
        "verdict": "no_baseline",
    },
    {
        "ds": "2026-11-02",
        "rows": 2_500_000,
        "shares": {"cook": 0.6, "browse": 0.25, "dormant": 0.15},
        "psi": 0.1658,
        "verdict": "warn",
    },
]


def test_the_page_shows_and_embeds_the_runs_figures():
    page = report.render(RECORD, HISTORY, ["cook", "browse", "dormant"])
    data = json.loads(re.search(r'id="water-run">(.*?)</script>', page, re.S).group(1))
    assert data["headline"] == {
        "rows": 2_500_000,
        "class_counts": {"cook": 1_500_000, "browse": 625_000, "dormant": 375_000},
        "tier": "weekly_menu medium · first_cook_nudge small · win_back small",
        "shards": 3,
        "routes": {
            "weekly_menu": {"classes": ["cook"], "tier": "medium", "rows": 1_500_000, "shards": 1},
            "first_cook_nudge": {"classes": ["browse"], "tier": "small", "rows": 625_000, "shards": 1},
            "win_back": {"classes": ["dormant"], "tier": "small", "rows": 375_000, "shards": 1},
        },
        "drift_verdict": "warn",
        "psi": 0.1658,
        "js": 0.2011,
        "validation_accuracy": 0.8412,
        "rows_published": 2_500_000,
        "quarantined": None,
        "earlier_outputs": None,
    }
    for shown in ("2,500,000", "0.841", "weekly_menu medium", "PSI 0.166", "60.0%", "40.0%", "93.4 s"):
        assert shown in page, shown
    # each route beside the previous run's: rows and tier before and now
    routes = re.search(r"<table id='routes'>(.*?)</table>", page, re.S).group(1)
    assert (
        "<td>weekly_menu</td><td>cook</td><td class='n'>1,000,000</td><td class='n'>1,500,000</td><td>small</td><td>medium</td>"
        in routes
    )
    assert "<td>win_back</td><td>dormant</td><td class='n'></td><td class='n'>375,000</td><td>-</td><td>small</td>" in routes
    assert page.count("<rect") >= 2 * 3  # two days, three classes stacked
    assert "manual__&lt;x&gt;" in page and "manual__<x>" not in page.split('id="water-run">')[0]  # escaped
    assert not re.search(r'(src|href)="(?!#)', page)  # self-contained: no external assets


def test_outcome_is_failed_when_any_task_failed_or_could_not_run():
    assert report.outcome([{"state": "success"}, {"state": "skipped"}]) == "success"
    assert report.outcome([{"state": "success"}, {"state": "upstream_failed"}]) == "failed"


ROLES_WITH_ENDINGS = {
    "publish": "publish",
    "nothing_published": {"endings": ["quarantine", "no_predictions"], "setting": "keep", "retract": None},
}


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({"extract": "success", "publish": "success", "quarantine": "skipped"}, "success"),
        # the cloud's publish is a task group: published when all of it succeeded
        ({"publish.to_gcs": "success", "publish.load": "success"}, "success"),
        ({"publish.to_gcs": "success", "publish.load": "skipped"}, "failed"),
        # a day ended on purpose before publishing is a success (its outcome says quarantined or no rows)
        ({"quarantine": "success", "publish": "skipped"}, "success"),
        ({"no_predictions": "success", "publish": "skipped"}, "success"),
        # marked failed (or stopped) before it ran: Airflow skips the rest and calls the run a success
        ({"extract": "skipped", "publish": "skipped", "quarantine": "skipped", "no_predictions": "skipped"}, "failed"),
    ],
)
def test_outcome_is_success_only_when_the_day_was_published_or_ended_on_purpose(states, expected):
    tasks = [{"task_id": task_id, "state": state} for task_id, state in states.items()]
    assert report.outcome(tasks, ROLES_WITH_ENDINGS) == expected


def test_the_headline_finds_figures_by_role_not_by_task_name():
    """A pipeline whose steps have other names (and a pod that trains) shows the same headline."""
    renamed = {
        "stats": "count_scores",
        "training": "fit_pod",
        "objective_metric": "val:acc",
        "publish": "load",
        "decision": "size_post",
        "drift": None,
        "quarantine": None,
        "stats_dataset": "counts",
    }
    tasks = [
        {"task_id": "count_scores", "state": "success", "figures": {"rows": 10, "class_counts": {"a": 7, "b": 3}}},
        {"task_id": "fit_pod", "state": "success", "figures": {"metrics": {"val:acc": 0.7}}},
        {"task_id": "load", "state": "success", "figures": {"rows_out": 10}},
    ]
    head = report.headline({**RECORD, "roles": renamed, "drift": None, "tasks": tasks})
    assert (head["rows"], head["validation_accuracy"], head["rows_published"]) == (10, 0.7, 10)


def test_route_lines_for_slack_say_rows_and_tier_beside_the_previous_run():
    routes = {
        "weekly_menu": {"classes": ["cook"], "tier": "large", "rows": 16_000, "shards": 2},
        "win_back": {"classes": ["dormant"], "tier": "no_predictions", "rows": 0, "shards": 0},
    }
    previous = {"weekly_menu": {"classes": ["cook"], "tier": "medium", "rows": 6_800, "shards": 1}}
    assert report.route_lines(routes, previous) == [
        "weekly_menu (cook): 16,000 rows → large × 2 (before: 6,800 rows, medium)",
        "win_back (dormant): 0 rows → skipped, no rows",
    ]


def test_the_lineage_section_lists_what_each_step_read_and_wrote():
    """Built by the run_report task from the spec and the target (water.lineage's identities, the
    ones the steps' events carry; the cloud's events go where the report cannot read them): one row
    per step in graph order, its inputs and outputs, the lake root written `lake:`."""
    from tests.completions import report_operator
    from water.spec import is_table, load_pipeline
    from water.targets import get_target

    spec = load_pipeline("recipe_engagement")
    operator = report_operator(spec, get_target("local").lake_root)
    lineage = operator.lineage()
    page = report.render({**RECORD, "lineage": lineage}, HISTORY, spec.classes)
    table = re.search(r"<table id='lineage'>(.*?)</table>", page, re.S).group(1)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table)
    assert [step for step, _, _ in rows] == spec.order()
    for step, inputs, outputs in rows:
        for names, cell in ((spec.steps[step].inputs(), inputs), (spec.steps[step].outputs(), outputs)):
            shown = cell.split("<br>")
            assert len(shown) == len(names), (step, cell)
            lake = [f"lake:recipe_engagement/{name}" for name in names if not is_table(name)]
            assert [s for s in shown if s.startswith("lake:")] == lake, (step, cell)
            tables = ["/" + name.replace(".", "/") for name in names if is_table(name)]
            assert [s for s in shown if not s.startswith("lake:")] == [s for s in shown if s.endswith(tuple(tables))]
    assert rows[0][2] == "lake:recipe_engagement/raw" and rows[-1][1] == "lake:recipe_engagement/outputs"
    assert rows[-1][2].startswith("file:///") and rows[-1][2].endswith("/ml/engagement_segments")  # the local warehouse
    assert "Lineage: what each step read and wrote" in page
    assert "Lineage:" not in report.render(RECORD, HISTORY, spec.classes)  # a record without it: no section


def test_a_lineage_it_cannot_build_leaves_the_section_out_not_the_report(monkeypatch):
    from water import lineage
    from water.operators.report import RunReportOperator

    def broken(spec, target, name):
        raise ValueError("no OpenLineage naming for 'ftp://x'")

    monkeypatch.setattr(lineage, "step_datasets", broken)
    operator = RunReportOperator(
        task_id="run_report",
        pipeline="recipe_engagement",
        classes=[],
        lake_root="file:///lake",
        storage_conn_id=None,
        target="local",
        roles={},
        history_days=14,
        slack_conn_id=None,
    )
    assert operator.lineage() == []
