"""The messages water exchanges over AMQP (RabbitMQ; Amazon MQ for RabbitMQ in the cloud).

Control messages (start a pipeline for a day) go to the queue ``CONTROL_QUEUE``, which the
``water_control`` DAG watches (water.triggers.amqp). Each finished pipeline run publishes a
completion event to the topic exchange ``EVENTS_EXCHANGE`` with the routing key
``pipeline.<name>.<outcome>``; the control queue is bound to the keys that specs listen for
(``trigger: {on: pipeline.<name>.succeeded}``), so another pipeline can start from it.

This module holds only the names and the message shapes (JSON schemas, published in
docs/events/): no connection and no Airflow import, so the CLI, the DAGs and the callbacks
share one definition.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

CONTROL_DAG_ID: Final = "water_control"  # the DAG that consumes CONTROL_QUEUE (water.control)
CONTROL_QUEUE: Final = os.environ.get("WATER_CONTROL_QUEUE", "water.control")
EVENTS_EXCHANGE: Final = os.environ.get("WATER_EVENTS_EXCHANGE", "water.events")
AMQP_CONN_ID: Final = os.environ.get("WATER_AMQP_CONN_ID", "amqp_default")

OUTCOMES: Final = ("succeeded", "failed", "quarantined")
ROUTING_KEY = re.compile(r"^pipeline\.(?P<pipeline>[a-z][a-z0-9_]*)\.(?P<outcome>succeeded|failed|quarantined)$")


# The pattern as JSON Schema (ECMA-262 regex) reads it: groups unnamed.
_ECMA_ROUTING_KEY: Final = re.sub(r"\(\?P<\w+>", "(", ROUTING_KEY.pattern)


def routing_key(pipeline: str, outcome: str) -> str:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    return f"pipeline.{pipeline}.{outcome}"


# A control message: start PIPELINE for DS with CONF. message_id makes redelivery harmless: a
# message_id that already started a run never starts another.
CONTROL_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "water/control-message",
    "title": "water control message",
    "type": "object",
    "required": ["pipeline", "ds", "message_id"],
    "additionalProperties": False,
    "properties": {
        "pipeline": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "description": "a pipeline's name (its spec file)"},
        "ds": {"type": "string", "format": "date", "description": "the day to run, YYYY-MM-DD"},
        "conf": {"type": "object", "description": "the run's conf, checked against the pipeline DAG's params"},
        "message_id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_.:-]+$"},
    },
}

# A completion event: what a finished run announces on EVENTS_EXCHANGE.
COMPLETION_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "water/completion-event",
    "title": "water pipeline completion event",
    "type": "object",
    "required": ["event", "pipeline", "ds", "run_id", "outcome", "message_id"],
    "additionalProperties": False,
    "properties": {
        "event": {"type": "string", "pattern": _ECMA_ROUTING_KEY, "description": "the routing key it was published with"},
        "pipeline": {"type": "string"},
        "ds": {"type": "string", "format": "date"},
        "run_id": {"type": "string"},
        "outcome": {"enum": list(OUTCOMES)},
        "rows": {"type": ["integer", "null"], "description": "rows published, null when nothing was"},
        "tiers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "route -> size tier chosen"},
        "message_id": {"type": "string", "description": "unique per event: <pipeline>.<run_id>.<outcome>"},
    },
}


def completion_event(
    pipeline: str, ds: str, run_id: str, outcome: str, rows: int | None, tiers: dict[str, str]
) -> dict[str, Any]:
    """A finished run's completion event (COMPLETION_SCHEMA); its ``event`` is the routing key to publish it with."""
    return {
        "event": routing_key(pipeline, outcome),
        "pipeline": pipeline,
        "ds": ds,
        "run_id": run_id,
        "outcome": outcome,
        "rows": rows,
        "tiers": dict(tiers),
        "message_id": f"{pipeline}.{run_id}.{outcome}",
    }
