"""Completion events and `water publish` against the real RabbitMQ on 127.0.0.1:5672: the run report's
event arrives on a queue bound to ``pipeline.<name>.*`` with its routing key, body and properties;
`water publish` puts a valid control message on the control queue (declaring it when missing); a broker
that refuses the password neither fails the run nor shows the password.

Each test uses queues of its own (deleted afterwards). RabbitMQ not answering is a failure, not a skip:
CI (.ci/run) starts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from typer.testing import CliRunner

from tests.completions import report_operator, route_tiers, run_record
from tests.integration.broker import BROKER_URL, require_rabbitmq
from water import amqp_publish, events, report
from water.cli import app, stack
from water.spec import load_pipeline
from water.targets.local.engines.partitions import file_uri

CONN_VARIABLE = f"AIRFLOW_CONN_{events.AMQP_CONN_ID.upper()}"
DS = "2026-11-02"

pytestmark = pytest.mark.rabbitmq


def on_broker(scenario: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """Run scenario(channel) on a connection of its own to the local broker."""

    async def run() -> Any:
        import aio_pika

        connection = await aio_pika.connect(BROKER_URL, timeout=5)
        async with connection:
            return await scenario(await connection.channel())

    return asyncio.run(run())


@pytest.fixture
def broker(monkeypatch):
    """The local RabbitMQ as the connection amqp_default (a failure, saying how to start it, when it does not answer)."""
    require_rabbitmq()
    monkeypatch.setenv(CONN_VARIABLE, f"{BROKER_URL}%2F")


@pytest.fixture
def events_queue(broker):
    """A queue bound to the events exchange for every outcome of one pipeline: (its name, the pipeline's)."""
    import aio_pika

    name = f"water-test-events-{uuid.uuid4().hex[:12]}"

    async def declare(channel: Any) -> None:
        exchange = await channel.declare_exchange(events.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(name, auto_delete=False)
        await queue.bind(exchange, routing_key="pipeline.recipe_engagement.*")

    on_broker(declare)
    yield name
    on_broker(lambda channel: channel.queue_delete(name))


def take_all(queue: str) -> list[Any]:
    """Every message ready on the queue (acked)."""

    async def take(channel: Any) -> list[Any]:
        found = []
        source = await channel.get_queue(queue, ensure=True)
        while (message := await source.get(no_ack=True, fail=False)) is not None:
            found.append(message)
        return found

    return on_broker(take)


def valid(schema: dict, body: dict) -> list[str]:
    return [e.message for e in Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(body)]


def test_a_finished_run_announces_itself_on_a_queue_bound_to_its_pipelines_events(events_queue, tmp_path, task_context):
    spec = load_pipeline("recipe_engagement")
    op = report_operator(spec, file_uri(tmp_path / "lake"))
    context = task_context(DS)
    context["ti"].dag_id = spec.dag_id
    run_id = context["ti"].run_id
    op.run_record = lambda _context: run_record(spec, DS, run_id, quarantined=True)  # type: ignore[method-assign]

    assert op.execute(context)["state"] == "success"  # the run report, which publishes first

    other = run_record(load_pipeline("customer_value"), DS, run_id)  # not bound: never on the queue
    assert (
        report_operator(load_pipeline("customer_value"), file_uri(tmp_path / "lake")).announce(other, report.headline(other))
        == "published"
    )
    [message] = take_all(events_queue)
    body = json.loads(message.body)
    assert message.routing_key == "pipeline.recipe_engagement.quarantined" == body["event"]
    assert message.exchange == events.EVENTS_EXCHANGE
    assert valid(events.COMPLETION_SCHEMA, body) == []
    assert body == {
        "event": "pipeline.recipe_engagement.quarantined",
        "pipeline": "recipe_engagement",
        "ds": DS,
        "run_id": run_id,
        "outcome": "quarantined",
        "rows": None,  # the drift guard held the day back: nothing published
        "tiers": route_tiers(spec),
        "message_id": f"recipe_engagement.{run_id}.quarantined",
    }
    assert message.message_id == body["message_id"] and message.content_type == "application/json"
    assert message.delivery_mode == 2  # persistent: it outlives a broker restart


def test_water_publish_puts_a_valid_message_on_the_control_queue_declaring_it_when_missing(broker, monkeypatch):
    queue = f"water-test-control-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(events, "CONTROL_QUEUE", queue)
    assert stack.stack_amqp() == f"{BROKER_URL}%2F"  # no stack is up: the configured connection
    try:
        result = CliRunner().invoke(app, ["publish", "recipe_engagement", "--date", DS, "--conf", '{"force_tier": "small"}'])
        assert result.exit_code == 0, result.output
        [message] = take_all(queue)

        async def durable(channel: Any) -> bool:  # declaring it durable again succeeds only if it is
            await channel.declare_queue(queue, durable=True)
            return True

        assert on_broker(durable)
    finally:
        on_broker(lambda channel: channel.queue_delete(queue))
    body = json.loads(message.body)
    assert valid(events.CONTROL_SCHEMA, body) == []
    assert body == {"pipeline": "recipe_engagement", "ds": DS, "conf": {"force_tier": "small"}, "message_id": message.message_id}
    assert message.content_type == "application/json" and message.delivery_mode == 2
    assert f"message {message.message_id}" in " ".join(result.output.split())


def test_water_publish_leaves_an_existing_control_queue_as_it_is(broker, monkeypatch):
    """A control queue declared with other arguments (a dead-letter exchange) is used, not redeclared."""
    queue = f"water-test-control-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(events, "CONTROL_QUEUE", queue)
    on_broker(lambda channel: channel.declare_queue(queue, durable=True, arguments={"x-dead-letter-exchange": "water.dead"}))
    try:
        result = CliRunner().invoke(app, ["publish", "recipe_engagement", "--date", DS, "--message-id", "kept-queue"])
        assert result.exit_code == 0, result.output
        assert [m.message_id for m in take_all(queue)] == ["kept-queue"]
    finally:
        on_broker(lambda channel: channel.queue_delete(queue))


def test_a_refused_password_fails_no_run_and_is_in_no_log_line(broker, monkeypatch, caplog, capfd, tmp_path):
    password = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv(CONN_VARIABLE, f"amqp://guest:{password}@127.0.0.1:5672/%2F")
    monkeypatch.setattr(amqp_publish, "BACKOFF_SECONDS", (0, 0))
    spec = load_pipeline("recipe_engagement")
    record = run_record(spec, DS, "manual__refused")
    with caplog.at_level(logging.DEBUG):
        assert report_operator(spec, file_uri(tmp_path / "lake")).announce(record, report.headline(record)) == "failed"
        refused = CliRunner().invoke(app, ["publish", "recipe_engagement", "--date", DS])
    assert refused.exit_code == 1 and "ACCESS_REFUSED" in refused.output
    logged = caplog.text + "".join(capfd.readouterr()) + refused.output
    assert "ACCESS_REFUSED" in caplog.text and "amqp://127.0.0.1:5672/%2F" in caplog.text
    assert password not in logged
    assert f":{password}@" not in logged and ":guest@" not in logged


def test_up_gives_the_stack_the_connection_when_rabbitmq_answers(broker):
    env: dict[str, str] = {}
    said: list[str] = []
    assert stack._control_messages(env, said.append) == f"{BROKER_URL}%2F"
    assert env[CONN_VARIABLE] == f"{BROKER_URL}%2F"  # the triggerer and the tasks get amqp_default
    assert said == [
        f"control messages on: RabbitMQ at amqp://127.0.0.1:5672/%2F (connection amqp_default, queue {events.CONTROL_QUEUE})"
    ]
