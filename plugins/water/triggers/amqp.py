"""Messages on an AMQP 0-9-1 queue (RabbitMQ, Amazon MQ for RabbitMQ) as Airflow asset events.

    from airflow.sdk import Asset, AssetWatcher
    from water.triggers.amqp import AmqpMessageTrigger

    control = Asset("water_control", watchers=[AssetWatcher(name="water_control_queue",
                                                            trigger=AmqpMessageTrigger(queue="water.control"))])

A DAG scheduled on ``control`` gets each event's payload in
``context["triggering_asset_events"][control][i].extra["payload"]``::

    {"queue": "water.control",
     "messages": [{"body": {...the message, a JSON object...},
                   "message_id": "…" or None,  # the AMQP message-id property
                   "routing_key": "water.control", "exchange": "", "redelivered": False,
                   "timestamp": "2026-11-01T06:00:00+00:00" or None}, ...]}

One event carries every message delivered together (1 to ``max_batch``), in delivery order.

Delivery is at least once, in Airflow 3.3's ack mode (``create_shared_stream_producer``): the
triggerer stores the event in the metadata database, then the producer acks its messages. A
message whose event was not stored (the triggerer died, the store failed, the connection
dropped) stays unacknowledged and the broker delivers it again, flagged ``redelivered``: the
consumer of the events de-duplicates (on the body's ``message_id``). A message that is not a
JSON object is rejected without requeue (it goes to the queue's dead-letter exchange when it has
one), with a log line that says why; it never becomes an event.

apache/airflow#56050 (Airflow < 3.4): the scheduler keeps one queue row per (asset, DAG); an
asset event stored while that row is pending is left out of the run the row starts and gets no
row of its own, so it waits for a later event. Hence messages that arrive together become one
event, and an event is emitted only ``settle_seconds`` after the previous one was stored, which
gives the scheduler time to start the previous run first. The scheduler can still be slower (the
DAG at max_active_runs): a consumer that must never wait should also read the asset's recent
events (inlet_events), not only its triggering ones.

The connection (``amqp_conn_id``) is read as water.broker describes (amqp:// or amqps:// with
TLS, the virtual host in its schema). The trigger's serialized form (stored in the metadata
database) names the connection id only; no log line or event carries the password.

aio-pika is imported where the connection is opened, never at import: DAG files and the
triggerer import this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

from water.broker import BrokerAddress, BrokerSettingError, open_connection

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 10.0
_RECONNECT_FIRST_DELAY = 1.0
_RECONNECT_MAX_DELAY = 30.0


@dataclass(frozen=True)
class ConsumerSettings:
    """What the trigger's kwargs say about consuming; one producer per distinct value."""

    queue: str
    amqp_conn_id: str = "amqp_default"
    max_batch: int = 100
    batch_window: float = 1.0
    settle_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not self.queue:
            raise ValueError("AmqpMessageTrigger needs a queue name")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")
        if self.batch_window < 0 or self.settle_seconds < 0:
            raise ValueError("batch_window and settle_seconds are seconds, not negative")

    @property
    def prefetch_count(self) -> int:
        """Unacknowledged messages the broker lets this consumer hold: one batch in flight, the next filling."""
        return 2 * self.max_batch


