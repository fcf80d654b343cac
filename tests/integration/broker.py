"""The local RabbitMQ (127.0.0.1:5672, guest/guest) for the integration tests: whether it answers,
a fresh queue per test, and an AmqpMessageTrigger on it. The fixtures built on these (`rabbitmq`)
are in tests/integration/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from water.triggers.amqp import AmqpMessageTrigger

BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
CONN_ID = "water_test_amqp"  # the connection the `rabbitmq` fixture sets


def require_rabbitmq() -> None:
    """Fail the test, saying how to start it, when the local RabbitMQ does not answer (CI's .ci/run starts it)."""

    async def ping() -> None:
        import aio_pika

        connection = await aio_pika.connect(BROKER_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(ping())
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ does not answer on 127.0.0.1:5672 ({type(exc).__name__}: {exc}): start it "
            "(`rabbitmq-server -detached` or `service rabbitmq-server start`; CI's .ci/run does)"
        )


@contextlib.asynccontextmanager
async def broker_queue(*, dead_letters: bool = False) -> AsyncIterator[Queue]:
    """A fresh queue (with a dead-letter exchange and a queue bound to it if asked), deleted afterwards."""
    import aio_pika

    connection = await aio_pika.connect(BROKER_URL)
    channel = await connection.channel()
    name = f"water-test-{uuid.uuid4().hex[:12]}"
    arguments: dict[str, Any] = {}
    dead = exchange = None
    if dead_letters:
        exchange = await channel.declare_exchange(f"{name}-dlx", aio_pika.ExchangeType.FANOUT)
        dead = await channel.declare_queue(f"{name}-dead")
        await dead.bind(exchange)
        arguments["x-dead-letter-exchange"] = exchange.name
    queue = await channel.declare_queue(name, arguments=arguments)
    try:
        yield Queue(channel, name, dead.name if dead else None)
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        if dead and exchange:
            await dead.delete(if_unused=False, if_empty=False)
            await exchange.delete()
        await connection.close()


class Queue:
    """A test queue: publish to it, count its ready messages, read its dead letters."""

    def __init__(self, channel: Any, name: str, dead: str | None) -> None:
        self.channel, self.name, self.dead = channel, name, dead

    async def publish(self, body: bytes | dict[str, Any], message_id: str | None = None) -> None:
        import aio_pika

        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        await self.channel.default_exchange.publish(aio_pika.Message(raw, message_id=message_id), routing_key=self.name)

    async def ready(self) -> int:
        """Messages ready for delivery (neither delivered-and-unacked nor acked)."""
        declared = await self.channel.declare_queue(self.name, passive=True)
        return int(declared.declaration_result.message_count)

    async def dead_letters(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The first `count` messages that reached the dead-letter queue."""
        queue = await self.channel.declare_queue(self.dead, passive=True)
        bodies: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(bodies) < count and loop.time() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                bodies.append(message.body)
        return bodies


def trigger(queue: Queue, **kwargs: Any) -> AmqpMessageTrigger:
    """A trigger on the test queue, quick to batch and settle, rebuilt from its serialized form as the triggerer does."""
    kwargs = {"batch_window": 0.3, "settle_seconds": 0.5, **kwargs}
    _, serialized = AmqpMessageTrigger(queue=queue.name, amqp_conn_id=CONN_ID, **kwargs).serialize()
    return AmqpMessageTrigger(**serialized)
