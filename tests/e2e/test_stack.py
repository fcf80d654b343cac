"""`water up` … `water down`: a real local Airflow (api-server, scheduler, dag-processor, triggerer)
on the PostgreSQL on localhost, used as a person would: the CLI, the REST API, the web UI.

One stack for the module (a temporary state folder, its own database and port, its own control
queue and events exchange on the local RabbitMQ, so a developer's own `water up` is never
touched). It runs a copy of the project's dags/ and include/ in which customer_value listens
for the demo's completion (`trigger.on`). The demo runs on 2,000 users (about two minutes
here). The browser test drives the Debian chromium (`make setup` installs it as root; without
it the test skips, saying how to get it) with Playwright and saves a screenshot under test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ROOT
from tests.e2e.runs import RUN_LIMIT, TIME_SCALE, WATER, Deadline, Watched, edit, load_factor, run, stop
from tests.machine import chromium

DEMO = "recipe_engagement"
LISTENER = "customer_value"  # in the stack's copy of the project, started by the demo's success
DS = "2026-11-01"
PUBLISHED_DS = "2026-11-02"  # the day `water publish` starts (customer_value's fixtures cover it too)
USERS = 2_000
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BROKER = "amqp://guest:guest@127.0.0.1:5672/"
ARTIFACTS = ROOT / "test-artifacts"


def water(*args: str, env: dict[str, str], limit: float = 600) -> subprocess.CompletedProcess:
    return run([WATER, *args], cwd=ROOT, env=env, limit=limit)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text().split()[0]) for p in (state / "stack" / "pids").glob("*.pid")}


def live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and live(process.pid):
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


# Without a stack: every command that needs one says so and exits 1.


@pytest.mark.parametrize(
    "args",
    [
        ("trigger", DEMO),
        ("status",),
        ("backfill", DEMO, "--start", "2026-11-01", "--end", "2026-11-02"),
    ],
    ids=["trigger", "status", "backfill"],
)
def test_commands_need_the_stack_up(args, tmp_path):
    result = water(*args, env={**os.environ, "WATER_STATE_DIR": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the local Airflow stack is not up: start it with `water up`" in result.stderr


def test_down_when_nothing_runs_is_fine(tmp_path):
    result = water("down", env={**os.environ, "WATER_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout


def test_bad_conf_is_refused_before_any_request(tmp_path):
    result = water("trigger", DEMO, "--conf", "{force_tier: medium}", env={**os.environ, "WATER_STATE_DIR": str(tmp_path)})
    assert result.returncode == 2 and "--conf is not JSON" in result.stderr


# With a stack.


def on_broker(scenario: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """Run scenario(channel) on a connection of its own to the local RabbitMQ."""

    async def run() -> Any:
        import aio_pika

        connection = await aio_pika.connect(BROKER, timeout=5)
        async with connection:
            return await scenario(await connection.channel())

    return asyncio.run(run())


def _project_listening_to_the_demo(root: Path) -> Path:
    """A copy of dags/ and include/ whose customer_value runs when the demo succeeds, for that day (and
    has no schedule of its own: unpausing it starts nothing)."""
    for folder in ("dags", "include"):
        shutil.copytree(ROOT / folder, root / folder)
    edit(root, "include/pipelines/customer_value.yaml", 'schedule: "0 7 * * *"', "schedule: null")
    spec = root / "include/pipelines/customer_value.yaml"
    spec.write_text(spec.read_text() + f"\ntrigger:\n  on: [pipeline.{DEMO}.succeeded]\n")
    return root


def _postgres_or_fail() -> None:
    import psycopg2

    try:
        psycopg2.connect(f"{POSTGRES}/postgres", connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres ({str(exc).strip()}). "
            "The stack tests need it: start it (`.ci/run` does: pg_ctlcluster … main start)."
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _postgres_or_fail()
    state = tmp_path_factory.mktemp("stack-state")
    project = _project_listening_to_the_demo(tmp_path_factory.mktemp("stack-project"))
    unique = uuid.uuid4().hex[:8]
    database = f"{POSTGRES}/water_test_{unique}"
    names = {"queue": f"water-test-control-{unique}", "exchange": f"water-test-events-{unique}"}
    env = {
        **os.environ,
        "WATER_PROJECT_ROOT": str(project),
        "WATER_STATE_DIR": str(state),
        "WATER_STACK_DATABASE": database,
        "WATER_STACK_PORT": str(free_port()),
        # Its own names on the shared RabbitMQ: no other stack consumes its messages, nor it theirs.
        "WATER_CONTROL_QUEUE": names["queue"],
        "WATER_EVENTS_EXCHANGE": names["exchange"],
        "COLUMNS": "160",
    }
    # The days of the trigger test and of the published run, one seeding.
    seeded = water("seed", "--date", PUBLISHED_DS, "--days", "2", "--users", str(USERS), env=env)
    assert seeded.returncode == 0, seeded.stderr
    started = time.monotonic()
    up = water("up", env=env)
    up_seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, f"water up failed:\n{up.stdout}\n{up.stderr}\n" + _logs(state)
        login = re.search(r"Airflow UI: (\S+)\s+login: (\S+) / (\S+)", up.stdout)
        assert login, up.stdout
        print(f"water up took {up_seconds:.0f}s")
        yield {
            "env": env,
            "state": state,
            "project": project,
            "names": names,
            "database": database,
            "url": login[1],
            "user": login[2],
            "password": login[3],
            "up": up,
        }
    finally:
        pids = stack_pids(state)
        water("down", env=env)
        for pid in pids.values():  # never leave a stack behind, even when `water down` is broken
            if group_members(pid):
                os.killpg(pid, signal.SIGKILL)
        _delete_from_broker(names)
        from water.cli import stack as stack_module

        stack_module.drop_database(database)


def _delete_from_broker(names: dict[str, str]) -> None:
    """The stack's control queue, the tests' queues and the events exchange (RabbitMQ may be down: then none was made)."""

    async def delete(channel: Any) -> None:
        for key, name in names.items():
            if key != "exchange":
                await channel.queue_delete(name)
        await channel.exchange_delete(names["exchange"])

    try:
        on_broker(delete)
    except Exception as exc:  # no RabbitMQ: the stack made nothing there
        print(f"left on the broker ({type(exc).__name__}: {exc}): {', '.join(names.values())}")


def _logs(state: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((state / "stack" / "logs").glob("*.log")))


@pytest.fixture(scope="module")
def api(stack):
    from water.cli.airflow_api import AirflowAPI

    return AirflowAPI(stack["url"], stack["user"], stack["password"])


@pytest.mark.e2e
def test_up_runs_four_processes_on_postgres_and_prints_the_login(stack):
    assert stack["url"] == f"http://127.0.0.1:{stack['env']['WATER_STACK_PORT']}"
    assert stack["user"] == "admin"
    assert stack["database"].rsplit("/", 1)[1] in stack["up"].stdout  # the database it uses
    pids = stack_pids(stack["state"])
    assert sorted(pids) == ["api-server", "dag-processor", "scheduler", "triggerer"]
    assert all(live(pid) for pid in pids.values())
    cfg = (stack["state"] / "stack" / "airflow.cfg").read_text()
    assert "sql_alchemy_conn = postgresql+psycopg2://" in cfg
    assert f"dags_folder = {stack['project'] / 'dags'}" in cfg


@pytest.mark.e2e
def test_up_twice_is_one_stack(stack):
    before = stack_pids(stack["state"])
    again = water("up", env=stack["env"])
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    assert stack["password"] in again.stdout
    assert stack_pids(stack["state"]) == before


@pytest.mark.e2e
def test_up_restarts_only_a_process_that_died(stack):
    before = stack_pids(stack["state"])
    os.killpg(before["triggerer"], signal.SIGKILL)
    while group_members(before["triggerer"]):
        time.sleep(0.2)
    again = water("up", env=stack["env"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started triggerer" in again.stdout and "started scheduler" not in again.stdout
    after = stack_pids(stack["state"])
    assert after["triggerer"] != before["triggerer"] and live(after["triggerer"])
    assert {c: p for c, p in after.items() if c != "triggerer"} == {c: p for c, p in before.items() if c != "triggerer"}
    assert stack["url"] in again.stdout


@pytest.mark.e2e
def test_trigger_form_offers_the_params_and_refuses_a_bad_value(stack, api):
    from water.spec import load_pipeline

    spec = load_pipeline(DEMO)
    name, sized = spec.step_of("sized_postprocess")
    routes = sized.all_routes(spec.classes, name)
    params = api.get(f"dags/{DEMO}/details")["params"]
    force = params["force_tier"]
    # a tier for every route, or {route or class: one of that route's tiers}
    one_for_all, per_route = force["schema"]["anyOf"][1], force["schema"]["anyOf"][2]
    assert one_for_all["enum"] == [
        t.name
        for t in next(iter(routes.values())).sizing.tiers
        if all(t.name in [u.name for u in r.sizing.tiers] for r in routes.values())
    ]
    assert set(per_route["properties"]) == set(routes) | set(spec.classes)
    assert force["schema"]["title"] and "sizing decision" in force["description"]
    assert params["accept_drift"]["schema"]["type"] == "boolean" and params["accept_drift"]["description"]

    from water.cli.airflow_api import ApiError

    with pytest.raises(ApiError) as refused:  # what the UI's form posts
        api.post(f"dags/{DEMO}/dagRuns", {"logical_date": "2026-11-02T00:00:00Z", "conf": {"force_tier": "huge"}})
    assert refused.value.status == 400 and "force_tier" in refused.value.detail

    cli = water("trigger", DEMO, "--date", "2026-11-02", "--conf", '{"force_tier": "huge"}', env=stack["env"])
    assert cli.returncode == 2
    assert "HTTP 400" in cli.stderr and "force_tier" in cli.stderr
    cli = water("trigger", DEMO, "--date", "2026-11-02", "--conf", '{"force_tier": {"cook": "huge"}}', env=stack["env"])
    assert cli.returncode == 2 and "HTTP 400" in cli.stderr  # a route's tier that route does not have
    assert api.dag_runs(DEMO) == []  # nothing was created
    assert api.dag(DEMO)["is_paused"]  # and a refused trigger does not unpause the DAG


@pytest.mark.e2e
@pytest.mark.spark
def test_trigger_runs_the_demo_and_the_schedule_starts(stack, api):
    started = time.monotonic()
    # --wait as long as it takes (water trigger's default, an hour): the limit here stops a hung run
    trigger = subprocess.Popen(
        [WATER, "trigger", DEMO, "--date", DS, "--wait"],
        cwd=ROOT,
        env=stack["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output = Watched(trigger)
    try:
        # Triggering unpauses the DAG (as the UI's form does), so its schedule (daily, no catchup)
        # creates the latest scheduled run at once. That day has no data: stop it, the point is made.
        scheduled = None
        deadline = Deadline(90)
        while scheduled is None and not deadline.expired() and trigger.poll() is None:
            scheduled = next((r for r in api.dag_runs(DEMO) if r["run_type"] == "scheduled"), None)
            time.sleep(2)
        if scheduled is not None:
            api.patch(f"dags/{DEMO}/dagRuns/{scheduled['dag_run_id']}", {"state": "failed"})
        assert output.wait(limit=RUN_LIMIT) is not None, f"the run did not end:\n{output.out}\n" + _logs(stack["state"])
    finally:
        if trigger.poll() is None:
            stop(trigger)
    out, errors = output.out, output.err
    seconds = time.monotonic() - started
    assert trigger.returncode == 0, f"{out}\n{errors}\n" + _logs(stack["state"])
    print(f"demo run through the scheduler ({USERS:,} users): {seconds:.0f}s")
    assert scheduled is not None, "unpausing the DAG created no scheduled run"
    assert f"unpaused {DEMO}" in out and "0 6 * * *" in out
    assert f"{DEMO} ds={DS}: success" in out
    from water.spec import load_pipeline

    spec = load_pipeline(DEMO)
    name, sized = spec.step_of("sized_postprocess")
    firsts = [
        sized.tier_task_id(name, r, route.sizing.tiers[0].name) for r, route in sized.all_routes(spec.classes, name).items()
    ]
    for task in ("extract", "train", "size_postprocess", *firsts, "commit_outputs", "publish"):
        assert re.search(rf"^\s+{task}\s+success$", out, re.M), f"{task} did not succeed:\n{out}"
    assert not api.dag(DEMO)["is_paused"]


@pytest.mark.e2e
@pytest.mark.spark  # the demo run of test_trigger_runs_the_demo_and_the_schedule_starts
def test_status_shows_state_tier_and_drift(stack):
    result = water("status", DEMO, "--json", env=stack["env"])
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    manual = [r for r in rows if r["run_type"] == "manual"]
    assert len(manual) == 1
    assert manual[0]["ds"] == DS and manual[0]["state"] == "success"
    from water.spec import load_pipeline

    spec = load_pipeline(DEMO)
    name, sized = spec.step_of("sized_postprocess")
    routes = sized.all_routes(spec.classes, name)
    # size_postprocess's decision for 2,000 rows: every route on its first tier
    assert manual[0]["tier"] == " · ".join(f"{r} {route.sizing.tiers[0].name}" for r, route in routes.items())
    assert manual[0]["drift"] in ("ok", "warn", "no_baseline")  # drift_guard's verdict
    assert manual[0]["seconds"] > 10
    assert any(r["run_type"] == "scheduled" for r in rows)

    table = water("status", env=stack["env"])  # every water pipeline, as a table
    assert table.returncode == 0, table.stderr
    assert DEMO in table.stdout and DS in table.stdout and "success" in table.stdout and "small" in table.stdout


def _control_on_or_fail(stack) -> None:
    if "control messages are off" in stack["up"].stdout:
        pytest.fail(
            "RabbitMQ does not answer on 127.0.0.1:5672, so `water up` turned control messages off: start it "
            "(`rabbitmq-server -detached` or `service rabbitmq-server start`; CI's .ci/run does)\n" + stack["up"].stdout
        )


@pytest.mark.e2e
@pytest.mark.rabbitmq
def test_up_turns_control_messages_on(stack, api):
    _control_on_or_fail(stack)
    queue, exchange = stack["names"]["queue"], stack["names"]["exchange"]
    said = " ".join(stack["up"].stdout.split())  # rich wraps long lines
    assert (
        f"control messages: water_control unpaused, the triggerer consumes queue {queue} "
        f"(bound to pipeline.{DEMO}.succeeded on exchange {exchange})"
    ) in said
    assert not api.dag("water_control")["is_paused"]
    [asset] = [a for a in api.get("assets", name_pattern="water_control")["assets"] if a["name"] == "water_control"]
    assert asset["watchers"], "the control queue's trigger is not registered"


def _run_when_made(api, dag_id: str, run_id: str, limit: float) -> dict:
    """The run, once the control DAG's start task has made it."""
    from water.cli.airflow_api import ApiError

    deadline = Deadline(limit)
    while True:
        try:
            return api.dag_run(dag_id, run_id)
        except ApiError as exc:
            if exc.status != 404 or deadline.expired():
                raise AssertionError(f"no run {run_id} of {dag_id} after {deadline}") from exc
        time.sleep(2)