class AmqpMessageTrigger(BaseEventTrigger):
    """Fire one asset event per batch of JSON messages on an AMQP queue; ack them once the event is stored.

    :param queue: the queue to consume (it must exist; its dead-letter exchange, if any, receives rejected messages).
    :param amqp_conn_id: the Airflow connection to the broker (``amqp://`` or ``amqps://``).
    :param max_batch: most messages in one event.
    :param batch_window: seconds a batch stays open after its first message, for messages delivered with it.
    :param settle_seconds: seconds after an event is stored before the next is emitted (apache/airflow#56050).

    Triggers with the same kwargs share one consumer (``shared_stream_key``); see the module docstring for the
    payload and the delivery guarantees.
    """

    def __init__(
        self,
        *,
        queue: str,
        amqp_conn_id: str = "amqp_default",
        max_batch: int = 100,
        batch_window: float = 1.0,
        settle_seconds: float = 5.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__(**kwargs) is unannotated
        self.settings = ConsumerSettings(
            queue=queue,
            amqp_conn_id=amqp_conn_id,
            max_batch=int(max_batch),
            batch_window=float(batch_window),
            settle_seconds=float(settle_seconds),
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        s = self.settings
        return (
            "water.triggers.amqp.AmqpMessageTrigger",
            {
                "queue": s.queue,
                "amqp_conn_id": s.amqp_conn_id,
                "max_batch": s.max_batch,
                "batch_window": s.batch_window,
                "settle_seconds": s.settle_seconds,
            },
        )

    def shared_stream_key(self) -> Hashable:
        s = self.settings
        return ("water.amqp", s.amqp_conn_id, s.queue, s.max_batch, s.batch_window, s.settle_seconds)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SharedStreamProducer:
        return AmqpQueueProducer(ConsumerSettings(**kwargs))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for batch in shared_stream:
            yield TriggerEvent(batch)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Acking after the event is stored needs the triggerer's shared-stream manager, which
        # runs filter_shared_stream(); acking without it could lose a message.
        raise NotImplementedError("AmqpMessageTrigger runs in the triggerer's shared-stream (ack) mode only")
        yield  # type: ignore[unreachable]  # an async generator, as the base class declares


class _Disconnected(Exception):
    """The broker connection or channel closed under the consumer."""


@dataclass(frozen=True)
class _Received:
    """A delivered message whose body is a JSON object, with that object."""

    message: AbstractIncomingMessage
    body: dict[str, Any]


@dataclass
class _Delivery:
    """What the producer keeps of a batch to settle it on the broker."""

    messages: list[AbstractIncomingMessage]


class AmqpQueueProducer(SharedStreamProducer):
    """The broker side of :class:`AmqpMessageTrigger`: consumes the queue, batches, acks after the store.

    The manager calls :meth:`open_stream` once per poll, :meth:`advance` with each batch once its event is
    stored (or failed), and :meth:`aclose` at the end. One batch is in flight at a time.
    """

    def __init__(self, settings: ConsumerSettings) -> None:
        self.settings = settings
        self._connection: AbstractConnection | None = None
        self._previous_settled = asyncio.Event()
        self._previous_settled.set()
        self._previous_settled_at = -math.inf

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        """Yield ``(payload, delivery)`` per batch, forever; reconnect (with backoff) when the broker is away."""
        delay = _RECONNECT_FIRST_DELAY
        while True:
            try:
                address, inbox = await self._connect()
            except _Disconnected as exc:
                log.warning("Cannot consume queue %r: %s; retrying in %.0f s", self.settings.queue, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, _RECONNECT_MAX_DELAY)
                continue
            delay = _RECONNECT_FIRST_DELAY
            log.info("Consuming queue %r on %s", self.settings.queue, address.describe())
            try:
                while True:
                    batch = await self._next_batch(inbox)
                    self._previous_settled.clear()
                    yield _payload(self.settings.queue, batch), _Delivery([r.message for r in batch])
            except _Disconnected as exc:
                log.warning(
                    "Stopped consuming queue %r on %s (%s): reconnecting; the broker redelivers what was not acked",
                    self.settings.queue,
                    address.describe(),
                    exc,
                )
                await self._close()

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Settle each batch on the broker: ack once stored, reject (no requeue) if refused, else requeue."""
        for item in batch:
            delivery: _Delivery = item.broker_payload
            outcome = item.outcome
            if outcome.is_clean:
                action = "ack"
            elif outcome.rejected:
                action = "reject"
            else:
                action = "requeue"
                log.warning(
                    "The event of %d message(s) from queue %r was not stored (%s): requeued for redelivery",
                    len(delivery.messages),
                    self.settings.queue,
                    outcome,
                )
            for message in delivery.messages:
                await _settle(message, action)
        self._previous_settled_at = asyncio.get_running_loop().time()
        self._previous_settled.set()

    async def aclose(self) -> None:
        await self._close()

    async def _connect(self) -> tuple[BrokerAddress, asyncio.Queue[AbstractIncomingMessage | _Disconnected]]:
        """Open the connection and a consuming channel; every failure on the way is a :class:`_Disconnected`."""
        from aio_pika.exceptions import AMQPError
        from airflow.sdk.exceptions import AirflowNotFoundException

        await self._close()
        try:
            from airflow.sdk import BaseHook

            address = BrokerAddress.from_connection(await BaseHook.aget_connection(self.settings.amqp_conn_id))
        except AirflowNotFoundException as exc:
            raise _Disconnected(f"no connection {self.settings.amqp_conn_id!r}") from exc
        except BrokerSettingError as exc:  # e.g. verify: false; retried, so a corrected connection is picked up
            raise _Disconnected(str(exc)) from exc
        try:
            return address, await self._consume(address)
        except (AMQPError, OSError, TimeoutError, RuntimeError) as exc:
            await self._close()
            raise _Disconnected(f"{address.describe()}: {type(exc).__name__}: {exc}") from exc

    async def _consume(self, address: BrokerAddress) -> asyncio.Queue[AbstractIncomingMessage | _Disconnected]:
        inbox: asyncio.Queue[AbstractIncomingMessage | _Disconnected] = asyncio.Queue()

        def closed(_sender: object, exc: BaseException | None = None) -> None:
            inbox.put_nowait(_Disconnected(f"{type(exc).__name__}: {exc}" if exc else "closed"))

        def cancelled(_frame: object) -> None:
            inbox.put_nowait(_Disconnected("the broker cancelled the consumer (the queue was deleted?)"))

        async def deliver(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        self._connection = await open_connection(address, f"water trigger: {self.settings.queue}", _CONNECT_TIMEOUT)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.settings.prefetch_count)
        queue = await channel.get_queue(self.settings.queue, ensure=True)
        self._connection.close_callbacks.add(closed)
        channel.close_callbacks.add(closed)
        (await channel.get_underlay_channel()).on_consumer_cancel_callbacks.add(cancelled)
        await queue.consume(deliver, no_ack=False)
        return inbox

    async def _next_batch(self, inbox: asyncio.Queue[AbstractIncomingMessage | _Disconnected]) -> list[_Received]:
        """The next batch: its first message, what arrives within batch_window, and, while the previous
        event is being stored and then settles, what arrives meanwhile (up to max_batch)."""
        loop = asyncio.get_running_loop()
        messages: list[_Received] = []
        while not messages:
            await self._take(inbox, messages, timeout=None)
        await self._fill(inbox, messages, until=loop.time() + self.settings.batch_window)
        await self._previous_settled.wait()
        await self._fill(inbox, messages, until=self._previous_settled_at + self.settings.settle_seconds)
        return messages

    async def _fill(
        self, inbox: asyncio.Queue[AbstractIncomingMessage | _Disconnected], messages: list[_Received], until: float
    ) -> None:
        loop = asyncio.get_running_loop()
        while (timeout := until - loop.time()) > 0:
            if len(messages) >= self.settings.max_batch:
                await asyncio.sleep(timeout)  # full: the rest waits in the inbox for the next batch
                return
            try:
                await self._take(inbox, messages, timeout=timeout)
            except TimeoutError:
                return

    async def _take(
        self,
        inbox: asyncio.Queue[AbstractIncomingMessage | _Disconnected],
        messages: list[_Received],
        timeout: float | None,
    ) -> None:
        """Wait for the next delivery; add it to ``messages`` if its body is a JSON object, else reject it."""
        item = await asyncio.wait_for(inbox.get(), timeout)
        if isinstance(item, _Disconnected):
            raise item
        body, problem = _decode(item.body)
        if body is not None:
            messages.append(_Received(item, body))
            return
        log.warning(
            "Rejecting message %s from queue %r (%d bytes, not requeued; to the dead-letter exchange if the queue has one): %s",
            item.message_id or f"#{item.delivery_tag}",
            self.settings.queue,
            len(item.body),
            problem,
        )
        await _settle(item, "reject")

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            from aio_pika.exceptions import AMQPError

            try:
                await connection.close()
            except (AMQPError, OSError, RuntimeError) as exc:
                log.info("Closing the connection for queue %r: %s", self.settings.queue, exc)


def _decode(body: bytes) -> tuple[dict[str, Any] | None, str]:
    """The body as a JSON object, or None and why it is not one."""
    try:
        decoded = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, f"body is not JSON ({exc})"
    if not isinstance(decoded, dict):
        return None, f"body is JSON {type(decoded).__name__}, not an object"
    return decoded, ""


def _payload(queue: str, batch: Sequence[_Received]) -> dict[str, Any]:
    """The event's payload (JSON-serializable: it is stored with the asset event)."""
    return {
        "queue": queue,
        "messages": [
            {
                "body": r.body,
                "message_id": r.message.message_id,
                "routing_key": r.message.routing_key,
                "exchange": r.message.exchange,
                "redelivered": bool(r.message.redelivered),
                "timestamp": r.message.timestamp.isoformat() if r.message.timestamp else None,
            }
            for r in batch
        ],
    }


async def _settle(message: AbstractIncomingMessage, action: str) -> None:
    """Ack, reject or requeue one message; on a closed channel the broker has requeued it already."""
    from aio_pika.exceptions import AMQPError

    try:
        if action == "ack":
            await message.ack()
        elif action == "reject":
            await message.reject(requeue=False)
        else:
            await message.nack(requeue=True)
    except (AMQPError, RuntimeError, OSError) as exc:
        log.info("Could not %s message %s (%s): its channel closed, the broker redelivers it", action, message.message_id, exc)
