"""Event-driven control (part of `make bench`): how fast a control message starts a pipeline, how fast
its completion event arrives, and whether a burst of messages is dispatched exactly once.

    python benchmarks/control_latency.py [--messages 20] [--burst 100] [--keep-state]

On a stack of its own (`water up` with its own state folder, PostgreSQL database, port, and a control
queue and events exchange named uniquely, so it never takes another stack's messages on the same
RabbitMQ; all removed at the end), on the fixtures-only pipeline customer_value (nothing to seed):

1. Start latency, --messages times each, interleaved so a load that comes and goes hits both alike:
   - a control message put on the control queue as `water publish` sends it
     (water.amqp_publish.send_control) -> the pipeline run's first task start (its task instance's
     start_date, REST API). The path: the triggerer's AmqpMessageTrigger, an asset event, a
     water_control run (dispatch, then start), the pipeline run, its first task;
   - baseline, in the same run: the same latency for a run created through the REST API as
     `water trigger` creates it (water.cli.stack.trigger).
   Only the first task's start is needed: a publish run is then marked failed (its other tasks
   skipped, the run_report teardown left unrun), so no day is computed.
   Target: median publish latency / median API latency <= RATIO_TARGET.
2. Completion-event latency: each baseline run's first task is marked failed once it started, so
   the run ends at once, the run_report teardown runs and publishes `pipeline.customer_value.failed`
   to the events exchange; a queue of the benchmark's own, bound to it (`pipeline.#`), receives it.
   From the end of the run's last task before run_report (end_date), and from run_report's start,
   to the event's arrival. Every measured run is deleted afterwards (its day is free again).
3. Burst: both pipelines paused (their runs are created, they stay queued, nothing runs); one message
   per day from each pipeline's start_date to today (Airflow keeps one run per DAG and logical date,
   and a control message may name neither a day before the start_date nor a future one: the two
   demo pipelines have 2 x 37 such days up to 2026-12-07), and the rest of --burst messages are
   earlier ones sent again (the same message_id: what a redelivery looks like to water_control),
   sent at once from 8 threads; half the resends are held back until the burst's first
   water_control run has dispatched (de-duplicated then on the run their first copy started, the
   others within a dispatch). Every message must be in the dispatch records (XCom `messages`
   of the water_control runs) as started (each distinct message_id once) or duplicate (each resend),
   and each distinct message_id must have exactly one pipeline run (run id water_msg__<id>); none
   twice, none lost. Exit status 1 if not, or if the ratio target is missed.

Writes benchmarks/results/control-latency.json. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()

PIPELINE = "customer_value"  # fixtures only: no seeding
BURST_PIPELINES = ("customer_value", "recipe_engagement")
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
WATER = str(Path(sys.executable).parent / "water")
# Measured here (2 cores, shared; 20 of each): medians 4.9 s against 0.7 s, a ratio of 6.6. The API path
# is one scheduler hop (the run is created, its first task queued and started); the publish path adds a
# fixed part before it: the trigger's 1 s batch window, the scheduler's pick-up of the asset event into a
# water_control run, and that run's two tasks one after the other (dispatch, then start, each a task
# process), about 4 s. With a baseline this short the ratio is that fixed part over 0.7 s; 10x leaves
# half as much again for load and noise (a publish median up to 7 s at today's baseline).
RATIO_TARGET = 10.0
START_LIMIT = 240.0  # seconds from a send or trigger to the first task's start
EVENT_LIMIT = 240.0  # seconds from marking the first task failed to the completion event
BURST_STALL = 120.0  # seconds without a new dispatch record, every water_control run finished, before giving up
BURST_LIMIT = 900.0

T = TypeVar("T")


class BenchError(RuntimeError):
    pass


def say(text: str) -> None:
    console.print(f"[dim]{datetime.now(UTC):%H:%M:%S}[/] {text}", highlight=False)


def wait_until(what: str, check: Callable[[], T | None], limit: float, every: float = 0.5) -> T:
    deadline = time.monotonic() + limit
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {limit:.0f}s")
        time.sleep(every)


def moment(text: str) -> float:
    """An API timestamp as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spread(values: list[float]) -> dict[str, Any]:
    """n, median, p95 (inclusive quantiles), min, max of seconds."""
    if not values:
        return {"n": 0, "median": None, "p95": None, "min": None, "max": None, "values": []}
    p95 = statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "p95": round(p95, 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "values": [round(v, 2) for v in values],
    }


