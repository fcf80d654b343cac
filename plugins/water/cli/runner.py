"""`water run`: one pipeline run on the local target, the way `airflow dags test` runs it.

Prepares the project's Airflow home, seeds the app data when the day is missing, runs the
DAG with `DAG.test()` in this process (what `airflow dags test` calls; doing it here spares a
second interpreter and Airflow import) with the run's log going to a file, prints each task
as it changes state, then the summary table; writes the summary as JSON beside the log.

Everything is checked before anything changes: the spec, the arguments, the DAG file, the
conf against the DAG's params. Then the run holds its pipeline and day (water.cli.ownership)
until it ends; it removes what killed runs left (staging folders, cgroups) and owns its
processes: an interrupt (SIGINT/SIGTERM) kills them, writes the summary as "interrupted" and
exits 130 or 143, without the run's end (a FAILED alert) that a failed task would bring.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from water import masking, paths
from water import spec as spec_module
from water.cli import local_airflow, ownership, summary

if TYPE_CHECKING:
    from airflow.sdk import DAG

STATE_MARK = {
    "success": "[green]✓[/]",
    "failed": "[red]✗[/]",
    "running": "[cyan]▶[/]",
    "upstream_failed": "[red]↯[/]",
    "skipped": "[yellow]↷[/]",
    "up_for_retry": "[yellow]↻[/]",
}


@dataclass
class RunResult:
    summary: dict[str, Any]
    log_path: Path
    json_path: Path

    @property
    def ok(self) -> bool:
        return self.summary.get("state") == "success"


class RunArgumentError(ValueError):
    """The run cannot start as asked: no DAG for the pipeline, or a conf its params refuse."""


@dataclass
class _Progress:
    """What an interrupt needs to close the run: where it writes, and the task states seen."""

    pipeline: str
    ds: str
    conf: dict[str, Any]
    terminal_fd: int
    log_path: Path | None = None  # set when the DAG run starts
    json_path: Path | None = None
    states: dict[str, str] = field(default_factory=dict)


def ensure_seeded(
    pipeline: str, ds: str, users: int | None, console: Console, mixes: dict[date, dict[str, float]] | None = None
) -> None:
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
    mixes: dict[date, dict[str, float]] | None = None,
) -> RunResult:
    console = console or Console()
    spec = spec_module.load_pipeline(pipeline)  # a bad spec stops here, naming file and field
    from water.cli.seeding import check_seed_arguments

    check_seed_arguments(spec, users=users, mixes=mixes)
    ownership.check_not_running(pipeline, ds)  # at once, before the slower checks below
    if retries is not None:
        os.environ["WATER_RETRIES"] = str(retries)  # read by the factory when the DAG is parsed
    local_airflow.use_in_this_process()
    dag = load_dag(pipeline)
    check_conf(dag, conf)

    with ownership.run_lock(pipeline, ds):
        progress = _Progress(pipeline, ds, dict(conf or {}), terminal_fd=os.dup(2))
        try:
            with ownership.InterruptGuard(lambda signum: _interrupted(signum, progress)):
                return _run_locked(dag, ds, users, conf, console, mixes, progress)
        finally:
            os.close(progress.terminal_fd)


def _run_locked(
    dag: DAG,
    ds: str,
    users: int | None,
    conf: dict[str, Any] | None,
    console: Console,
    mixes: dict[date, dict[str, float]] | None,
    progress: _Progress,
) -> RunResult:
    pipeline = dag.dag_id
    paths.private_dir(paths.state_dir())
    _remove_debris(pipeline, console)
    local_airflow.write_config()
    if local_airflow.migrate(log=lambda text: console.print(f"  {text}")):
        console.print("  metadata database ready")
    ensure_seeded(pipeline, ds, users, console, mixes)  # the sources its spec declares, for ds

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = paths.private_dir(paths.state_dir() / "runs" / pipeline)
    paths.private_dir(run_dir.parent)
    log_path = run_dir / f"ds={ds}.{stamp}.log"
    json_path = run_dir / f"ds={ds}.json"
    progress.log_path, progress.json_path = log_path, json_path
    console.print(f"running [bold]{pipeline}[/] for ds={ds} (log: {paths.shown(log_path)})")
    started = datetime.now(UTC)
    error = _dag_test_logged(dag, ds, conf, log_path, console, started, progress)
    result = summary.collect(pipeline, ds) or {"dag_id": pipeline, "ds": ds, "state": "failed", "tasks": []}
    if error and result.get("state") == "success":
        result["state"] = "failed"
    if error:
        result["error"] = error
    result["log"] = str(log_path)
    paths.write_atomic(json_path, json.dumps(result, indent=2, sort_keys=True, default=str), private=True)
    return RunResult(result, log_path, json_path)


def load_dag(pipeline: str) -> DAG:
    """The pipeline's DAG as Airflow parses dags/; RunArgumentError naming the file when no DAG
    file builds it or its file does not import."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    dags = paths.project_root() / "dags"
    own_file = dags / f"{pipeline}.py"  # the usual place (`water new`): parse that file alone
    with _stdout_to_stderr():  # Airflow logs while parsing; stdout is kept for `--json`
        bag = providers_configuration_loaded(lambda: DagBag(str(own_file if own_file.is_file() else dags)))()
        if pipeline not in bag.dags and own_file.is_file():
            bag = providers_configuration_loaded(lambda: DagBag(str(dags)))()
    if pipeline in bag.dags:
        return bag.dags[pipeline]
    if bag.import_errors:
        errors = "\n".join(f"{paths.shown(path)}: {str(error).strip()}" for path, error in sorted(bag.import_errors.items()))
        raise RunArgumentError(f"the DAG {pipeline!r} did not load; import errors in {paths.shown(dags)}:\n{errors}")
    raise RunArgumentError(
        f"no DAG file in {paths.shown(dags)} builds {pipeline!r} (its spec is "
        f"{paths.shown(spec_module.spec_path(pipeline))}). Create {paths.shown(dags / f'{pipeline}.py')} with:\n\n"
        f"    from water.factory import build_pipeline_dag\n\n"
        f'    dag = build_pipeline_dag("{pipeline}")\n\n'
        "(`water new NAME` writes this file, with the spec, for a new pipeline)"
    )


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 points at stderr for the block (whatever holds stdout: Python's
    sys.stdout, a log handler made earlier, a child process)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def check_conf(dag: DAG, conf: dict[str, Any] | None) -> None:
    """Refuse a conf the DAG's params would refuse (as Airflow does when it creates the run,
    which DAG.test does only after deleting the day's previous run), and unknown keys."""
    if conf is None:
        return
    if not isinstance(conf, dict):
        raise RunArgumentError(f'--conf must be a JSON object, e.g. \'{{"force_tier": "medium"}}\', not {json.dumps(conf)}')
    from airflow.sdk.exceptions import ParamValidationError

    known = ", ".join(dag.params) or "none"
    for key, value in conf.items():
        if key not in dag.params:
            raise RunArgumentError(f"--conf {key!r} is not a parameter of {dag.dag_id} (its parameters: {known})")
        param = copy.copy(dag.params.get_param(key))
        try:
            param.resolve(value=value)
        except ParamValidationError as exc:
            cause = exc.args[0] if exc.args else exc
            detail = getattr(cause, "message", str(cause))
            raise RunArgumentError(
                f"--conf {key}={json.dumps(value)} is not allowed: {detail}. {key}: {param.description or param.schema}"
            ) from None
    merged = copy.deepcopy(dag.params)
    try:
        merged.update(conf)
        merged.validate()
    except ParamValidationError as exc:
        raise RunArgumentError(f"--conf {json.dumps(conf)}: {exc}") from None