def _finished(api, dag_id: str, run_id: str, limit: float) -> dict:
    run = _run_when_made(api, dag_id, run_id, limit)
    deadline = Deadline(limit)
    while run["state"] not in ("success", "failed"):
        assert not deadline.expired(), f"{dag_id} {run_id} is still {run['state']} after {deadline}"
        time.sleep(3)
        run = api.dag_run(dag_id, run_id)
    return run


def _reported(api, dag_id: str, run_id: str, limit: float) -> dict:
    """What the run's report task returned, once it has."""
    deadline = Deadline(limit)
    while (reported := api.xcom(dag_id, run_id, "run_report")) is None:
        assert not deadline.expired(), f"{dag_id} {run_id} has no report after {deadline}"
        time.sleep(2)
    return reported


def _completion_message(queue: str, limit: float) -> Any:
    """The first message on the test's queue (bound to the events exchange), within the limit."""
    deadline = Deadline(limit)

    async def take(channel: Any) -> Any:
        bound = await channel.get_queue(queue)
        while not deadline.expired():
            message = await bound.get(no_ack=True, fail=False)
            if message is not None:
                return message
            await asyncio.sleep(1)
        return None

    message = on_broker(take)
    assert message is not None, f"no completion event on {queue} after {deadline}"
    return message


