"""The control DAG, ``water_control``: messages on the control queue start pipelines.

The DAG is scheduled on the asset ``water_control``, watched by an AmqpMessageTrigger on
``events.CONTROL_QUEUE``; each run gets one or more asset events, each carrying a batch of
messages (water.triggers.amqp). Its ``dispatch`` task reads every message of every event:

- a control message (``events.CONTROL_SCHEMA``: pipeline, ds, conf, message_id) is checked
  against the schema and the specs (:func:`validate_control_message`, which ``water publish``
  runs too): an unknown pipeline, a malformed or out-of-range ds, a conf that does not match the
  pipeline DAG's params or a missing message_id rejects it, with the reason in the log and a
  Slack notice (water.notify);
- a completion event (routing key ``pipeline.<name>.<outcome>``, ``events.COMPLETION_SCHEMA``)
  starts every pipeline whose spec says ``trigger: {on: <that key>}``, for the same ds, except a
  pipeline on a cycle of trigger.on (a's completion starts b, b's starts a: :func:`trigger_cycles`),
  which is rejected naming the cycle and the trigger.on entries to change.

Each accepted message becomes the kwargs of one mapped TriggerDagRunOperator (``start``):
logical date = ds at 00:00 UTC, run id ``water_msg__<message_id>`` (:func:`run_id_for`), the
conf. A message_id seen before in the same run, or whose run exists already, is a duplicate
and starts nothing; ``skip_when_already_exists`` covers the race with a concurrent control run.
So a redelivered message never runs a day twice. A day that already has a run with another
run id is rejected too (Airflow keeps one run per DAG and logical date).

XCom of ``dispatch``: ``return_value`` (the trigger kwargs) and ``messages``: one record per
message, ``{"message_id", "pipeline", "ds", "outcome": started|duplicate|rejected|ignored,
"reason", "run_id", "routing_key"}`` (what ``water events`` shows).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from water import events
from water.spec import Notifications, PipelineSpec, SpecError, load_pipeline, pipeline_names

if TYPE_CHECKING:
    from airflow.sdk import DAG, Connection, Context

log = logging.getLogger(__name__)

DAG_ID: Final = events.CONTROL_DAG_ID
ASSET_NAME: Final = "water_control"
DISPATCH_TASK: Final = "dispatch"
MESSAGES_XCOM = "messages"  # the dispatch task's record of each message: started, duplicate, rejected, ignored
START_TASK: Final = "start"
BIND_TASK: Final = "bind_events"
RUN_ID_PREFIX: Final = "water_msg__"
OWNER: Final = "water"

_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]")  # Airflow's default allowed_run_id_pattern
_RUN_ID_MAX = 200  # the column holds 250


class ControlMessageError(ValueError):
    """A message water will not act on; str() is the reason, as the log and the notice say it."""


@dataclass(frozen=True)
class ControlMessage:
    """A validated request: start ``pipeline`` for ``ds`` with ``conf``, once per ``message_id``."""

    pipeline: str
    ds: str
    message_id: str
    conf: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return run_id_for(self.message_id)

    @property
    def logical_date(self) -> datetime:
        return datetime.fromisoformat(self.ds).replace(tzinfo=UTC)

    def trigger_kwargs(self) -> dict[str, Any]:
        """The mapped TriggerDagRunOperator's arguments for this message."""
        return {
            "trigger_dag_id": self.pipeline,
            "trigger_run_id": self.run_id,
            "logical_date": self.logical_date.isoformat(),
            "conf": self.conf,
        }

    def body(self) -> dict[str, Any]:
        """The message as JSON (CONTROL_SCHEMA), as ``water publish`` sends it."""
        return {"pipeline": self.pipeline, "ds": self.ds, "conf": self.conf, "message_id": self.message_id}


