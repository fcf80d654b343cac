"""Pipeline metrics in DogStatsD form, received by a real UDP listener on localhost."""

from __future__ import annotations

import time

import pytest

from tests.listeners import StatsdListener
from water import metrics


@pytest.fixture
def listener(monkeypatch):
    with StatsdListener() as statsd:
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_DATADOG_ENABLED", "True")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(statsd.port))
        metrics.client.cache_clear()
        yield statsd
    metrics.client.cache_clear()


def received(statsd: StatsdListener, count: int) -> list[dict]:
    deadline = time.monotonic() + 5
    while len(statsd.lines) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return statsd.metrics()


def test_stage_figures_become_tagged_gauges(listener):
    metrics.emit_figures("publish", {"rows_in": 3000, "rows_out": 2999, "table": "ml.x"}, pipeline="p", ds="2026-11-01")
    got = {m["name"]: m for m in received(listener, 2)}
    assert got["water.stage.rows_out"]["value"] == 2999 and got["water.stage.rows_out"]["type"] == "g"
    assert got["water.stage.rows_out"]["tags"] == {"pipeline": "p", "ds": "2026-11-01", "task": "publish"}
    assert got["water.stage.rows_in"]["value"] == 3000


def test_class_shares_drift_and_sizing(listener):
    metrics.emit_figures("inference_stats", {"rows": 10, "class_counts": {"a": 8, "b": 2}}, pipeline="p", ds="d")
    decision = {
        "tier": "heavy large × 3 · light small",
        "rows": 10,
        "shards": 4,
        "routes": {
            "heavy": {"tier": "large", "rows": 8, "shards": [{}, {}, {}], "classes": ["a"]},
            "light": {"tier": "small", "rows": 2, "shards": [{}], "classes": ["b"]},
        },
    }
    metrics.emit_figures("size_postprocess", decision, pipeline="p", ds="d")
    metrics.emit_figures("drift_guard", {"verdict": "block", "psi": 1.09, "js": 0.45}, pipeline="p", ds="d")
    got = received(listener, 10)
    shares = {m["tags"]["class"]: m["value"] for m in got if m["name"] == "water.predictions.class_share"}
    assert shares == {"a": 0.8, "b": 0.2}
    shards = {m["tags"]["route"]: (m["value"], m["tags"]["tier"]) for m in got if m["name"] == "water.sizing.shards"}
    assert shards == {"heavy": (3, "large"), "light": (1, "small")}  # per route, tagged by route
    rows = {m["tags"]["route"]: m["value"] for m in got if m["name"] == "water.sizing.rows"}
    assert rows == {"heavy": 8, "light": 2}
    psi = next(m for m in got if m["name"] == "water.drift.psi")
    assert psi["value"] == 1.09 and psi["tags"]["verdict"] == "block"
    assert any(m["name"] == "water.drift.verdict" and m["type"] == "c" for m in got)


def test_metrics_off_sends_nothing_and_never_raises(monkeypatch):
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_DATADOG_ENABLED", "False")
    metrics.client.cache_clear()
    try:
        assert metrics.client() is None
        metrics.gauge("stage.rows_out", 1, pipeline="p")
    finally:
        metrics.client.cache_clear()


def test_local_runs_send_metrics_once_an_agent_is_named(monkeypatch, tmp_path):
    from water.cli import local_airflow

    monkeypatch.delenv("WATER_STATSD_HOST", raising=False)
    monkeypatch.delenv("WATER_STATSD_PORT", raising=False)
    assert local_airflow.base_settings(tmp_path)["metrics"]["statsd_on"] == "False"
    monkeypatch.setenv("WATER_STATSD_PORT", "9125")
    settings = local_airflow.base_settings(tmp_path)["metrics"]
    assert settings["statsd_on"] == settings["statsd_datadog_enabled"] == "True"
    assert (settings["statsd_host"], settings["statsd_port"]) == ("127.0.0.1", "9125")


def test_the_success_callback_pulls_only_the_keys_a_task_pushes():
    """A pull of an XCom that does not exist is an [error] line in every task's log."""
    from water.operators.drift import DriftGuardOperator
    from water.operators.sizing import SizePostprocessOperator

    class RecordingTI:
        task_id, dag_id, map_index = "t", "p", -1

        def __init__(self):
            self.pulled = []

        def xcom_pull(self, task_ids, key, map_indexes):
            self.pulled.append(key)

    seen = {}
    for name, task in {"plain": object(), "sizing": SizePostprocessOperator, "guard": DriftGuardOperator}.items():
        ti = RecordingTI()
        metrics.on_task_success({"ti": ti, "task": task, "ds": "2026-11-01"})
        seen[name] = ti.pulled
    assert seen == {"plain": ["return_value"], "sizing": ["return_value", "decision"], "guard": ["return_value", "drift"]}
