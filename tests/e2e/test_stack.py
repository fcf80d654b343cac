"""`water up` … `water down`: a real local Airflow (api-server, scheduler, dag-processor, triggerer)
on the PostgreSQL on localhost, used as a person would: the CLI, the REST API, the web UI.

One stack for the module (a temporary state folder, its own database and port, so a
developer's own `water up` is never touched). The demo runs on 2,000 users (about two minutes
here). The browser test drives the Debian chromium (`make setup` installs it as root; without
it the test skips, saying how to get it) with Playwright and saves a screenshot under test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.e2e.runs import RUN_LIMIT, TIME_SCALE, WATER, Deadline, Watched, load_factor, run, stop
from tests.machine import chromium

DEMO = "recipe_engagement"
DS = "2026-11-01"
USERS = 2_000
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
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
    database = f"{POSTGRES}/water_test_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "WATER_STATE_DIR": str(state),
        "WATER_STACK_DATABASE": database,
        "WATER_STACK_PORT": str(free_port()),
        "COLUMNS": "160",
    }
    seeded = water("seed", "--date", DS, "--users", str(USERS), env=env)
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
        from water.cli import stack as stack_module

        stack_module.drop_database(database)


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
    assert f"dags_folder = {ROOT / 'dags'}" in cfg


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
