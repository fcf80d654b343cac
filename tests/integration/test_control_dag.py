"""The water_control DAG run by `dag.test()` on a real triggering event: a control message published
to the real RabbitMQ becomes an event through AmqpMessageTrigger (Airflow's trigger runner, the
harness in tests/integration/triggerer.py), stored as the triggerer stores it (an asset event on
`water_control`), consumed by the run; the mapped TriggerDagRunOperator starts the pipeline's run.
The same message redelivered (its event never confirmed stored) starts nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest

from tests.integration.broker import BROKER_URL, CONN_ID, broker_queue, trigger
from tests.integration.triggerer import Triggerer
from water import control, events
from water.spec import Trigger

DS = "2026-11-05"


async def _consume(body: dict[str, Any], *, redeliver: bool) -> list[dict[str, Any]]:
    """Publish `body` to a fresh queue; the payloads of the events the trigger fires for it: the first
    delivery (its event left unconfirmed, as a triggerer that died before storing it), then, when
    `redeliver`, the broker's redelivery to the next triggerer (confirmed)."""
    payloads = []
    async with broker_queue() as queue:
        await queue.publish(body, message_id=body["message_id"])
        first = Triggerer()
        first.start(trigger(queue))
        payloads.append((await first.next_event()).event.payload)
        await first.stop()  # not confirmed: the broker keeps the message
        if redeliver:
            second = Triggerer()
            second.start(trigger(queue))
            entry = await second.next_event()
            second.confirm_stored(entry)
            payloads.append(entry.event.payload)
            await second.stop()
    return payloads


def _run_control_dag(payload: dict[str, Any]) -> Any:
    """dag.test() of water_control, its run consuming `payload` stored as Airflow stores a trigger's event."""
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetModel
    from airflow.models.dagrun import get_or_create_dagrun
    from sqlalchemy import select

    def with_the_event(**kwargs: Any) -> Any:
        run = get_or_create_dagrun(**kwargs)
        session = kwargs["session"]
        asset = session.scalar(select(AssetModel).where(AssetModel.name == control.ASSET_NAME))
        stored = AssetManager.register_asset_change(
            asset=asset.to_serialized(), extra={"from_trigger": True, "payload": payload}, session=session
        )
        run.consumed_asset_events.append(stored)
        session.commit()
        return run

    dag = control.build_control_dag()
    with mock.patch("airflow.models.dagrun.get_or_create_dagrun", side_effect=with_the_event):
        return dag.test()


@pytest.mark.rabbitmq
def test_a_control_message_starts_its_pipeline_once(rabbitmq, airflow_db):
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    message_id = f"it-{uuid.uuid4().hex[:12]}"
    body = {"pipeline": "recipe_engagement", "ds": DS, "conf": {"accept_drift": True}, "message_id": message_id}
    first, again = asyncio.run(_consume(body, redeliver=True))
    assert first["messages"][0]["body"] == again["messages"][0]["body"] == body
    assert again["messages"][0]["redelivered"] is True

    control_run = _run_control_dag(first)
    assert control_run.state == "success"
    session = airflow_db.Session()
    started = session.scalars(
        select(DagRun).where(DagRun.dag_id == "recipe_engagement", DagRun.run_id == f"water_msg__{message_id}")
    ).all()
    assert [(r.logical_date, r.conf.get("accept_drift")) for r in started] == [(datetime(2026, 11, 5, tzinfo=UTC), True)]
    (start,) = session.scalars(
        select(TaskInstance).where(
            TaskInstance.dag_id == control.DAG_ID, TaskInstance.run_id == control_run.run_id, TaskInstance.task_id == "start"
        )
    ).all()
    assert start.state == "success" and start.map_index == 0

    redelivered_run = _run_control_dag(again)
    assert redelivered_run.state == "success"
    session.expire_all()
    assert (
        session.scalar(select(DagRun).where(DagRun.dag_id == "recipe_engagement", DagRun.run_id == f"water_msg__{message_id}"))
        is not None
    )
    assert (
        len(
            session.scalars(
                select(DagRun).where(
                    DagRun.dag_id == "recipe_engagement", DagRun.logical_date == datetime(2026, 11, 5, tzinfo=UTC)
                )
            ).all()
        )
        == 1
    )
    pushed = session.scalars(
        XComModel.get_many(run_id=redelivered_run.run_id, dag_ids=control.DAG_ID, task_ids="dispatch", key="messages")
    ).first()
    records = XComModel.deserialize_value(pushed)
    assert [(r["message_id"], r["outcome"]) for r in records] == [(message_id, "duplicate")]
    starts = session.scalars(
        select(TaskInstance).where(
            TaskInstance.dag_id == control.DAG_ID, TaskInstance.run_id == redelivered_run.run_id, TaskInstance.task_id == "start"
        )
    ).all()
    assert [t.state for t in starts] == ["skipped"]  # mapped over nothing


@pytest.mark.rabbitmq
def test_the_control_queue_receives_the_completion_events_specs_listen_for(rabbitmq):
    import aio_pika

    specs = control.load_specs()
    listening = specs["customer_value"].model_copy(update={"trigger": Trigger(on="pipeline.recipe_engagement.succeeded")})
    specs = {**specs, "customer_value": listening}
    name = f"water-test-{uuid.uuid4().hex[:12]}"
    for _ in range(2):  # idempotent: every control run binds again
        keys = control.bind_completion_events(CONN_ID, specs, queue=name, exchange=f"{name}-events")
    assert keys == ["pipeline.recipe_engagement.succeeded"]

    async def route() -> list[str]:
        connection = await aio_pika.connect(BROKER_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(f"{name}-events")
            for outcome in ("failed", "succeeded"):
                key = events.routing_key("recipe_engagement", outcome)
                await exchange.publish(aio_pika.Message(b"{}", message_id=key), routing_key=key)
            queue = await channel.get_queue(name)
            arrived = []
            for _ in range(50):
                message = await queue.get(no_ack=True, fail=False)
                if message is None and arrived:
                    break
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    arrived.append(message.routing_key)
            await queue.delete(if_unused=False, if_empty=False)
            await exchange.delete()
            return arrived

    assert asyncio.run(route()) == ["pipeline.recipe_engagement.succeeded"]
