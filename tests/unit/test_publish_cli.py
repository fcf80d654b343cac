"""`water publish` checks a control message as the control DAG does (water.control) and sends nothing it
would refuse (exit 2, saying why); `water events` lists what the control runs recorded; `water up` turns
control messages off in one line when no broker answers. Against the real RabbitMQ:
tests/integration/test_completion_events.py."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

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


# `water up` with a broker: once the stack is healthy, water_control is unpaused and the control queue bound.


class StackAPI:
    """The REST calls `water up` makes for water_control: the DAG is parsed after `parsed_after` reads
    (404 before), and its asset is watched once the DAG is unpaused and its file parsed again."""

    def __init__(self, parsed_after: int = 0, paused: bool = True, watched: bool = False) -> None:
        self.reads, self.parsed_after, self.paused, self.watched = 0, parsed_after, paused, watched
        self.calls: list[tuple[str, str]] = []

    def dag(self, dag_id: str) -> dict:
        from water.cli.airflow_api import ApiError

        assert dag_id == control.DAG_ID
        self.reads += 1
        if self.reads <= self.parsed_after:
            raise ApiError(404, f"The Dag with ID: `{dag_id}` was not found", "GET", f"/api/v2/dags/{dag_id}")
        return {"dag_id": dag_id, "is_paused": self.paused, "file_token": "token-of-water_control.py"}

    def unpause(self, dag_id: str) -> None:
        self.calls.append(("unpause", dag_id))
        self.paused = False

    def request(self, method: str, path: str, **kwargs) -> None:
        self.calls.append((method, path))
        if path == "parseDagFile/token-of-water_control.py" and not self.paused:
            self.watched = True

    def get(self, path: str, **params) -> dict:
        assert path == "assets" and params["name_pattern"] == control.ASSET_NAME
        watchers = [{"name": f"{control.ASSET_NAME}_queue", "trigger_id": 1}] if self.watched else []
        return {"assets": [{"name": control.ASSET_NAME, "watchers": watchers}]}


STACK_BROKER = "amqp://stack-user:s3cret-pw@broker.invalid:5673/%2F"


@pytest.fixture
def binds(monkeypatch) -> list[dict]:
    """What `water up` asks water.control to bind, and on which broker (nothing reaches one)."""
    monkeypatch.delenv(CONN_VARIABLE, raising=False)  # the broker must come from the stack's URI alone
    monkeypatch.setattr(stack.time, "sleep", lambda seconds: None)
    asked: list[dict] = []

    def bind(conn_id: str, connection=None, **kwargs) -> list[str]:
        asked.append({"conn_id": conn_id, "connection": connection, **kwargs})
        return ["pipeline.recipe_engagement.succeeded"]

    monkeypatch.setattr(control, "bind_completion_events", bind)
    return asked


def test_up_binds_the_queue_on_the_stacks_broker_and_unpauses_water_control_once_parsed(binds):
    api = StackAPI(parsed_after=3)
    said: list[str] = []
    stack.start_control(api, STACK_BROKER, said.append)
    [bound] = binds
    conn = bound["connection"]
    assert (conn.host, conn.port, conn.login, bound["conn_id"]) == ("broker.invalid", 5673, "stack-user", events.AMQP_CONN_ID)
    assert api.reads == 4  # waited for the dag-processor
    assert api.calls == [("unpause", control.DAG_ID), ("PUT", "parseDagFile/token-of-water_control.py")]
    assert said == [
        f"control messages: {control.DAG_ID} unpaused, the triggerer consumes queue {events.CONTROL_QUEUE} "
        f"(bound to pipeline.recipe_engagement.succeeded on exchange {events.EVENTS_EXCHANGE})"
    ]


def test_up_leaves_water_control_as_it_is_when_it_already_runs(binds):
    api = StackAPI(paused=False, watched=True)
    said: list[str] = []
    stack.start_control(api, STACK_BROKER, said.append)
    assert api.calls == [] and len(binds) == 1
    assert len(said) == 1 and said[0].startswith(f"control messages: {control.DAG_ID} unpaused")


def test_up_says_so_when_water_control_is_never_parsed_and_waits_no_longer_than_its_limit(binds):
    api = StackAPI(parsed_after=10**6)
    said: list[str] = []
    stack.start_control(api, STACK_BROKER, said.append, timeout=0)
    assert api.calls == [] and len(binds) == 1  # bound: messages wait in the queue
    assert said == [
        f"control messages: queue {events.CONTROL_QUEUE} bound to pipeline.recipe_engagement.succeeded on exchange "
        f"{events.EVENTS_EXCHANGE}; {control.DAG_ID}: not parsed after 0s (see `water validate`); messages wait in the queue"
    ]


def test_up_unpauses_nothing_when_the_queue_cannot_be_bound_and_shows_no_password(monkeypatch):
    def refused(conn_id: str, connection=None, **kwargs) -> list[str]:
        raise ConnectionError(f"ACCESS_REFUSED for {STACK_BROKER}")

    monkeypatch.setattr(control, "bind_completion_events", refused)
    api = StackAPI()
    said: list[str] = []
    stack.start_control(api, STACK_BROKER, said.append)
    assert api.calls == [] and api.reads == 0
    assert len(said) == 1 and said[0].startswith(f"control messages: could not bind queue {events.CONTROL_QUEUE}")
    assert "ACCESS_REFUSED" in said[0] and "s3cret-pw" not in said[0]


@pytest.fixture
def started(monkeypatch, tmp_path) -> list:
    """`water up` with its processes, the migration and the health check faked: what it did, in order
    (the environment each process got, then healthy, then control)."""
    import os

    from water.cli import local_airflow

    monkeypatch.setattr(os, "environ", dict(os.environ))  # up() points this process at the stack's Airflow
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path))
    monkeypatch.setenv(CONN_VARIABLE, STACK_BROKER)
    monkeypatch.setenv("WATER_CONTROL_QUEUE", "my-control-queue")
    done: list = []
    monkeypatch.setattr(stack, "choose_database", lambda configured: f"sqlite:///{tmp_path / 'airflow.db'}")
    monkeypatch.setattr(local_airflow.AirflowHome, "migrate", lambda self, log=print: False)
    monkeypatch.setattr(stack, "_port_free_or_fail", lambda port: None)
    monkeypatch.setattr(stack, "_start", lambda component, env: done.append(env) or 4242)
    monkeypatch.setattr(stack, "_wait_healthy", lambda info, log: done.append("healthy"))
    monkeypatch.setattr(stack, "start_control", lambda api, amqp, log: done.append(("control", api.url, amqp)))
    return done


def test_up_turns_control_on_after_the_stack_is_healthy_with_the_broker_it_gave_the_stack(started, monkeypatch):
    monkeypatch.setattr(stack, "broker_problem", lambda uri: None)  # it answers
    stack.up(port=18080, log=lambda text: None)
    processes, after = started[:4], started[4:]
    assert after == ["healthy", ("control", "http://127.0.0.1:18080", STACK_BROKER)]
    for env in processes:  # the triggerer and the tasks use the same broker and names as `water up`
        assert env[CONN_VARIABLE] == STACK_BROKER and env["WATER_CONTROL_QUEUE"] == "my-control-queue"


def test_up_without_a_broker_neither_binds_nor_unpauses(started, monkeypatch):
    monkeypatch.setattr(stack, "broker_problem", lambda uri: "amqp://broker.invalid:5673/%2F: ConnectionRefusedError")
    said: list[str] = []
    stack.up(port=18080, log=said.append)
    assert started[4:] == ["healthy"]
    assert [line for line in said if line.startswith("control messages")] == [
        "control messages are off: no RabbitMQ answers (amqp://broker.invalid:5673/%2F: ConnectionRefusedError); "
        "start it, then `water down && water up`"
    ]


class PausedDag:
    """The two REST calls `water publish` makes on a local stack: is the DAG paused, unpause it."""

    def __init__(self) -> None:
        self.paused = True

    def dag(self, dag_id: str) -> dict:
        return {"dag_id": dag_id, "is_paused": self.paused, "timetable_summary": "0 6 * * *"}

    def unpause(self, dag_id: str) -> None:
        self.paused = False


@pytest.mark.parametrize("flag", [[], ["--no-unpause"]], ids=["default", "no-unpause"])
def test_on_the_local_stack_a_paused_pipeline_is_unpaused_as_trigger_does(sent, monkeypatch, flag):
    api = PausedDag()
    info = SimpleNamespace(api=lambda: api)
    monkeypatch.setattr(stack, "read_info", lambda: info)
    result = water("publish", PIPELINE, "--date", "2026-11-02", *flag)
    assert result.exit_code == 0, result.output
    assert len(sent) == 1  # sent first: the unpause never decides whether the message goes
    said = " ".join(result.output.split())
    if flag:
        assert api.paused and f"{PIPELINE} is paused: its runs wait queued until it is unpaused" in said
    else:
        assert not api.paused and f"unpaused {PIPELINE} (as the UI's forms do)" in said
