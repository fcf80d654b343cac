"""The pipelines' own metrics, to the same StatsD/Datadog agent Airflow's metrics go to.

Airflow's `[metrics]` settings decide where (statsd_host, statsd_port); names are prefixed
`water.` and carry Datadog tags pipeline, ds, task and tier. When StatsD is off
(`statsd_on` and `statsd_datadog_enabled` both false) nothing is sent.

What is sent, from one place (`emit_task_figures`, a task success callback, and the run
report): rows in/out per stage, peak memory, training metrics, predicted rows and class
shares, the sizing tier and shards, drift PSI and JS distance, run duration and state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context
    from datadog.dogstatsd.base import DogStatsd

log = logging.getLogger(__name__)
PREFIX = "water"
# No agent listening (a laptop) makes the DogStatsD client warn on every packet; metrics are
# fire-and-forget, so only its errors are worth a log line.
logging.getLogger("datadog.dogstatsd").setLevel(logging.ERROR)


@lru_cache(maxsize=1)
def client() -> DogStatsd | None:
    """A DogStatsd client for Airflow's configured agent, or None when metrics are off."""
    from airflow.sdk.configuration import conf

    if not (
        conf.getboolean("metrics", "statsd_on", fallback=False)
        or conf.getboolean("metrics", "statsd_datadog_enabled", fallback=False)
    ):
        return None
    from datadog.dogstatsd.base import DogStatsd

    return DogStatsd(
        host=conf.get("metrics", "statsd_host", fallback="localhost"),
        port=conf.getint("metrics", "statsd_port", fallback=8125),
        namespace=PREFIX,
        disable_telemetry=True,
        disable_buffering=True,  # tasks are short-lived: send now, not at a flush that may never come
    )


def _tags(tags: Mapping[str, object]) -> list[str]:
    return [f"{k}:{v}" for k, v in sorted(tags.items()) if v not in (None, "")]


def gauge(name: str, value: float | None, **tags: object) -> None:
    statsd = client()
    if statsd is None or value is None:
        return
    try:
        statsd.gauge(name, float(value), tags=_tags(tags))
    except Exception as exc:
        log.warning("metric %s not sent: %s", name, exc)


def increment(name: str, **tags: object) -> None:
    statsd = client()
    if statsd is None:
        return
    try:
        statsd.increment(name, tags=_tags(tags))
    except Exception as exc:
        log.warning("metric %s not sent: %s", name, exc)


def emit_figures(task_id: str, figures: dict[str, Any], *, pipeline: str, ds: str) -> None:
    """Gauges for what a task reported (its XCom figures)."""
    base = {"pipeline": pipeline, "ds": ds, "task": task_id.split("[")[0]}
    for key in ("rows_in", "rows_out", "peak_rss_mb", "work_seconds"):
        if isinstance(figures.get(key), (int, float)):
            gauge(f"stage.{key}", figures[key], **base)
    for name, value in (figures.get("metrics") or {}).items():
        gauge("model." + name.replace(":", "_"), value, **base)
    counts = figures.get("class_counts")
    if isinstance(counts, dict) and "routes" not in figures:
        total = sum(counts.values())
        gauge("predictions.rows", total, **base)
        for cls, n in counts.items():
            gauge("predictions.class_share", n / total if total else 0.0, **base, **{"class": cls})
    for route, decision in (figures.get("routes") or {}).items():  # the sizing decision, per route
        tags = {**base, "route": route, "tier": decision["tier"]}
        gauge("sizing.rows", decision.get("rows") or 0, **tags)
        gauge("sizing.shards", len(decision.get("shards") or []), **tags)
    if figures.get("verdict") and "psi" in figures:
        for score in ("psi", "js"):
            if figures.get(score) is not None:
                gauge(f"drift.{score}", figures[score], **base, verdict=figures["verdict"])
        increment("drift.verdict", **base, verdict=figures["verdict"])


def on_task_success(context: Context) -> None:
    """Task success callback: the task's figures (its return value, and the keys its operator
    names in `figure_keys`: the sizing decision, the drift verdict) as metrics. Only keys the
    task pushes are pulled: a missing XCom is logged as an error by the task SDK's client."""
    ti = context["ti"]
    keys = ("return_value", *getattr(context.get("task"), "figure_keys", ()))
    try:
        for key in keys:
            value = ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index)
            if isinstance(value, dict):
                emit_figures(ti.task_id, value, pipeline=ti.dag_id, ds=context["ds"])
    except Exception as exc:
        log.warning("task metrics not sent: %s", exc)
