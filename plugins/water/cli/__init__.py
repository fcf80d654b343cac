"""The `water` command: the chores of running pipelines, in one place."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from water import __version__, paths

if TYPE_CHECKING:
    from pathlib import Path

    from water.cli.airflow_api import AirflowAPI, ApiError
    from water.spec import PipelineSpec

app = typer.Typer(
    name="water",
    help="water: ML pipelines on Apache Airflow 3. Each pipeline is one spec in include/pipelines/.",
    epilog=(
        "Exit codes: 0 success · 1 the work failed (a run, validation, or a docker/helm/kubectl "
        "command, whose own message is shown) · 2 bad input (arguments, a spec, a pipeline name, "
        "water.toml, an unknown environment) · 75 another `water run` holds the pipeline and day · "
        "127 docker, helm or kubectl is not installed · 130 interrupted (Ctrl-C, SIGINT) · 143 terminated (SIGTERM)."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

# Help panels: where a command acts.
LOCAL = "Local"
CLUSTER = "Cluster"
DEPLOY = "Deploy"
TOOL_MISSING = 127  # like a shell's "command not found"
RUN_BUSY = 75  # sysexits' EX_TEMPFAIL: try again later


def _version(value: bool) -> None:
    if value:
        console.print(f"water {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = None,
) -> None:
    """Run `water COMMAND --help` for a command's options."""


def _ds(value: str | None, pipeline: str) -> str:
    from water.spec import load_pipeline

    if value is None:
        return load_pipeline(pipeline).start_date.isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _run_ds(value: str | None, pipeline: str) -> str:
    """The logical date of a run: not before the spec's start_date, where Airflow runs no task."""
    from water.spec import load_pipeline, spec_path

    ds = _ds(value, pipeline)
    start = load_pipeline(pipeline).start_date
    if date.fromisoformat(ds) < start:
        raise typer.BadParameter(
            f"{ds} is before {pipeline}'s start_date {start} ({paths.shown(spec_path(pipeline))}); "
            "Airflow runs no task of a run before it"
        )
    return ds


def _mixes(values: list[str] | None, pipeline: str) -> dict[date, dict[str, float]]:
    """--mix DAY=SHARES in the pipeline's own classes (80/15/5 in class order, or cook=80,...)."""
    from water.cli.seeding import parse_mix
    from water.spec import load_pipeline

    classes = load_pipeline(pipeline).classes if values else []
    mixes = {}
    for item in values or []:
        day, _, mix = item.partition("=")
        try:
            mixes[date.fromisoformat(day)] = parse_mix(mix, classes)
        except ValueError as exc:
            example = "/".join(str(round(100 / len(classes))) for _ in classes)
            raise typer.BadParameter(f"--mix {item!r}: {exc}; write e.g. {day or '2026-11-02'}={example}") from None
    return mixes


