"""The drift guard's arithmetic and verdicts (water.drift), and the thresholds of the spec's drift_guard step."""

from __future__ import annotations

import math

import pytest

from water import drift

CLASSES = ["cook", "browse", "dormant"]


def counts(*shares: float, rows: int = 1_000_000) -> dict[str, int]:
    return {c: round(s * rows) for c, s in zip(CLASSES, shares, strict=True)}


def test_psi_matches_the_formula_for_the_missions_swing():
    p, q = [0.80, 0.15, 0.05], [1 / 3] * 3
    by_hand = sum((a - e) * math.log(a / e) for a, e in zip(p, q, strict=True))
    assert drift.psi(p, q) == pytest.approx(by_hand, rel=1e-3)
    assert drift.psi(p, q) == pytest.approx(1.0925, abs=1e-3)


def test_js_distance_is_zero_for_equal_mixes_and_at_most_one():
    assert drift.js_distance([0.4, 0.35, 0.25], [0.4, 0.35, 0.25]) == pytest.approx(0.0, abs=1e-9)
    assert drift.psi([0.4, 0.35, 0.25], [0.4, 0.35, 0.25]) == pytest.approx(0.0, abs=1e-12)
    assert 0.99 < drift.js_distance([1, 0, 0], [0, 0, 1]) <= 1.0
    assert drift.js_distance([0.8, 0.15, 0.05], [0.4, 0.35, 0.25]) == pytest.approx(
        drift.js_distance([0.4, 0.35, 0.25], [0.8, 0.15, 0.05])
    )  # symmetric, unlike KL


def test_a_class_missing_on_one_side_gives_a_finite_score():
    assert math.isfinite(drift.psi([0.5, 0.5, 0.0], [1 / 3] * 3))


@pytest.mark.parametrize(
    ("today", "verdict"),
    [((0.40, 0.35, 0.25), "ok"), ((0.60, 0.25, 0.15), "warn"), ((0.80, 0.15, 0.05), "block")],
)
def test_verdicts_follow_the_thresholds(today, verdict):
    result = drift.assess(counts(*today), counts(0.40, 0.35, 0.25), CLASSES, warn=0.1, block=0.25, baseline="previous run ds=x")
    assert result.verdict == verdict
    assert (result.score >= 0.25) == (verdict == "block")
    assert result.passes == (verdict != "block")


def test_block_on_js_distance_when_the_spec_says_so():
    result = drift.assess(counts(0.8, 0.15, 0.05), counts(0.4, 0.35, 0.25), CLASSES, warn=0.1, block=0.2, metric="js")
    assert result.metric == "js" and result.score == result.js and result.verdict == "block"


def test_accept_drift_lets_a_blocked_day_through_and_says_so():
    result = drift.assess(counts(0.8, 0.15, 0.05), counts(0.4, 0.35, 0.25), CLASSES, warn=0.1, block=0.25, accept=True)
    assert result.verdict == "accepted" and result.passes and result.accepted
    calm = drift.assess(counts(0.4, 0.35, 0.25), counts(0.4, 0.35, 0.25), CLASSES, warn=0.1, block=0.25, accept=True)
    assert calm.verdict == "ok" and not calm.accepted  # accepting changes nothing on a calm day


def test_no_baseline_passes_and_is_noted():
    result = drift.assess(counts(0.8, 0.15, 0.05), None, CLASSES, warn=0.1, block=0.25)
    assert result.verdict == "no_baseline" and result.passes and result.psi is None
    assert "no baseline" in result.headline()


def test_the_alert_text_puts_the_shares_side_by_side():
    result = drift.assess(counts(0.8, 0.15, 0.05), counts(0.4, 0.35, 0.25), CLASSES, warn=0.1, block=0.25, baseline="b")
    assert result.side_by_side()[0] == ("cook", pytest.approx(0.4), pytest.approx(0.8))
    assert result.mix_text() == "cook 40% → 80%, browse 35% → 15%, dormant 25% → 5%"


def guard(**thresholds) -> dict:
    return {"kind": "drift_guard", "reads": "stats", "guards": "predictions", **thresholds}


def test_spec_refuses_unreachable_js_threshold():
    from water.spec import DriftGuardStep

    with pytest.raises(ValueError, match="JS distance is at most 1"):
        DriftGuardStep.model_validate(guard(metric="js", warn=0.5, block=1.5))
    with pytest.raises(ValueError, match="must be below block"):
        DriftGuardStep.model_validate(guard(warn=0.3, block=0.2))
    assert DriftGuardStep.model_validate(guard(metric="js", warn=0.1, block=0.2)).block == 0.2
