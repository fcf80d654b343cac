"""`water run`: one pipeline run on the local target through `airflow dags test`.

Prepares the project's Airflow home, seeds the demo lake when the day is missing, runs the
DAG in a child `airflow dags test` (its log goes to a file), prints each task as it changes
state, then the summary table; writes the summary as JSON beside the log.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from water import local_airflow, paths, seed, spec as spec_module, summary

DEFAULT_USERS = 50_000
DEMO_PIPELINE = "recipe_engagement"
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
    """Seed the demo lake for ds when it is missing, or when another user count is asked for."""
    manifest_path = paths.warehouse_dir() / seed.MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    wanted = users or manifest.get("users") or DEFAULT_USERS
    day = date.fromisoformat(ds)
    known = manifest.get("days", {}).get(ds)
    want_mix = (mixes or {}).get(day)
    if manifest.get("users") == wanted and known and (want_mix is None or known["mix"] == [round(m, 6) for m in want_mix]):
        return
    started = time.monotonic()
    result = seed.seed(
        paths.warehouse_dir(),
        lake_pipeline_dir(pipeline),
        [day],
        wanted,
        mixes=mixes,
        progress=lambda text: console.print(f"  {text}"),
    )
    figures = result.days[ds]
    console.print(
        f"  seeded {wanted:,} users, {figures['events']:,} events, {figures['labels']:,} labels "
        f"in {time.monotonic() - started:.1f}s"
    )


def lake_pipeline_dir(pipeline: str) -> Path:
    from water.local.partitions import local_path

    return local_path(f"{paths.lake_uri().rstrip('/')}/{pipeline}")


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
    if pipeline == DEMO_PIPELINE:
        ensure_seeded(pipeline, ds, users, console, mixes)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    run_dir = paths.state_dir() / "runs" / pipeline
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"ds={ds}.{stamp}.log"
    argv = [local_airflow.airflow_bin(), "dags", "test", pipeline, ds]
    if conf:
        argv += ["--conf", json.dumps(conf)]
    env = {**os.environ, **local_airflow.environment()}
    if retries is not None:
        env["WATER_RETRIES"] = str(retries)
    console.print(f"running [bold]{pipeline}[/] for ds={ds} (log: {log_path.relative_to(paths.project_root()) if log_path.is_relative_to(paths.project_root()) else log_path})")
    started = datetime.now(timezone.utc)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        _follow(proc, pipeline, ds, started, console)
    result = summary.collect(pipeline, ds) or {"dag_id": pipeline, "ds": ds, "state": "failed", "tasks": []}
    if proc.returncode != 0 and result.get("state") == "success":
        result["state"] = "failed"
    result["log"] = str(log_path)
    json_path = run_dir / f"ds={ds}.json"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    return RunResult(result, log_path, json_path)


def _follow(proc: subprocess.Popen, pipeline: str, ds: str, since: datetime, console: Console) -> None:
    """Print each task once per state it reaches, until the child exits."""
    shown: dict[str, str] = {}
    started: dict[str, float] = {}
    while True:
        done = proc.poll() is not None
        try:
            states = summary.task_states(pipeline, ds, since=since)
        except Exception:  # the child may hold a write lock on SQLite for a moment
            states = {}
        for task_id in sorted(states, key=summary._order):
            state = states[task_id]
            if shown.get(task_id) == state or state in ("none", "scheduled", "queued"):
                continue
            shown[task_id] = state
            if state == "running":
                started[task_id] = time.monotonic()
            took = f" ({time.monotonic() - started[task_id]:.1f}s)" if task_id in started and state != "running" else ""
            console.print(f"  {STATE_MARK.get(state, '·')} {task_id:<18} {state}{took}")
        if done:
            return
        time.sleep(0.5)


def failure_tail(result: RunResult, lines: int = 40) -> str:
    """The last traceback in the run's log, or its last lines."""
    text = result.log_path.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(text) if line.startswith("Traceback")]
    chunk = text[starts[-1] : starts[-1] + lines] if starts else text[-lines:]
    return "\n".join(chunk)
