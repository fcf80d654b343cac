"""Completion events (water.amqp_publish, published by the run report, water.operators.report): the
payload and routing key of each outcome, checked against events.COMPLETION_SCHEMA; a run without an
AMQP connection or with a broker that does not answer finishes as it would have, saying so in the log.
The broker itself is in tests/integration/test_completion_events.py."""

from __future__ import annotations

import logging
import socket
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from tests.completions import ROWS_PUBLISHED, report_operator, route_tiers, run_record
from water import amqp_publish, events, lake, report
from water.spec import load_pipeline
from water.targets.local.engines.partitions import file_uri

DS = "2026-11-02"
RUN_ID = "scheduled__2026-11-02T06:00:00+00:00"
PASSWORD = "S3cret/broker@pw"  # a credential that must never be shown; quoted in a URI
QUOTED = quote(PASSWORD, safe="")
CONN_VARIABLE = f"AIRFLOW_CONN_{events.AMQP_CONN_ID.upper()}"


def completion_problems(body: dict) -> list[str]:
    validator = Draft202012Validator(events.COMPLETION_SCHEMA, format_checker=FormatChecker())
    return [e.message for e in validator.iter_errors(body)]


@pytest.fixture
def sent(monkeypatch) -> list[amqp_publish.Outgoing]:
    """What would go to the broker (a connection is configured; nothing leaves the process)."""
    monkeypatch.setenv(CONN_VARIABLE, f"amqp://guest:{QUOTED}@broker.invalid:5672/%2F")
    messages: list[amqp_publish.Outgoing] = []
    monkeypatch.setattr(amqp_publish, "send", lambda conn, outgoing, timeout=None: messages.append(outgoing))
    return messages


@pytest.mark.parametrize(
    ("pipeline", "outcome", "shape"),
    [
        ("recipe_engagement", "succeeded", {}),
        ("recipe_engagement", "quarantined", {"quarantined": True}),
        ("recipe_engagement", "failed", {"failed": True}),
        ("customer_value", "succeeded", {}),
    ],
)
def test_a_finished_run_publishes_its_outcome_to_the_events_exchange(sent, pipeline, outcome, shape, tmp_path):
    spec = load_pipeline(pipeline)
    record = run_record(spec, DS, RUN_ID, **shape)
    op = report_operator(spec, file_uri(tmp_path / "lake"))

    assert op.announce(record, report.headline(record)) == "published"

    [message] = sent
    assert message.exchange == events.EVENTS_EXCHANGE
    assert message.routing_key == f"pipeline.{pipeline}.{outcome}" == message.body["event"]
    assert completion_problems(message.body) == []
    assert message.message_id == message.body["message_id"] == f"{pipeline}.{RUN_ID}.{outcome}"
    assert (message.body["pipeline"], message.body["ds"], message.body["run_id"]) == (pipeline, DS, RUN_ID)
    # rows published (none when the day was held back or failed), the tier each route was given
    assert message.body["rows"] == (ROWS_PUBLISHED if outcome == "succeeded" else None)
    assert message.body["tiers"] == ({} if outcome == "failed" else route_tiers(spec))


def test_the_routing_key_takes_only_the_three_outcomes():
    assert events.ROUTING_KEY.match(events.routing_key("recipe_engagement", "quarantined"))
    with pytest.raises(ValueError, match="is not one of succeeded, failed, quarantined"):
        events.routing_key("recipe_engagement", "success")


def test_without_an_amqp_connection_the_run_says_so_in_one_line_and_sends_nothing(monkeypatch, caplog, tmp_path):
    monkeypatch.delenv(CONN_VARIABLE, raising=False)
    monkeypatch.setattr(amqp_publish, "send", lambda *a, **k: pytest.fail("sent without a connection"))
    spec = load_pipeline("recipe_engagement")
    record = run_record(spec, DS, RUN_ID)
    with caplog.at_level(logging.INFO, logger="water.amqp_publish"):
        assert report_operator(spec, file_uri(tmp_path / "lake")).announce(record, report.headline(record)) == "not configured"
    lines = [r.getMessage() for r in caplog.records if r.name == "water.amqp_publish"]
    assert (
        len(lines) == 1 and "No AMQP connection 'amqp_default'" in lines[0] and "pipeline.recipe_engagement.succeeded" in lines[0]
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once closed


def test_a_broker_that_does_not_answer_changes_nothing_of_the_run(monkeypatch, caplog, tmp_path, task_context):
    """The report still runs to its end (the run's outcome is the same), with warnings that never show the password."""
    monkeypatch.setenv(CONN_VARIABLE, f"amqp://guest:{QUOTED}@127.0.0.1:{closed_port()}/%2F")
    monkeypatch.setattr(amqp_publish, "BACKOFF_SECONDS", (0, 0))
    spec = load_pipeline("recipe_engagement")
    op = report_operator(spec, file_uri(tmp_path / "lake"))
    context = task_context(DS)
    context["ti"].dag_id = spec.dag_id
    monkeypatch.setattr(op, "run_record", lambda _context: run_record(spec, DS, context["ti"].run_id))

    with caplog.at_level(logging.INFO):
        result = op.execute(context)

    assert result["state"] == "success" and (tmp_path / "lake" / spec.name / lake.REPORTS / f"ds={DS}" / "report.html").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.name == "water.amqp_publish" and r.levelno == logging.WARNING]
    assert len(warnings) == amqp_publish.ATTEMPTS + 1, warnings
    assert "was not published; the run's outcome is unchanged" in warnings[-1]
    assert "Connect call failed" in warnings[0]
    assert PASSWORD not in caplog.text and QUOTED not in caplog.text


def test_error_texts_lose_the_connections_secrets():
    from water.broker import connection_from_uri

    conn = connection_from_uri(f"amqp://guest:{QUOTED}@127.0.0.1:5672/%2F", "x")
    assert conn.password == PASSWORD
    scrubbed = amqp_publish.scrub(f"failed for amqp://guest:{QUOTED}@127.0.0.1, password {PASSWORD}", conn)
    assert PASSWORD not in scrubbed and QUOTED not in scrubbed and "127.0.0.1" in scrubbed
