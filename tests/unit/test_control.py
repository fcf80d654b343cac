"""The control DAG's dispatch (water.control) on asset events built as the AMQP trigger builds them
and as Airflow hands them to a task: validation, de-duplication, completion events, what starts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from water import control, events
from water.control import ControlMessageError, validate_control_message
from water.spec import Trigger

TODAY = date(2026, 11, 20)
DS = "2026-11-05"


@pytest.fixture(autouse=True)
def quiet_slack(monkeypatch):
    """Notices land in a list instead of Slack or the outbox."""
    from water import notify

    sent: list = []
    monkeypatch.setattr(notify, "send", lambda notice, conn_id: sent.append((notice, conn_id)) or "outbox")
    return sent


@pytest.fixture(scope="module")
def specs():
    return control.load_specs()


def delivered(body, *, routing_key: str = events.CONTROL_QUEUE, message_id: str | None = None, redelivered: bool = False):
    """A message as aio-pika delivers it (what the trigger's payload reads)."""
    return SimpleNamespace(
        body=json.dumps(body).encode(),
        message_id=message_id,
        routing_key=routing_key,
        exchange="" if routing_key == events.CONTROL_QUEUE else events.EVENTS_EXCHANGE,
        redelivered=redelivered,
        timestamp=None,
    )


def asset_events(*batches):
    """The run's triggering asset events: one per batch of delivered messages, stored as the
    triggerer stores a trigger event (extra = {"from_trigger": True, "payload": ...})."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    from water.triggers.amqp import _decode, _payload, _Received

    stored = []
    for batch in batches:
        received = [_Received(m, _decode(m.body)[0]) for m in batch]
        payload = json.loads(json.dumps(_payload(events.CONTROL_QUEUE, received)))  # through the database's JSON
        stored.append(
            AssetEventDagRunReferenceResult(
                asset={"name": control.ASSET_NAME, "uri": control.ASSET_NAME, "extra": {}},
                extra={"from_trigger": True, "payload": payload},
                source_task_id=None,
                source_dag_id=None,
                source_run_id=None,
                source_map_index=None,
                source_aliases=[],
                timestamp=datetime(2026, 11, 20, 6, tzinfo=UTC),
            )
        )
    return TriggeringAssetEventsAccessor.build(stored)


class Runs:
    """The runs Airflow has (dag_id, run_id, logical date), as the execution API would count them."""

    def __init__(self, *runs: tuple[str, str, datetime]) -> None:
        self.runs = list(runs)

    def __call__(self, dag_id, run_id, logical_date):
        if any(d == dag_id and r == run_id for d, r, _ in self.runs):
            return "duplicate"
        if any(d == dag_id and ld == logical_date for d, _, ld in self.runs):
            return f"{dag_id} already has a run for logical date {logical_date.isoformat()}"
        return None

    def started(self, kwargs_list):
        """What the mapped TriggerDagRunOperator does with dispatch's result."""
        for kwargs in kwargs_list:
            self.runs.append((kwargs["trigger_dag_id"], kwargs["trigger_run_id"], datetime.fromisoformat(kwargs["logical_date"])))


def run_dispatch(task_context, runs, *batches):
    context = task_context("2026-11-20")
    context["triggering_asset_events"] = asset_events(*batches)
    context["ti"].task_id = control.DISPATCH_TASK
    started = control.dispatch(context, existing=runs, today=TODAY)
    runs.started(started)
    return started, context["ti"].pushed["messages"]


def body(pipeline="recipe_engagement", ds=DS, message_id="m-1", **extra):
    return {"pipeline": pipeline, "ds": ds, "message_id": message_id, **extra}


def test_a_valid_message_starts_its_pipeline_for_its_day(task_context):
    started, records = run_dispatch(task_context, Runs(), [delivered(body(conf={"accept_drift": True}))])
    assert started == [
        {
            "trigger_dag_id": "recipe_engagement",
            "trigger_run_id": "water_msg__m-1",
            "logical_date": "2026-11-05T00:00:00+00:00",
            "conf": {"accept_drift": True},
        }
    ]
    assert [(r["outcome"], r["run_id"]) for r in records] == [("started", "water_msg__m-1")]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (body(pipeline="no_such_pipeline"), "unknown pipeline 'no_such_pipeline'; known: customer_value, recipe_engagement"),
        (body(ds="2026-13-01"), "ds '2026-13-01' is not a date"),
        (body(ds="05/11/2026"), "is not a date: write YYYY-MM-DD"),
        (body(ds="2026-10-01"), "before recipe_engagement's start_date 2026-11-01"),
        (body(ds="2026-11-21"), "in the future"),
        (body(conf={"force_tier": "gigantic"}), 'conf.force_tier: "gigantic" is not valid for recipe_engagement'),
        (body(conf={"accept_drift": "yes please"}), "conf.accept_drift"),
        (body(conf={"force_teir": "small"}), "conf: force_teir not among recipe_engagement's params"),
        (body(pipeline="customer_value", conf={"accept_drift": True}), "conf: accept_drift not among customer_value's params"),
        ({"pipeline": "recipe_engagement", "ds": DS}, "message_id is missing"),
        (body(message_id=""), "message_id"),
        (body(message_id="has spaces/and slashes"), "message_id"),
        (body(colour="blue"), "Additional properties are not allowed ('colour' was unexpected)"),
    ],
)
def test_a_bad_message_is_rejected_with_its_reason_and_a_notice(task_context, quiet_slack, message, reason):
    started, records = run_dispatch(task_context, Runs(), [delivered(message)])
    assert started == []
    (record,) = records
    assert record["outcome"] == "rejected" and reason in record["reason"], record
    (notice, conn_id) = quiet_slack[0]
    assert conn_id == "slack_water" and reason in notice.text() and notice.kind == "control_rejected"


