"""Airflow's own trigger runner driving watcher triggers in this process; the test is its supervisor.

`TriggerRunner.run_trigger` is what the triggerer runs per trigger: it subscribes an event trigger to
the shared-stream manager (ack mode when the trigger has a producer), binds each event it fires to a
persist sequence number and queues it for the supervisor. The real supervisor stores the queued
events in the metadata database and confirms their numbers on the next state sync; here the test
does that step (`confirm_stored`), or leaves it undone to play a triggerer that died first.

`python -m tests.integration.triggerer QUEUE CONN_ID` runs one AmqpMessageTrigger on QUEUE and
prints each event's payload on a line `EVENT <json>`, never storing it: the triggerer a test kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from airflow.jobs.triggerer_job_runner import TriggerEventEntry, TriggerRunner
from airflow.triggers.base import BaseTrigger


class Triggerer:
    def __init__(self) -> None:
        self.runner = TriggerRunner()

    def start(self, trigger: BaseTrigger, trigger_id: int = 1) -> None:
        """Run the trigger as TriggerRunner.create_triggers does."""
        self.runner.triggers[trigger_id] = {
            "task": asyncio.create_task(self.runner.run_trigger(trigger_id, trigger), name=f"ID {trigger_id}"),
            "is_watcher": True,
            "name": f"ID {trigger_id}",
            "events": 0,
        }

    async def next_event(self, timeout: float = 15.0) -> TriggerEventEntry:
        """The next event the triggers fired, as queued for the supervisor."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.runner.events:
            self.raise_if_failed()
            if loop.time() > deadline:
                raise AssertionError(f"no trigger event within {timeout} s")
            await asyncio.sleep(0.02)
        return self.runner.events.popleft()

    async def no_event(self, within: float) -> None:
        """Assert that no trigger fires within `within` seconds."""
        await asyncio.sleep(within)
        self.raise_if_failed()
        assert not self.runner.events, f"unexpected events: {list(self.runner.events)}"

    def confirm_stored(self, entry: TriggerEventEntry) -> None:
        """What the supervisor's TriggerStateSync.events_persisted does once the event is in the database."""
        assert entry.persist_seq is not None, "the event is not bound to an ack (not ack mode?)"
        self.runner._shared_streams.confirm_persisted([entry.persist_seq])

    def raise_if_failed(self) -> None:
        for details in self.runner.triggers.values():
            if details["task"].done() and not details["task"].cancelled():
                details["task"].result()
                raise AssertionError(f"trigger {details['name']} ended without an error")

    async def stop(self) -> None:
        """Cancel the triggers (a triggerer shutting down): the shared streams stop and close their connections."""
        for details in self.runner.triggers.values():
            details["task"].cancel()
        for details in self.runner.triggers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await details["task"]
        await self.runner._shared_streams.stop_all()


async def _print_events(queue: str, conn_id: str, kwargs: dict[str, Any]) -> None:
    from water.triggers.amqp import AmqpMessageTrigger

    triggerer = Triggerer()
    triggerer.start(AmqpMessageTrigger(queue=queue, amqp_conn_id=conn_id, **kwargs))
    while True:
        entry = await triggerer.next_event(timeout=3600)
        print(f"EVENT {json.dumps(entry.event.payload)}", flush=True)


if __name__ == "__main__":
    asyncio.run(_print_events(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
