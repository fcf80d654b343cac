"""doc_md for a pipeline's DAG, generated from its spec: what a person sees in the UI."""

from __future__ import annotations

from water import paths
from water.spec import PipelineSpec, is_table, spec_path


def _dataset(name: str) -> str:
    return f"`{name}`" if is_table(name) else f"`{name}/ds=…`"


def dag_doc(spec: PipelineSpec, target: str) -> str:
    spec_file = paths.shown(spec_path(spec.name))
    upstream = spec.upstream()
    steps = "\n".join(
        f"| {name} | {step.kind} | {', '.join(_dataset(d) for d in step.inputs())} "
        f"| {', '.join(_dataset(d) for d in step.outputs())} "
        f"| {f'`include/{step.artifact()}`' if step.artifact() else step.summary()} "
        f"| {', '.join(upstream[name]) or '-'} |"
        for name, step in ((n, spec.steps[n]) for n in spec.order())
    )
    sources = (
        "\n".join(
            f"- {_dataset(name)}{f' — {s.description}' if s.description else ''}"
            + (f" (labels in `{s.label_column}`, checked against the classes)" if s.label_column else "")
            for name, s in spec.sources.items()
        )
        or "- (none)"
    )
    sections = [
        f"""# {spec.name}

{spec.description.strip()}

Owner **{spec.owner}** · schedule `{spec.schedule}` · target **{target}** · spec `{spec_file}`
· classes: {", ".join(spec.classes)}

## Steps (one run per logical date `ds`; every step overwrites its own `ds` partition)

| step | kind | reads | writes | runs | after |
|---|---|---|---|---|---|
{steps}
| run_report | teardown | the run's tasks | `reports/ds=…/report.html` | report and the run's Slack message | every leaf, whatever the outcome |

Sources (read here, written elsewhere):
{sources}"""
    ]
    sized = spec.step_of("sized_postprocess")
    if sized:
        name, step = sized
        routes = step.all_routes(spec.classes, name)
        tables = []
        for route_name, route in routes.items():
            tiers = "\n".join(
                f"| {t.name} | ≤ {t.max_rows:,} | {t.resources.requests.cpu} / {t.resources.limits.cpu} "
                f"| {t.resources.requests.memory} / {t.resources.limits.memory} |"
                for t in route.sizing.tiers
            )
            scale = route.sizing.scale_out
            title = (
                f"### Route {route_name}: {', '.join(route.classes)} → `include/{route.entrypoint}`\n\n" if step.routes else ""
            )
            tables.append(
                f"{title}| tier | rows | cpu request / limit | memory request / limit |\n|---|---|---|---|\n{tiers}\n\n"
                f"Beyond the last tier: {scale.rows_per_shard:,} rows per shard, at most {scale.max_shards} shards."
            )
        dropped = f"\n\nDropped on purpose: {', '.join(step.drop)}." if step.drop else ""
        first = next(iter(routes.values())).sizing.tiers[0].name
        per_route = f"""; per route or class: `{{"force_tier": {{"{next(iter(routes))}": "{first}"}}}}`""" if step.routes else ""
        how = (
            "Each route is sized from its own classes' rows, and the routes run in parallel."
            if step.routes
            else ("The tier is chosen from the rows inference_stats counted.")
        )
        sections.append(f"""## Sizing of {name}

{how}

{chr(10).join(tables)}{dropped}

Override for one run with `force_tier` (trigger form or `--conf '{{"force_tier": "{first}"}}'`{per_route}).""")
    guard = spec.step_of("drift_guard")
    if guard:
        name, g = guard
        sections.append(f"""## Drift guard

Baseline: {g.baseline.replace("_", " ")}; warn at {g.warn}, block at {g.block}
(on {g.metric.upper()}; PSI and JS distance are both reported). On *warn* the run
goes on and alerts; on *block* `{g.guards}/ds=…` moves to `{g.writes}/ds=…`, every step
that reads it is skipped, and the alert shows the class shares side by side. To publish a
quarantined day after checking it, trigger it again with `accept_drift` on (trigger form or
`--conf '{{"accept_drift": true}}'`).""")
    day = spec.start_date.isoformat()
    sections.append(f"""## Notifications and metrics

Slack connection `{spec.notifications.slack_conn_id}`: start, success and failure of every run
(with rows, tier, drift verdict, duration; failures name the task and link its log), drift
and zero-row alerts. Without that connection, messages go to `.water/outbox/slack.jsonl`.
Metrics go to StatsD (Datadog tags `pipeline`, `ds`, `task`, `tier`) as `water.*`.

## Run it locally

```
water run {spec.name} --date {day}
AIRFLOW_HOME=.water/airflow .venv/bin/airflow dags test {spec.name} {day}
```
""")
    return "\n\n".join(sections)