def test_a_bad_message_does_not_hold_back_the_good_ones_in_the_same_run(task_context):
    started, records = run_dispatch(
        task_context,
        Runs(),
        [delivered(body(message_id="a")), delivered(body(pipeline="nope", message_id="b"))],
        [
            delivered(body(pipeline="customer_value", ds="2026-11-06", message_id="c")),
            delivered(body(ds="2026-11-07", message_id="d")),
        ],
    )
    assert [(k["trigger_dag_id"], k["logical_date"][:10], k["trigger_run_id"]) for k in started] == [
        ("recipe_engagement", DS, "water_msg__a"),
        ("customer_value", "2026-11-06", "water_msg__c"),
        ("recipe_engagement", "2026-11-07", "water_msg__d"),
    ]
    assert [r["outcome"] for r in records] == ["started", "rejected", "started", "started"]


def test_a_message_id_twice_in_one_run_starts_one_run(task_context):
    again = delivered(body(), redelivered=True)
    started, records = run_dispatch(task_context, Runs(), [delivered(body())], [again])
    assert [k["trigger_run_id"] for k in started] == ["water_msg__m-1"]
    assert [r["outcome"] for r in records] == ["started", "duplicate"]


def test_a_redelivered_message_in_a_later_run_starts_nothing(task_context):
    runs = Runs()
    first, _ = run_dispatch(task_context, runs, [delivered(body())])
    second, records = run_dispatch(task_context, runs, [delivered(body(), redelivered=True)])
    assert len(first) == 1 and second == []
    assert records[0]["outcome"] == "duplicate" and "water_msg__m-1" in records[0]["reason"]


def test_another_message_for_a_day_that_has_a_run_is_rejected(task_context):
    runs = Runs(("recipe_engagement", "manual__2026-11-05", datetime(2026, 11, 5, tzinfo=UTC)))
    started, records = run_dispatch(task_context, runs, [delivered(body(message_id="other"))])
    assert started == [] and records[0]["outcome"] == "rejected" and "already has a run" in records[0]["reason"]


def completion(pipeline="recipe_engagement", outcome="succeeded", ds=DS):
    run_id = f"scheduled__{ds}T06:00:00+00:00"
    key = events.routing_key(pipeline, outcome)
    payload = {
        "event": key,
        "pipeline": pipeline,
        "ds": ds,
        "run_id": run_id,
        "outcome": outcome,
        "rows": 1200,
        "tiers": {"postprocess": "small"},
        "message_id": f"{pipeline}.{run_id}.{outcome}",
    }
    return delivered(payload, routing_key=key, message_id=payload["message_id"])


def test_a_completion_event_starts_the_pipelines_that_listen_to_it(task_context, specs, monkeypatch):
    listening = specs["customer_value"].model_copy(update={"trigger": Trigger(on="pipeline.recipe_engagement.succeeded")})
    monkeypatch.setattr(control, "load_specs", lambda: {**specs, "customer_value": listening})
    runs = Runs()
    started, records = run_dispatch(task_context, runs, [completion(), completion(outcome="failed")])
    (kwargs,) = started
    assert kwargs["trigger_dag_id"] == "customer_value" and kwargs["logical_date"] == "2026-11-05T00:00:00+00:00"
    # the run id is the event's message_id, made fit for Airflow (its "+" is kept, it is allowed)
    assert kwargs["trigger_run_id"] == "water_msg__recipe_engagement.scheduled__2026-11-05T06:00:00+00:00.succeeded"
    assert kwargs["conf"] == {}
    assert [(r["outcome"], r["pipeline"]) for r in records] == [("started", "customer_value"), ("ignored", "recipe_engagement")]
    again, records = run_dispatch(task_context, runs, [completion()])
    assert again == [] and records[0]["outcome"] == "duplicate"


def test_a_malformed_completion_event_is_rejected(task_context, quiet_slack):
    bad = completion()
    payload = json.loads(bad.body)
    del payload["ds"]
    bad.body = json.dumps(payload).encode()
    started, records = run_dispatch(task_context, Runs(), [bad])
    assert started == [] and records[0]["outcome"] == "rejected" and "'ds' is a required property" in records[0]["reason"]


def test_the_run_id_keeps_only_airflow_run_id_characters_and_stays_unique():
    assert control.run_id_for("m-1") == "water_msg__m-1"
    one, other = control.run_id_for("a b"), control.run_id_for("a/b")
    assert one != other and one.startswith("water_msg__a_b_") and " " not in one
    assert len(control.run_id_for("x" * 240)) < 250


def test_the_cli_and_dispatch_share_one_validation():
    message = validate_control_message(body(conf={"force_tier": "small"}), today=TODAY)
    assert message.body() == body(conf={"force_tier": "small"})
    with pytest.raises(ControlMessageError, match="unknown pipeline"):
        validate_control_message(body(pipeline="nope"), today=TODAY)
    with pytest.raises(ControlMessageError, match="JSON object"):
        validate_control_message(["not", "an", "object"])