@pytest.mark.e2e
@pytest.mark.spark
@pytest.mark.rabbitmq  # after test_trigger_runs_the_demo_and_the_schedule_starts: the demo is unpaused, DS ran
def test_publish_runs_the_day_and_its_completion_starts_the_listening_pipeline(stack, api):
    """`water publish` → water_control starts the demo's run → its completion event on the exchange →
    customer_value (trigger.on) for the same day; `water events` shows both messages and their runs."""
    from datetime import datetime

    from jsonschema import Draft202012Validator, FormatChecker

    from water import control, events

    _control_on_or_fail(stack)
    names = stack["names"]
    names["completions"] = f"{names['queue']}-completions"  # deleted with the stack's

    async def listen(channel: Any) -> None:  # as another team's consumer would
        exchange = await channel.get_exchange(names["exchange"])
        queue = await channel.declare_queue(names["completions"])
        await queue.bind(exchange, routing_key=f"pipeline.{DEMO}.succeeded")

    on_broker(listen)
    started = time.monotonic()
    sent = water("publish", DEMO, "--date", PUBLISHED_DS, env=stack["env"])
    assert sent.returncode == 0, sent.stdout + sent.stderr
    said = " ".join(sent.stdout.split())
    message_id = re.search(r"\(message (\w+)\)", said)[1]
    run_id = control.run_id_for(message_id)
    assert f"to queue {names['queue']}" in said and f"as run {run_id}" in said

    # The trigger test's run of DS succeeded too, and its event started customer_value for DS: the point is
    # made, delete that run before customer_value is unpaused (marked failed, it would still run its
    # teardown, the report), so the day published here runs alone.
    [ds_run] = [r for r in api.dag_runs(DEMO, limit=20) if r["run_type"] == "manual" and (r["logical_date"] or "")[:10] == DS]
    for_ds = _run_when_made(api, LISTENER, control.run_id_for(f"{DEMO}.{ds_run['dag_run_id']}.succeeded"), 180)
    assert for_ds["logical_date"][:10] == DS and for_ds["state"] == "queued"  # customer_value is paused
    # The schedule's run, marked failed there before it did anything, ran only its report (a
    # teardown): Airflow calls that run a success, its report says failed, and its completion
    # event is `failed`, which customer_value does not listen for.
    [scheduled] = [r for r in api.dag_runs(DEMO, limit=20) if r["run_type"] == "scheduled"]
    assert _reported(api, DEMO, scheduled["dag_run_id"], 180)["state"] == "failed"
    assert [r["dag_run_id"] for r in api.dag_runs(LISTENER, limit=20)] == [for_ds["dag_run_id"]]
    api.request("DELETE", f"dags/{LISTENER}/dagRuns/{for_ds['dag_run_id']}")
    api.unpause(LISTENER)  # as its toggle in the UI does; with no schedule, that starts nothing

    published = _finished(api, DEMO, run_id, RUN_LIMIT)
    assert published["state"] == "success", _logs(stack["state"])
    assert published["logical_date"][:10] == PUBLISHED_DS and published["run_type"] == "operator_triggered"

    message = _completion_message(names["completions"], 120)
    body = json.loads(message.body)
    schema = Draft202012Validator(events.COMPLETION_SCHEMA, format_checker=FormatChecker())
    assert list(schema.iter_errors(body)) == []
    assert message.routing_key == f"pipeline.{DEMO}.succeeded" == body["event"]
    assert (body["pipeline"], body["ds"], body["run_id"], body["outcome"]) == (DEMO, PUBLISHED_DS, run_id, "succeeded")
    assert body["rows"] > 0 and body["tiers"] and message.message_id == body["message_id"]

    follower = _finished(api, LISTENER, control.run_id_for(body["message_id"]), RUN_LIMIT)
    assert follower["state"] == "success", _logs(stack["state"])
    assert follower["logical_date"][:10] == PUBLISHED_DS
    assert datetime.fromisoformat(follower["start_date"]) >= datetime.fromisoformat(published["end_date"])
    print(
        f"water publish → {DEMO} → completion event → {LISTENER}: {time.monotonic() - started:.0f}s "
        f"({DEMO}'s run {published['duration']:.0f}s, {LISTENER}'s {follower['duration']:.0f}s)"
    )

    shown = water("events", "--json", env=stack["env"])
    assert shown.returncode == 0, shown.stderr
    rows = {r["message_id"]: r for r in json.loads(shown.stdout)}
    assert {k: rows[message_id][k] for k in ("source", "pipeline", "ds", "outcome", "run_id", "run_state")} == {
        "source": "control",
        "pipeline": DEMO,
        "ds": PUBLISHED_DS,
        "outcome": "started",
        "run_id": run_id,
        "run_state": "success",
    }
    assert {k: rows[body["message_id"]][k] for k in ("source", "pipeline", "ds", "outcome", "run_id", "run_state")} == {
        "source": f"pipeline.{DEMO}.succeeded",
        "pipeline": LISTENER,
        "ds": PUBLISHED_DS,
        "outcome": "started",
        "run_id": follower["dag_run_id"],
        "run_state": "success",
    }
    table = water("events", env=stack["env"])
    assert table.returncode == 0, table.stderr
    assert LISTENER in table.stdout and PUBLISHED_DS in table.stdout and "started" in table.stdout


