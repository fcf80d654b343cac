"""The `water` command: the chores of running pipelines, in one place."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Optional

import typer
from rich.console import Console

from water import __version__, paths

app = typer.Typer(
    name="water",
    help="water: ML pipelines on Apache Airflow 3. Each pipeline is one spec in include/pipelines/.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

LOCAL = "Local runs"


def _version(value: bool) -> None:
    if value:
        console.print(f"water {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = None,
) -> None:
    """Run `water COMMAND --help` for a command's options."""


def _ds(value: Optional[str], pipeline: str) -> str:
    from water.spec import load_pipeline

    if value is None:
        return load_pipeline(pipeline).start_date.isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _mixes(values: list[str]) -> dict[date, tuple[float, float, float]]:
    from water.seed import parse_mix

    mixes = {}
    for item in values:
        day, _, mix = item.partition("=")
        try:
            mixes[date.fromisoformat(day)] = parse_mix(mix)
        except ValueError as exc:
            raise typer.BadParameter(f"--mix {item!r}: {exc}; write e.g. 2026-11-02=80/15/5") from None
    return mixes


@app.command(rich_help_panel=LOCAL)
def run(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name (a spec in include/pipelines/).")] = "recipe_engagement",
    ds: Annotated[Optional[str], typer.Option("--date", help="Logical date YYYY-MM-DD [default: the spec's start_date].")] = None,
    users: Annotated[Optional[int], typer.Option(help="Demo users to seed when the day is missing or sized otherwise [default: 50,000, or what is seeded].")] = None,
    conf: Annotated[Optional[str], typer.Option(help="DAG run conf as JSON.")] = None,
    retries: Annotated[int, typer.Option(help="Retries per task for this run (scheduled runs use the spec's).")] = 0,
    mix: Annotated[list[str], typer.Option(help="Seed the day with this class mix, e.g. 2026-11-02=80/15/5 (demo).")] = [],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a pipeline once on the local target (airflow dags test) and print its summary."""
    from water import runner, summary
    from water.spec import SpecError

    run_conf = None
    if conf:
        try:
            run_conf = json.loads(conf)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--conf is not JSON: {exc}") from None
    try:
        ds = _ds(ds, pipeline)
        result = runner.run_pipeline(
            pipeline, ds, users=users, conf=run_conf, retries=retries, console=err if as_json else console, mixes=_mixes(mix)
        )
    except SpecError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(result.summary, indent=2, sort_keys=True, default=str))
    else:
        summary.render(result.summary, console)
        console.print(f"summary: {paths.shown(result.json_path)}")
    if not result.ok:
        failed = [t["task_id"] for t in result.summary.get("tasks", []) if t["state"] == "failed"]
        err.print(f"[bold red]run failed[/] at {', '.join(failed) or 'start-up'}; log tail:")
        err.print(runner.failure_tail(result), markup=False, highlight=False)
        raise typer.Exit(1)


@app.command(rich_help_panel=LOCAL)
def seed(
    ds: Annotated[Optional[str], typer.Option("--date", help="Last day to seed [default: the demo spec's start_date].")] = None,
    days: Annotated[int, typer.Option(min=1, help="How many days, ending at --date.")] = 1,
    users: Annotated[int, typer.Option(min=100, help="Users in the app.")] = 50_000,
    mix: Annotated[list[str], typer.Option(help="Class mix cook/browse/dormant for a day, e.g. 2026-11-02=80/15/5.")] = [],
    seed_value: Annotated[int, typer.Option("--seed", help="Random seed; the same seed writes the same bytes.")] = 7,
) -> None:
    """Write the demo's synthetic source data (warehouse tables and label feed)."""
    from water import runner
    from water import seed as seeding

    end = date.fromisoformat(_ds(ds, runner.DEMO_PIPELINE))
    result = seeding.seed(
        paths.warehouse_dir(),
        runner.lake_pipeline_dir(runner.DEMO_PIPELINE),
        seeding.day_range(end, days),
        users,
        mixes=_mixes(mix),
        seed_value=seed_value,
        progress=lambda text: console.print(f"  {text}"),
    )
    for ds_, figures in result.days.items():
        mix_text = "/".join(f"{m:.0%}" for m in figures["mix"])
        state = "written" if figures["written"] else "already there"
        console.print(f"{ds_}: {figures['events']:,} events, {figures['labels']:,} labels, mix {mix_text} ({state})")
    console.print(f"warehouse: {paths.warehouse_dir()}")


@app.command(rich_help_panel=LOCAL)
def validate() -> None:
    """Check every pipeline spec and that every DAG file imports; exit 1 naming file and field."""
    from water.spec import SpecError, load_spec

    problems = 0
    for spec_file in sorted(paths.pipelines_dir().glob("*.yaml")):
        try:
            load_spec(spec_file)
            console.print(f"[green]ok[/]   {paths.shown(spec_file)}")
        except SpecError as exc:
            problems += 1
            console.print(f"[red]bad[/]  {exc}")
    from water import local_airflow

    local_airflow.use_in_this_process()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(paths.project_root() / "dags"))
    for path, error in sorted(bag.import_errors.items()):
        problems += 1
        console.print(f"[red]import error[/] {path}:\n  {str(error).strip()}")
    console.print(f"{len(bag.dags)} DAGs load, {problems} problem(s)")
    if problems:
        raise typer.Exit(1)


def main() -> None:
    import gc

    try:
        app()
    finally:
        # Airflow leaves a large heap; the interpreter's final collection of it takes seconds
        # and frees nothing the OS would not. Freeze it, so the command exits at once.
        gc.freeze()