def run_id_for(message_id: str) -> str:
    """The run id of the run a message starts: ``water_msg__<message_id>``, with characters Airflow does
    not take replaced (and then a hash of the original, so two ids never share a run id)."""
    safe = _RUN_ID_UNSAFE.sub("_", message_id)
    if safe != message_id or len(safe) > _RUN_ID_MAX:
        digest = hashlib.sha256(message_id.encode()).hexdigest()[:12]
        safe = f"{safe[:_RUN_ID_MAX]}_{digest}"
    return f"{RUN_ID_PREFIX}{safe}"


# --- validation (shared with `water publish`) -------------------------------------------------


def _schema_problem(body: Any, schema: Mapping[str, Any]) -> str | None:
    """The first way ``body`` breaks ``schema``, said plainly, or None."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(body), key=lambda e: (list(e.path), e.message))
    if not errors:
        return None
    error = errors[0]
    where = ".".join(str(p) for p in error.path)
    return f"{where}: {error.message}" if where else error.message


def _parse_ds(ds: str) -> date:
    if not _DS.match(ds):
        raise ControlMessageError(f"ds {ds!r} is not a date: write YYYY-MM-DD")
    try:
        return date.fromisoformat(ds)
    except ValueError as exc:
        raise ControlMessageError(f"ds {ds!r} is not a date ({exc})") from None


def _load(pipeline: str, specs: Mapping[str, PipelineSpec] | None) -> PipelineSpec:
    if specs is not None:
        if pipeline not in specs:
            raise ControlMessageError(f"unknown pipeline {pipeline!r}; known: {', '.join(sorted(specs)) or 'none'}")
        return specs[pipeline]
    known = pipeline_names()
    if pipeline not in known:
        raise ControlMessageError(f"unknown pipeline {pipeline!r}; known: {', '.join(known) or 'none'}")
    try:
        return load_pipeline(pipeline)
    except SpecError as exc:
        raise ControlMessageError(f"pipeline {pipeline!r} cannot run: its spec does not load ({exc})") from None


def check_day(spec: PipelineSpec, ds: str, today: date | None = None) -> None:
    """A day the pipeline can run: a date, not before its start_date, not after today (UTC)."""
    day = _parse_ds(ds)
    if day < spec.start_date:
        raise ControlMessageError(f"ds {ds} is before {spec.name}'s start_date {spec.start_date}")
    today = today or datetime.now(UTC).date()
    if day > today:
        raise ControlMessageError(f"ds {ds} is in the future (today is {today}); a day runs once it has ended")


def check_conf(spec: PipelineSpec, conf: Mapping[str, Any]) -> None:
    """Every conf key is one of the pipeline DAG's params, with a value the param accepts."""
    from airflow.sdk.exceptions import ParamValidationError

    from water.factory import _params  # the DAG's params, built from the spec alone

    params = _params(spec)
    unknown = sorted(set(conf) - set(params))
    if unknown:
        allowed = ", ".join(sorted(params)) or "none"
        raise ControlMessageError(f"conf: {', '.join(unknown)} not among {spec.name}'s params (it takes: {allowed})")
    for key, value in conf.items():
        try:
            params[key].resolve(value)
        except ParamValidationError as exc:
            raise ControlMessageError(f"conf.{key}: {json.dumps(value)} is not valid for {spec.name} ({exc})") from None


def validate_control_message(
    body: Any, *, specs: Mapping[str, PipelineSpec] | None = None, today: date | None = None
) -> ControlMessage:
    """The control message in ``body`` (a decoded JSON object), checked against CONTROL_SCHEMA and the
    pipeline's spec; raises ControlMessageError saying why not. ``specs`` (name -> spec) defaults to
    include/pipelines/."""
    if not isinstance(body, dict):
        raise ControlMessageError(f"a control message is a JSON object, not {type(body).__name__}")
    problem = _schema_problem(body, events.CONTROL_SCHEMA)
    if problem:
        if "message_id" not in body:
            problem = "message_id is missing: every control message needs a unique one (redelivery is de-duplicated on it)"
        raise ControlMessageError(problem)
    spec = _load(body["pipeline"], specs)
    check_day(spec, body["ds"], today)
    conf = body.get("conf") or {}
    check_conf(spec, conf)
    return ControlMessage(pipeline=spec.name, ds=body["ds"], message_id=body["message_id"], conf=conf)