@pytest.mark.e2e
def test_backfill_creates_the_days_runs(stack, api):
    dry = water("backfill", DEMO, "--start", "2026-11-03", "--end", "2026-11-05", "--dry-run", env=stack["env"])
    assert dry.returncode == 0, dry.stderr
    assert "would create 3 run(s)" in dry.stdout and "2026-11-03, 2026-11-04, 2026-11-05" in dry.stdout

    api.patch(f"dags/{DEMO}", {"is_paused": True})  # so the backfill's run waits: no need to compute it
    made = water("backfill", DEMO, "--start", "2026-11-03", "--end", "2026-11-03", "--no-unpause", env=stack["env"])
    assert made.returncode == 0, made.stderr
    backfill_id = int(re.search(r"backfill (\d+) of", made.stdout)[1])
    runs = [r for r in api.dag_runs(DEMO, limit=20) if r["run_type"] == "backfill"]
    assert [r["logical_date"][:10] for r in runs] == ["2026-11-03"]
    assert runs[0]["state"] == "queued"
    api.request("PUT", f"backfills/{backfill_id}/cancel")

    bad = water("backfill", DEMO, "--start", "2026-11-05", "--end", "2026-11-03", env=stack["env"])
    assert bad.returncode == 2 and "HTTP" in bad.stderr


