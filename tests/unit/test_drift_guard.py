"""The drift guard's baseline rules and its quarantine, day after day on a lake in a temporary folder.

The baseline is the newest strictly earlier day that passed the guard with rows: a zero-row
day, a quarantined day and a day the guard has not judged yet are never it. A blocked day's
predictions (the guarded partition) move to the quarantine dataset; a later run of the day
that passes releases them. Each day here is what a run leaves (tests/guarded.py); the guard and
the quarantine are water's operators, wired as water.targets.common wires them.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.guarded import (
    CALM,
    CONTINUE,
    EMPTY,
    GUARDED,
    HELD_BACK,
    MODERATE,
    PIPELINE,
    STATS,
    SWING,
    judge,
    make_guard,
    mix,
    stats_written,
)
from water import drift
from water.operators.drift import DRIFT_FILE, LOOK_BACK, usable_baseline
from water.targets.local.engines.partitions import file_uri


def test_the_day_after_a_zero_row_day_is_judged_against_the_day_before_it(guard, task_context):
    """Finding 4: a zero-row day became the baseline and its zeros read as 'no baseline', so a
    100 %-one-class day was published. It is blocked against the last day with rows."""
    assert judge(guard, task_context, "2026-11-01", CALM)[1]["verdict"] == drift.NO_BASELINE
    branch, empty = judge(guard, task_context, "2026-11-02", EMPTY)
    assert empty["verdict"] == drift.NO_ROWS and branch == CONTINUE  # on to no_predictions, not quarantined
    branch, swing = judge(guard, task_context, "2026-11-03", SWING)
    assert branch == "quarantine"
    assert swing["verdict"] == drift.BLOCK and swing["baseline"] == "previous run ds=2026-11-01"
    assert swing["baseline_shares"] == pytest.approx({"cook": 0.4, "browse": 0.35, "dormant": 0.25})


def test_a_zero_row_day_is_not_assessed_even_against_a_skewed_baseline(guard, task_context):
    """Floored to a uniform mix, an empty day would 'swing' from a skewed one and be quarantined."""
    judge(guard, task_context, "2026-11-01", mix(9_000, 500, 500))
    branch, empty = judge(guard, task_context, "2026-11-02", EMPTY)
    assert (branch, empty["verdict"], empty["psi"], empty["rows"]) == (CONTINUE, drift.NO_ROWS, None, 0)


def test_a_quarantined_day_never_becomes_the_baseline(guard, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    branch, blocked = judge(guard, task_context, "2026-11-02", SWING)
    assert branch == "quarantine" and blocked["verdict"] == drift.BLOCK
    branch, again = judge(guard, task_context, "2026-11-03", SWING)  # the same swing the next day
    assert branch == "quarantine" and again["baseline"] == "previous run ds=2026-11-01"


def test_an_accepted_day_becomes_the_baseline(guard, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    context = task_context(
        "2026-11-02",
        {("inference_stats", "return_value"): stats_written(guard, "2026-11-02", SWING)},
        params={"accept_drift": True},
    )
    assert guard.choose_branch(context) == CONTINUE and context["ti"].pushed["drift"]["verdict"] == drift.ACCEPTED
    assert judge(guard, task_context, "2026-11-03", SWING)[1]["baseline"] == "previous run ds=2026-11-02"


def test_a_day_the_guard_has_not_judged_is_not_the_baseline(guard, task_context):
    """Two runs at once: day 2's stats are there but its guard has not run (no drift.json)."""
    judge(guard, task_context, "2026-11-01", CALM)
    stats_written(guard, "2026-11-02", SWING)
    assert guard.store.read_json(STATS, "2026-11-02", DRIFT_FILE) is None
    assert judge(guard, task_context, "2026-11-03", CALM)[1]["baseline"] == "previous run ds=2026-11-01"


def test_a_rerun_of_an_earlier_day_looks_only_at_strictly_earlier_days(guard, task_context):
    for ds in ("2026-11-01", "2026-11-02", "2026-11-03"):
        judge(guard, task_context, ds, CALM)
    assert judge(guard, task_context, "2026-11-02", CALM)[1]["baseline"] == "previous run ds=2026-11-01"
    assert judge(guard, task_context, "2026-11-01", CALM)[1]["verdict"] == drift.NO_BASELINE  # never itself


def test_the_dag_judges_days_in_order_by_default(tmp_path):
    """max_active_runs (default 1): a backfill runs one day after the other."""
    from tests import routes
    from water.factory import build_dag
    from water.spec import SpecError, load_spec
    from water.targets.local.target import LocalTarget

    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    data = routes.spec_data()
    assert build_dag(routes.load_project(tmp_path / "one", data), target).max_active_runs == 1
    path = routes.write_project(tmp_path / "three", {**data, "max_active_runs": 3})
    assert build_dag(load_spec(path, include_dir=tmp_path / "three" / "include"), target).max_active_runs == 3
    bad = routes.write_project(tmp_path / "zero", {**data, "max_active_runs": 0})
    with pytest.raises(SpecError, match="max_active_runs"):
        load_spec(bad, include_dir=tmp_path / "zero" / "include")