def _remove_debris(pipeline: str, console: Console) -> None:
    """What killed runs left: staging folders in the pipeline's lake, cgroups of dead owners."""
    from water.cli.seeding import lake_pipeline_dir
    from water.targets.local.engines.partitions import remove_dead_debris
    from water.targets.local.engines.process import remove_stale_cgroups

    for folder in remove_dead_debris(lake_pipeline_dir(pipeline)):
        console.print(f"  removed {paths.shown(folder)} (left by a run that was killed)", highlight=False)
    cgroups = sorted({folder.name for folder in remove_stale_cgroups()})  # one name per controller
    if cgroups:
        console.print(f"  removed the cgroups of killed runs: {', '.join(cgroups)}", highlight=False)


def _interrupted(signum: int, progress: _Progress) -> None:
    """SIGINT/SIGTERM during a run (in InterruptGuard's thread): kill the run's processes,
    drop its staging folders, write the summary as interrupted, exit 128+signum."""
    from water.targets.local.engines.partitions import discard_own_staging
    from water.targets.local.engines.process import kill_running

    name = signal.Signals(signum).name
    lines = [f"interrupted ({name}): {progress.pipeline} ds={progress.ds} stopped, its processes killed"]
    try:
        kill_running()
        discard_own_staging()
        if progress.json_path is not None and progress.log_path is not None:  # both set as the DAG run starts
            tasks: list[dict[str, Any]] = [
                {
                    "task_id": task_id,
                    "state": "interrupted" if state == "running" else state,
                    "try_number": None,
                    "seconds": None,
                    "figures": {},
                }
                for task_id, state in dict(progress.states).items()
            ]
            result = {
                "dag_id": progress.pipeline,
                "ds": progress.ds,
                "state": "interrupted",
                "conf": progress.conf,
                "tasks": tasks,
                "error": f"interrupted by {name}",
                "log": str(progress.log_path),
            }
            paths.write_atomic(progress.json_path, json.dumps(result, indent=2, sort_keys=True, default=str), private=True)
            lines.append(f"summary: {paths.shown(progress.json_path)}; log: {paths.shown(progress.log_path)}")
        flusher = threading.Thread(target=_flush_std, daemon=True)  # the main thread may hold their locks
        flusher.start()
        flusher.join(timeout=0.5)
    except BaseException as exc:
        lines.append(f"(while stopping: {type(exc).__name__}: {exc})")
    finally:
        text = "\n".join(lines) + "\n"
        for fd in (2, progress.terminal_fd) if progress.log_path else (progress.terminal_fd,):
            with contextlib.suppress(OSError):
                os.write(fd, text.encode())
        os._exit(128 + signum)


