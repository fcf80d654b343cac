"""A drift-guarded pipeline's days on a lake in a temporary folder, for the unit tests of the
drift guard, the quarantine and the run report's history (tests/unit/test_drift_guard.py,
test_report_history.py; the `guard` and `quarantine` fixtures are in tests/unit/conftest.py).

Each day is what a run leaves: inference_stats writes the day's stats file and returns its
figures, then the guard (water.operators.drift.DriftGuardOperator) judges it and writes its
drift.json beside the stats.
"""

from __future__ import annotations

from typing import Any

from water.operators.drift import STATS_FILE, DriftGuardOperator, QuarantineOperator
from water.spec import DriftGuardStep

PIPELINE = "guarded"
CLASSES = ["cook", "browse", "dormant"]
CONTINUE = ["size_postprocess"]  # the first task of the guarded steps
STATS, GUARDED, HELD_BACK = "stats", "predictions", "held_back"  # a quarantine dataset by another name than the default
POLICY = {"kind": "drift_guard", "reads": STATS, "guards": GUARDED, "writes": HELD_BACK}


def mix(cook: int, browse: int, dormant: int) -> dict[str, int]:
    return dict(zip(CLASSES, (cook, browse, dormant), strict=True))


CALM = mix(4_000, 3_500, 2_500)  # 40 / 35 / 25 %
MODERATE = mix(6_000, 2_500, 1_500)  # 60 / 25 / 15 %: PSI 0.166 from CALM, a warning
SWING = mix(10_000, 0, 0)  # a fabricated 100 %-one-class day
EMPTY = mix(0, 0, 0)


def make_guard(lake_root: str, **policy: Any) -> DriftGuardOperator:
    op = DriftGuardOperator(
        task_id="drift_guard",
        pipeline=PIPELINE,
        classes=CLASSES,
        policy=DriftGuardStep.model_validate({**POLICY, **policy}),
        lake_root=lake_root,
        storage_conn_id=None,
        stats_task_id="inference_stats",
        quarantine_task_id="quarantine",
        slack_conn_id=None,
    )
    op.continue_task_ids = list(CONTINUE)
    return op


def make_quarantine(guard: DriftGuardOperator) -> QuarantineOperator:
    """The guard's quarantine branch, wired as water.targets.common wires it."""
    return QuarantineOperator(
        task_id=guard.quarantine_task_id,
        pipeline=guard.pipeline,
        lake_root=guard.lake_root,
        storage_conn_id=None,
        guard_task_id=guard.task_id,
        guarded=guard.policy.guards,
        quarantine=guard.policy.writes,
    )


def stats_written(guard: DriftGuardOperator, ds: str, counts: dict[str, int]) -> dict[str, Any]:
    """What inference_stats leaves for the day: its stats file, and its figures (its XCom)."""
    figures = {"rows": sum(counts.values()), "class_counts": counts}
    guard.store.write_json(STATS, ds, STATS_FILE, {"ds": ds, **figures})
    return figures


def judge(guard: DriftGuardOperator, task_context, ds: str, counts: dict[str, int], **params: Any) -> tuple[Any, dict]:
    """One day's run up to the guard: (the branch it took, its drift record)."""
    context = task_context(ds, {("inference_stats", "return_value"): stats_written(guard, ds, counts)}, params=params)
    branch = guard.choose_branch(context)
    return branch, context["ti"].pushed["drift"]