# --- the broker side: a queue of our own on the events exchange ------------------------------


class CompletionEvents:
    """Consumes a queue bound to the events exchange (`pipeline.#`) in a thread of its own: each event's
    arrival time (epoch seconds, taken as it is delivered), by run_id. Declares the control queue too, so
    the trigger finds it from its start."""

    def __init__(self, address: Any, exchange: str, queue: str, control_queue: str):
        self.address, self.exchange, self.queue, self.control_queue = address, exchange, queue, control_queue
        self.arrivals: dict[str, tuple[float, dict[str, Any], str]] = {}
        self._news = threading.Condition()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="completion-events", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise BenchError(f"no consumer on {self.address.describe()} within 30s")
        if self._failure is not None:
            raise BenchError(f"the broker at {self.address.describe()}: {type(self._failure).__name__}: {self._failure}")

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:  # reported by start() or arrival()
            self._failure = exc
            self._ready.set()

    async def _consume(self) -> None:
        import aio_pika

        from water.broker import open_connection

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connection = await open_connection(self.address, "water bench: completion events")
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(self.control_queue, durable=True)
            topic = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue(self.queue, exclusive=True)
            await queue.bind(topic, routing_key="pipeline.#")

            async def arrived(message: Any) -> None:
                at = time.time()
                body = json.loads(message.body)
                with self._news:
                    self.arrivals[body.get("run_id", "")] = (at, body, message.routing_key or "")
                    self._news.notify_all()

            await queue.consume(arrived, no_ack=True)
            self._ready.set()
            await self._stop.wait()

    def arrival(self, run_id: str, limit: float) -> tuple[float, dict[str, Any], str]:
        deadline = time.monotonic() + limit
        with self._news:
            while run_id not in self.arrivals:
                if self._failure is not None:
                    raise BenchError(f"the completion-event consumer stopped: {self._failure}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"no completion event of {run_id} within {limit:.0f}s")
                self._news.wait(min(left, 1.0))
            return self.arrivals[run_id]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def delete_broker_objects(address: Any, queues: list[str], exchange: str) -> None:
    from water.broker import open_connection

    async def delete() -> None:
        connection = await open_connection(address, "water bench: clean-up")
        async with connection:
            channel = await connection.channel()
            for name in queues:
                await channel.queue_delete(name)
            await channel.exchange_delete(exchange)

    asyncio.run(asyncio.wait_for(delete(), 30))


# --- the stack's side: runs through the REST API -----------------------------------------------


class Runs:
    """The pipeline runs the benchmark makes, watched and removed through the stack's REST API."""

    def __init__(self, api: Any):
        self.api = api
        self.ours: set[str] = set()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]] | None:
        from water.cli.airflow_api import ApiError

        try:
            tis: list[dict[str, Any]] = self.api.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]
        except ApiError as exc:
            if exc.status == 404:  # not created yet
                return None
            raise
        return tis

    def first_start(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """The first task instance of the run that started (its start_date set), or None."""
        from water.operators.report import RUN_REPORT

        started = [ti for ti in self.task_instances(dag_id, run_id) or [] if ti.get("start_date") and ti["task_id"] != RUN_REPORT]
        return min(started, key=lambda ti: moment(ti["start_date"])) if started else None

    def fail_others(self, dag_id: str) -> None:
        """Mark failed any active run the benchmark did not make (the schedule's, once a DAG is unpaused): with
        max_active_runs 1, ours would wait behind it."""
        for run in self.api.dag_runs(dag_id, limit=10):
            if run["state"] in ("queued", "running") and run["dag_run_id"] not in self.ours:
                self.api.patch(f"dags/{dag_id}/dagRuns/{run['dag_run_id']}", {"state": "failed"})
                self.finished(dag_id, run["dag_run_id"])  # its run_report teardown still runs
                say(f"marked {dag_id} {run['dag_run_id']} ({run['run_type']}) failed: not the benchmark's")

    def finished(self, dag_id: str, run_id: str, limit: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run: dict[str, Any] = self.api.dag_run(dag_id, run_id)
            return run if run["state"] in ("success", "failed") else None

        return wait_until(f"{dag_id} {run_id} to finish", done, limit, every=1.0)

    def delete(self, dag_id: str, run_id: str) -> bool:
        from water.cli.airflow_api import ApiError

        try:
            self.api.request("DELETE", f"dags/{dag_id}/dagRuns/{run_id}")
        except ApiError as exc:
            say(f"could not delete {dag_id} {run_id}: {exc}")
            return False
        return True


class Days:
    """Days a pipeline may run (its start_date .. today); a day comes back once its run is deleted."""

    def __init__(self, first: date, last: date):
        self.free = [first + timedelta(days=k) for k in range((last - first).days + 1)]

    def take(self) -> str:
        if not self.free:
            raise BenchError("no free day left (runs that could not be deleted hold them)")
        return self.free.pop().isoformat()

    def give_back(self, ds: str) -> None:
        self.free.insert(0, date.fromisoformat(ds))


def control_record(api: Any, message_id: str) -> str:
    """How water_control recorded a message, for an error text."""
    from water.cli import stack

    for row in stack.control_messages(api, 50):
        if row["message_id"] == message_id:
            return f"water_control: {row['outcome']} {row['reason']}".strip()
    return "water_control has no record of it"


def publish_once(runs: Runs, conn: Any, queue: str, ds: str, message_id: str) -> tuple[float, str]:
    """Send a control message (as `water publish` does); seconds to the started run's first task, and the run id."""
    from water import amqp_publish, control

    message = control.validate_control_message({"pipeline": PIPELINE, "ds": ds, "message_id": message_id})
    run_id = message.run_id
    runs.ours.add(run_id)
    sent = time.time()
    amqp_publish.send_control(conn, message.body(), queue=queue)
    try:
        first = wait_until(f"the first task of {run_id}", lambda: runs.first_start(PIPELINE, run_id), START_LIMIT)
    except BenchError as exc:
        raise BenchError(f"{exc} ({control_record(runs.api, message_id)})") from None
    return moment(first["start_date"]) - sent, run_id


def trigger_once(runs: Runs, ds: str) -> tuple[float, str]:
    """Create a run through the REST API (as `water trigger` does); seconds to its first task, and the run id."""
    from water.cli import stack

    sent = time.time()
    run = stack.trigger(runs.api, PIPELINE, ds, None, unpause=True, log=lambda _: None)
    run_id = run["dag_run_id"]
    runs.ours.add(run_id)
    first = wait_until(f"the first task of {run_id}", lambda: runs.first_start(PIPELINE, run_id), START_LIMIT)
    return moment(first["start_date"]) - sent, run_id


def completion_latency(runs: Runs, events_in: CompletionEvents, run_id: str) -> tuple[float, float]:
    """Mark the run failed (its running task failed, the others skipped, the run_report teardown left to run,
    as Airflow does): run_report publishes the completion event. Seconds from the last non-report task's end,
    and from run_report's start, to the event's arrival; the run is then finished."""
    from water.operators.report import RUN_REPORT

    runs.api.patch(f"dags/{PIPELINE}/dagRuns/{run_id}", {"state": "failed"})
    arrived, body, key = events_in.arrival(run_id, EVENT_LIMIT)
    if key != f"pipeline.{PIPELINE}.{body.get('outcome')}":
        raise BenchError(f"completion event of {run_id} came with routing key {key!r}: {body}")
    runs.finished(PIPELINE, run_id)
    tis = runs.task_instances(PIPELINE, run_id) or []
    ends = [moment(ti["end_date"]) for ti in tis if ti["task_id"] != RUN_REPORT and ti.get("end_date")]
    report = next((ti for ti in tis if ti["task_id"] == RUN_REPORT), None)
    if not ends or report is None or not report.get("start_date"):
        raise BenchError(f"{run_id}: no task end or no run_report start to measure from: {tis}")
    return arrived - max(ends), arrived - moment(report["start_date"])


def measure_latencies(runs: Runs, conn: Any, queue: str, events_in: CompletionEvents, count: int, tag: str) -> dict[str, Any]:
    from water.spec import load_pipeline

    days = Days(load_pipeline(PIPELINE).start_date, datetime.now(UTC).date())
    figures: dict[str, list[float]] = {"publish": [], "api": [], "last_task": [], "report": []}
    for i in range(-1, count):  # -1: one of each, unmeasured, to warm the path up
        line = []
        for path in ("publish", "api"):
            runs.fail_others(PIPELINE)
            ds = days.take()
            if path == "publish":
                seconds, run_id = publish_once(runs, conn, queue, ds, f"bench-{tag}-p{i + 1:02d}")
            else:
                seconds, run_id = trigger_once(runs, ds)
            last_task, report = completion_latency(runs, events_in, run_id)  # also ends the run: the next one starts alone
            if runs.delete(PIPELINE, run_id):
                days.give_back(ds)
            line.append(
                f"{path} {seconds:.1f}s (completion event {last_task:.1f}s after the last task, {report:.1f}s after run_report's start)"
            )
            if i >= 0:
                figures[path].append(seconds)
                figures["last_task"].append(last_task)
                figures["report"].append(report)
        say(f"{'warm-up' if i < 0 else f'{i + 1}/{count}'}: {'; '.join(line)}")
    return {
        "publish_to_first_task": spread(figures["publish"]),
        "api_trigger_to_first_task": spread(figures["api"]),
        "last_task_end_to_completion_event": spread(figures["last_task"]),
        "run_report_start_to_completion_event": spread(figures["report"]),
    }


# --- the burst -------------------------------------------------------------------------------------


def burst_messages(total: int, tag: str, most_distinct: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One message per (pipeline, day) the pipelines may run (the pipelines taken in turn, up to `most_distinct`),
    then earlier ones again, spread over them, up to `total` messages: (distinct, resent)."""
    from itertools import chain, zip_longest

    from water import control
    from water.spec import load_pipeline

    today = datetime.now(UTC).date()
    per_pipeline = [[(name, day) for day in Days(load_pipeline(name).start_date, today).free] for name in BURST_PIPELINES]
    pairs = [pair for pair in chain.from_iterable(zip_longest(*per_pipeline)) if pair is not None]
    pairs = pairs[: min(total, most_distinct or total)]
    distinct = [
        control.validate_control_message({"pipeline": name, "ds": day.isoformat(), "message_id": f"bench-{tag}-b{i:03d}"}).body()
        for i, (name, day) in enumerate(pairs, 1)
    ]
    again = max(0, total - len(distinct))
    resent = distinct[:: max(1, len(distinct) // again)][:again] if again else []
    return distinct, resent


def dispatch_records(api: Any, cache: dict[str, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], bool]:
    """Every dispatch record of every water_control run so far, and whether a water_control run is still active.
    A run's records, once pushed, are final: read once."""
    from water import control

    active = False
    for run in api.dag_runs(control.DAG_ID, limit=100):
        run_id = run["dag_run_id"]
        if run["state"] in ("queued", "running"):
            active = True
        if run_id not in cache:
            records = api.xcom(control.DAG_ID, run_id, control.DISPATCH_TASK, control.MESSAGES_XCOM)
            if isinstance(records, list):
                cache[run_id] = records
    return [r for records in cache.values() for r in records], active


def measure_burst(runs: Runs, conn: Any, queue: str, total: int, tag: str, most_distinct: int | None) -> dict[str, Any]:
    from water import amqp_publish, control

    api = runs.api
    for name in BURST_PIPELINES:
        api.patch(f"dags/{name}", {"is_paused": True})
        runs.fail_others(name)
    distinct, resent = burst_messages(total, tag, most_distinct)
    ids = {m["message_id"] for m in distinct}
    cache: dict[str, list[dict[str, Any]]] = {}
    dispatch_records(api, cache)  # the runs before the burst
    before = set(cache)
    say(f"burst: {len(distinct)} distinct messages ({', '.join(BURST_PIPELINES)}, every day) and {len(resent)} sent again")
    # Half the resends go with the burst (de-duplicated within a dispatch), half once the burst's first
    # water_control run has dispatched (de-duplicated on the run their first copy started), as a redelivery comes.
    with_burst, late = resent[: len(resent) // 2], resent[len(resent) // 2 :]

    def send(messages: list[dict[str, Any]]) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda m: amqp_publish.send_control(conn, m, queue=queue), messages))

    started = time.time()
    send([*distinct, *with_burst])
    sent_seconds = time.time() - started
    say(f"burst: {len(distinct) + len(with_burst)} messages on the queue in {sent_seconds:.1f}s")
    if late:
        wait_until(
            "the burst's first dispatch",
            lambda: any(r.get("message_id") in ids for r in dispatch_records(api, cache)[0]) or None,
            START_LIMIT,
            every=1.0,
        )
        send(late)
        say(f"burst: {len(late)} sent again after its first dispatch")

    expected = len(distinct) + len(resent)
    last_news, count, all_recorded = time.monotonic(), 0, None
    deadline = time.monotonic() + BURST_LIMIT
    while True:
        records, active = dispatch_records(api, cache)
        mine = [r for r in records if r.get("message_id") in ids]
        if len(mine) != count:
            count, last_news = len(mine), time.monotonic()
            say(f"burst: {count}/{expected} messages in the dispatch records")
        if count >= expected and all_recorded is None:
            all_recorded = time.time() - started
        if count >= expected and not active:  # every start task has run
            break
        if time.monotonic() > deadline or (not active and time.monotonic() - last_news > BURST_STALL):
            say(f"burst: gave up waiting ({count}/{expected} recorded, no water_control run active)")
            break
        time.sleep(3)
    runs_done = time.time() - started

    outcomes = Counter(r["outcome"] for r in mine)
    per_id = Counter((r["message_id"], r["outcome"]) for r in mine)
    resent_ids = Counter(m["message_id"] for m in resent)
    wrong = [
        message_id
        for message_id in sorted(ids)
        if per_id[(message_id, "started")] != 1 or per_id[(message_id, "duplicate")] != resent_ids[message_id]
    ]
    missing = sorted(ids - {r["message_id"] for r in mine})
    pipeline_runs: dict[str, list[dict[str, Any]]] = {}
    for name in BURST_PIPELINES:
        pipeline_runs[name] = api.get(f"dags/{name}/dagRuns", limit=100, order_by="run_after")["dag_runs"]
    wanted = {(m["pipeline"], control.run_id_for(m["message_id"])) for m in distinct}
    made = [(name, r["dag_run_id"]) for name, listed in pipeline_runs.items() for r in listed]
    made_burst = [pair for pair in made if pair in wanted]
    twice = [pair for pair, n in Counter(made_burst).items() if n > 1]
    days_twice = [
        (name, logical_date)
        for name, listed in pipeline_runs.items()
        for logical_date, n in Counter(r["logical_date"] for r in listed if r.get("logical_date")).items()
        if n > 1
    ]
    not_queued = [
        r["dag_run_id"]
        for name, listed in pipeline_runs.items()
        for r in listed
        if (name, r["dag_run_id"]) in wanted and r["state"] != "queued"
    ]
    control_runs = sorted(set(cache) - before)
    return {
        "messages": expected,
        "distinct": len(distinct),
        "resent": len(resent),
        "resent_after_dispatch": len(late),
        "send_seconds": round(sent_seconds, 1),
        "all_recorded_seconds": round(all_recorded, 1) if all_recorded is not None else None,
        "control_runs_done_seconds": round(runs_done, 1),
        "control_runs": len(control_runs),
        "outcomes": dict(outcomes),
        "missing": missing,
        "wrong": wrong,
        "runs_made": len(set(made_burst)),
        "runs_missing": sorted(run_id for _, run_id in wanted - set(made_burst)),
        "runs_twice": twice,
        "days_with_two_runs": days_twice,
        "runs_not_queued": not_queued,
        "ok": not missing and not wrong and set(made_burst) == wanted and not twice and not days_twice,
    }


# --- the stack ----------------------------------------------------------------------------------


def water(args: list[str], env: dict[str, str], limit: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([WATER, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        raise BenchError(f"water {' '.join(args)} still ran after {limit:.0f}s:\n{out[-2000:]}\n{err[-2000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop_stack(env: dict[str, str], state: Path, database: str) -> None:
    """`water down`, then SIGKILL to whatever of the stack's process groups outlived it, then the database."""
    from water.cli import stack

    pid_files = list((state / "stack" / "pids").glob("*.pid"))
    pgids = [int(p.read_text().split()[0]) for p in pid_files]
    try:
        down = water(["down"], env, limit=180)
        if down.returncode != 0:
            say(f"water down failed: {down.stderr[-1000:]}")
    finally:
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):  # the group is gone: `water down` stopped it
                os.killpg(pgid, signal.SIGKILL)
        stack.drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20, help="measured messages (and API triggers, and completion events)")
    parser.add_argument("--burst", type=int, default=100, help="messages in the burst, resent ones included")
    parser.add_argument(
        "--burst-distinct", type=int, help="at most this many distinct messages (default: every day of both pipelines)"
    )
    parser.add_argument("--keep-state", action="store_true", help="keep the stack's state folder (its logs)")
    args = parser.parse_args()
    began = time.monotonic()

    tag = uuid.uuid4().hex[:8]
    state = Path(tempfile.mkdtemp(prefix=f"water-control-bench-{tag}-"))
    database = f"{POSTGRES}/water_bench_{tag}"
    control_queue, exchange = f"water.control.bench-{tag}", f"water.events.bench-{tag}"
    listener_queue = f"{exchange}.listener"
    os.environ.update(
        {
            "WATER_STATE_DIR": str(state),
            "WATER_STACK_DATABASE": database,
            "WATER_STACK_PORT": str(free_port()),
            "WATER_CONTROL_QUEUE": control_queue,
            "WATER_EVENTS_EXCHANGE": exchange,
            "COLUMNS": "160",
        }
    )
    env = dict(os.environ)  # the stack's processes: without this process's Airflow settings below

    from water import events
    from water.broker import BrokerAddress, connection_from_uri
    from water.cli import local_airflow, stack

    local_airflow.use_in_this_process()  # as `water publish` does, before anything imports Airflow
    uri = stack.configured_amqp()
    problem = stack.broker_problem(uri)
    if problem:
        raise SystemExit(f"the control benchmark needs RabbitMQ: {problem}")
    if not stack.local_postgres_reachable():
        raise SystemExit(f"the control benchmark needs PostgreSQL at {POSTGRES}")
    conn = connection_from_uri(uri, events.AMQP_CONN_ID)
    address = BrokerAddress.from_connection(conn)
    events_in = CompletionEvents(address, exchange, listener_queue, control_queue)
    results: dict[str, Any] = {}
    failure = None
    up_seconds = None
    try:
        events_in.start()
        say(f"stack of its own: state {state}, database {database.rsplit('/', 1)[1]}, queue {control_queue}, exchange {exchange}")
        up_started = time.monotonic()
        up = water(["up", "--seed-days", "0"], env, limit=600)
        up_seconds = time.monotonic() - up_started
        if up.returncode != 0:
            raise BenchError(f"water up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        if "control messages are off" in up.stdout:
            raise BenchError(f"water up did not turn control messages on:\n{up.stdout[-3000:]}")
        say(f"water up: {up_seconds:.0f}s")
        info = stack.require()
        api = info.api()
        runs = Runs(api)

        def parsed() -> bool | None:
            from water.cli.airflow_api import ApiError

            try:
                for dag_id in (events.CONTROL_DAG_ID, *BURST_PIPELINES):
                    api.dag(dag_id)
            except ApiError:
                return None
            return True

        wait_until("the DAGs to be parsed", parsed, 300, every=2.0)
        api.unpause(events.CONTROL_DAG_ID)
        api.unpause(PIPELINE)
        with contextlib.suppress(BenchError):  # unpausing makes the schedule's latest run: out of the way
            wait_until(f"{PIPELINE}'s scheduled run", lambda: api.dag_runs(PIPELINE) or None, 30, every=2.0)
        runs.fail_others(PIPELINE)

        say(
            f"1-2. {args.messages} control messages and {args.messages} REST API triggers, interleaved (after one of each to warm up)"
        )
        results["latency"] = measure_latencies(runs, conn, control_queue, events_in, args.messages, tag)
        say("3. the burst")
        results["burst"] = measure_burst(runs, conn, control_queue, args.burst, tag, args.burst_distinct)
    except BenchError as exc:
        failure = str(exc)
    except Exception as exc:  # an API or broker error: the stack is still taken down, the partial figures kept
        console.print_exception()
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        events_in.stop()
        say("stopping the stack …")
        for step, undo in (
            ("water down and the database", lambda: stop_stack(env, state, database)),
            ("the queues and the exchange", lambda: delete_broker_objects(address, [control_queue, listener_queue], exchange)),
        ):
            try:
                undo()
            except Exception as exc:  # the other clean-ups still run; said, never hidden
                say(f"[red]clean-up of {step} failed[/]: {type(exc).__name__}: {exc}")
        if args.keep_state:
            say(f"state kept: {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    total = time.monotonic() - began
    report(results, up_seconds, total)
    if failure:
        raise SystemExit(f"the control benchmark failed: {failure}")
    latency, burst = results["latency"], results["burst"]
    ratio = latency["publish_to_first_task"]["median"] / latency["api_trigger_to_first_task"]["median"]
    if ratio > RATIO_TARGET or not burst["ok"]:
        raise SystemExit(1)


def report(results: dict[str, Any], up_seconds: float | None, total: float) -> None:
    latency, burst = results.get("latency"), results.get("burst")
    ratio = None
    if latency:
        table = Table(title="control messages and completion events, seconds", title_justify="left")
        for column in ("path", "n", "median", "p95", "min", "max"):
            table.add_column(column, justify="left" if column == "path" else "right")
        names = {
            "publish_to_first_task": "control message sent → pipeline's first task starts",
            "api_trigger_to_first_task": "REST API trigger → first task starts (baseline)",
            "last_task_end_to_completion_event": "last task before run_report ends → completion event on a queue",
            "run_report_start_to_completion_event": "run_report starts → completion event on a queue",
        }
        for key, name in names.items():
            s = latency[key]
            table.add_row(
                name, str(s["n"]), *(f"{s[k]:.1f}" if s[k] is not None else "-" for k in ("median", "p95", "min", "max"))
            )
        console.print(table)
        publish, api = latency["publish_to_first_task"]["median"], latency["api_trigger_to_first_task"]["median"]
        if publish and api:
            ratio = publish / api
            console.print(
                f"publish / API trigger, medians: {ratio:.2f} (target ≤ {RATIO_TARGET}: {'met' if ratio <= RATIO_TARGET else 'NOT met'})"
            )
    if burst:
        table = Table(title="burst of control messages", title_justify="left")
        table.add_column("figure")
        table.add_column("value", justify="right")
        rows = [
            ("messages sent (distinct + sent again)", f"{burst['messages']} ({burst['distinct']} + {burst['resent']})"),
            ("of those sent again: after the burst's first dispatch", str(burst["resent_after_dispatch"])),
            ("seconds to put the burst on the queue (8 threads)", f"{burst['send_seconds']}"),
            ("water_control runs that dispatched them", str(burst["control_runs"])),
            ("dispatch records: outcomes", ", ".join(f"{n} {o}" for o, n in sorted(burst["outcomes"].items())) or "none"),
            (
                "seconds from the first send to every message recorded (late resends too)",
                str(burst["all_recorded_seconds"] or "-"),
            ),
            ("seconds to every water_control run finished", str(burst["control_runs_done_seconds"])),
            ("messages missing from the records", str(len(burst["missing"]))),
            ("message ids not started once (and resends not duplicate)", str(len(burst["wrong"]))),
            ("pipeline runs made (one per distinct message_id wanted)", f"{burst['runs_made']} of {burst['distinct']}"),
            ("runs made twice / days with two runs", f"{len(burst['runs_twice'])} / {len(burst['days_with_two_runs'])}"),
        ]
        for row in rows:
            table.add_row(*row)
        console.print(table)
        for key in ("missing", "wrong", "runs_missing", "runs_twice", "days_with_two_runs"):
            if burst[key]:
                console.print(f"{key}: {burst[key][:20]}", markup=False)
        console.print(f"burst: every message accounted for, one run per message_id: {'yes' if burst['ok'] else 'NO'}")
    console.print(f"water up {up_seconds or 0:.0f}s; the whole benchmark {total:.0f}s")
    out = ROOT / "benchmarks" / "results" / "control-latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "pipeline": PIPELINE,
                "ratio_target": RATIO_TARGET,
                "ratio": round(ratio, 2) if ratio else None,
                **results,
                "up_seconds": round(up_seconds, 1) if up_seconds else None,
                "total_seconds": round(total, 1),
            },
            indent=2,
        )
    )
    console.print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