def _flush_std() -> None:
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _dag_test(dag: DAG, ds: str, conf: dict[str, Any] | None) -> None:
    """What `airflow dags test PIPELINE DS --conf ...` does, in this process."""
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    day = date.fromisoformat(ds)
    logical_date = datetime(day.year, day.month, day.day, tzinfo=UTC)
    providers_configuration_loaded(lambda: dag.test(logical_date=logical_date, run_conf=conf))()


def _import_airflow_models() -> None:
    import airflow.dag_processing.dagbag
    import airflow.models.dagrun
    import airflow.models.taskinstance
    import airflow.models.xcom  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    configure_mappers()


def _dag_test_logged(
    dag: DAG, ds: str, conf: dict[str, Any] | None, log_path: Path, console: Console, since: datetime, progress: _Progress
) -> str | None:
    """Run the DAG with stdout/stderr (Airflow's logs, the tasks' processes) going to log_path,
    while a thread prints task states on the terminal. Returns an error text, or None."""
    import sys
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
    pipeline = dag.dag_id
    follower = threading.Thread(target=_follow, args=(stop, pipeline, ds, since, terminal, dag, progress.states), daemon=True)
    error = None
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            _import_airflow_models()  # here, not in two threads at once: imports would deadlock
            masking.mask_process_logs()  # secrets Airflow knows never reach the run's log
            follower.start()
            _dag_test(dag, ds, conf)
        except BaseException as exc:
            error = masking.redact(f"{type(exc).__name__}: {exc}")
            print(masking.redact(traceback.format_exc()), file=sys.stderr)
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


def _follow(
    stop: threading.Event, pipeline: str, ds: str, since: datetime, console: Console, dag: DAG, shown: dict[str, str]
) -> None:
    """Print each task once per state it reaches, until `stop` is set; `shown` keeps the states."""
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
