"""The run report's history (water.operators.report, water.report): which days it lists, each
day's verdict and figures, and the previous run's sizing, from what a week of runs left in a
lake in a temporary folder (the days judged by the drift guard, tests/guarded.py).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.guarded import CALM, EMPTY, MODERATE, PIPELINE, STATS, SWING, judge, make_guard, stats_written
from water import drift, lake
from water.operators.report import REPORT_FILE, RUN_FILE, RunReportOperator
from water.targets.local.engines.partitions import file_uri

ROLES = {"stats": "inference_stats", "stats_dataset": STATS, "drift": "drift_guard", "decision": "size_postprocess"}
DS = "2026-11-02"  # the day the report is for: its stats are written, its guard has not run
# The days before it, each as the guard left it (11-03, a later day, is run too).
WEEK = {
    "2026-10-28": (CALM, drift.NO_BASELINE),
    "2026-10-29": (EMPTY, drift.NO_ROWS),
    "2026-10-30": (MODERATE, drift.WARN),
    "2026-10-31": (SWING, drift.BLOCK),
    "2026-11-01": (MODERATE, drift.OK),  # against 10-30: the blocked day is no baseline
}
CALM_SHARES = {"cook": 0.4, "browse": 0.35, "dormant": 0.25}
SHARES = {  # each day's class shares, in the spec's class order
    "2026-10-28": CALM_SHARES,
    "2026-10-29": {"cook": 0.0, "browse": 0.0, "dormant": 0.0},
    "2026-10-30": {"cook": 0.6, "browse": 0.25, "dormant": 0.15},
    "2026-10-31": {"cook": 1.0, "browse": 0.0, "dormant": 0.0},
    "2026-11-01": {"cook": 0.6, "browse": 0.25, "dormant": 0.15},
}


@pytest.fixture
def guard(tmp_path):
    """tests/unit/conftest.py's guard judging on JS distance: each day's score is then not its PSI,
    which the report shows."""
    return make_guard(file_uri(tmp_path / "lake"), metric="js")


def report_operator(guard, history_days: int = 14) -> RunReportOperator:
    return RunReportOperator(
        task_id="run_report",
        pipeline=PIPELINE,
        classes=guard.classes,
        lake_root=guard.lake_root,
        storage_conn_id=None,
        target="local",
        roles=ROLES,
        history_days=history_days,
        slack_conn_id=None,
    )


@pytest.fixture
def week(guard, task_context) -> dict[str, dict]:
    """The week's runs: each day's drift record (as its drift.json has it), by ds."""
    records = {}
    for ds, (counts, verdict) in WEEK.items():
        records[ds] = judge(guard, task_context, ds, counts)[1]
        assert records[ds]["verdict"] == verdict, ds
    stats_written(guard, DS, CALM)  # today's stats; its guard has not run
    records["2026-11-03"] = judge(guard, task_context, "2026-11-03", CALM)[1]  # a later day
    return records


def test_the_history_lists_the_last_history_days_up_to_the_day(guard, week):
    listed = [day["ds"] for day in report_operator(guard, history_days=4).history(guard.store, DS)]
    assert listed == ["2026-10-30", "2026-10-31", "2026-11-01", DS]
    listed = [day["ds"] for day in report_operator(guard).history(guard.store, DS)]
    assert listed == [*WEEK, DS]  # all there are, never a later day
    assert [day["ds"] for day in report_operator(guard).history(guard.store, "2026-10-28")] == ["2026-10-28"]


def test_each_day_has_its_rows_class_shares_and_the_guards_verdict(guard, week):
    history = {day["ds"]: day for day in report_operator(guard).history(guard.store, DS)}
    for ds, (counts, verdict) in WEEK.items():
        day = history[ds]
        assert day["verdict"] == verdict and day["rows"] == sum(counts.values()), ds
        assert list(day["shares"]) == guard.classes and day["shares"] == pytest.approx(SHARES[ds]), ds
        assert (day["psi"], day["js"]) == (week[ds]["psi"], week[ds]["js"]), ds
    assessed = {ds for ds, day in history.items() if day["psi"] is not None}
    assert assessed == {"2026-10-30", "2026-10-31", "2026-11-01"}  # no baseline, no rows: not assessed
    assert history["2026-10-30"]["psi"] == pytest.approx(0.1658, abs=1e-4)  # MODERATE against CALM
    assert history["2026-10-30"]["js"] == pytest.approx(0.1723, abs=1e-4)  # the score it was judged on
    assert history[DS] == {
        "ds": DS,
        "rows": 10_000,
        "shares": pytest.approx(CALM_SHARES),
        "psi": None,
        "js": None,
        "verdict": None,
    }


def test_a_pipeline_without_inference_stats_has_no_history(guard, week):
    op = report_operator(guard)
    op.roles = {k: v for k, v in ROLES.items() if k != "stats_dataset"}
    assert op.history(guard.store, DS) == []


def test_previous_routes_are_the_newest_earlier_runs_sizing(guard):
    def decision(rows: int, tier: str) -> dict:
        return {"routes": {"weekly_menu": {"classes": ["cook"], "rows": rows, "tier": tier, "shards": [{}, {}]}}}

    runs = {
        "2026-10-29": {"decision": decision(100, "small")},
        "2026-10-30": {"decision": decision(200, "medium")},
        "2026-10-31": {"decision": None},  # quarantined before sizing
        "2026-11-03": {"decision": decision(400, "large")},  # later than the report's day
    }
    for ds, run in runs.items():
        guard.store.write_json(lake.REPORTS, ds, RUN_FILE, run)
    previous = report_operator(guard).previous_routes(guard.store, DS)
    assert previous == {"weekly_menu": {"classes": ["cook"], "rows": 200, "tier": "medium", "shards": 2}}
    assert report_operator(guard).previous_routes(guard.store, "2026-10-29") == {}


def test_the_report_page_and_run_json_carry_the_history(guard, week, task_context, monkeypatch):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    from water import metrics, notify

    crumbs = [{"task_id": "inference_stats", "map_index": -1, "state": "success", "duration": 1.0}]
    monkeypatch.setattr(RuntimeTaskInstance, "get_task_breadcrumbs", staticmethod(lambda dag_id, run_id: crumbs))
    sent = []
    monkeypatch.setattr(notify, "send", lambda notice, conn_id: sent.append(notice))
    monkeypatch.setattr(metrics, "client", lambda: None)
    op = report_operator(guard, history_days=5)
    stats = {"rows": 10_000, "class_counts": CALM}
    result = op.execute(task_context(DS, {("inference_stats", "return_value"): stats}))
    assert result["state"] == "success" and result["report"].endswith(f"/{lake.REPORTS}/ds={DS}/{REPORT_FILE}")
    expected = op.history(guard.store, DS)
    assert [day["ds"] for day in expected] == ["2026-10-29", "2026-10-30", "2026-10-31", "2026-11-01", DS]
    assert guard.store.read_json(lake.REPORTS, DS, RUN_FILE)["history"] == expected
    page = (guard.store.partition(lake.REPORTS, DS) / REPORT_FILE).read_text()
    embedded = re.search(r'<script type="application/json" id="water-run">(.*?)</script>', page, re.S).group(1)
    assert json.loads(embedded)["history"] == expected
    assert f"last {len(expected)} day(s)" in page
    labels = re.findall(r'text-anchor="middle">(\d\d-\d\d)</text>', page)
    assert labels == [day["ds"][5:] for day in expected]  # one bar per listed day
    psi_over_bars = re.findall(r'fill="(#[0-9a-f]{3,6})">([0-9.]+)</text>', page)
    assert psi_over_bars == [("#e0892b", "0.17"), ("#b5452f", f"{week['2026-10-31']['psi']:.2f}"), ("#333", "0.00")]
