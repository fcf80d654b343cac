"""How far today's predicted class mix moved from a baseline: PSI and Jensen–Shannon distance.

Pure arithmetic over class counts (no I/O), so the guard, the report and the tests agree.

- PSI (population stability index) = Σ (p − q) · ln(p / q). Rules of thumb: < 0.1 stable,
  0.1–0.25 moderate shift, > 0.25 major shift — the spec's default warn/block thresholds.
- JS distance = √(Jensen–Shannon divergence), base 2: 0 for equal mixes, 1 for disjoint ones.

A class absent on one side would make PSI infinite; shares are floored at EPSILON first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

EPSILON = 1e-4

OK = "ok"
WARN = "warn"
BLOCK = "block"
ACCEPTED = "accepted"  # would have blocked; a person accepted the day (conf accept_drift)
NO_BASELINE = "no_baseline"  # no earlier day passed the guard with rows
NO_ROWS = "no_rows"  # today has no predictions: nothing to compare
PASSING = (OK, WARN, ACCEPTED, NO_BASELINE, NO_ROWS)  # verdicts whose predictions went on


def shares(counts: dict[str, int], classes: list[str]) -> dict[str, float]:
    total = sum(int(counts.get(c, 0)) for c in classes)
    if total <= 0:
        return dict.fromkeys(classes, 0.0)
    return {c: int(counts.get(c, 0)) / total for c in classes}


def _floored(p: list[float]) -> list[float]:
    floored = [max(x, EPSILON) for x in p]
    total = sum(floored)
    return [x / total for x in floored]


def psi(actual: list[float], expected: list[float]) -> float:
    p, q = _floored(actual), _floored(expected)
    return sum((a - e) * math.log(a / e) for a, e in zip(p, q, strict=True))


def js_distance(actual: list[float], expected: list[float]) -> float:
    p, q = _floored(actual), _floored(expected)
    m = [(a + e) / 2 for a, e in zip(p, q, strict=True)]

    def kl(x: list[float], y: list[float]) -> float:
        return sum(a * math.log2(a / b) for a, b in zip(x, y, strict=True) if a > 0)

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


def not_assessed(verdict: str | None) -> str:
    """Why a day's drift was not assessed (no baseline, or no rows today)."""
    if verdict == NO_ROWS:
        return "no rows today: drift not assessed"
    return "no baseline yet (no earlier day passed the guard with rows): drift not assessed"


@dataclass(frozen=True)
class Assessment:
    verdict: str
    metric: str  # which score the thresholds apply to
    score: float | None
    psi: float | None
    js: float | None
    warn: float
    block: float
    shares: dict[str, float]
    baseline: str | None  # e.g. "previous_run ds=2026-11-01" or "training_labels ds=2026-11-02"
    baseline_shares: dict[str, float] | None
    rows: int
    accepted: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def passes(self) -> bool:
        return self.verdict in PASSING

    def side_by_side(self) -> list[tuple[str, float | None, float]]:
        """(class, baseline share, today's share) per class, in the spec's order."""
        base = self.baseline_shares or {}
        return [(c, base.get(c), s) for c, s in self.shares.items()]

    def headline(self) -> str:
        if self.psi is None:
            return not_assessed(self.verdict)
        return (
            f"{self.verdict.upper()}: PSI {self.psi:.3f}, JS distance {self.js:.3f} against {self.baseline} "
            f"(warn ≥ {self.warn}, block ≥ {self.block} on {self.metric.upper()})"
        )

    def mix_text(self) -> str:
        """'cook 40% → 80%, browse 35% → 15%, …' (baseline → today)."""
        parts = []
        for cls, base, today in self.side_by_side():
            parts.append(f"{cls} {base:.0%} → {today:.0%}" if base is not None else f"{cls} {today:.0%}")
        return ", ".join(parts)


def assess(
    counts: dict[str, int],
    baseline_counts: dict[str, int] | None,
    classes: list[str],
    *,
    warn: float,
    block: float,
    metric: str = "psi",
    baseline: str | None = None,
    accept: bool = False,
) -> Assessment:
    today = shares(counts, classes)
    rows = sum(int(counts.get(c, 0)) for c in classes)
    if rows <= 0:  # an empty day's floored shares would read as a uniform mix
        return Assessment(NO_ROWS, metric, None, None, None, warn, block, today, None, None, rows)
    if not baseline_counts or sum(baseline_counts.values()) <= 0:
        return Assessment(NO_BASELINE, metric, None, None, None, warn, block, today, None, None, rows)
    base = shares(baseline_counts, classes)
    p, q = [today[c] for c in classes], [base[c] for c in classes]
    scores = {"psi": psi(p, q), "js": js_distance(p, q)}
    score = scores[metric]
    verdict = BLOCK if score >= block else WARN if score >= warn else OK
    notes = []
    if verdict == BLOCK and accept:
        verdict = ACCEPTED
        notes.append("accepted by the run's conf accept_drift=true")
    return Assessment(
        verdict,
        metric,
        round(score, 6),
        round(scores["psi"], 6),
        round(scores["js"], 6),
        warn,
        block,
        today,
        baseline,
        base,
        rows,
        accepted=accept and verdict == ACCEPTED,
        notes=notes,
    )
