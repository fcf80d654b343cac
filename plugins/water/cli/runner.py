"""`water run`: one pipeline run on the local target, the way `airflow dags test` runs it.

Prepares the project's Airflow home, seeds the app data when the day is missing, runs the
DAG with `DAG.test()` in this process (what `airflow dags test` calls; doing it here spares a
second interpreter and Airflow import) with the run's log going to a file, prints each task
as it changes state, then the summary table; writes the summary as JSON beside the log.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from water import paths, spec as spec_module
from water.cli import summary
from water.cli import local_airflow

STATE_MARK = {"success": "[green]✓[/]", "failed": "[red]✗[/]", "running": "[cyan]▶[/]", "upstream_failed": "[red]↯[/]", "skipped": "[yellow]↷[/]", "up_for_retry": "[yellow]↻[/]"}


@dataclass
class RunResult:
    summary: dict[str, Any]
    log_path: Path
    json_path: Path

    @property
    def ok(self) -> bool:
        return self.summary.get("state") == "success"


def ensure_seeded(pipeline: str, ds: str, users: int | None, console: Console, mixes=None) -> None:
    """The pipeline's local source data for ds (its fixtures and seed entrypoint; both keep
    what is already there and current)."""
    from water.cli.seeding import seed_pipeline

    started = time.monotonic()
    seed_pipeline(
        spec_module.load_pipeline(pipeline),
        [date.fromisoformat(ds)],
        users=users,
        mixes=mixes,
        progress=lambda text: console.print(f"  {text}", markup=False, highlight=False),
    )
    console.print(f"  source data ready in {time.monotonic() - started:.1f}s")


def run_pipeline(
    pipeline: str,
    ds: str,
    *,
    users: int | None = None,
    conf: dict[str, Any] | None = None,
    retries: int | None = 0,
    console: Console | None = None,
    mixes=None,
) -> RunResult:
    console = console or Console()
    spec_module.load_pipeline(pipeline)  # a bad spec stops here, naming file and field
    local_airflow.write_config()
    local_airflow.use_in_this_process()
    if local_airflow.migrate(log=lambda text: console.print(f"  {text}")):
        console.print("  metadata database ready")
    ensure_seeded(pipeline, ds, users, console, mixes)  # the sources its spec declares, for ds

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    run_dir = paths.state_dir() / "runs" / pipeline
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"ds={ds}.{stamp}.log"
    if retries is not None:
        os.environ["WATER_RETRIES"] = str(retries)  # read by the factory when the DAG is parsed
    console.print(f"running [bold]{pipeline}[/] for ds={ds} (log: {paths.shown(log_path)})")
    started = datetime.now(timezone.utc)
    error = _dag_test_logged(pipeline, ds, conf, log_path, console, started)
    result = summary.collect(pipeline, ds) or {"dag_id": pipeline, "ds": ds, "state": "failed", "tasks": []}
    if error and result.get("state") == "success":
        result["state"] = "failed"
    if error:
        result["error"] = error
    result["log"] = str(log_path)
    json_path = run_dir / f"ds={ds}.json"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    return RunResult(result, log_path, json_path)


def _dag_test(pipeline: str, ds: str, conf: dict[str, Any] | None) -> None:
    """What `airflow dags test PIPELINE DS --conf ...` does, in this process."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    @providers_configuration_loaded
    def run() -> None:
        bag = DagBag(str(paths.project_root() / "dags"))
        dag = bag.dags.get(pipeline)
        if dag is None:
            errors = "\n".join(f"{path}: {error}" for path, error in bag.import_errors.items())
            raise RuntimeError(f"DAG {pipeline!r} did not load.\n{errors}")
        day = date.fromisoformat(ds)
        dag.test(logical_date=datetime(day.year, day.month, day.day, tzinfo=timezone.utc), run_conf=conf)

    run()


def _import_airflow_models() -> None:
    import airflow.dag_processing.dagbag  # noqa: F401
    import airflow.models.dagrun  # noqa: F401
    import airflow.models.taskinstance  # noqa: F401
    import airflow.models.xcom  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    configure_mappers()


def _dag_test_logged(
    pipeline: str, ds: str, conf: dict[str, Any] | None, log_path: Path, console: Console, since: datetime
) -> str | None:
    """Run the DAG with stdout/stderr (Airflow's logs, the tasks' processes) going to log_path,
    while a thread prints task states on the terminal. Returns an error text, or None."""
    import sys
    import threading
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = Console(
        file=os.fdopen(os.dup(saved_err if console.stderr else saved_out), "w", buffering=1),
        force_terminal=console.is_terminal,
        width=console.width,
    )
    stop = threading.Event()
    # Built here, before the run parses its own: Airflow's DAG context is one per process, so
    # two DAGs built at once in two threads would mix their tasks.
    dag = summary.pipeline_dag(pipeline)
    follower = threading.Thread(target=_follow, args=(stop, pipeline, ds, since, terminal, dag), daemon=True)
    error = None
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            _import_airflow_models()  # here, not in two threads at once: imports would deadlock
            follower.start()
            _dag_test(pipeline, ds, conf)
        except BaseException as exc:  # noqa: BLE001 - reported in the summary, never lost
            error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            if isinstance(exc, KeyboardInterrupt):
                raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            stop.set()
            if follower.is_alive():
                follower.join(timeout=5)
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.file.close()
    return error


def _follow(stop, pipeline: str, ds: str, since: datetime, console: Console, dag: Any) -> None:
    """Print each task once per state it reaches, until `stop` is set."""
    shown: dict[str, str] = {}
    started: dict[str, float] = {}
    messages = _OutboxFollower()
    while True:
        done = stop.is_set()

        try:
            states = summary.task_states(pipeline, ds, since=since)
        except Exception:  # the child may hold a write lock on SQLite for a moment
            states = {}
        for task_id in summary.in_dag_order(dag, list(states)):
            state = states[task_id]
            if shown.get(task_id) == state or state in ("none", "scheduled", "queued"):
                continue
            shown[task_id] = state
            if state == "running":
                started[task_id] = time.monotonic()
            took = f" ({time.monotonic() - started[task_id]:.1f}s)" if task_id in started and state != "running" else ""
            console.print(f"  {STATE_MARK.get(state, '·')} {task_id:<18} {state}{took}")
        for record in messages.new():
            where = "outbox" if record["delivery"] == "outbox" else "Slack failed, kept in the outbox"
            console.print(f"  ✉ [bold]{record['text'].splitlines()[0]}[/] [dim]({where})[/]", highlight=False)
        if done:
            return
        stop.wait(0.5)


class _OutboxFollower:
    """New notifications in the outbox (water.notify) since this follower was made."""

    def __init__(self) -> None:
        from water import notify

        self.path = notify.outbox_path()
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open() as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a line still being written waits for the next look
        self.offset += len(complete.encode())
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def failure_tail(result: RunResult, lines: int = 40) -> str:
    """The last traceback in the run's log, or its last lines."""
    text = result.log_path.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(text) if line.startswith("Traceback")]
    chunk = text[starts[-1] : starts[-1] + lines] if starts else text[-lines:]
    return "\n".join(chunk)