def listeners(specs: Mapping[str, PipelineSpec]) -> dict[str, list[str]]:
    """Completion event routing key -> the pipelines its spec's ``trigger.on`` starts."""
    keys: dict[str, list[str]] = {}
    for name, spec in sorted(specs.items()):
        for key in spec.trigger.on if spec.trigger else []:
            keys.setdefault(key, []).append(name)
    return keys


def trigger_edges(specs: Mapping[str, PipelineSpec]) -> dict[str, list[str]]:
    """Pipeline -> the pipelines its completion events start (whatever the outcome: a pipeline that
    fails every time loops as surely as one that succeeds)."""
    edges: dict[str, set[str]] = {}
    for key, names in listeners(specs).items():
        if match := events.ROUTING_KEY.match(key):
            edges.setdefault(match["pipeline"], set()).update(names)
    return {finished: sorted(started) for finished, started in sorted(edges.items())}


def _shortest_cycle(edges: Mapping[str, list[str]], start: str) -> list[str] | None:
    """The shortest path of trigger.on edges from ``start`` back to it, as [start, …, start], or None."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in edges.get(node, []):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    return None


def cycles_through(specs: Mapping[str, PipelineSpec]) -> dict[str, list[str]]:
    """Each pipeline in a trigger.on cycle -> the shortest such cycle through it, from it back to it."""
    edges = trigger_edges(specs)
    return {name: cycle for name in sorted(edges) if (cycle := _shortest_cycle(edges, name))}


def trigger_cycles(specs: Mapping[str, PipelineSpec]) -> list[list[str]]:
    """The cycles of the specs' trigger.on, e.g. ``[a, b, a]``: a's completion starts b, b's starts a,
    and so on forever. One per pipeline in a cycle (the shortest through it; two pipelines on the same
    cycle give it once), each written from its alphabetically first pipeline; sorted."""
    found = set()
    for cycle in cycles_through(specs).values():
        ring = cycle[:-1]
        first = ring.index(min(ring))
        ring = ring[first:] + ring[:first]
        found.add((*ring, ring[0]))
    return [list(cycle) for cycle in sorted(found)]


def cycle_reason(cycle: list[str], specs: Mapping[str, PipelineSpec]) -> str:
    """Why a pipeline on ``cycle`` is not started by a completion event, and which trigger.on to change."""
    fixes = []
    for finished, started in itertools.pairwise(cycle):
        trigger = specs[started].trigger
        fixes += [
            f"include/pipelines/{started}.yaml trigger.on {key}"
            for key in (trigger.on if trigger else [])
            if (match := events.ROUTING_KEY.match(key)) and match["pipeline"] == finished
        ]
    return (
        f"trigger.on cycle {' → '.join(cycle)}: each run's completion would start the next, forever, so "
        f"completion events start none of them; remove one of: {'; '.join(fixes)}"
    )


def completion_starts(
    body: Any,
    routing_key: str,
    specs: Mapping[str, PipelineSpec],
    today: date | None = None,
    cycles: Mapping[str, list[str]] | None = None,
) -> tuple[list[ControlMessage], list[tuple[str, str]]]:
    """What a completion event starts: (messages, [(pipeline, why not)]). A pipeline on a trigger.on
    cycle (``cycles``, default :func:`cycles_through` the specs) is not started. Raises
    ControlMessageError when the event itself is malformed."""
    problem = _schema_problem(body, events.COMPLETION_SCHEMA)
    if problem:
        raise ControlMessageError(f"completion event: {problem}")
    if body["event"] != routing_key:
        raise ControlMessageError(f"completion event says event {body['event']!r} but came with routing key {routing_key!r}")
    cycles = cycles_through(specs) if cycles is None else cycles
    started, refused = [], []
    for name in listeners(specs).get(routing_key, []):
        if name in cycles:
            refused.append((name, cycle_reason(cycles[name], specs)))
            continue
        try:
            check_day(specs[name], body["ds"], today)
        except ControlMessageError as exc:
            refused.append((name, str(exc)))
            continue
        started.append(ControlMessage(pipeline=name, ds=body["ds"], message_id=body["message_id"]))
    return started, refused


def load_specs() -> dict[str, PipelineSpec]:
    """Every spec that loads; one that does not is left out (its DAG shows the import error)."""
    specs = {}
    for name in pipeline_names():
        try:
            specs[name] = load_pipeline(name)
        except SpecError as exc:
            log.warning("Leaving pipeline %s out of control: %s", name, exc)
    return specs


# --- the broker's side: completion events reach the control queue ----------------------------


def bind_completion_events(
    conn_id: str = events.AMQP_CONN_ID,
    specs: Mapping[str, PipelineSpec] | None = None,
    queue: str = events.CONTROL_QUEUE,
    exchange: str = events.EVENTS_EXCHANGE,
    connection: Connection | None = None,
) -> list[str]:
    """Declare the events exchange (topic) and the control queue (both durable; as they are when they
    exist) and bind the queue to every routing key a spec's ``trigger.on`` names. Returns the keys.
    The broker: ``connection`` when given (`water up` passes the stack's), else the Airflow connection ``conn_id``.

    Idempotent: `water up` runs it, every control run runs it (task ``bind_events``), and a deployment
    may run ``python -m water.control bind`` once so the first completion event is not missed. A key
    no spec names any more stays bound (dispatch records its events as ignored) until unbound in the
    broker."""
    import asyncio

    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from water.broker import BrokerAddress, open_connection

    specs = load_specs() if specs is None else specs
    keys = sorted(listeners(specs))
    for cycle in trigger_cycles(specs):
        log.warning("%s", cycle_reason(cycle, specs))
    try:
        address = BrokerAddress.from_connection(connection or BaseHook.get_connection(conn_id))
    except AirflowNotFoundException:
        log.info("No Airflow connection %r: no broker to bind %s on", conn_id, ", ".join(keys) or "events")
        return []

    async def declare() -> None:
        import aio_pika

        connection = await open_connection(address, "water control: bindings")
        async with connection:
            channel = await connection.channel()
            topic = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            control_queue = await channel.declare_queue(queue, durable=True)
            for key in keys:
                await control_queue.bind(topic, routing_key=key)

    asyncio.run(declare())
    log.info("Queue %r on %s receives %s from exchange %r", queue, address.describe(), ", ".join(keys) or "no event", exchange)
    return keys


# --- dispatch -----------------------------------------------------------------------------


class ExistingRuns(Protocol):
    def __call__(self, dag_id: str, run_id: str, logical_date: datetime) -> str | None:
        """Why a run cannot be started (it exists, or the day has another run), or None."""


def airflow_runs(context: Context) -> ExistingRuns:
    """Looks runs up through the task's supervisor (the execution API), as a running task may."""
    ti = context["ti"]

    def existing(dag_id: str, run_id: str, logical_date: datetime) -> str | None:
        if ti.get_dr_count(dag_id=dag_id, run_ids=[run_id]):
            return "duplicate"
        if ti.get_dr_count(dag_id=dag_id, logical_dates=[logical_date]):
            return f"{dag_id} already has a run for logical date {logical_date.isoformat()}; clear that run to re-run the day"
        return None

    return existing


def messages_of(context: Context) -> list[dict[str, Any]]:
    """Every message of every triggering asset event, in order (the trigger's payload shape)."""
    found: list[dict[str, Any]] = []
    for asset_events in context.get("triggering_asset_events", {}).values():
        for event in asset_events:
            payload = (event.extra or {}).get("payload") or {}
            found.extend(m for m in payload.get("messages", []) if isinstance(m, dict))
    return found


@dataclass
class Dispatch:
    """What one control run decided, message by message."""

    starts: list[ControlMessage] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self, message: Mapping[str, Any], outcome: str, reason: str = "", started: ControlMessage | None = None) -> None:
        body = message.get("body") if isinstance(message.get("body"), dict) else {}
        assert isinstance(body, dict)
        self.records.append(
            {
                "message_id": body.get("message_id") or message.get("message_id"),
                "pipeline": started.pipeline if started else body.get("pipeline"),
                "ds": body.get("ds"),
                "outcome": outcome,
                "reason": reason,
                "run_id": started.run_id if started else None,
                "routing_key": message.get("routing_key"),
            }
        )

    def rejected(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["outcome"] == "rejected"]


