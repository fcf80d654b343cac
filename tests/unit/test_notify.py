"""Slack notifications through the Slack provider's webhook hook, against a real HTTP server
on localhost; an outage or a missing connection never raises and lands in the outbox."""

from __future__ import annotations

import json

import pytest

from tests.listeners import FlakyWebhook, SlackStandIn
from water import notify


@pytest.fixture
def outbox(tmp_path, monkeypatch):
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", (0.01, 0.01))
    return tmp_path / "outbox" / "slack.jsonl"


def a_notice(kind: str = "failure") -> notify.Notice:
    return notify.Notice(
        kind,
        "recipe_engagement",
        "2026-11-01",
        "manual__2026-11-01",
        "recipe_engagement ds=2026-11-01 FAILED at train",
        facts={"pipeline": "recipe_engagement", "ds": "2026-11-01", "tier": "small × 1"},
        lines=["failed: train"],
        links={"log of train": notify.task_log_url("recipe_engagement", "manual__2026-11-01", "train", try_number=1)},
    )


def test_the_webhook_hook_posts_the_payload_to_the_connection(outbox, monkeypatch):
    with SlackStandIn() as slack:
        for key, value in slack.connection_env("slack_test").items():
            monkeypatch.setenv(key, value)
        assert notify.send(a_notice(), "slack_test") == "slack"
    [message] = slack.received
    assert message["path"] == "/services/T000/B000/test-token"
    body = message["body"]
    assert body["text"].startswith("❌ recipe_engagement ds=2026-11-01 FAILED at train")
    assert "tier: small × 1" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    fields = {f["text"] for f in body["blocks"][1]["fields"]}
    assert "*tier*\nsmall × 1" in fields
    link = body["blocks"][-1]["elements"][0]["text"]
    assert "/dags/recipe_engagement/runs/manual__2026-11-01/tasks/train?try_number=1|log of train>" in link
    assert not outbox.exists()  # delivered: nothing kept


def test_a_slack_outage_is_retried_briefly_then_kept_and_never_raises(outbox, monkeypatch):
    with SlackStandIn(status=500) as slack:
        for key, value in slack.connection_env("slack_test").items():
            monkeypatch.setenv(key, value)
        assert notify.send(a_notice(), "slack_test") == "undelivered"
    assert slack.hits == notify.ATTEMPTS
    [record] = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert record["delivery"] == "undelivered" and "500" in record["error"]
    assert record["payload"]["text"].startswith("❌")


def test_a_dropped_connection_is_tried_as_often_as_water_says(outbox, monkeypatch):
    """water's attempts are the only retries: the Slack SDK would otherwise retry the dropped
    first connection inside water's first attempt, after a backoff of its own (4 requests)."""
    with FlakyWebhook() as slack:
        conn = {"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{slack.port}/x"}
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_TEST", json.dumps(conn))
        assert notify.send(a_notice(), "slack_test") == "undelivered"
    assert [r["path"] for r in slack.requests] == ["/x"] * notify.ATTEMPTS


def test_nothing_listening_is_an_outage_too(outbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_TEST", json.dumps({"conn_type": "slackwebhook", "password": "http://127.0.0.1:9/x"}))
    assert notify.send(a_notice(), "slack_test") == "undelivered"


def test_without_a_connection_messages_go_to_the_outbox(outbox, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_NOWHERE", raising=False)
    assert notify.send(a_notice("start"), "slack_nowhere") == "outbox"
    record = json.loads(outbox.read_text())
    assert record["kind"] == "start" and record["delivery"] == "outbox" and record["conn_id"] == "slack_nowhere"
