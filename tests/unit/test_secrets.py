"""A connection's secret never reaches a log or a record water writes.

The canary: a Slack webhook whose URL holds a token, served by a local endpoint that drops the
first connection without an answer (water tries again; the Slack SDK logs each request with its
URL at DEBUG) and answers 500 after, quoting the URL back in its error body. The
send runs in a process set up like `water run`'s: Airflow imported (its logging configured),
standard output and error going to a log file, at DEBUG. The canary must appear nowhere: not
in that log, the outbox, the result, nor the Slack message text.

Also: task logs of the local Airflow homes and the stack's secret files are private (0600 in 0700).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.listeners import FlakyWebhook

CANARY = "c4n4ry7oken5ecretXYZ"


# Run in a fresh process: Airflow's masker and logging are per process, as in `water run`.
SEND = """
import json, sys
from water import notify

notify.BACKOFF_SECONDS = (0.01, 0.01)
notice = notify.Notice(
    "failure", "canary", "2026-11-01", "manual__2026-11-01", "canary ds=2026-11-01 FAILED at publish",
    lines=["error: could not reach " + sys.argv[1]],  # a task's error text quoting the URL
)
print("RESULT " + json.dumps(notify.send(notice, "slack_canary")), flush=True)
"""


def connection(form: str, port: int) -> dict:
    base = f"http://127.0.0.1:{port}/services"
    if form == "url in password":
        return {"conn_type": "slackwebhook", "password": f"{base}/T0000/B0000/{CANARY}"}
    return {"conn_type": "slackwebhook", "host": base, "password": f"T0000/B0000/{CANARY}"}  # host + token


@pytest.mark.parametrize("form", ["url in password", "host and token"])
def test_a_webhook_token_reaches_no_log_outbox_result_or_message(tmp_path, form):
    log_path = tmp_path / "run.log"
    with FlakyWebhook() as slack:
        url = f"http://127.0.0.1:{slack.port}/services/T0000/B0000/{CANARY}"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "plugins"),
            "WATER_STATE_DIR": str(tmp_path / "state"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
            "AIRFLOW_CONN_SLACK_CANARY": json.dumps(connection(form, slack.port)),
        }
        with log_path.open("w") as log:  # the run log: the process's stdout and stderr
            subprocess.run(
                [sys.executable, "-c", SEND, url], env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300, check=False
            )
    log_text = log_path.read_text()
    outbox = tmp_path / "state" / "outbox" / "slack.jsonl"

    # The canary was really used and really logged about, masked.
    assert len(slack.requests) == 3, log_text[-3000:]  # dropped, then water's two more tries (the SDK's own retry is off)
    assert all(CANARY in r["path"] for r in slack.requests)
    assert log_text.count("Sending a request - url:") == 3  # the Slack SDK logs each request, its URL included
    result = next(line for line in log_text.splitlines() if line.startswith("RESULT "))
    assert json.loads(result.removeprefix("RESULT ")) == "undelivered"
    records = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert records[0]["delivery"] == "undelivered" and "500" in records[0]["error"]

    # …and is nowhere else.
    assert CANARY not in log_text, [line for line in log_text.splitlines() if CANARY in line]
    assert "Sending a request - url: ***" in log_text or f"url: http://127.0.0.1:{slack.port}/services/***" in log_text
    assert CANARY not in outbox.read_text()
    assert not any(CANARY in r["body"] for r in slack.requests)  # the message text
    assert outbox.stat().st_mode & 0o777 == 0o600
    assert outbox.parent.stat().st_mode & 0o777 == 0o700


# As a task process of the stack, or `water run`, starts: water's listener (plugins/water_lineage.py)
# runs first, then the provider's, which builds the transport and sends the task's START event.
EMIT = """
import airflow
from datetime import UTC, datetime
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.uuid import generate_new_uuid
from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
from water.lineage_listener import task_lineage_scope

task_lineage_scope.on_task_instance_running(previous_state=None, task_instance=None)
client = OpenLineageAdapter().get_or_create_openlineage_client()
event = RunEvent(eventType=RunState.START, eventTime=datetime.now(UTC).isoformat(),
                 run=Run(runId=str(generate_new_uuid())), job=Job(namespace="water", name="canary.extract"))
try:
    client.emit(event)
except Exception as exc:
    import logging
    logging.getLogger("canary").error("lineage not sent: %s", exc)