@app.command(rich_help_panel=LOCAL)
def run(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name (a spec in include/pipelines/).")] = "recipe_engagement",
    ds: Annotated[str | None, typer.Option("--date", help="Logical date YYYY-MM-DD [default: the spec's start_date].")] = None,
    users: Annotated[
        int | None,
        typer.Option(
            min=100,
            help="Users the pipeline's seed entrypoint writes when the day is missing or sized otherwise [default: the seed's].",
        ),
    ] = None,
    conf: Annotated[str | None, typer.Option(help="DAG run conf as a JSON object, checked against the DAG's params.")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Retries per task for this run (scheduled runs use the spec's).")] = 0,
    mix: Annotated[
        list[str] | None,
        typer.Option(
            help="Seed the day with this mix of the pipeline's classes, e.g. 2026-11-02=80/15/5 (needs a seed entrypoint)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a pipeline once on the local target (airflow dags test) and print its summary.

    Every argument is checked before anything changes; one run per pipeline and day at a time.
    """
    from water.cli import runner, summary
    from water.cli.ownership import RunBusy
    from water.cli.seeding import SeedError
    from water.spec import SpecError

    run_conf = _conf(conf)
    try:
        ds = _run_ds(ds, pipeline)
        result = runner.run_pipeline(
            pipeline,
            ds,
            users=users,
            conf=run_conf,
            retries=retries,
            console=err if as_json else console,
            mixes=_mixes(mix, pipeline),
        )
    except (SpecError, SeedError, runner.RunArgumentError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(2) from None
    except RunBusy as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(RUN_BUSY) from None
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
    pipeline: Annotated[
        str, typer.Argument(help="Pipeline whose source data to write (its spec's sources and local_data).")
    ] = "recipe_engagement",
    ds: Annotated[str | None, typer.Option("--date", help="Last day to seed [default: the spec's start_date].")] = None,
    days: Annotated[int, typer.Option(min=1, help="How many days, ending at --date.")] = 1,
    users: Annotated[int | None, typer.Option(min=100, help="Users the seed entrypoint writes [default: the seed's].")] = None,
    mix: Annotated[
        list[str] | None, typer.Option(help="Mix of the pipeline's classes for a day, e.g. 2026-11-02=80/15/5.")
    ] = None,
    seed_value: Annotated[
        int | None, typer.Option("--seed", min=0, help="Random seed; the same seed writes the same bytes [default: the seed's].")
    ] = None,
) -> None:
    """Write a pipeline's local source data: its fixtures, and its seed entrypoint's tables for the days."""
    from water.cli.seeding import SeedError, day_range, seed_pipeline
    from water.spec import SpecError, load_pipeline

    try:
        spec = load_pipeline(pipeline)
        end = date.fromisoformat(_ds(ds, pipeline))
        seed_pipeline(
            spec,
            day_range(end, days),
            users=users,
            mixes=_mixes(mix, pipeline),
            seed_value=seed_value,
            progress=lambda text: console.print(text, markup=False, highlight=False),
        )
    except (SpecError, SeedError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"warehouse: {paths.shown(paths.warehouse_dir())}", highlight=False)


def _checked_specs(ok: Callable[[Path], None] = lambda spec_file: None) -> tuple[dict[str, PipelineSpec], list[str]]:
    """Every spec of the project, loaded, and its Vertex AI requests checked by
    google-cloud-aiplatform's own types: (the good ones by name, a message per bad file)."""
    from water.spec import SpecError, load_spec
    from water.targets.cloud import vertex

    specs: dict[str, PipelineSpec] = {}
    bad: list[str] = []
    for spec_file in sorted(paths.pipelines_dir().glob("*.yaml")):
        try:
            spec = load_spec(spec_file)
            if vertex.has_vertex_steps(spec):
                vertex.validate_spec(spec, paths.shown(spec_file))
        except SpecError as exc:
            bad.append(str(exc))
            continue
        specs[spec_file.stem] = spec
        ok(spec_file)
    return specs, bad


@app.command(rich_help_panel=LOCAL)
def validate() -> None:
    """Check every pipeline spec and that every DAG file imports; exit 1 naming file and field.
    A spec's Vertex AI requests are checked by google-cloud-aiplatform's own types.
    Pipelines whose trigger.on form a cycle are named (a warning: completion events start none of them)."""
    from water.control import cycle_reason, trigger_cycles

    specs, bad = _checked_specs(lambda spec_file: console.print(f"[green]ok[/]   {paths.shown(spec_file)}"))
    for message in bad:
        console.print(f"[red]bad[/]  {escape(message)}")
    problems = len(bad)
    for cycle in trigger_cycles(specs):
        console.print(f"[yellow]warning[/] {escape(cycle_reason(cycle, specs))}", highlight=False)
    from water.cli import local_airflow

    local_airflow.use_in_this_process()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(paths.project_root() / "dags"))
    for path, error in sorted(bag.import_errors.items()):
        problems += 1
        console.print(f"[red]import error[/] {path}:\n  {str(error).strip()}")
    console.print(f"{len(bag.dags)} DAGs load, {problems} problem(s)")
    if problems:
        raise typer.Exit(1)


@app.command(rich_help_panel=LOCAL)
def report(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")] = "recipe_engagement",
    ds: Annotated[str | None, typer.Option("--date", help="Logical date YYYY-MM-DD [default: the newest report].")] = None,
) -> None:
    """Print the path of a run's HTML report (written by every run under the lake's reports/)."""
    from water import lake
    from water.targets.local.engines.partitions import local_path

    reports = local_path(lake.Lake(paths.lake_uri(), pipeline).dataset_uri(lake.REPORTS))
    days = sorted(p.name.removeprefix("ds=") for p in reports.glob("ds=*") if (p / "report.html").is_file())
    if ds is not None:
        ds = _ds(ds, pipeline)
    chosen = ds or (days[-1] if days else None)
    if chosen not in days:
        known = f"; reports exist for {', '.join(days)}" if days else ""
        err.print(
            f"no report for {pipeline} ds={chosen or '-'} under {paths.shown(reports)}{known} — `water run {pipeline}` writes one"
        )
        raise typer.Exit(1)
    print(reports / f"ds={chosen}" / "report.html")


@app.command("lineage", rich_help_panel=LOCAL)
def lineage_graph(  # not `lineage`: the name of its module, water.cli.lineage
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")] = "recipe_engagement",
    ds: Annotated[str | None, typer.Option("--date", help="Logical date YYYY-MM-DD \\[default: the newest run's].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the graph as JSON.")] = False,
) -> None:
    """Print what each step of a local run read and wrote (its OpenLineage events): step → inputs → outputs.

    The latest run of the day, steps in graph order; the lake root is written `lake:`.
    """
    from water.cli import lineage as graph
    from water.spec import pipeline_names, spec_path

    day = None
    if ds is not None:
        try:
            day = date.fromisoformat(ds)
        except ValueError:
            raise typer.BadParameter(f"{ds!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
    if not spec_path(pipeline).is_file():
        err.print(f"[red]no pipeline {escape(pipeline)!r}[/]; there are: {escape(', '.join(pipeline_names()))}", highlight=False)
        raise typer.Exit(2)
    try:
        found = graph.load(pipeline, day)
    except graph.LineageError as exc:
        err.print(escape(str(exc)), highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(found.as_json(), indent=2))
    else:
        graph.render(found, console)


@app.command(rich_help_panel=DEPLOY)
def catalog(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")] = "recipe_engagement",
    lake: Annotated[
        str,
        typer.Option(envvar="WATER_CLOUD_LAKE", help="The cloud lake root the tables point at (WATER_LAKE of the deployment)."),
    ] = "s3://LAKE-BUCKET/lake",
) -> None:
    """Print the Glue Data Catalog DDL (Athena) the pipeline's SQL reads, columns from a local run."""
    from water.cli.catalog import CatalogError, catalog_ddl
    from water.cli.seeding import lake_pipeline_dir
    from water.spec import SpecError, load_pipeline

    try:
        spec = load_pipeline(pipeline)
        print(catalog_ddl(spec, lake_pipeline_dir(pipeline), lake))
    except SpecError as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(2) from None
    except CatalogError as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(1) from None


@app.command(rich_help_panel=LOCAL)
def new(
    name: Annotated[str, typer.Argument(help="The pipeline's name, snake_case (e.g. churn).")],
    example: Annotated[
        str, typer.Option("--from", help="The pipeline to start from (its steps, scripts and local data).")
    ] = "recipe_engagement",
) -> None:
    """Scaffold a new pipeline from an example (its spec, every script its steps run, a DAG file); it runs as it is."""
    from water.cli import scaffold

    try:
        created = scaffold.scaffold(name, example=example)
    except scaffold.ScaffoldError as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"created pipeline [bold]{name}[/]:")
    for path in created:
        console.print(f"  {paths.shown(path)}", highlight=False)
    console.print("next:")
    console.print("  water validate                      # the specs and DAG imports", highlight=False)
    console.print(f"  water run {name}".ljust(38) + "# one run on the local target", highlight=False)
    console.print(f"  then make it yours: {paths.shown(created[0])} and the files it names", highlight=False)


# The local Airflow stack (water.cli.stack): a scheduler, the web UI and its REST API.


def _conf(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        conf = json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--conf is not JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise typer.BadParameter('--conf must be a JSON object, e.g. \'{"force_tier": "medium"}\'')
    return conf


def _stack_api() -> AirflowAPI:
    """The running stack's REST client; exit 1 saying `water up` when it is not up."""
    from water.cli import stack

    try:
        return stack.require().api()
    except stack.StackError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None


def _api_failed(exc: ApiError, pipeline: str) -> typer.Exit:
    """An Airflow REST error as a message and exit code: 2 for bad input, 1 otherwise."""
    if exc.status == 404:
        err.print(f"[red]no pipeline {pipeline!r} in the local stack[/] (its DAG is not parsed: see `water validate`)")
        return typer.Exit(2)
    detail = exc.detail.split("\n\n")[0]  # a param error goes on with the whole JSON schema
    err.print(f"[red]Airflow refused it[/] (HTTP {exc.status}): {escape(detail)}", highlight=False)
    return typer.Exit(2 if exc.status in (400, 422) else 1)


@app.command(rich_help_panel=LOCAL)
def up(
    port: Annotated[
        int, typer.Option(envvar="WATER_STACK_PORT", min=1, max=65535, help="Port of the web UI and REST API.")
    ] = 8080,
    database: Annotated[
        str | None,
        typer.Option(
            envvar="WATER_STACK_DATABASE",
            help="Metadata database URL [default: PostgreSQL on localhost:5432 if it answers (database water), else SQLite].",
        ),
    ] = None,
    seed_days: Annotated[
        int,
        typer.Option(
            min=0,
            help="Make sure each pipeline's seeded source data covers this many days up to today, so the UI's trigger (logical date: now) and the schedules find data; 0 to skip.",
        ),
    ] = 3,
) -> None:
    """Start a local Airflow (web UI, scheduler, dag-processor, triggerer) on the project; idempotent."""
    from water.cli import stack
    from water.cli.seeding import SeedError, day_range, seed_pipeline
    from water.spec import SpecError, load_pipeline, pipeline_names

    for name in pipeline_names() if seed_days else []:
        try:
            seed_pipeline(
                load_pipeline(name),
                day_range(date.today(), seed_days),
                progress=lambda text: console.print(f"  {text}", markup=False, highlight=False),
            )
        except (SpecError, SeedError) as exc:  # one pipeline's problem is its own: the stack still starts
            err.print(f"[yellow]{name}: not seeded[/]: {escape(str(exc))}", highlight=False)
    try:
        info = stack.up(port=port, database=database, log=lambda text: console.print(f"  {text}", highlight=False))
    except (stack.StackError, RuntimeError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"Airflow UI: [bold]{info.url}[/]   login: [bold]{info.user}[/] / [bold]{info.password}[/]", highlight=False)
    console.print(
        f"metadata database: {info.database}; logs: {paths.shown(stack.logs_dir())}; stop with `water down`", highlight=False
    )


@app.command(rich_help_panel=LOCAL)
def down() -> None:
    """Stop the local Airflow started by `water up` (nothing to do when it is not running)."""
    from water.cli import stack

    if not stack.down(log=lambda text: console.print(f"  {text}", highlight=False)):
        console.print("the local Airflow stack is not running")


@app.command(rich_help_panel=LOCAL)
def trigger(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")] = "recipe_engagement",
    ds: Annotated[str | None, typer.Option("--date", help="Logical date YYYY-MM-DD [default: the spec's start_date].")] = None,
    conf: Annotated[str | None, typer.Option(help="DAG run conf as JSON, checked against the DAG's params.")] = None,
    unpause: Annotated[
        bool, typer.Option("--unpause/--no-unpause", help="Unpause the DAG on trigger, as the UI's form does.")
    ] = True,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish; exit 1 if it fails.")] = False,
    timeout: Annotated[int, typer.Option(help="Seconds --wait waits.")] = 3600,
) -> None:
    """Trigger a run on the local stack (`water up`) through Airflow's REST API."""
    from water.cli import stack
    from water.cli.airflow_api import ApiError

    run_conf = _conf(conf)
    ds = _ds(ds, pipeline)
    api = _stack_api()
    log = lambda text: console.print(text, highlight=False)  # noqa: E731
    try:
        run = stack.trigger(api, pipeline, ds, run_conf, unpause, log=log)
        console.print(f"triggered {pipeline} ds={ds}: {run['dag_run_id']} ({run['state']})", highlight=False)
        console.print(f"  {api.url}/dags/{pipeline}/runs/{run['dag_run_id']}", highlight=False)
        if not wait:
            return
        run = stack.wait_for(api, pipeline, run["dag_run_id"], timeout, log=log)
    except ApiError as exc:
        raise _api_failed(exc, pipeline) from None
    except stack.StackError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    console.print(f"{pipeline} ds={ds}: [bold]{run['state']}[/] in {run.get('duration') or 0:.0f}s")
    if run["state"] != "success":
        err.print(f"[bold red]run failed[/] at {', '.join(stack.failed_tasks(api, pipeline, run['dag_run_id'])) or '-'}")
        raise typer.Exit(1)


@app.command(rich_help_panel=LOCAL)
def status(
    pipeline: Annotated[str | None, typer.Argument(help="One pipeline [default: every water DAG].")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Runs per pipeline, newest first.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Recent runs on the local stack: state, duration, sizing tier and drift verdict."""
    from water.cli import stack
    from water.cli.airflow_api import ApiError

    api = _stack_api()
    try:
        names = [pipeline] if pipeline else stack.pipelines(api)
        rows = [row for name in names for row in stack.recent_runs(api, name, runs)]
    except ApiError as exc:
        raise _api_failed(exc, pipeline or "") from None
    if as_json:
        print(json.dumps(rows, indent=2))
    elif rows:
        stack.render_status(rows, console)
    else:
        console.print(
            f"no runs yet: `water trigger {pipeline or 'PIPELINE'}`, or unpause it in the UI ({api.url})", highlight=False
        )


@app.command(rich_help_panel=LOCAL)
def backfill(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name.")],
    start: Annotated[str, typer.Option("--start", help="First day YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last day YYYY-MM-DD (included).")],
    conf: Annotated[str | None, typer.Option(help="DAG run conf as JSON for every run.")] = None,
    reprocess: Annotated[str, typer.Option(help="Days that already have a run: none (skip them), failed, completed.")] = "none",
    unpause: Annotated[
        bool, typer.Option("--unpause/--no-unpause", help="Unpause the DAG, as the UI's backfill form does.")
    ] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs it would create; create none.")] = False,
) -> None:
    """Backfill a pipeline's scheduled runs for a range of days on the local stack (Airflow's backfills API)."""
    from water.cli import stack
    from water.cli.airflow_api import ApiError

    if reprocess not in ("none", "failed", "completed"):
        raise typer.BadParameter(f"--reprocess {reprocess!r}: use none, failed or completed")
    run_conf = _conf(conf)
    start, end = _ds(start, pipeline), _ds(end, pipeline)
    api = _stack_api()
    try:
        backfill_id, dates = stack.backfill(
            api,
            pipeline,
            start,
            end,
            run_conf,
            reprocess,
            unpause,
            dry_run,
            log=lambda text: console.print(text, highlight=False),
        )
    except ApiError as exc:
        raise _api_failed(exc, pipeline) from None
    days = ", ".join(d[:10] for d in dates) or "none"
    if dry_run:
        console.print(f"would create {len(dates)} run(s) of {pipeline}: {days}", highlight=False)
    else:
        console.print(f"backfill {backfill_id} of {pipeline}: {len(dates)} run(s), {days}", highlight=False)
        console.print(f"  follow it with `water status {pipeline}` or in the UI: {api.url}/dags/{pipeline}", highlight=False)


@app.command(rich_help_panel=LOCAL)
def publish(
    pipeline: Annotated[str, typer.Argument(help="Pipeline to start (a spec in include/pipelines/).")],
    ds: Annotated[str, typer.Option("--date", help="The day to run, YYYY-MM-DD.")],
    conf: Annotated[str | None, typer.Option(help="The run's conf as a JSON object, checked against the DAG's params.")] = None,
    message_id: Annotated[
        str | None,
        typer.Option("--message-id", help="The message's id; the same id never starts a day twice [default: a new one]."),
    ] = None,
    unpause: Annotated[
        bool, typer.Option("--unpause/--no-unpause", help="On the local stack, unpause the pipeline, as `water trigger` does.")
    ] = True,
) -> None:
    """Send a control message to the queue water_control consumes: it starts PIPELINE for the day.

    The message is checked first as the control DAG checks it (pipeline, day, conf, message id);
    a refused one is not sent (exit 2). The broker is the local stack's (`water up`), or
    AIRFLOW_CONN_AMQP_DEFAULT, or the local RabbitMQ. With the local stack up, a paused pipeline
    is unpaused once the message is sent (its run would wait queued), unless --no-unpause.
    """
    import uuid

    from water import amqp_publish, events
    from water.broker import connection_from_uri
    from water.cli import local_airflow, stack

    run_conf = _conf(conf)
    local_airflow.use_in_this_process()
    from water.control import ControlMessageError, validate_control_message

    body: dict[str, Any] = {"pipeline": pipeline, "ds": ds, "message_id": uuid.uuid4().hex if message_id is None else message_id}
    if run_conf is not None:
        body["conf"] = run_conf
    try:
        message = validate_control_message(body)
    except ControlMessageError as exc:
        err.print(f"[red]not sent[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    try:
        conn = connection_from_uri(stack.stack_amqp(), events.AMQP_CONN_ID)
        amqp_publish.send_control(conn, message.body())
    except amqp_publish.PublishError as exc:
        err.print(f"[red]not sent[/]: the broker did not take it: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    console.print(
        f"sent {message.pipeline} ds={message.ds} to queue {events.CONTROL_QUEUE} (message {message.message_id}); "
        f"water_control starts it as run {message.run_id}. Follow it with `water events`",
        highlight=False,
    )
    info = stack.read_info()
    if info is not None:  # a paused DAG's runs wait queued: do what `water trigger` does
        from water.cli.airflow_api import ApiError

        try:
            stack.unpause_on_trigger(
                info.api(), message.pipeline, lambda: {}, unpause, log=lambda text: console.print(text, highlight=False)
            )
        except ApiError as exc:
            err.print(f"[yellow]the local stack did not say whether {message.pipeline} is paused[/]: {escape(str(exc))}")


@app.command("events", rich_help_panel=LOCAL)
def control_events(
    limit: Annotated[int, typer.Option(min=1, help="How many messages, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Recent control messages on the local stack (`water publish`, completion events) and what each started."""
    from water.cli import stack
    from water.cli.airflow_api import ApiError
    from water.control import DAG_ID

    api = _stack_api()
    try:
        rows = stack.control_messages(api, limit)
    except ApiError as exc:
        if exc.status == 404:
            err.print(f"[red]no {DAG_ID} DAG in the local stack[/] (dags/{DAG_ID}.py not parsed: see `water validate`)")
            raise typer.Exit(1) from None
        raise _api_failed(exc, DAG_ID) from None
    if as_json:
        print(json.dumps(rows, indent=2))
    elif rows:
        stack.render_control_messages(rows, console)
    else:
        console.print(f"no control messages yet: send one with `water publish PIPELINE --date D` ({api.url}/dags/{DAG_ID})")


def _cluster(commands: Callable[[], Sequence[Sequence[str]]], dry_run: bool) -> None:
    """Run (or print) the cluster commands `commands()` builds; failures become exit codes."""
    from water.cli import cluster

    try:
        argvs = commands()
        code = cluster.execute(argvs, dry_run=dry_run, say=lambda line: print(line, flush=True))  # never wrapped
    except cluster.ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except cluster.ToolMissing as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(TOOL_MISSING) from None
    except cluster.CommandFailed as exc:  # helm pull before a deploy; helm's own message is above
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if code:
        err.print(f"[red]failed[/] (exit code {code})")
        raise typer.Exit(1)


ENV_OPTION = typer.Option("--env", "-e", help="An environment of water.toml ([env.NAME]) [default: [cluster] alone].")
DRY_RUN_OPTION = typer.Option("--dry-run", help="Print the commands, shell-quoted, and run nothing.")


@app.command(rich_help_panel=CLUSTER)
def pods(
    pipeline: Annotated[str | None, typer.Argument(help="Only this pipeline's pods (label dag_id).")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep watching for changes.")] = False,
    env: Annotated[str | None, ENV_OPTION] = None,
    dry_run: Annotated[bool, DRY_RUN_OPTION] = False,
) -> None:
    """List the pods in water's namespace (kubectl get pods)."""
    from water.cli import cluster

    _cluster(lambda: [cluster.pods_command(cluster.load_settings(env), pipeline, watch)], dry_run)


@app.command(rich_help_panel=CLUSTER)
def logs(
    pod: Annotated[str, typer.Argument(help="The pod's name (see `water pods`).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new lines as they come.")] = False,
    container: Annotated[str | None, typer.Option("--container", "-c", help="The container, when the pod has several.")] = None,
    tail: Annotated[int | None, typer.Option(min=0, help="Only the last N lines.")] = None,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous, terminated container's log.")] = False,
    env: Annotated[str | None, ENV_OPTION] = None,
    dry_run: Annotated[bool, DRY_RUN_OPTION] = False,
) -> None:
    """Print a pod's log (kubectl logs)."""
    from water.cli import cluster

    _cluster(lambda: [cluster.logs_command(cluster.load_settings(env), pod, follow, container, tail, previous)], dry_run)


@app.command(rich_help_panel=CLUSTER)
def edit(
    pod: Annotated[str, typer.Argument(help="The pod's name (see `water pods`).")],
    env: Annotated[str | None, ENV_OPTION] = None,
    dry_run: Annotated[bool, DRY_RUN_OPTION] = False,
) -> None:
    """Edit a pod's live object in $EDITOR (kubectl edit)."""
    from water.cli import cluster

    _cluster(lambda: [cluster.edit_command(cluster.load_settings(env), pod)], dry_run)


@app.command(rich_help_panel=DEPLOY)
def deploy(
    env: Annotated[str, typer.Argument(help="The environment: helm-values/ENV.yaml and [env.ENV] in water.toml.")],
    tag: Annotated[
        str | None, typer.Option(help="Image tag [default: the commit's short hash, -dirty when files changed].")
    ] = None,
    dry_run: Annotated[bool, DRY_RUN_OPTION] = False,
) -> None:
    """Build and push the airflow and jobs images, then helm upgrade --install the release.

    With a pinned chart_version, the chart is pulled first and the values are validated against
    its values.schema.json; nothing is built when it refuses them (not with --dry-run). Every
    spec is checked first as `water validate` checks it: a bad one stops the deploy (exit 1).
    """
    from water.cli import cluster

    _, bad = _checked_specs()
    if bad:
        for message in bad:
            err.print(f"[red]bad[/]  {escape(message)}", highlight=False, soft_wrap=True)
        err.print("[red]nothing built or deployed[/]: fix the specs (`water validate`)", highlight=False)
        raise typer.Exit(1)

    say = None if dry_run else (lambda line: print(line, flush=True))
    _cluster(lambda: cluster.deploy_plan(env, tag, say), dry_run)


class Interrupted(BaseException):
    """SIGINT or SIGTERM outside a run (a run handles its own: water.cli.ownership)."""

    def __init__(self, signum: int):
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main() -> None:
    """The `water` command. Every command's Ctrl-C exits 130 and SIGTERM 143, mapped here alone."""
    import gc
    import signal
    import sys

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        app()
    except Interrupted as exc:  # not a KeyboardInterrupt, which click turns into "Aborted!" and exit 1
        err.print(f"interrupted ({signal.Signals(exc.signum).name})", highlight=False)
        sys.exit(128 + exc.signum)
    finally:
        # Airflow leaves a large heap; the interpreter's final collection of it takes seconds
        # and frees nothing the OS would not. Freeze it, so the command exits at once.
        gc.freeze()
