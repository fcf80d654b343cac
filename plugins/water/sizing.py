"""The sizing policy: how many predictions came out decides how big post-processing must be.

Pure functions, shared by the branching operator, the targets and the cost simulation:
- `decide`: the smallest tier whose max_rows holds the rows; past the last tier, shards of the
  largest tier's size; past max_shards x rows_per_shard, an error saying what to change.
- `decide_routes`: `decide` per route of a sized step, each from its own classes' rows.
- `escalate`: the resources to retry with after an out-of-memory kill.
- `k8s_resources`: a tier's {requests, limits} dict -> V1ResourceRequirements.

A decision names tiers, not resources: each tier's task is built with its tier's resources
from the spec, and the decision only picks the branch (and a mapped tier's shards).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from water.spec import Route, SizingPolicy, parse_quantity

if TYPE_CHECKING:
    from kubernetes.client import V1ResourceRequirements

NO_PREDICTIONS = "no_predictions"


class CapacityError(ValueError):
    """More rows than the policy can process; the message says which spec field to raise."""


@dataclass(frozen=True)
class Decision:
    tier: str  # a tier name, or NO_PREDICTIONS
    rows: int
    class_counts: dict[str, int]
    shards: list[dict[str, int]] = field(default_factory=list)  # {index, row_start, row_end}
    forced: bool = False
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row_ranges(rows: int, shards: int) -> list[dict[str, int]]:
    size = math.ceil(rows / shards)
    return [{"index": i, "row_start": i * size, "row_end": min(rows, (i + 1) * size)} for i in range(shards) if i * size < rows]


def _shard_count(policy: SizingPolicy, rows: int) -> int:
    """Shards of at most rows_per_shard, clamped to max_shards."""
    return min(math.ceil(rows / policy.scale_out.rows_per_shard), policy.scale_out.max_shards)


def decide(
    policy: SizingPolicy,
    rows: int,
    class_counts: dict[str, int] | None = None,
    force_tier: str | None = None,
    spec_file: str = "the pipeline spec",
    field: str = "sizing",
) -> Decision:
    class_counts = dict(class_counts or {})
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    if rows == 0:
        return Decision(NO_PREDICTIONS, 0, class_counts, reason="inference produced no rows")
    tiers = {t.name: t for t in policy.tiers}
    largest = policy.tiers[-1]
    scale = policy.scale_out
    if force_tier is not None:
        if force_tier not in tiers:
            raise ValueError(f"force_tier {force_tier!r} is not a tier; choose one of {', '.join(tiers)}")
        tier = tiers[force_tier]
        shards = _shard_count(policy, rows) if tier is largest and rows > largest.max_rows else 1
        return Decision(
            tier.name,
            rows,
            class_counts,
            _row_ranges(rows, shards),
            forced=True,
            reason=f"force_tier={force_tier} from the run's conf ({rows:,} rows)",
        )
    for tier in policy.tiers:
        if rows <= tier.max_rows:
            return Decision(
                tier.name,
                rows,
                class_counts,
                _row_ranges(rows, 1),
                reason=f"{rows:,} rows <= {tier.name}.max_rows {tier.max_rows:,}",
            )
    capacity = scale.max_shards * scale.rows_per_shard
    if rows > capacity:
        needed_shards = math.ceil(rows / scale.rows_per_shard)  # what max_shards would have to allow
        needed_rows = math.ceil(rows / scale.max_shards)
        raise CapacityError(
            f"{rows:,} predictions exceed what the sizing policy can post-process "
            f"({scale.max_shards} shards x {scale.rows_per_shard:,} rows = {capacity:,}). In {spec_file}, raise "
            f"{field}.scale_out.max_shards to at least {needed_shards} or {field}.scale_out.rows_per_shard to at "
            f"least {needed_rows:,} (and the largest tier's memory with it)."
        )
    shards = _shard_count(policy, rows)
    return Decision(
        largest.name,
        rows,
        class_counts,
        _row_ranges(rows, shards),
        reason=f"{rows:,} rows > {largest.name}.max_rows {largest.max_rows:,}: {shards} shards of <= {scale.rows_per_shard:,}",
    )


def route_force(force_tier: str | dict[str, str] | None, route: str, classes: list[str]) -> str | None:
    """The tier forced on a route: one tier for every route, or {route or class: tier}."""
    if not force_tier:
        return None
    if isinstance(force_tier, str):
        return force_tier
    named = [force_tier[k] for k in (route, *classes) if k in force_tier]
    if len(set(named)) > 1:
        raise ValueError(f"force_tier names two tiers for route {route}: {named}")
    return named[0] if named else None


def decide_routes(
    routes: dict[str, Route],
    class_counts: dict[str, int],
    force_tier: str | dict[str, str] | None = None,
    spec_file: str = "the pipeline spec",
    field: str = "steps.postprocess",
    single: bool = False,
) -> dict[str, Any]:
    """Each route's decision from its own rows (the sum of its classes' counts).

    Returns {rows, class_counts, routes: {route: Decision dict + classes}, tier, shards,
    forced}: `tier` and `shards` sum the routes up for messages (a single route's own).
    """
    if isinstance(force_tier, dict):
        known = set(routes) | {c for r in routes.values() for c in r.classes}
        unknown = sorted(set(force_tier) - known)
        if unknown:
            raise ValueError(f"force_tier names {unknown}: neither a route ({', '.join(routes)}) nor one of its classes")
    decisions = {}
    for name, route in routes.items():
        counts = {c: int(class_counts.get(c, 0)) for c in route.classes}
        where = f"{field}.sizing" if single else f"{field}.routes.{name}.sizing"
        forced = route_force(force_tier, name, route.classes)
        tiers = [t.name for t in route.sizing.tiers]
        if forced is not None and forced not in tiers and not single:  # say which route lacks it
            raise ValueError(
                f"force_tier {forced!r} is not a tier of route {name} ({', '.join(route.classes)}); "
                f"choose one of {', '.join(tiers)}"
            )
        decision = decide(route.sizing, sum(counts.values()), counts, forced, spec_file, where).as_dict()
        if decision["tier"] == NO_PREDICTIONS and not single:  # other routes may well have rows
            decision["reason"] = f"no rows of its classes ({', '.join(route.classes)}): skipped"
        decisions[name] = {**decision, "classes": list(route.classes)}
    return {
        "rows": sum(int(v) for v in class_counts.values()),
        "class_counts": dict(class_counts),
        "routes": decisions,
        "tier": describe(decisions),
        "shards": sum(len(d["shards"]) for d in decisions.values()),
        "forced": any(d["forced"] for d in decisions.values()),
    }


def describe(routes: dict[str, dict[str, Any]]) -> str:
    """'medium' or 'large × 3' for one route; 'weekly_menu large × 2 · win_back small · …' for several."""

    def one(d: dict[str, Any]) -> str:
        if d["tier"] == NO_PREDICTIONS:
            return "no rows"
        tier: str = d["tier"]
        count = len(d["shards"])
        return tier + (f" × {count}" if count > 1 else "")

    if len(routes) == 1:
        return one(next(iter(routes.values())))
    return " · ".join(f"{name} {one(d)}" for name, d in routes.items())


def shard_folders(decision: dict[str, Any]) -> list[str]:
    """The shard folders (relative to the shards partition) the decision's routes write."""
    return [
        f"route={name}/shard={i:04d}"
        for name, d in (decision.get("routes") or {}).items()
        if d["tier"] != NO_PREDICTIONS
        for i in range(max(1, len(d["shards"])))
    ]


def escalate(policy: SizingPolicy, resources: dict[str, dict[str, str]]) -> tuple[str, dict[str, dict[str, str]]]:
    """Resources for the one retry after an OOM kill: the next tier up, or twice the memory at the top.

    Returns (label, resources); the label names where it went ("medium", "large x2 memory").
    """
    limit = parse_quantity(resources["limits"]["memory"])
    for tier in policy.tiers:
        if parse_quantity(tier.resources.limits.memory) > limit:
            return tier.name, tier.resources.as_k8s_dict()
    doubled = {
        "requests": {**resources["requests"], "memory": _double(resources["requests"]["memory"])},
        "limits": {**resources["limits"], "memory": _double(resources["limits"]["memory"])},
    }
    return f"{policy.tiers[-1].name} x2 memory", doubled


def _double(quantity: str) -> str:
    mib = parse_quantity(quantity) * 2 / Decimal(2**20)
    return f"{int(mib.to_integral_value(rounding='ROUND_CEILING'))}Mi"


def k8s_resources(resources: dict[str, dict[str, str]]) -> V1ResourceRequirements:
    """V1ResourceRequirements from a {requests, limits} dict (Resources.as_k8s_dict, escalate)."""
    from kubernetes.client import V1ResourceRequirements

    return V1ResourceRequirements(
        requests=dict(resources.get("requests") or {}),
        limits=dict(resources.get("limits") or {}),
    )