print("EMITTED", flush=True)
"""


def test_a_lineage_transport_key_reaches_no_log(tmp_path):
    """The cluster's transport (the Secret water-lineage) with its API key, a gateway header and
    a token in its URL; the receiver drops the first request and answers 500 after, so urllib3
    retries and logs, and the transport logs its config at DEBUG."""
    log_path = tmp_path / "task.log"
    with FlakyWebhook() as receiver:
        transport = {
            "type": "http",
            "url": f"http://127.0.0.1:{receiver.port}/gw/{CANARY}1/",
            "endpoint": "api/v1/lineage",
            "auth": {"type": "api_key", "apiKey": f"{CANARY}2"},
            "custom_headers": {"X-Gateway-Key": f"{CANARY}3"},
            "retry": {"total": 2, "backoff_factor": 0.01, "status_forcelist": [500]},
        }
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "plugins"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "water",
        }
        with log_path.open("w") as log:
            subprocess.run([sys.executable, "-c", EMIT], env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300, check=False)
    log_text = log_path.read_text()
    assert "EMITTED" in log_text, log_text[-3000:]
    assert receiver.requests and all(f"{CANARY}1" in r["path"] for r in receiver.requests), log_text[-3000:]
    assert "Retrying" in log_text and "X-Gateway-Key" in log_text  # urllib3's retries and the config were logged…
    assert CANARY not in log_text, [line for line in log_text.splitlines() if CANARY in line]  # …masked


def test_secret_parts_of_a_lineage_transport():
    from water.masking import transport_secret_parts

    wrapped = {
        "type": "transform",
        "transformer_class": "water.lineage.Example",
        "transport": {
            "type": "http",
            "url": "https://lineage.example/gw/k3yT0ken99/",
            "endpoint": "api/v1/lineage",
            "auth": {"type": "api_key", "apiKey": "s3cret-key"},
            "custom_headers": {"X-Gateway": "h3ader-secret"},
        },
    }
    parts = set(transport_secret_parts(wrapped))
    assert {"s3cret-key", "h3ader-secret", "k3yT0ken99"} <= parts
    assert not {"api_key", "http", "transform", "api/v1/lineage", "water.lineage.Example"} & parts  # nothing public
    kafka = {"type": "composite", "transports": [{"type": "kafka", "config": {"sasl.password": "pw-123456"}}]}
    assert transport_secret_parts(kafka) == ["pw-123456"]


def test_secret_parts_of_a_connection():
    from airflow.sdk import Connection

    from water.masking import secret_parts

    conn = Connection(
        conn_id="x",
        conn_type="slackwebhook",
        host="https://hooks.slack.com/services/T0123ABCD/B0123ABCD",
        password="xoxb-0123456789",
        extra=json.dumps({"proxy": "http://user:pr0xy-pass@proxy:3128", "timeout": 5}),
    )
    parts = secret_parts(conn)
    assert {"xoxb-0123456789", "T0123ABCD", "B0123ABCD", "T0123ABCD/B0123ABCD", "pr0xy-pass"} <= set(parts)
    assert not {"services", "hooks.slack.com", "https://hooks.slack.com/services"} & set(parts)  # nothing public


def test_task_logs_of_the_local_airflow_homes_are_private(state_dir):
    """The task log files Airflow makes under `water run`'s home (the stack's shares the base
    settings): 0600 files, 0700 folders, the log root 0700."""
    from airflow.sdk.log import init_log_file

    from water.cli import local_airflow

    local_airflow.write_config()
    log_file = init_log_file("dag_id=x/run_id=manual__1/task_id=t/attempt=1.log")
    assert log_file.stat().st_mode & 0o777 == 0o600
    assert log_file.parent.stat().st_mode & 0o777 == 0o700
    assert (state_dir / "airflow" / "logs").stat().st_mode & 0o777 == 0o700
    assert (state_dir / "airflow").stat().st_mode & 0o777 == 0o700
    assert (state_dir / "airflow" / "airflow.cfg").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def stack_state(tmp_path, monkeypatch):
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path))
    (tmp_path / "stack").mkdir(mode=0o755)
    return tmp_path / "stack"


def readable_by_others(path: Path) -> Path:
    path.write_text(path.read_text() if path.exists() else "{}")
    path.chmod(0o644)
    return path


def test_stack_json_written_over_a_readable_one_is_private(stack_state):
    from water.cli import stack

    readable_by_others(stack_state / "stack.json")
    info = stack.StackInfo(url="http://127.0.0.1:8080", user="admin", password="pw-0123456789", database="sqlite://")
    stack._save_info(info, 8080, "sqlite:///x.db", None)
    assert (stack_state / "stack.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((stack_state / "stack.json").read_text())["password"] == "pw-0123456789"


def test_secret_files_left_readable_by_an_older_water_are_made_private(stack_state):
    from water.cli import stack

    (stack_state / "passwords.json").write_text(json.dumps({"admin": "pw-0123456789"}))
    (stack_state / "secrets.json").write_text(json.dumps({"jwt_secret": "j", "secret_key": "s", "fernet_key": "f"}))
    for name in ("passwords.json", "secrets.json"):
        readable_by_others(stack_state / name)
    assert stack._password() == "pw-0123456789"
    assert stack._secrets()["jwt_secret"] == "j"
    for name in ("passwords.json", "secrets.json"):
        assert (stack_state / name).stat().st_mode & 0o777 == 0o600, name


def test_a_component_log_is_private_even_if_it_was_not(stack_state):
    from water.cli import stack

    log = readable_by_others(stack_state / "scheduler.log")
    with stack._private_log(log) as handle:
        handle.write(b"line\n")
    assert log.stat().st_mode & 0o777 == 0o600
    assert log.read_text() == "{}line\n"
