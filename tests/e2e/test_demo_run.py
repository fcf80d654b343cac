"""End to end: `water run` drives the demo DAG through Airflow on the local target.

The demo's days (tests/e2e/conftest.py `demo_days`, 5,000 users): the same day run twice,
checking the second run rewrote every partition with the same bytes and published no
duplicates; then a drift day (class mix 80/15/5), checking it was quarantined, published nothing
and alerted with the shares; the drift day accepted, then run again without accepting, checking
that quarantined re-run retracted what the accepted run published (finding 3). The first four
runs post to a Slack stand-in (a real HTTP server on localhost, through the Slack provider's
webhook hook) and send metrics to a StatsD listener on localhost.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import demo_seed
from tests.e2e.conftest import DRIFT_DS, DS
from tests.e2e.runs import run, water
from tests.helpers import table_rows
from tests.lineage import check_run, load_events, local_target, schema_errors, task_events
from water import lake
from water.spec import load_pipeline

SPEC = load_pipeline("recipe_engagement")
GUARD = SPEC.step_of("drift_guard")[1]
QUARANTINE = GUARD.writes
LABELS = next(name for name, source in SPEC.sources.items() if source.label_column)

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

SIZED_NAME, SIZED = SPEC.step_of("sized_postprocess")
ROUTES = SIZED.all_routes(SPEC.classes, SIZED_NAME)
# on a normal day of the demo_days every route fits its first tier
SMALL = tuple(SIZED.tier_task_id(SIZED_NAME, r, route.sizing.tiers[0].name) for r, route in ROUTES.items())
STAGES = (
    "extract",
    "features",
    "training_set",
    "preprocess",
    "train",
    "batch_inference",
    "inference_stats",
    "drift_guard",
    "size_postprocess",
    *SMALL,
    SIZED.check_task_id(),
    "commit_outputs",
    "publish",
    "run_report",
)
PUBLISH_NAME, PUBLISH = next(iter(SPEC.steps_of("publish").items()))
RETRACT = PUBLISH.retract_task_id(PUBLISH_NAME)
SKIPPED = (
    "quarantine",
    "no_predictions",
    RETRACT,
    *(SIZED.plan_task_id(r) for r in ROUTES),
    *(SIZED.tier_task_id(SIZED_NAME, r, t.name) for r, route in ROUTES.items() for t in route.sizing.tiers[1:]),
)


@pytest.fixture(scope="module")
def runs(demo_days):
    return demo_days


def figures(summary: dict) -> dict[str, dict]:
    return {t["task_id"]: t["figures"] for t in summary["tasks"]}


def test_every_stage_succeeds(runs):
    for summary in (runs["first"], runs["second"]):
        assert summary["state"] == "success"
        states = {t["task_id"]: t["state"] for t in summary["tasks"]}
        assert states == {**dict.fromkeys(STAGES, "success"), **dict.fromkeys(SKIPPED, "skipped")}
        routes = summary["sizing"]["routes"]
        assert {r: (d["tier"], d["shards"]) for r, d in routes.items()} == dict.fromkeys(ROUTES, ("small", 1))
        assert summary["wall_seconds"] > 0 and summary["overhead_ratio"] >= 1.0


def test_row_counts_hold_through_every_stage(runs):
    f = figures(runs["first"])
    warehouse = runs["state"] / "warehouse"
    events = pq.read_metadata(warehouse / "app" / "recipe_events" / f"event_date={DS}" / "part-00000.parquet").num_rows
    users = pq.read_table(warehouse / "app" / "users").to_pandas()
    eligible = int((users.signup_date.astype(str) <= DS).sum())
    assert f["extract"]["rows_out"] >= events
    assert f["features"]["rows_in"] == f["extract"]["rows_out"]
    assert f["features"]["rows_out"] == eligible
    assert f["training_set"]["rows_out"] == eligible
    assert f["preprocess"]["outputs"]["inference-output"] == eligible
    labels = pq.read_metadata(runs["lake"] / LABELS / f"ds={DS}" / "part-00000.parquet").num_rows
    assert f["train"]["rows_in"] == labels
    assert f["batch_inference"]["rows_in"] == f["batch_inference"]["rows_out"] == eligible
    assert f["inference_stats"]["rows"] == sum(f["inference_stats"]["class_counts"].values()) == eligible
    assert f["size_postprocess"]["rows"] == eligible and f["size_postprocess"]["counts_from"] == "inference_stats"
    counts = f["inference_stats"]["class_counts"]
    for task, route in zip(SMALL, ROUTES.values(), strict=True):  # each route's pod read only its classes
        assert f[task]["rows_in"] == f[task]["rows_out"] == sum(counts[c] for c in route.classes)
    assert sum(f[task]["rows_out"] for task in SMALL) == f["commit_outputs"]["rows_out"] == eligible
    assert f["publish"]["rows_out"] == eligible == runs["first"]["rows_published"]


def test_model_beats_what_the_generator_guarantees(runs):
    accuracy = runs["first"]["validation_accuracy"]
    assert accuracy >= demo_seed().GUARANTEED_ACCURACY
    counts = runs["first"]["predicted_class_counts"]
    shares = [counts[c] / sum(counts.values()) for c in ("cook", "browse", "dormant")]
    assert all(abs(s - m) < 0.1 for s, m in zip(shares, demo_seed().DEFAULT_MIX, strict=True))  # close to the true mix


def test_second_run_rewrites_identical_partitions(runs):
    assert runs["first_prints"] and runs["first_prints"] == runs["second_prints"]
    datasets = {name.split("/ds=")[0] for name in runs["first_prints"]}
    # every dataset a step writes (the channels' shards are files of their partition)
    written = {d for step in SPEC.steps.values() for d in step.outputs() if "." not in d and d != QUARANTINE}
    assert datasets >= written


def test_publish_never_duplicates(runs):
    warehouse = runs["state"] / "warehouse"
    assert table_rows(warehouse, "ml.engagement_segments", DS) == runs["second"]["rows_published"]


def test_plain_airflow_sees_the_dag_with_only_airflow_home(runs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(runs["state"] / "airflow")
    proc = run([str(Path(sys.executable).parent / "airflow"), "dags", "list", "-o", "json"], env=env, limit=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listing = next(line for line in proc.stdout.splitlines() if line.startswith("["))
    assert "recipe_engagement" in {d["dag_id"] for d in json.loads(listing)}


def test_a_drift_day_is_quarantined_and_not_published(runs):
    summary = runs["drift"]
    states = {t["task_id"]: t["state"] for t in summary["tasks"]}
    assert summary["state"] == "success"  # a flagged success: nothing broke, the guard held the day back
    assert states["drift_guard"] == "success" and states["quarantine"] == "success"
    for task in ("size_postprocess", *SMALL, "commit_outputs", "publish"):
        assert states[task] == "skipped", task
    assert states["run_report"] == "success"
    drift = summary["drift"]
    assert drift["verdict"] == "block" and drift["baseline"] == f"previous run ds={DS}"
    assert drift["psi"] > 0.25 and 0 < drift["js"] <= 1
    assert drift["shares"]["cook"] > 0.6 and drift["baseline_shares"]["cook"] < 0.5
    # The predictions moved to quarantine (as they were right after that run).
    assert runs["held_back"]["predictions"] is False and runs["held_back"]["quarantine"]
    # The warehouse got nothing for the day then (the accepted re-run below published it later).
    assert summary["rows_published"] is None
    assert "publish" not in {t["task_id"] for t in summary["tasks"] if t["state"] == "success"}


def test_the_first_run_has_no_baseline_and_the_same_day_again_still_none(runs):
    assert runs["first"]["drift"]["verdict"] == "no_baseline"
    assert runs["second"]["drift"]["verdict"] == "no_baseline"  # a day is never its own baseline


def test_slack_hears_start_success_and_the_drift_alert(runs):
    texts = [m["body"]["text"] for m in runs["slack"]]
    starts = [t for t in texts if "started for ds=" in t]
    assert len(starts) == 4
    assert sum("succeeded" in t.splitlines()[0] for t in texts) == 3  # the two normal days and the accepted one
    assert sum("quarantined for drift, nothing published" in t.splitlines()[0] for t in texts) == 1
    alert = next(m["body"] for m in runs["slack"] if "quarantined" in m["body"]["text"].splitlines()[0])
    first_line = alert["text"].splitlines()[0]
    assert f"ds={DRIFT_DS}" in first_line
    shares = runs["drift"]["drift"]["shares"]
    baseline = runs["drift"]["drift"]["baseline_shares"]
    for cls in ("cook", "browse", "dormant"):  # side by side: baseline share, then today's
        row = next(line for line in alert["text"].splitlines() if line.startswith(cls))
        assert f"{baseline[cls]:.1%}" in row and f"{shares[cls]:.1%}" in row
    assert any(b["type"] == "header" for b in alert["blocks"])
    success = next(
        m["body"]["text"] for m in runs["slack"] if "succeeded" in m["body"]["text"] and f"ds={DS}" in m["body"]["text"]
    )
    assert "tier: " + " · ".join(f"{r} small" for r in ROUTES) in success
    for r, route in ROUTES.items():  # each route's rows and tier
        assert any(line.startswith(f"{r} ({', '.join(route.classes)}): ") and "→ small" in line for line in success.splitlines())
    assert (
        f"rows: {runs['first']['predicted_class_counts'] and sum(runs['first']['predicted_class_counts'].values()):,}" in success
    )
    assert "/dags/recipe_engagement/runs/" in success  # a link to the run in the UI


def test_metrics_reach_statsd_with_datadog_tags(runs):
    metrics = runs["metrics"]
    by_name = {}
    for m in metrics:
        by_name.setdefault(m["name"], []).append(m)
    rows = [m for m in by_name["water.stage.rows_out"] if m["tags"].get("task") == "publish" and m["tags"].get("ds") == DS]
    assert rows and rows[-1]["value"] == runs["second"]["rows_published"]
    assert rows[-1]["tags"]["pipeline"] == "recipe_engagement"
    psi = {m["tags"]["verdict"]: m["value"] for m in by_name["water.drift.psi"] if m["tags"]["ds"] == DRIFT_DS}
    assert psi["block"] == pytest.approx(runs["drift"]["drift"]["psi"], rel=1e-3)
    assert psi["accepted"] == pytest.approx(runs["accepted"]["drift"]["psi"], rel=1e-3)
    shards = {m["tags"]["route"]: m["tags"]["tier"] for m in by_name["water.sizing.shards"] if m["tags"]["ds"] == DS}
    assert shards == dict.fromkeys(ROUTES, "small")  # tagged by route
    shares = {m["tags"]["class"] for m in by_name["water.predictions.class_share"]}
    assert shares == {"cook", "browse", "dormant"}
    accuracy = [m for m in by_name["water.model.validation_accuracy"] if m["tags"]["ds"] == DS][-1]["value"]
    assert accuracy == pytest.approx(runs["second"]["validation_accuracy"], rel=1e-6)
    assert any(name.startswith("airflow.") for name in by_name), "Airflow's own StatsD metrics"


def test_each_run_writes_a_report_whose_numbers_match_its_summary(runs):
    import html
    import re

    def reports(ds: str) -> str:
        return (runs["lake"] / lake.REPORTS / f"ds={ds}" / "report.html").read_text()

    # Each run's report, as it was right after that run (a re-run of a day rewrites its report).
    for summary, page in (
        (runs["second"], reports(DS)),
        (runs["drift"], runs["held_back"]["report"]),
        (runs["accepted"], runs["after_accepted"]["report"]),
    ):
        data = json.loads(re.search(r'<script type="application/json" id="water-run">(.*?)</script>', page, re.S).group(1))
        assert data["run_id"] == summary["run_id"] and data["state"] == summary["state"]
        by_task = {t["task_id"]: t for t in summary["tasks"]}
        for task in data["tasks"]:
            assert task["state"] == by_task[task["task_id"]]["state"]
            for key in ("rows_in", "rows_out"):
                assert task["figures"].get(key) == by_task[task["task_id"]]["figures"].get(key)
        text = html.unescape(re.sub(r"<[^>]+>", " ", page))
        counts = summary["predicted_class_counts"]
        assert f"{sum(counts.values()):,}" in text
        if summary["validation_accuracy"] is not None:
            assert f"{summary['validation_accuracy']:.3f}" in text
        assert data["headline"]["drift_verdict"] == summary["drift"]["verdict"]
        assert "<svg" in page and not re.search(r'(src|href)="(?!#)', page)  # self-contained
    drift_page = runs["held_back"]["report"]
    assert f"ds={DS}" in drift_page and "block" in drift_page  # two days of history, the drift verdict
    assert "id='drift'" in drift_page  # the class shares side by side
    proc = water("report", "--date", DRIFT_DS, state=runs["state"])
    assert proc.returncode == 0 and proc.stdout.strip().endswith(f"ds={DRIFT_DS}/report.html")


def test_a_person_accepts_the_quarantined_day_by_rerunning_it_with_accept_drift(runs):
    summary = runs["accepted"]
    states = {t["task_id"]: t["state"] for t in summary["tasks"]}
    assert summary["conf"] == {"accept_drift": True}
    assert summary["drift"]["verdict"] == "accepted"
    assert states["quarantine"] == "skipped" and states["publish"] == "success"
    # As that run left the lake and the warehouse (the day's rerun after it changed them again).
    assert runs["after_accepted"]["quarantined"] is False  # released: no longer held back
    assert summary["rows_published"] == sum(summary["predicted_class_counts"].values())
    published = runs["after_accepted"]["rows_published"]
    assert published == {DS: runs["second"]["rows_published"], DRIFT_DS: summary["rows_published"]}


def test_a_quarantined_rerun_retracts_the_days_published_rows_and_outputs(runs):
    """The swung day published by accepting its drift, then run again without accepting: the
    warehouse holds no rows of that day afterwards, nor the lake its outputs partition, while the
    baseline day keeps everything."""
    warehouse, outputs = runs["state"] / "warehouse", runs["lake"] / PUBLISH.reads
    baseline, accepted, rerun = runs["second"], runs["accepted"], runs["rerun"]
    assert accepted["earlier_outputs"] is None  # it published
    assert runs["after_accepted"]["rows_published"][DRIFT_DS] == accepted["rows_published"] > 0

    states = {t["task_id"]: t["state"] for t in rerun["tasks"]}  # the same swung day, not accepted this time
    assert rerun["state"] == "success" and rerun["drift"]["verdict"] == "block"
    assert (states["quarantine"], states[PUBLISH_NAME], states[RETRACT]) == ("success", "skipped", "success")
    assert rerun["earlier_outputs"] == {
        "outcome": "retracted",
        "rows_retracted": accepted["rows_published"],
        "table": PUBLISH.table,
        "dataset": PUBLISH.reads,
    }
    assert table_rows(warehouse, PUBLISH.table, DRIFT_DS) == 0
    assert not (outputs / f"ds={DRIFT_DS}").exists()
    # the baseline day keeps what it published
    assert table_rows(warehouse, PUBLISH.table, DS) == baseline["rows_published"] > 0
    assert (outputs / f"ds={DS}").is_dir()
    assert {t["task_id"]: t["state"] for t in baseline["tasks"]}[RETRACT] == "skipped"  # a day that published never retracts


RUNS = ("first", "second", "drift", "accepted", "rerun")


def test_lineage_events_validate_and_every_task_that_ran_has_its_event(runs):
    """The five runs' OpenLineage events (docs/lineage.md) in one <state>/lineage/events.jsonl:
    every one validates against the spec's schema, each run's succeeded tasks have their COMPLETE
    event, and no event quotes a connection's secret (the Slack webhook of slack_water)."""
    text = (runs["state"] / "lineage" / "events.jsonl").read_text()
    events = load_events(runs["state"])
    problems = {f"{e['job']['name']} {e['eventType']}": errors for e in events if (errors := schema_errors(e))}
    assert problems == {}
    for name in RUNS:
        summary = runs[name]
        succeeded = {t["task_id"] for t in summary["tasks"] if t["state"] == "success"}
        assert succeeded - set(task_events(events, SPEC.name, summary["run_id"])) == set(), name
    webhook = json.loads(runs["slack_connection"])["password"]
    assert webhook not in text and webhook.split("://", 1)[1] not in text


@pytest.mark.parametrize("name", RUNS)
def test_every_step_reports_what_it_read_and_wrote_and_the_graph_joins(runs, name):
    """Each run: every step that ran names its inputs and outputs as water.lineage does, what one
    step writes the next reads (namespace and name), and no task carries another step's datasets
    (a run's tasks share one process; the drift days leave steps out)."""
    summary = runs[name]
    succeeded = {t["task_id"] for t in summary["tasks"] if t["state"] == "success"}
    events = load_events(runs["state"])
    assert check_run(events, SPEC, local_target(runs["state"]), summary["run_id"], succeeded) == []