# --- what counts as a baseline ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "counts", "usable"),
    [
        (drift.OK, CALM, True),
        (drift.WARN, CALM, True),
        (drift.ACCEPTED, CALM, True),
        (drift.NO_BASELINE, CALM, True),  # the first day with rows is the next day's yardstick
        (drift.BLOCK, CALM, False),  # quarantined
        (drift.NO_ROWS, EMPTY, False),
        (drift.OK, EMPTY, False),  # passed, but no rows to compare with
        (None, CALM, False),  # not judged yet: no drift.json
    ],
)
def test_what_counts_as_a_baseline(guard, task_context, verdict, counts, usable):
    stats = stats_written(guard, "2026-11-01", counts)
    if verdict is not None:
        guard.store.write_json(STATS, "2026-11-01", DRIFT_FILE, {"ds": "2026-11-01", "verdict": verdict})
    assert usable_baseline(guard.store.read_json(STATS, "2026-11-01", DRIFT_FILE), stats) is usable
    _, today = judge(guard, task_context, "2026-11-02", MODERATE)
    if usable:
        assert today["baseline"] == "previous run ds=2026-11-01" and today["verdict"] == drift.WARN
    else:
        assert (today["baseline"], today["verdict"], today["psi"]) == (None, drift.NO_BASELINE, None)


def test_the_newest_earlier_passing_day_is_the_baseline(guard, task_context):
    """Days with gaps between them: the newest passing one before today, not the oldest nor a later one."""
    assert judge(guard, task_context, "2026-10-20", CALM)[1]["verdict"] == drift.NO_BASELINE
    assert judge(guard, task_context, "2026-10-25", MODERATE)[1]["verdict"] == drift.WARN  # passes: a baseline
    assert judge(guard, task_context, "2026-11-05", CALM)[1]["verdict"] == drift.WARN  # a later day, run first
    _, today = judge(guard, task_context, "2026-11-01", MODERATE)
    assert today["baseline"] == "previous run ds=2026-10-25"
    assert today["baseline_shares"] == pytest.approx({"cook": 0.6, "browse": 0.25, "dormant": 0.15})
    assert (today["verdict"], today["psi"]) == (drift.OK, pytest.approx(0.0, abs=1e-9))