def decide(
    messages: Iterable[Mapping[str, Any]],
    specs: Mapping[str, PipelineSpec],
    existing: ExistingRuns,
    today: date | None = None,
) -> Dispatch:
    """Each message's outcome, and the runs to start (each (pipeline, run id) once). A completion event
    does not start a pipeline on a trigger.on cycle (rejected, naming the cycle); a control message does."""
    result = Dispatch()
    seen: set[tuple[str, str]] = set()
    cycles = cycles_through(specs)

    def consider(message: Mapping[str, Any], wanted: ControlMessage) -> None:
        key = (wanted.pipeline, wanted.run_id)
        why = "duplicate" if key in seen else existing(wanted.pipeline, wanted.run_id, wanted.logical_date)
        seen.add(key)
        if why == "duplicate":
            log.info("Message %s: already started %s run %s; nothing to do", wanted.message_id, wanted.pipeline, wanted.run_id)
            result.record(message, "duplicate", f"run {wanted.run_id} of {wanted.pipeline} was started already", wanted)
        elif why:
            log.warning("Rejected message %s: %s", wanted.message_id, why)
            result.record(message, "rejected", why, wanted)
        else:
            log.info("Message %s: starting %s for ds=%s as run %s", wanted.message_id, wanted.pipeline, wanted.ds, wanted.run_id)
            result.starts.append(wanted)
            result.record(message, "started", "", wanted)

    for message in messages:
        body, routing_key = message.get("body"), str(message.get("routing_key") or "")
        try:
            if events.ROUTING_KEY.match(routing_key):
                wanted, refused = completion_starts(body, routing_key, specs, today, cycles)
                if not wanted and not refused:
                    log.info("Completion event %s: no pipeline listens to it", routing_key)
                    result.record(message, "ignored", f"no spec has trigger.on {routing_key}")
                for name, why in refused:
                    log.warning("Completion event %s does not start %s: %s", routing_key, name, why)
                    result.record(message, "rejected", f"{name}: {why}")
                for one in wanted:
                    consider(message, one)
            else:
                consider(message, validate_control_message(body, specs=specs, today=today))
        except ControlMessageError as exc:
            shown = (body or {}).get("message_id") if isinstance(body, dict) else None
            log.warning("Rejected message %s: %s", shown or message.get("message_id") or "without message_id", exc)
            result.record(message, "rejected", str(exc))
    return result


