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


# --- trigger.on cycles -----------------------------------------------------------------------


def listening(tmp_path, specs, **listens_to):
    """Pipelines (copies of recipe_engagement) named by the keywords, each started by the success of
    the pipelines its keyword lists: ``b=["a"]`` is ``trigger: {on: [pipeline.a.succeeded]}`` in b.yaml."""
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    for name in listens_to:
        (tmp_path / "pipelines" / f"{name}.yaml").touch()  # what Trigger checks: the named pipeline exists
    made = {}
    for name, sources in listens_to.items():
        on = [events.routing_key(source, "succeeded") for source in sources]
        trigger = Trigger.model_validate({"on": on}, context={"include_dir": tmp_path}) if on else None
        made[name] = specs["recipe_engagement"].model_copy(update={"name": name, "trigger": trigger})
    return made


def test_a_two_cycle_is_rejected_naming_the_cycle_and_the_fields_to_fix(task_context, specs, monkeypatch, quiet_slack, caplog):
    """recipe_engagement on customer_value.succeeded and customer_value on recipe_engagement.succeeded."""
    looped = {
        "recipe_engagement": specs["recipe_engagement"].model_copy(
            update={"trigger": Trigger(on="pipeline.customer_value.succeeded")}
        ),
        "customer_value": specs["customer_value"].model_copy(
            update={"trigger": Trigger(on="pipeline.recipe_engagement.succeeded")}
        ),
    }
    assert control.trigger_cycles(looped) == [["customer_value", "recipe_engagement", "customer_value"]]
    monkeypatch.setattr(control, "load_specs", lambda: looped)
    direct = delivered(body(pipeline="customer_value", ds="2026-11-06", message_id="ops-1"))
    with caplog.at_level("WARNING", logger="water.control"):
        started, records = run_dispatch(task_context, Runs(), [completion("recipe_engagement"), direct])

    assert [(r["outcome"], r["message_id"]) for r in records] == [
        ("rejected", "recipe_engagement.scheduled__2026-11-05T06:00:00+00:00.succeeded"),
        ("started", "ops-1"),
    ]
    reason = records[0]["reason"]
    assert reason.startswith("customer_value: trigger.on cycle customer_value → recipe_engagement → customer_value"), reason
    assert "include/pipelines/recipe_engagement.yaml trigger.on pipeline.customer_value.succeeded" in reason
    assert "include/pipelines/customer_value.yaml trigger.on pipeline.recipe_engagement.succeeded" in reason
    # a control message (water publish) for a pipeline on the cycle still starts it
    assert [(k["trigger_dag_id"], k["trigger_run_id"]) for k in started] == [("customer_value", "water_msg__ops-1")]
    assert any("does not start customer_value" in line and "trigger.on cycle" in line for line in caplog.messages), (
        caplog.messages
    )
    (notice, _) = quiet_slack[0]
    assert "trigger.on cycle customer_value → recipe_engagement → customer_value" in notice.text()


def test_a_three_cycle_is_rejected_and_a_listener_off_the_cycle_still_starts(tmp_path, specs):
    # a -> b -> c -> a, and d listens to a without being on the cycle
    on_a_cycle = listening(tmp_path, specs, a=["c"], b=["a"], c=["b"], d=["a"])
    assert control.trigger_cycles(on_a_cycle) == [["a", "b", "c", "a"]]
    for pipeline in ("a", "b", "c"):
        result = control.decide([decoded(completion(pipeline))], on_a_cycle, Runs(), TODAY)
        assert [m.pipeline for m in result.starts] == (["d"] if pipeline == "a" else []), pipeline
        rejected = result.rejected()
        assert len(rejected) == 1 and "trigger.on cycle" in rejected[0]["reason"], result.records
    (rejected,) = control.decide([decoded(completion("c"))], on_a_cycle, Runs(), TODAY).rejected()
    assert rejected["reason"].startswith("a: trigger.on cycle a → b → c → a"), rejected
    for fix in (
        "b.yaml trigger.on pipeline.a.succeeded",
        "c.yaml trigger.on pipeline.b.succeeded",
        "a.yaml trigger.on pipeline.c.succeeded",
    ):
        assert f"include/pipelines/{fix}" in rejected["reason"]


def test_an_acyclic_chain_starts_each_next_pipeline(tmp_path, specs):
    chain = listening(tmp_path, specs, a=[], b=["a"], c=["b"])
    assert control.trigger_cycles(chain) == []
    result = control.decide([decoded(completion("a")), decoded(completion("b"))], chain, Runs(), TODAY)
    assert [(m.pipeline, m.ds) for m in result.starts] == [("b", DS), ("c", DS)]
    assert [r["outcome"] for r in result.records] == ["started", "started"]


def test_every_cycle_is_found_once(tmp_path, specs):
    # a <-> b and b <-> c share b; e -> e cannot be written (a spec error) but is a cycle all the same
    graph = listening(tmp_path, specs, a=["b"], b=["a", "c"], c=["b"], d=["c"])
    assert control.trigger_cycles(graph) == [["a", "b", "a"], ["b", "c", "b"]]
    self_loop = graph["d"].model_copy(update={"name": "e", "trigger": Trigger.model_construct(on=["pipeline.e.failed"])})
    assert control.trigger_cycles({**graph, "e": self_loop}) == [["a", "b", "a"], ["b", "c", "b"], ["e", "e"]]


def decoded(message):
    """A delivered message as the trigger's payload holds it (the body decoded)."""
    return {"body": json.loads(message.body), "message_id": message.message_id, "routing_key": message.routing_key}
