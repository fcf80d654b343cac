"""Publishing to the AMQP broker: every run's completion event, and the control messages `water publish` sends.

A completion event goes to the topic exchange ``events.EVENTS_EXCHANGE`` (declared durable) with the
routing key ``pipeline.<name>.<outcome>``; a control message goes to the queue ``events.CONTROL_QUEUE``
(declared durable when missing) through the default exchange. Both: persistent delivery, publisher
confirms (a message counts as sent once the broker has taken it), ``message_id`` and
``content_type: application/json``.

A completion event never changes a run's outcome (:func:`publish_completion` never raises): without the
Airflow connection ``events.AMQP_CONN_ID`` (a local `water run`), one log line says so; when the broker
does not take it, after a few brief attempts, a warning. The connection's secrets are masked in every
log of the process before it is used, and taken out of every error text water writes (water.masking).

aio-pika is imported where a connection opens, never at import: DAG files import the report operator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from water import events, masking
from water.broker import BrokerAddress, BrokerSettingError, open_connection

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

ATTEMPTS = 3
BACKOFF_SECONDS = (0.5, 1.5)  # between attempts
TIMEOUT_SECONDS = 10.0  # one attempt: connect, declare, publish and the broker's confirm


class PublishError(RuntimeError):
    """The broker did not take the message; the text names the broker, never its credentials."""


@dataclass(frozen=True)
class Outgoing:
    """One message: to ``exchange`` with ``routing_key``, or (exchange None) straight to the queue ``routing_key``."""

    routing_key: str
    body: dict[str, Any]
    message_id: str
    exchange: str | None = None


def configured_connection(conn_id: str) -> Connection | None:
    """The Airflow connection, its secrets masked in this process's logs from now on; None when not configured."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    masking.protect(conn)
    return conn


def scrub(text: str, conn: Connection) -> str:
    """The text without any secret of the connection (its password, quoted or not), whether or not the
    process's masker knows them."""
    for part in sorted(masking.secret_parts(conn), key=len, reverse=True):
        text = text.replace(part, "***")
    return masking.redact(text)


def _address(conn: Connection) -> BrokerAddress:
    try:
        return BrokerAddress.from_connection(conn)
    except BrokerSettingError as exc:
        raise PublishError(scrub(str(exc), conn)) from None


def send(conn: Connection, outgoing: Outgoing, timeout: float = TIMEOUT_SECONDS) -> None:
    """Publish one message and wait for the broker's confirm; PublishError (credential-free) when it fails."""
    address = _address(conn)
    try:
        _run(lambda: asyncio.wait_for(_publish(address, outgoing, timeout), timeout))
    except Exception as exc:
        raise PublishError(scrub(f"{address.describe()}: {_error_text(exc)}", conn)) from None


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def probe(conn: Connection, timeout: float = TIMEOUT_SECONDS) -> None:
    """Connect (and log in) to the broker and leave; PublishError (credential-free) when it does not answer."""
    address = _address(conn)

    async def visit() -> None:
        connection = await open_connection(address, "water probe", timeout)
        await connection.close()

    try:
        _run(lambda: asyncio.wait_for(visit(), timeout))
    except Exception as exc:
        raise PublishError(scrub(f"{address.describe()}: {_error_text(exc)}", conn)) from None


def publish_completion(event: dict[str, Any], conn_id: str | None = None) -> str:
    """Publish a completion event (events.completion_event) to EVENTS_EXCHANGE; never raises.

    Returns how it went: ``published``, ``not configured`` (no connection ``conn_id``) or ``failed``."""
    conn_id = conn_id or events.AMQP_CONN_ID
    key = event["event"]
    try:
        conn = configured_connection(conn_id)
    except Exception as exc:  # a secrets backend that does not answer
        log.warning("Completion event %s not published: connection %r: %s", key, conn_id, masking.redact(str(exc)))
        return "failed"
    if conn is None:
        log.info("No AMQP connection %r: completion event %s not published: %s", conn_id, key, json.dumps(event, sort_keys=True))
        return "not configured"
    outgoing = Outgoing(routing_key=key, body=event, message_id=event["message_id"], exchange=events.EVENTS_EXCHANGE)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            send(conn, outgoing)
        except PublishError as exc:
            log.warning("Completion event %s: attempt %d/%d failed: %s", key, attempt, ATTEMPTS, exc)
            if attempt < ATTEMPTS:
                time.sleep(BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)])
            continue
        log.info("Published completion event %s to exchange %r (message %s)", key, events.EVENTS_EXCHANGE, outgoing.message_id)
        return "published"
    log.warning("Completion event %s was not published; the run's outcome is unchanged", key)
    return "failed"


def send_control(conn: Connection, message: dict[str, Any], queue: str | None = None) -> None:
    """Put a control message (already validated) on the control queue; PublishError when the broker does not take it."""
    send(conn, Outgoing(routing_key=queue or events.CONTROL_QUEUE, body=message, message_id=message["message_id"]))


# --- the broker side ---------------------------------------------------------------------


async def _publish(address: BrokerAddress, outgoing: Outgoing, timeout: float) -> None:
    import aio_pika

    connection = await open_connection(address, "water publisher", timeout)
    async with connection:
        if outgoing.exchange is None:
            await _ensure_queue(connection, outgoing.routing_key)
        # A message the broker cannot route anywhere is returned: an error for a queue, fine for the topic
        # exchange (no one listens for that key yet).
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        if outgoing.exchange is None:
            exchange = channel.default_exchange
        else:
            exchange = await channel.declare_exchange(outgoing.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        message = aio_pika.Message(
            body=json.dumps(outgoing.body, sort_keys=True).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=outgoing.message_id,
            timestamp=datetime.now(UTC),
            app_id="water",
        )
        await exchange.publish(message, outgoing.routing_key, mandatory=outgoing.exchange is None, timeout=timeout)


async def _ensure_queue(connection: AbstractConnection, name: str) -> None:
    """The queue as it is when it exists (whatever its arguments); declared durable otherwise."""
    from aio_pika.exceptions import ChannelNotFoundEntity

    probe: AbstractChannel = await connection.channel()
    try:
        await probe.declare_queue(name, passive=True)
        await probe.close()
        return
    except ChannelNotFoundEntity:
        pass  # the broker closed that channel
    declaring = await connection.channel()
    await declaring.declare_queue(name, durable=True)
    await declaring.close()


T = TypeVar("T")


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