def _notify_rejected(context: Context, rejected: list[dict[str, Any]], specs: Mapping[str, PipelineSpec]) -> None:
    from water import notify

    by_conn: dict[str, list[dict[str, Any]]] = {}
    for record in rejected:
        spec = specs.get(str(record.get("pipeline")))
        conn_id = spec.notifications.slack_conn_id if spec else Notifications().slack_conn_id
        by_conn.setdefault(conn_id, []).append(record)
    for conn_id, records in by_conn.items():
        lines = [f"{r['message_id'] or '(no message_id)'}: {r['reason']}" for r in records]
        notice = notify.notice_for(context, "control_rejected", f"{DAG_ID} rejected {len(records)} message(s)", lines=lines[:20])
        notify.send(notice, conn_id)


def dispatch(context: Context, existing: ExistingRuns | None = None, today: date | None = None) -> list[dict[str, Any]]:
    """The dispatch task: decide every message of the run's events; the kwargs of the runs to start."""
    specs = load_specs()
    result = decide(messages_of(context), specs, existing or airflow_runs(context), today)
    context["ti"].xcom_push(key=MESSAGES_XCOM, value=result.records)
    if result.rejected():
        _notify_rejected(context, result.rejected(), specs)
    counts = {o: sum(r["outcome"] == o for r in result.records) for o in ("started", "duplicate", "rejected", "ignored")}
    log.info("%d message(s): %s", len(result.records), ", ".join(f"{n} {o}" for o, n in counts.items() if n) or "none")
    return [m.trigger_kwargs() for m in result.starts]