@pytest.mark.parametrize(("blocked_days", "found"), [(LOOK_BACK - 1, True), (LOOK_BACK, False)])
def test_the_baseline_is_searched_for_in_the_last_look_back_days(guard, task_context, blocked_days, found):
    """A passing day followed by blocked days: found while it is among the last LOOK_BACK days with stats."""
    days = [(date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(blocked_days + 2)]
    first, *blocked, today = days
    judge(guard, task_context, first, CALM)
    for ds in blocked:
        stats_written(guard, ds, SWING)
        guard.store.write_json(STATS, ds, DRIFT_FILE, {"ds": ds, "verdict": drift.BLOCK})
    record = judge(guard, task_context, today, CALM)[1]
    assert record["baseline"] == (f"previous run ds={first}" if found else None)


def test_training_labels_baseline_is_the_label_mix_of_the_days_training_set(tmp_path, task_context):
    guard = make_guard(
        file_uri(tmp_path / "lake"), baseline="training_labels", baseline_labels={"dataset": "training_set", "column": "segment"}
    )
    stats_written(guard, "2026-11-01", SWING)  # a passing earlier day: not this baseline's yardstick
    guard.store.write_json(STATS, "2026-11-01", DRIFT_FILE, {"ds": "2026-11-01", "verdict": drift.OK})
    labels = tmp_path / "lake" / PIPELINE / "training_set" / "ds=2026-11-02"
    labels.mkdir(parents=True)
    pq.write_table(pa.table({"segment": ["cook"] * 5 + ["browse"] * 3 + [None] * 4}), labels / "part-0.parquet")
    pq.write_table(pa.table({"segment": ["cook", "dormant"]}), labels / "part-1.parquet")
    pq.write_table(pa.table({"segment": ["dormant"] * 50}), labels / "_ignored.parquet")  # not a data file
    _, today = judge(guard, task_context, "2026-11-02", mix(6_000, 3_000, 1_000))
    assert today["baseline"] == "training labels ds=2026-11-02"
    # 6 : 3 : 1 over both data files; rows without a label are no class
    assert today["baseline_shares"] == pytest.approx({"cook": 0.6, "browse": 0.3, "dormant": 0.1})
    assert today["verdict"] == drift.OK


def test_a_day_without_class_counts_fails_the_guard(guard, task_context):
    context = task_context("2026-11-01", {("inference_stats", "return_value"): {"rows": 10}})
    with pytest.raises(ValueError, match="no class_counts for ds=2026-11-01"):
        guard.choose_branch(context)
    assert guard.store.read_json(STATS, "2026-11-01", DRIFT_FILE) is None  # nothing judged


def test_no_rows_comes_before_no_baseline(guard, task_context):
    """An empty first day: no_rows (nothing to compare), written down, and on to the guarded steps."""
    branch, record = judge(guard, task_context, "2026-11-01", EMPTY)
    assert (branch, record["verdict"], record["rows"], record["baseline"]) == (CONTINUE, drift.NO_ROWS, 0, None)
    assert guard.store.read_json(STATS, "2026-11-01", DRIFT_FILE)["verdict"] == drift.NO_ROWS


# --- quarantine: what is held back, where, and when it is released ---------------------------


def predictions_written(guard, ds: str, files: dict[str, str]):
    """The day's guarded partition (batch inference's output files)."""
    folder = guard.store.partition(GUARDED, ds)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def contents(folder) -> dict[str, str]:
    return {path.name: path.read_text() for path in folder.iterdir()} if folder.exists() else {}


def held_back(guard, ds: str) -> dict[str, str]:
    return contents(guard.store.partition(HELD_BACK, ds))


def quarantined(guard, quarantine, task_context, ds: str, counts: dict[str, int]) -> tuple[dict, dict]:
    """A day the guard blocks, and its quarantine branch run: (the branch's figures, the drift record)."""
    branch, record = judge(guard, task_context, ds, counts)
    assert branch == quarantine.task_id
    figures = quarantine.execute(task_context(ds, {(guard.task_id, "drift"): record}))
    return figures, record


def test_a_blocked_days_predictions_move_to_the_quarantine_dataset(guard, quarantine, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    earlier = predictions_written(guard, "2026-11-01", {"part-0.csv.out": "1,cook,0.9\n"})
    files = {"part-0.csv.out": "2,cook,0.8\n", "part-1.csv.out": "3,cook,0.7\n"}
    predictions_written(guard, "2026-11-02", files)
    figures, record = quarantined(guard, quarantine, task_context, "2026-11-02", SWING)
    assert not guard.store.partition(GUARDED, "2026-11-02").exists()  # nothing downstream can read them
    moved = held_back(guard, "2026-11-02")
    assert {k: v for k, v in moved.items() if k != "_drift.json"} == files
    assert json.loads(moved["_drift.json"]) == record  # why it was held back, beside it
    assert contents(earlier) == {"part-0.csv.out": "1,cook,0.9\n"}  # other days untouched
    assert held_back(guard, "2026-11-01") == {}
    where = guard.store.lake.uri(HELD_BACK, "2026-11-02")
    assert figures["flag"] == "quarantined" and figures["rows"] == 10_000 and figures["quarantine"] == where
    assert where.endswith(f"/{PIPELINE}/{HELD_BACK}/ds=2026-11-02") and where in figures["message"]


def test_quarantining_a_day_again_replaces_what_was_held_back(guard, quarantine, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    predictions_written(guard, "2026-11-02", {"part-0.csv.out": "old\n", "part-1.csv.out": "old\n"})
    quarantined(guard, quarantine, task_context, "2026-11-02", SWING)
    predictions_written(guard, "2026-11-02", {"part-0.csv.out": "new\n"})  # the day re-run, blocked again
    quarantined(guard, quarantine, task_context, "2026-11-02", SWING)
    assert {k: v for k, v in held_back(guard, "2026-11-02").items() if k != "_drift.json"} == {"part-0.csv.out": "new\n"}


def test_a_blocked_day_without_predictions_still_records_why(guard, quarantine, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    figures, record = quarantined(guard, quarantine, task_context, "2026-11-02", SWING)
    moved = held_back(guard, "2026-11-02")
    assert figures["flag"] == "quarantined" and set(moved) == {"_drift.json"} and json.loads(moved["_drift.json"]) == record


def test_an_accepted_rerun_releases_the_held_back_day_and_only_that_day(guard, quarantine, task_context):
    judge(guard, task_context, "2026-11-01", CALM)
    for ds in ("2026-11-02", "2026-11-03"):
        predictions_written(guard, ds, {"part-0.csv.out": f"{ds}\n"})
        quarantined(guard, quarantine, task_context, ds, SWING)
    branch, record = judge(guard, task_context, "2026-11-02", SWING)  # re-run, blocked again: still held back
    assert branch == quarantine.task_id and held_back(guard, "2026-11-02")
    branch, record = judge(guard, task_context, "2026-11-02", SWING, accept_drift=True)
    assert (branch, record["verdict"]) == (CONTINUE, drift.ACCEPTED)
    assert not guard.store.partition(HELD_BACK, "2026-11-02").exists()  # released
    assert held_back(guard, "2026-11-03")  # another day stays held back


def test_a_day_that_passes_on_a_rerun_is_released(guard, quarantine, task_context):
    """A day blocked against one baseline, re-run once a nearer passing day exists that it matches."""
    judge(guard, task_context, "2026-11-01", CALM)
    predictions_written(guard, "2026-11-03", {"part-0.csv.out": "x\n"})
    quarantined(guard, quarantine, task_context, "2026-11-03", SWING)
    judge(guard, task_context, "2026-11-02", SWING, accept_drift=True)  # a nearer day with the same mix, accepted
    branch, record = judge(guard, task_context, "2026-11-03", SWING)
    assert (branch, record["verdict"], record["baseline"]) == (CONTINUE, drift.OK, "previous run ds=2026-11-02")
    assert not guard.store.partition(HELD_BACK, "2026-11-03").exists()