@pytest.mark.e2e
def test_web_ui_logs_in_and_triggers_the_demo(stack, api):
    browser_path = chromium()
    from playwright.sync_api import sync_playwright

    before = {r["dag_run_id"] for r in api.dag_runs(DEMO, limit=50)}
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "web-ui-dag-page.png"
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=browser_path,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1400, "height": 900},
        )
        browser.set_default_timeout(30_000 * TIME_SCALE * load_factor())  # Playwright's 30 s, for this machine
        try:
            page = browser.new_page()
            page.goto(stack["url"])
            page.get_by_label("Username").fill(stack["user"])
            page.get_by_label("Password").fill(stack["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)

            page.goto(f"{stack['url']}/dags/{DEMO}")
            page.get_by_role("button", name="Trigger").first.click()
            form = page.get_by_role("dialog")
            form.get_by_text("Force post-processing tier").wait_for()
            assert form.get_by_text("Accept drift").is_visible()
            form.get_by_role("button", name="Trigger").click()
            page.get_by_text("Dag Run Triggered").first.wait_for()  # the toast
            page.get_by_text("drift_guard").first.wait_for()  # the DAG's grid, task by task
            page.locator("tbody").get_by_text("extract").first.wait_for()  # the new run's task list
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    print(f"web UI screenshot: {screenshot}")

    new = [r for r in api.dag_runs(DEMO, limit=50) if r["dag_run_id"] not in before]
    assert len(new) == 1 and new[0]["run_type"] == "manual"
    assert new[0]["triggering_user_name"] == stack["user"]
    stack["ui_run"] = new[0]["dag_run_id"]  # left running: `water down` must stop its tasks


def _trigger_as_the_form_does(api) -> str:
    """A run as the UI's trigger form makes it (logical date now, the DAG unpaused): its id."""
    from datetime import UTC, datetime

    api.unpause(DEMO)
    return api.trigger(DEMO, datetime.now(UTC).isoformat())["dag_run_id"]


@pytest.mark.e2e
def test_down_stops_every_process(stack, api):
    pids = stack_pids(stack["state"])
    assert len(pids) == 4
    run_id = stack.get("ui_run") or _trigger_as_the_form_does(api)  # the browser test skipped
    # A task of the UI's run is running now, in a session of its own under the scheduler.
    task_pid = None
    deadline = Deadline(90)
    while task_pid is None and not deadline.expired():
        tis = api.get(f"dags/{DEMO}/dagRuns/{run_id}/taskInstances")["task_instances"]
        task_pid = next((ti["pid"] for ti in tis if ti["state"] == "running" and ti["pid"] and live(ti["pid"])), None)
        time.sleep(1)
    assert task_pid is not None, f"no task of the UI's run started within {deadline}"
    trees = {c: [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))] for c, pid in pids.items()}
    assert task_pid in trees["scheduler"]

    started = time.monotonic()
    result = water("down", env=stack["env"])
    print(f"water down took {time.monotonic() - started:.0f}s:\n{result.stdout}")
    assert result.returncode == 0, result.stderr
    for component, tree in trees.items():
        assert f"stopped {component}" in result.stdout
        assert [pid for pid in tree if live(pid)] == [], f"{component}'s processes still run"
    assert not live(task_pid)
    assert stack_pids(stack["state"]) == {}  # no pid files left
    after = water("status", env=stack["env"])
    assert after.returncode == 1 and "water up" in after.stderr
    again = water("down", env=stack["env"])
    assert again.returncode == 0 and "not running" in again.stdout