# --- the DAG --------------------------------------------------------------------------------


def control_asset(queue: str = events.CONTROL_QUEUE, amqp_conn_id: str = events.AMQP_CONN_ID) -> Any:
    """The asset the control DAG is scheduled on, watched on the control queue."""
    from airflow.sdk import Asset, AssetWatcher

    from water.triggers.amqp import AmqpMessageTrigger

    trigger = AmqpMessageTrigger(queue=queue, amqp_conn_id=amqp_conn_id)
    return Asset(ASSET_NAME, watchers=[AssetWatcher(name=f"{ASSET_NAME}_queue", trigger=trigger)])


DOC = f"""\
### water_control

Starts pipelines from messages on the AMQP queue `{events.CONTROL_QUEUE}` (connection
`{events.AMQP_CONN_ID}`), and pipelines whose spec (include/pipelines/) says
`trigger: {{on: pipeline.<name>.succeeded}}` when that pipeline finishes.

`dispatch` validates each message (unknown pipeline, bad ds, conf not among the DAG's params,
missing message_id: rejected, logged and sent to Slack) and de-duplicates on message_id;
`start` triggers one run per accepted message (run id `water_msg__<message_id>`);
`bind_events` binds the queue to the completion events the specs' `trigger.on` name.
See docs/events.md.
"""


def build_control_dag(queue: str = events.CONTROL_QUEUE, amqp_conn_id: str = events.AMQP_CONN_ID) -> DAG:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import DAG

    from water.targets import get_target

    with DAG(
        dag_id=DAG_ID,
        description="Start pipelines from control messages and completion events",
        schedule=[control_asset(queue, amqp_conn_id)],
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=sorted({"water", "control", f"target:{get_target().name}"}),
        default_args={"owner": OWNER, "retries": 2, "retry_delay": timedelta(seconds=30)},
        doc_md=DOC,
    ) as dag:
        decided = PythonOperator(task_id=DISPATCH_TASK, python_callable=_dispatch_task, execution_timeout=timedelta(minutes=5))
        # Keeps the queue bound to what the specs listen for (a spec changed since the last run).
        PythonOperator(
            task_id=BIND_TASK,
            python_callable=bind_completion_events,
            op_kwargs={"conn_id": amqp_conn_id},
            execution_timeout=timedelta(minutes=2),
        )
        TriggerDagRunOperator.partial(
            task_id=START_TASK,
            skip_when_already_exists=True,
            wait_for_completion=False,
            openlineage_inject_parent_info=False,
            execution_timeout=timedelta(minutes=2),
        ).expand_kwargs(decided.output)
    return dag


def _dispatch_task(**context: Any) -> list[dict[str, Any]]:
    return dispatch(context)  # type: ignore[arg-type]  # PythonOperator passes the context as kwargs


if __name__ == "__main__":  # python -m water.control bind
    import sys

    if sys.argv[1:] != ["bind"]:
        sys.exit("usage: python -m water.control bind   (binds the control queue to the specs' trigger.on events)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bind_completion_events()
