"""`water up` / `water down`: a local Airflow stack with the web UI, driven by a real scheduler.

Four Airflow processes — api-server (UI + REST API), scheduler (LocalExecutor), dag-processor
and triggerer — run detached from the shell, each in its own process group, with a pid file
and a log under .water/stack/. The metadata database is PostgreSQL when one is configured
(`--database` / WATER_STACK_DATABASE) or answers on localhost:5432 (database `water`, created
when missing), SQLite in .water/stack/ otherwise. Login is Airflow's SimpleAuthManager with
one admin user whose password is generated once into .water/stack/passwords.json.

This home (.water/stack) is separate from `water run`'s (.water/airflow); both are written by
water.cli.local_airflow from the same base settings. Tasks see WATER_PROJECT_ROOT and
WATER_STATE_DIR, so they read and write the same lake as `water run`.

When RabbitMQ answers, the stack gets the connection amqp_default and, once healthy, the control
queue is bound to the completion events the specs listen for and water_control is unpaused, so
the triggerer consumes the queue (water.control); otherwise control messages are off.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from water import events, paths
from water.cli import local_airflow

if TYPE_CHECKING:
    import psutil
    from rich.console import Console

    from water.cli.airflow_api import AirflowAPI

# Each component's command line. Every process shares this machine's disk, so the API server
# reads task logs from the files: no log-serving side processes (nor their ports) are needed.
COMMANDS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
COMPONENTS = tuple(COMMANDS)
HEALTH_KEYS = {"metadatabase": "database", "scheduler": "scheduler", "dag_processor": "dag-processor", "triggerer": "triggerer"}
USER = "admin"
DEFAULT_PORT = 8080
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/water"
START_TIMEOUT = 180  # seconds for the API server and every component to report healthy
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"  # the local RabbitMQ's default user
AMQP_PROBE_TIMEOUT = 3.0
STOP_TIMEOUT = 20  # seconds between SIGTERM (running tasks get it too) and SIGKILL
CONTROL_TIMEOUT = 120  # seconds for water_control to be parsed and its queue watched


class StackError(RuntimeError):
    """The stack cannot start, or is not there; the message says what to do."""


@dataclass
class StackInfo:
    """What `water up` leaves for the other commands: where the stack answers and how to log in."""

    url: str
    user: str
    password: str
    database: str  # shown without a password

    def api(self) -> AirflowAPI:
        from water.cli.airflow_api import AirflowAPI

        return AirflowAPI(self.url, self.user, self.password)


def stack_dir() -> Path:
    return paths.state_dir() / "stack"


def logs_dir() -> Path:
    return stack_dir() / "logs"


def _pid_file(component: str) -> Path:
    return stack_dir() / "pids" / f"{component}.pid"


def _info_file() -> Path:
    return stack_dir() / "stack.json"


# The metadata database.


def local_postgres_reachable(url: str = LOCAL_POSTGRES) -> bool:
    import psycopg2

    try:
        psycopg2.connect(_server_dsn(url), connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def choose_database(configured: str | None) -> str:
    """The SQLAlchemy URL of the metadata database: configured, local PostgreSQL, or SQLite."""
    if configured:
        return configured
    if local_postgres_reachable():
        return LOCAL_POSTGRES
    return f"sqlite:///{stack_dir() / 'airflow.db'}"


def _server_dsn(url: str) -> str:
    """The same server's maintenance database `postgres`, as a libpq URL."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in url when it is missing; True if created."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    if not url.startswith("postgresql"):
        return False
    name = make_url(url).database
    if not name:
        raise StackError(f"{_shown_url(url)} names no database")
    try:
        connection = psycopg2.connect(_server_dsn(url), connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise StackError(f"PostgreSQL at {_shown_url(url)} does not answer: {str(exc).strip()}") from None
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        connection.close()


def drop_database(url: str) -> None:
    """Drop the stack's PostgreSQL database (tests clean up with this; the stack must be down)."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    if not name:
        raise StackError(f"{_shown_url(url)} names no database")
    connection = psycopg2.connect(_server_dsn(url), connect_timeout=5)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        connection.close()


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    shown: str = make_url(url).render_as_string(hide_password=True)
    return shown


def _sqlalchemy_url(url: str) -> str:
    """Airflow's spelling: the psycopg2 driver for sync connections (asyncpg is derived for async)."""
    return "postgresql+psycopg2" + url[len("postgresql") :] if url.startswith("postgresql://") else url


# Secrets, generated once and kept (mode 600) so restarts keep logins and task tokens valid.


def _secrets() -> dict[str, str]:
    path = stack_dir() / "secrets.json"
    if path.exists():
        return _read_private(path)
    from cryptography.fernet import Fernet

    values = {
        "jwt_secret": secrets.token_urlsafe(32),
        "secret_key": secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
    }
    paths.write_atomic(path, json.dumps(values), private=True)
    return values


def _password() -> str:
    """The admin's password, from Airflow's passwords file (written once)."""
    path = passwords_file()
    if path.exists():
        password: str = _read_private(path)[USER]
        return password
    password = secrets.token_urlsafe(12)
    paths.write_atomic(path, json.dumps({USER: password}), private=True)
    return password


def passwords_file() -> Path:
    return stack_dir() / "passwords.json"


def _read_private(path: Path) -> dict[str, Any]:
    """A JSON file of secrets, made 0600 first if an older water left it readable by others."""
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    values: dict[str, Any] = json.loads(path.read_text())
    return values


def _save_info(info: StackInfo, port: int, database: str, amqp: str | None) -> None:
    """stack.json: the address, login (the password), database URL and broker URI (None: control
    messages off) for the other commands."""
    saved = {**asdict(info), "port": port, "sql_alchemy_conn": database, "amqp": amqp}
    paths.write_atomic(_info_file(), json.dumps(saved), private=True)


# The message broker: control messages and completion events (water.events).


def _amqp_variable() -> str:
    return f"AIRFLOW_CONN_{events.AMQP_CONN_ID.upper()}"


def configured_amqp() -> str:
    """The broker's URI: the connection configured in the environment (AIRFLOW_CONN_AMQP_DEFAULT), else the local RabbitMQ."""
    return os.environ.get(_amqp_variable()) or LOCAL_AMQP


def stack_amqp() -> str:
    """The broker of the running stack (what `water up` found), else the configured one."""
    if _info_file().exists() and "api-server" in running():
        saved = _read_private(_info_file()).get("amqp")
        if saved:
            return str(saved)
    return configured_amqp()


def broker_problem(uri: str) -> str | None:
    """None when the broker at uri answers and takes the login; else why not (no credentials in it)."""
    from water import amqp_publish
    from water.broker import connection_from_uri

    try:
        conn = connection_from_uri(uri, events.AMQP_CONN_ID)
    except Exception as exc:  # a malformed URI: it may hold the password, so it is not shown
        return f"{_amqp_variable()} is not a connection URI ({type(exc).__name__})"
    try:
        amqp_publish.probe(conn, AMQP_PROBE_TIMEOUT)
    except amqp_publish.PublishError as exc:
        return str(exc)
    return None


def _control_messages(env: dict[str, str], log: Callable[[str], None]) -> str | None:
    """Give the stack the connection amqp_default when its broker answers (the triggerer then consumes
    the control queue, runs publish completion events); the broker's URI, or None: control messages off."""
    from water.broker import BrokerAddress, connection_from_uri

    uri = configured_amqp()
    problem = broker_problem(uri)
    if problem:
        env.pop(_amqp_variable(), None)
        log(f"control messages are off: no RabbitMQ answers ({problem}); start it, then `water down && water up`")
        return None
    env[_amqp_variable()] = uri
    where = BrokerAddress.from_connection(connection_from_uri(uri, events.AMQP_CONN_ID)).describe()
    log(f"control messages on: RabbitMQ at {where} (connection {events.AMQP_CONN_ID}, queue {events.CONTROL_QUEUE})")
    return uri


def start_control(api: AirflowAPI, amqp: str, log: Callable[[str], None], timeout: float = CONTROL_TIMEOUT) -> None:
    """Turn control messages on in a healthy stack: bind the control queue to the completion events the
    specs' trigger.on name, on the stack's broker (amqp), and unpause water_control: the triggerer runs
    its asset watcher (the AmqpMessageTrigger on the queue) only while the DAG is unpaused. One line
    says what it did, or what went wrong: not an error, the stack itself is up."""
    from water import amqp_publish, control
    from water.broker import connection_from_uri
    from water.cli.airflow_api import ApiError

    conn = connection_from_uri(amqp, events.AMQP_CONN_ID)
    try:
        keys = control.bind_completion_events(events.AMQP_CONN_ID, connection=conn)
    except Exception as exc:  # the broker went away since it was probed, or refused a declaration
        why = amqp_publish.scrub(f"{type(exc).__name__}: {exc}", conn)
        log(f"control messages: could not bind queue {events.CONTROL_QUEUE}, {events.CONTROL_DAG_ID} left paused ({why})")
        return
    bound = f"bound to {', '.join(keys)} on exchange {events.EVENTS_EXCHANGE}" if keys else "no spec has trigger.on"
    try:
        problem = _unpause_control(api, timeout)
    except ApiError as exc:
        problem = f"the REST API refused it ({exc})"
    if problem:
        log(f"control messages: queue {events.CONTROL_QUEUE} {bound}; {events.CONTROL_DAG_ID}: {problem}")
    else:
        log(f"control messages: {events.CONTROL_DAG_ID} unpaused, the triggerer consumes queue {events.CONTROL_QUEUE} ({bound})")


def _unpause_control(api: AirflowAPI, timeout: float) -> str | None:
    """Unpause water_control once it is parsed, and wait until its asset watcher is registered (the
    dag-processor does that when it parses the unpaused DAG: asked to at once). None, or what is wrong."""
    from water import control
    from water.cli.airflow_api import ApiError

    deadline = time.monotonic() + timeout
    dag = None
    while dag is None:
        try:
            dag = api.dag(events.CONTROL_DAG_ID)
        except ApiError as exc:
            if exc.status != 404:
                raise
            if time.monotonic() > deadline:
                return f"not parsed after {timeout:.0f}s (see `water validate`); messages wait in the queue"
            time.sleep(1)
    if dag["is_paused"]:
        api.unpause(events.CONTROL_DAG_ID)
    if _watched(api, control.ASSET_NAME):
        return None
    api.request("PUT", f"parseDagFile/{dag['file_token']}")  # rather than at its next parse, up to 30 s on
    while not _watched(api, control.ASSET_NAME):
        if time.monotonic() > deadline:
            return f"unpaused, but its queue is not watched after {timeout:.0f}s; see {paths.shown(logs_dir())}/dag-processor.log"
        time.sleep(1)
    return None


def _watched(api: AirflowAPI, asset: str) -> bool:
    """True once the asset has a watcher: its trigger is registered, the triggerer runs it."""
    found = api.get("assets", name_pattern=asset, limit=10)["assets"]
    return any(a["name"] == asset and a.get("watchers") for a in found)


# The stack's Airflow home.


def home(port: int, database: str) -> local_airflow.AirflowHome:
    keys = _secrets()
    url = f"http://127.0.0.1:{port}"
    return local_airflow.AirflowHome(
        stack_dir(),
        extra={
            "core": {
                "execution_api_server_url": f"{url}/execution/",
                "simple_auth_manager_users": f"{USER}:admin",
                "simple_auth_manager_passwords_file": str(passwords_file()),
                "fernet_key": keys["fernet_key"],
                "parallelism": "8",  # a laptop's worth of concurrent tasks
            },
            "database": {"sql_alchemy_conn": _sqlalchemy_url(database)},
            "api": {"host": "127.0.0.1", "port": str(port), "workers": "1", "secret_key": keys["secret_key"]},
            "api_auth": {"jwt_secret": keys["jwt_secret"]},
            "dag_processor": {"refresh_interval": "30"},  # new DAG files show up within 30 s
        },
        written_by="water up",
    )


def _process_environment(airflow_home: local_airflow.AirflowHome) -> dict[str, str]:
    """The caller's environment without its Airflow settings (e.g. `water run`'s), plus the stack's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k not in ("AIRFLOW_HOME", "WATER_RETRIES")}
    env.update(airflow_home.environment())
    env["WATER_PROJECT_ROOT"] = str(paths.project_root())
    env["WATER_STATE_DIR"] = str(paths.state_dir())
    return env


# Processes.


def _alive(pid: int, started: float) -> bool:
    """True if pid is the live process started then (not a zombie, not a recycled pid)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and abs(process.create_time() - started) < 1
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def running() -> dict[str, int]:
    """component -> pid of the stack's processes that are alive."""
    alive = {}
    for component in COMPONENTS:
        path = _pid_file(component)
        if path.exists():
            pid, _, started = path.read_text().strip().partition(" ")
            if pid and started and _alive(int(pid), float(started)):
                alive[component] = int(pid)
    return alive


def _start(component: str, env: dict[str, str]) -> int:
    paths.private_dir(logs_dir())
    _pid_file(component).parent.mkdir(parents=True, exist_ok=True)
    with _private_log(logs_dir() / f"{component}.log") as log:
        process = subprocess.Popen(
            [local_airflow.airflow_bin(), *COMMANDS[component]],
            env=env,
            cwd=paths.project_root(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: survives the shell, stops as one
        )
    import psutil

    # The pid and its start time: a pid alone may be reused after a reboot (the API server also
    # renames its process title, so the command line does not identify it).
    _pid_file(component).write_text(f"{process.pid} {psutil.Process(process.pid).create_time()}\n")
    return process.pid


def _private_log(path: Path) -> IO[bytes]:
    """A component's log, appended to, readable by its owner only (0600, even if it was not)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def read_info() -> StackInfo | None:
    """The running stack's address and login, or None when it is not up."""
    if not _info_file().exists() or "api-server" not in running():
        return None
    return _info(_read_private(_info_file()))


def require() -> StackInfo:
    info = read_info()
    if info is None:
        raise StackError("the local Airflow stack is not up: start it with `water up`")
    return info


def up(port: int = DEFAULT_PORT, database: str | None = None, log: Callable[[str], None] = print) -> StackInfo:
    """Start whatever part of the stack is not running and wait until it is healthy."""
    paths.private_dir(stack_dir())  # only its owner may enter: it holds the password and the keys
    alive = running()
    saved = _read_private(_info_file()) if _info_file().exists() else None
    if len(alive) == len(COMPONENTS) and saved is not None:
        log(f"already up ({', '.join(f'{c} {p}' for c, p in alive.items())})")
        return _info(saved)
    if alive and saved is not None:  # partly up: restart the missing ones as the others run
        port, database = saved["port"], saved["sql_alchemy_conn"]
    else:
        database = choose_database(database)
    if database.startswith("postgresql") and ensure_database(database):
        log(f"created database {_shown_url(database)}")
        home(port, database).migration_marker().unlink(missing_ok=True)
    airflow_home = home(port, database)
    airflow_home.write_config()
    _password()
    if airflow_home.migrate(log=log):
        log("metadata database ready")
    if "api-server" not in alive:
        _port_free_or_fail(port)
    env = _process_environment(airflow_home)
    # The broker's URI is read by Airflow's connection reader: imported under the stack's own settings.
    os.environ.update(airflow_home.environment())
    amqp = _control_messages(env, log)
    for component in COMPONENTS:
        if component not in alive:
            alive[component] = _start(component, env)
            log(f"started {component} (pid {alive[component]}, log {paths.shown(logs_dir() / f'{component}.log')})")
    info = StackInfo(url=f"http://127.0.0.1:{port}", user=USER, password=_password(), database=_shown_url(database))
    _save_info(info, port, database, amqp)
    _wait_healthy(info, log)
    if amqp is not None:
        start_control(info.api(), amqp, log)
    return info


def _info(saved: dict[str, Any]) -> StackInfo:
    return StackInfo(**{name: saved[name] for name in StackInfo.__dataclass_fields__})


def _port_free_or_fail(port: int) -> None:
    import socket

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise StackError(f"port {port} is taken by another program; choose another with `water up --port N`")


def _wait_healthy(info: StackInfo, log: Callable[[str], None]) -> None:
    """Poll the API server's health endpoint until the database and every component are healthy."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    last = "the API server does not answer yet"
    while time.monotonic() < deadline:
        dead = [c for c in COMPONENTS if c not in running()]
        if dead:
            raise StackError(f"{', '.join(dead)} exited during start-up; see {paths.shown(logs_dir())}/{dead[0]}.log")
        try:
            health = httpx.get(f"{info.url}/api/v2/monitor/health", timeout=5).json()
            unhealthy = [name for key, name in HEALTH_KEYS.items() if (health.get(key) or {}).get("status") != "healthy"]
            if not unhealthy:
                log("healthy: database, scheduler, dag-processor, triggerer, api-server")
                return
            last = f"waiting for {', '.join(unhealthy)}"
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(2)
    raise StackError(f"the stack did not become healthy in {START_TIMEOUT}s ({last}); logs in {paths.shown(logs_dir())}")


def down(log: Callable[[str], None] = print) -> list[str]:
    """Stop every process of the stack: SIGTERM to each component's process group (the scheduler
    forwards it to running tasks, which run in sessions of their own), then SIGKILL to whatever of
    the process trees outlives STOP_TIMEOUT. Returns the components it stopped."""
    import psutil

    alive = running()
    trees = {component: _tree(pid) for component, pid in alive.items()}
    for pid in alive.values():
        _killpg(pid, signal.SIGTERM)
    left = _wait_gone(trees, STOP_TIMEOUT)
    if left:
        log(f"{', '.join(left)} did not stop in {STOP_TIMEOUT}s: killing")
        for procs in left.values():
            for process in procs + [c for p in procs for c in _children(p)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        left = _wait_gone(left, 10)
        if left:
            raise StackError(f"could not stop {', '.join(f'{c} (pid {alive[c]})' for c in left)}")
    for component, pid in alive.items():
        log(f"stopped {component} (pid {pid})")
    for component in COMPONENTS:
        _pid_file(component).unlink(missing_ok=True)
    return list(alive)


def _tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (psutil handles, safe against pid reuse)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return [process, *_children(process)]
    except psutil.NoSuchProcess:
        return []


def _children(process: psutil.Process) -> list[psutil.Process]:
    import psutil

    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _gone(process: psutil.Process) -> bool:
    import psutil

    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(trees: dict[str, list[psutil.Process]], timeout: float) -> dict[str, list[psutil.Process]]:
    """Wait until every process of these trees has ended; the trees with processes left after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = {c: [p for p in procs if not _gone(p)] for c, procs in trees.items()}
        left = {c: procs for c, procs in left.items() if procs}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


# What the other commands do through the stack's REST API.


def logical_date(ds: str) -> str:
    """A day's logical date as `water run` uses it: midnight UTC."""
    return f"{ds}T00:00:00Z"


def unpause_on_trigger(
    api: AirflowAPI,
    pipeline: str,
    create: Callable[[], dict[str, Any]],
    unpause: bool,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """What the UI's trigger and backfill forms do: create the run(s), then unpause the DAG (a
    paused DAG's runs wait queued). A refused request leaves the DAG as it was."""
    dag = api.dag(pipeline)
    created = create()
    if dag["is_paused"]:
        if unpause:
            api.unpause(pipeline)
            log(
                f"unpaused {pipeline} (as the UI's forms do); its schedule ({dag.get('timetable_summary') or 'none'}) runs from now on"
            )
        else:
            log(f"{pipeline} is paused: its runs wait queued until it is unpaused (the UI's toggle)")
    return created


def trigger(
    api: AirflowAPI, pipeline: str, ds: str, conf: dict[str, Any] | None, unpause: bool, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Create a manual run for ds, as the web UI's trigger form does."""
    return unpause_on_trigger(api, pipeline, lambda: api.trigger(pipeline, logical_date(ds), conf), unpause, log)


FINISHED = ("success", "failed")


def wait_for(api: AirflowAPI, pipeline: str, run_id: str, timeout: float, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Poll a run until it finishes, printing each task once per state it reaches."""
    shown: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        run = api.dag_run(pipeline, run_id)
        for ti in api.get(f"dags/{pipeline}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]:
            label = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            state = ti["state"]
            if state and state not in ("scheduled", "queued") and shown.get(label) != state:
                shown[label] = state
                log(f"  {label:<22} {state}")
        if run["state"] in FINISHED:
            return run
        if time.monotonic() > deadline:
            raise StackError(f"{run_id} is still {run['state']} after {timeout:.0f}s")
        time.sleep(3)


def failed_tasks(api: AirflowAPI, pipeline: str, run_id: str) -> list[str]:
    tis = api.get(f"dags/{pipeline}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]
    return [ti["task_id"] for ti in tis if ti["state"] == "failed"]


def pipelines(api: AirflowAPI) -> list[str]:
    """The pipelines' DAGs (the factory tags each one `water`; so is water_control, which is none)."""
    return [d["dag_id"] for d in api.dags(tags=["water"]) if d["dag_id"] != events.CONTROL_DAG_ID]


def recent_runs(api: AirflowAPI, pipeline: str, limit: int) -> list[dict[str, Any]]:
    """The newest runs of a pipeline: state, duration, the sizing tier and the drift verdict."""
    from water.cli.summary import roles as figure_roles

    roles = figure_roles(pipeline)
    decision_task, drift_task = roles.get("decision"), roles.get("drift")
    rows = []
    for run in api.dag_runs(pipeline, limit=limit):
        run_id = run["dag_run_id"]
        # Where the run keeps its sizing decision and drift assessment: found by kind.
        decision = (api.xcom(pipeline, run_id, decision_task, "decision") if decision_task else None) or {}
        drift = (api.xcom(pipeline, run_id, drift_task, "drift") if drift_task else None) or {}
        tier = decision.get("tier")  # every route's tier and shards, summed up
        if tier and decision.get("forced"):
            tier += " (forced)"
        rows.append(
            {
                "pipeline": pipeline,
                "run_id": run_id,
                "run_type": run["run_type"],
                "ds": (run.get("logical_date") or "")[:10] or None,
                "state": run["state"],
                "seconds": _duration(run),
                "tier": tier,
                "drift": drift.get("verdict") if isinstance(drift, dict) else None,
            }
        )
    return rows


def _duration(run: dict[str, Any]) -> float | None:
    from datetime import datetime

    if run.get("duration") is not None:
        duration: float = run["duration"]
        return round(duration, 1)
    if run.get("start_date"):  # still going
        started = datetime.fromisoformat(run["start_date"].replace("Z", "+00:00"))
        return round((datetime.now(UTC) - started).total_seconds(), 1)
    return None


def backfill(
    api: AirflowAPI,
    pipeline: str,
    start: str,
    end: str,
    conf: dict[str, Any] | None,
    reprocess: str,
    unpause: bool,
    dry_run: bool,
    log: Callable[[str], None] = print,
) -> tuple[int | None, list[str]]:
    """A backfill of the scheduled runs from start to end (days, both included): its id (None on a
    dry run) and the logical dates of the runs it makes."""
    body = {
        "dag_id": pipeline,
        "from_date": logical_date(start),
        "to_date": f"{end}T23:59:59Z",  # the whole end day: a daily schedule fires after midnight
        "dag_run_conf": conf or {},
        "reprocess_behavior": reprocess,
    }
    dates = [r["logical_date"] for r in api.backfill(body, dry_run=True)["backfills"]]
    if dry_run:
        return None, dates
    return unpause_on_trigger(api, pipeline, lambda: api.backfill(body), unpause, log)["id"], dates


def render_status(rows: list[dict[str, Any]], console: Console) -> None:
    from rich.table import Table

    style = {"success": "green", "failed": "bold red", "running": "cyan", "queued": "yellow"}
    if not console.is_terminal:  # a log file or CI: no need to wrap at 80 columns
        console.width = max(console.width, 120)
    table = Table()
    for column in ("pipeline", "ds", "run", "state", "seconds", "tier", "drift"):
        table.add_column(column, justify="right" if column == "seconds" else "left", no_wrap=column in ("ds", "seconds"))
    for row in rows:
        table.add_row(
            row["pipeline"],
            row["ds"] or "-",
            row["run_type"],
            f"[{style.get(row['state'], 'white')}]{row['state']}[/]",
            f"{row['seconds']:.0f}" if row["seconds"] is not None else "-",
            row["tier"] or "-",
            row["drift"] or "-",
        )
    console.print(table)


# Control messages (water.control): what `water events` shows.


def control_messages(api: AirflowAPI, limit: int) -> list[dict[str, Any]]:
    """The newest control messages first, up to limit: each as the water_control run that consumed it
    recorded it (outcome, reason, the run it started), with that started run's state."""
    from water import control
    from water.cli.airflow_api import ApiError

    rows: list[dict[str, Any]] = []
    for control_run in api.dag_runs(control.DAG_ID, limit=limit):
        run_id = control_run["dag_run_id"]
        records = api.xcom(control.DAG_ID, run_id, control.DISPATCH_TASK, control.MESSAGES_XCOM)
        if not isinstance(records, list):  # not dispatched yet, or the dispatch failed
            records = [{"outcome": "pending" if control_run["state"] in ("queued", "running") else control_run["state"]}]
        for record in reversed(records):  # newest first, as the runs are
            started = record.get("run_id") if record.get("outcome") == "started" else None
            state = None
            if started and record.get("pipeline"):
                try:
                    state = api.dag_run(record["pipeline"], started)["state"]
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    state = "not created"  # the start task has not run (yet)
            key = str(record.get("routing_key") or "")
            rows.append(
                {
                    "received": control_run.get("run_after") or control_run.get("queued_at"),
                    "control_run": run_id,
                    "message_id": record.get("message_id"),
                    "source": key if events.ROUTING_KEY.match(key) else "control",
                    "pipeline": record.get("pipeline"),
                    "ds": record.get("ds"),
                    "outcome": record.get("outcome"),
                    "reason": record.get("reason") or "",
                    "run_id": record.get("run_id"),
                    "run_state": state,
                }
            )
        if len(rows) >= limit:
            break
    return rows[:limit]


def render_control_messages(rows: list[dict[str, Any]], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    style = {"started": "green", "rejected": "bold red", "duplicate": "yellow", "ignored": "dim", "failed": "bold red"}
    if not console.is_terminal:
        console.width = max(console.width, 160)
    table = Table()
    for column in ("received", "message", "from", "pipeline", "ds", "outcome", "run", "run state", "reason"):
        table.add_column(column, no_wrap=column in ("received", "ds"), overflow="fold")
    for row in rows:
        outcome = row["outcome"] or "-"
        table.add_row(
            (row["received"] or "-")[:19].replace("T", " "),
            escape(row["message_id"] or "-"),
            escape(row["source"]),
            escape(row["pipeline"] or "-"),
            escape(row["ds"] or "-"),
            f"[{style.get(outcome, 'white')}]{escape(outcome)}[/]",
            escape(row["run_id"] or "-"),
            escape(row["run_state"] or "-"),
            escape(row["reason"]),
        )
    console.print(table)
