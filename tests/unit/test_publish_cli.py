"""`water publish` checks a control message as the control DAG does (water.control) and sends nothing it
would refuse (exit 2, saying why); `water events` lists what the control runs recorded; `water up` turns
control messages off in one line when no broker answers. Against the real RabbitMQ:
tests/integration/test_completion_events.py."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from typer.testing import CliRunner

from water import amqp_publish, control, events
from water.cli import app, stack

PIPELINE = "recipe_engagement"  # its start_date is 2026-11-01; its force_tier takes small, medium, large
CONN_VARIABLE = f"AIRFLOW_CONN_{events.AMQP_CONN_ID.upper()}"


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, amqp_publish.Outgoing]]:
    """What `water publish` hands to the broker, with the broker URI it used (nothing leaves the process)."""
    monkeypatch.setenv(CONN_VARIABLE, "amqp://guest:guest@broker.invalid:5672/%2F")
    messages: list[tuple[str, amqp_publish.Outgoing]] = []
    monkeypatch.setattr(amqp_publish, "send", lambda conn, outgoing, timeout=None: messages.append((conn.host, outgoing)))
    return messages


def water(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


TOMORROW = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
REFUSED = {
    "an unknown pipeline": (
        ["nosuch", "--date", "2026-11-02"],
        "unknown pipeline 'nosuch'; known: customer_value, recipe_engagement",
    ),
    "not a date": ([PIPELINE, "--date", "2026-13-01"], "ds '2026-13-01' is not a date"),
    "a date written otherwise": ([PIPELINE, "--date", "2026-11-2"], "ds '2026-11-2' is not a date: write YYYY-MM-DD"),
    "before the start_date": (
        [PIPELINE, "--date", "2026-10-31"],
        "ds 2026-10-31 is before recipe_engagement's start_date 2026-11-01",
    ),
    "a day not over yet": ([PIPELINE, "--date", TOMORROW], f"ds {TOMORROW} is in the future"),
    "conf not JSON": ([PIPELINE, "--date", "2026-11-02", "--conf", "{force_tier: small}"], "--conf is not JSON"),
    "conf not an object": ([PIPELINE, "--date", "2026-11-02", "--conf", "[1]"], "--conf must be a JSON object"),
    "a tier the pipeline lacks": (
        [PIPELINE, "--date", "2026-11-02", "--conf", '{"force_tier": "huge"}'],
        "conf.force_tier: \"huge\" is not valid for recipe_engagement ('huge' is not one of ['small', 'medium', 'large']",
    ),
    "a parameter the DAG lacks": (
        [PIPELINE, "--date", "2026-11-02", "--conf", '{"users": 5}'],
        "conf: users not among recipe_engagement's params",
    ),
    "a message id with a space": ([PIPELINE, "--date", "2026-11-02", "--message-id", "a b"], "message_id: 'a b' does not match"),
    "an empty message id": ([PIPELINE, "--date", "2026-11-02", "--message-id", ""], "message_id: '' does not match"),
    "no date": ([PIPELINE], "Missing option '--date'"),
}


@pytest.mark.parametrize(("args", "said"), REFUSED.values(), ids=REFUSED.keys())
def test_a_message_the_control_dag_would_refuse_is_not_sent(sent, args, said):
    result = water("publish", *args)
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output  # rich wraps and boxes the message
    assert sent == []


def test_a_valid_message_goes_to_the_control_queue_as_the_schema_says(sent):
    result = water("publish", PIPELINE, "--date", "2026-11-02", "--conf", '{"force_tier": "large"}', "--message-id", "m-1")
    assert result.exit_code == 0, result.output
    [(host, message)] = sent
    assert host == "broker.invalid"  # the configured connection (no stack is up)
    assert (message.exchange, message.routing_key, message.message_id) == (None, events.CONTROL_QUEUE, "m-1")
    assert message.body == {"pipeline": PIPELINE, "ds": "2026-11-02", "conf": {"force_tier": "large"}, "message_id": "m-1"}
    assert list(Draft202012Validator(events.CONTROL_SCHEMA, format_checker=FormatChecker()).iter_errors(message.body)) == []
    assert "water_msg__m-1" in result.output


def test_each_message_gets_its_own_id_unless_one_is_given(sent):
    for _ in range(2):
        assert water("publish", PIPELINE, "--date", "2026-11-02").exit_code == 0
    first, second = (outgoing.body["message_id"] for _, outgoing in sent)
    assert first != second and len(first) == 32


class ControlAPI:
    """The REST calls `water events` makes, answered from two control runs' records (water.control's
    `messages` XCom) and the runs they started."""

    url = "http://stack"

    def __init__(self) -> None:
        self.runs = [  # newest first, as Airflow lists them
            {"dag_run_id": "asset_triggered__2", "state": "running", "run_after": "2026-11-03T07:00:05+00:00"},
            {"dag_run_id": "asset_triggered__1", "state": "success", "run_after": "2026-11-03T06:00:05+00:00"},
        ]
        ok = {"routing_key": events.CONTROL_QUEUE, "reason": ""}
        self.records = {
            "asset_triggered__1": [
                {
                    **ok,
                    "message_id": "a",
                    "pipeline": PIPELINE,
                    "ds": "2026-11-01",
                    "outcome": "started",
                    "run_id": "water_msg__a",
                },
                {
                    **ok,
                    "message_id": "b",
                    "pipeline": "nosuch",
                    "ds": "2026-11-01",
                    "outcome": "rejected",
                    "run_id": None,
                    "reason": "unknown pipeline 'nosuch'",
                },
            ],
            "asset_triggered__2": None,  # its dispatch has not run yet
        }
        self.started = {(PIPELINE, "water_msg__a"): "success"}

    def dag_runs(self, dag_id: str, limit: int = 5) -> list[dict]:
        assert dag_id == control.DAG_ID
        return self.runs[:limit]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        assert (dag_id, task_id, key) == (control.DAG_ID, control.DISPATCH_TASK, "messages")
        return self.records[run_id]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return {"dag_run_id": run_id, "state": self.started[(dag_id, run_id)]}


def test_water_events_lists_each_message_newest_first_with_what_it_started():
    rows = stack.control_messages(ControlAPI(), limit=10)
    assert [(r["control_run"], r["message_id"], r["outcome"], r["run_id"], r["run_state"]) for r in rows] == [
        ("asset_triggered__2", None, "pending", None, None),
        ("asset_triggered__1", "b", "rejected", None, None),
        ("asset_triggered__1", "a", "started", "water_msg__a", "success"),
    ]
    assert rows[1]["reason"] == "unknown pipeline 'nosuch'" and rows[2]["source"] == "control"
    assert len(stack.control_messages(ControlAPI(), limit=2)) == 2


def test_up_without_a_broker_says_control_messages_are_off_in_one_line(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it once closed
    monkeypatch.setenv(CONN_VARIABLE, f"amqp://guest:guest@127.0.0.1:{port}/%2F")
    env = {CONN_VARIABLE: "inherited"}
    said: list[str] = []
    assert stack._control_messages(env, said.append) is None
    assert CONN_VARIABLE not in env  # the stack's processes get no connection to a broker that is not there
    assert len(said) == 1 and said[0].startswith("control messages are off: no RabbitMQ answers")
    assert f"amqp://127.0.0.1:{port}/%2F" in said[0] and "guest:guest" not in said[0]
