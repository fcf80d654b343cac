"""The drift guard's baseline rules, day after day on a lake in a temporary folder.

The baseline is the newest strictly earlier day that passed the guard with rows: a zero-row
day, a quarantined day and a day the guard has not judged yet are never it. Each day here is
what a run leaves: inference_stats writes the day's stats file and returns its figures, then
the guard (the operator the factory builds) judges it.
"""

from __future__ import annotations

import pytest

from water import drift
from water.operators.drift import DRIFT_FILE, STATS_FILE, DriftGuardOperator
from water.spec import DriftGuardStep
from water.store import LakeStore
from water.targets.local.engines.partitions import file_uri

CLASSES = ["cook", "browse", "dormant"]
CONTINUE = ["size_postprocess"]
STATS, PIPELINE = "stats", "guarded"


def mix(cook: int, browse: int, dormant: int) -> dict[str, int]:
    return dict(zip(CLASSES, (cook, browse, dormant)))


CALM = mix(4_000, 3_500, 2_500)
SWING = mix(10_000, 0, 0)  # a fabricated 100 %-one-class day
EMPTY = mix(0, 0, 0)


@pytest.fixture
def guard(tmp_path):
    op = DriftGuardOperator(
        task_id="drift_guard",
        pipeline=PIPELINE,
        classes=CLASSES,
        policy=DriftGuardStep.model_validate({"kind": "drift_guard", "reads": STATS, "guards": "predictions"}),
        lake_root=file_uri(tmp_path / "lake"),
        storage_conn_id=None,
        stats_task_id="inference_stats",
        quarantine_task_id="quarantine",
        slack_conn_id=None,
    )
    op.continue_task_ids = list(CONTINUE)
    return op


def stats_written(guard: DriftGuardOperator, ds: str, counts: dict[str, int]) -> dict:
    """What inference_stats leaves for the day: its stats file, and its figures (its XCom)."""
    figures = {"rows": sum(counts.values()), "class_counts": counts}
    guard.store.write_json(STATS, ds, STATS_FILE, {"ds": ds, **figures})
    return figures


def judge(guard: DriftGuardOperator, task_context, ds: str, counts: dict[str, int]) -> tuple[object, dict]:
    """One day's run up to the guard: (the branch it took, its drift record)."""
    context = task_context(ds, {("inference_stats", "return_value"): stats_written(guard, ds, counts)})
    branch = guard.choose_branch(context)
    return branch, context["ti"].pushed["drift"]


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
    context = task_context("2026-11-02", {("inference_stats", "return_value"): stats_written(guard, "2026-11-02", SWING)},
                           params={"accept_drift": True})
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
