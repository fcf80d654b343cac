"""Run notifications: start, success, failure, drift and zero-row alerts, to Slack.

Messages go through the Slack provider's webhook hook on the connection id the spec names
(`notifications.slack_conn_id`). Where that connection is not configured (the local
default), they go to the task log and to an outbox file, `.water/outbox/slack.jsonl`, which
`water run` prints on the terminal as they arrive. A Slack outage never fails a run: a send
is tried a few times, briefly, then logged, written to the outbox as undelivered, and the
run goes on. The connection's secrets (the webhook URL's token) are masked in every log before
it is used, and taken out of what the outbox and the messages record (water.masking).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import quote

from water import masking, paths

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

ATTEMPTS = 3
BACKOFF_SECONDS = (0.5, 1.5)  # between attempts
TIMEOUT_SECONDS = 5

ICONS = {"start": "▶️", "success": "✅", "failure": "❌", "drift": "⚠️", "quarantine": "⛔", "no_predictions": "🕳️"}


@dataclass
class Notice:
    """One message about one run. `facts` are the labelled lines (rows, tier, drift, …)."""

    kind: str  # start | success | failure | drift | quarantine | no_predictions
    pipeline: str
    ds: str
    run_id: str
    title: str
    facts: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        head = f"{ICONS.get(self.kind, '')} {self.title}".strip()
        body = [f"{k}: {v}" for k, v in self.facts.items()] + self.lines
        body += [f"{name}: {url}" for name, url in self.links.items()]
        return "\n".join([head, *body])

    def payload(self) -> dict[str, Any]:
        """Slack webhook body: a plain-text fallback and Block Kit blocks."""
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": f"{ICONS.get(self.kind, '')} {self.title}"[:150]}},
        ]
        if self.facts:
            blocks.append(
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(self.facts.items())[:10]],
                }
            )
        if self.lines:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "```" + "\n".join(self.lines) + "```"}})
        if self.links:
            blocks.append(
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": " · ".join(f"<{u}|{n}>" for n, u in self.links.items())}],
                }
            )
        return {"text": self.text(), "blocks": blocks}


def ui_base_url() -> str:
    from airflow.sdk.configuration import conf

    base_url: str = conf.get("api", "base_url", fallback="http://localhost:8080/")  # conf: a module attribute, untyped
    return base_url.rstrip("/")


def run_url(dag_id: str, run_id: str) -> str:
    return f"{ui_base_url()}/dags/{dag_id}/runs/{quote(run_id)}"


def task_log_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = None, try_number: int | None = None) -> str:
    url = f"{run_url(dag_id, run_id)}/tasks/{task_id}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    return url + (f"?try_number={try_number}" if try_number else "")


def outbox_path() -> Path:
    return paths.state_dir() / "outbox" / "slack.jsonl"


def _protected_connection(conn_id: str) -> bool:
    """True if the connection is configured; its secrets are then masked in every log (see
    water.masking) before anything uses it."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    masking.protect(conn)
    return True


def _post(conn_id: str, payload: dict[str, Any]) -> None:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    # retry_handlers=[]: ATTEMPTS and BACKOFF_SECONDS are the whole retry policy. The Slack SDK's
    # default retries a connection error once more inside each attempt, after its own backoff.
    SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=TIMEOUT_SECONDS, retry_handlers=[]).send(**payload)


def send(notice: Notice, conn_id: str | None) -> str:
    """Deliver one notice; never raises. Returns how it went: slack | outbox | undelivered."""
    outcome, error = "outbox", None
    try:
        configured = _protected_connection(conn_id) if conn_id else False
    except Exception as exc:
        configured, error = False, masking.redact(f"connection lookup failed: {exc}")
    payload = masking.redact(notice.payload())  # a task's error text quoted in a message
    if configured and conn_id:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _post(conn_id, payload)
                outcome, error = "slack", None
                break
            except Exception as exc:
                outcome, error = "undelivered", masking.redact(f"{type(exc).__name__}: {exc}")
                log.warning("Slack (%s) attempt %d/%d failed: %s", conn_id, attempt, ATTEMPTS, error)
                if attempt < ATTEMPTS:
                    time.sleep(BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)])
    log.info("notification (%s via %s):\n%s", notice.kind, outcome, payload["text"])
    if outcome != "slack":
        _to_outbox(notice, payload, outcome, conn_id, error)
    return outcome


def _to_outbox(notice: Notice, payload: dict[str, Any], outcome: str, conn_id: str | None, error: str | None) -> None:
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": notice.kind,
        "pipeline": notice.pipeline,
        "ds": notice.ds,
        "run_id": notice.run_id,
        "delivery": outcome,
        "conn_id": conn_id,
        "error": error,
        "text": payload["text"],
        "payload": payload,
    }
    try:
        path = outbox_path()
        paths.private_dir(path.parent)
        with open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
    except OSError as exc:  # a read-only file system in a pod: the log line above is enough
        log.warning("could not write the notification outbox: %s", exc)


# --- notices built from a task's context --------------------------------------------------


def _run_facts(context: Context) -> tuple[str, str, str]:
    ti = context["ti"]
    return ti.dag_id, context["ds"], ti.run_id


class NoticeParts(TypedDict, total=False):
    """Notice's optional parts, as notice_for takes them."""

    facts: dict[str, str]
    lines: list[str]
    links: dict[str, str]


def notice_for(context: Context, kind: str, title: str, **extra: Unpack[NoticeParts]) -> Notice:
    dag_id, ds, run_id = _run_facts(context)
    notice = Notice(kind, dag_id, ds, run_id, title, **extra)
    notice.facts = {"pipeline": dag_id, "ds": ds, "run": run_id, **notice.facts}
    notice.links.setdefault("run in Airflow", run_url(dag_id, run_id))
    return notice


def on_run_start(conn_id: str | None) -> Callable[[Context], None]:
    """An on_execute_callback for every task; the run's first task (a root, first try) says
    'pipeline X started for ds'."""

    def callback(context: Context) -> None:
        task = context.get("task")
        if task is None or task.upstream_task_ids or context["ti"].try_number > 1:
            return  # only the run's first task; a retry of it is not a new start
        dag_id, ds, _ = _run_facts(context)
        conf = (context.get("dag_run") and getattr(context["dag_run"], "conf", None)) or {}
        facts = {"conf": json.dumps(conf, sort_keys=True)} if conf else {}
        send(notice_for(context, "start", f"{dag_id} started for ds={ds}", facts=facts), conn_id)

    callback.__name__ = "notify_run_start"
    return callback
