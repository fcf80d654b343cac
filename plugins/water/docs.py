"""doc_md for a pipeline's DAG, generated from its spec: what a person sees in the UI."""

from __future__ import annotations

from water import paths
from water.spec import PipelineSpec, spec_path


def dag_doc(spec: PipelineSpec, target: str) -> str:
    spec_file = paths.shown(spec_path(spec.name))
    tiers = "\n".join(
        f"| {t.name} | ≤ {t.max_rows:,} | {t.resources.requests.cpu} / {t.resources.limits.cpu} "
        f"| {t.resources.requests.memory} / {t.resources.limits.memory} |"
        for t in spec.sizing.tiers
    )
    scale = spec.sizing.scale_out
    return f"""# {spec.name}

{spec.description.strip()}

Owner **{spec.owner}** · schedule `{spec.schedule}` · target **{target}** · spec `{spec_file}`
· classes: {", ".join(spec.classes)}

## Flow (one run per logical date `ds`; every step overwrites its own `ds` partition)

| task | does | runs |
|---|---|---|
| extract | BigQuery SQL → `raw/ds=…` | `include/{spec.extract.sql}` |
| features | Glue PySpark job → `features/ds=…` | `include/{spec.features.script}` ({spec.features.workers} × {spec.features.worker_type}) |
| training_set | Athena SQL → `training/ds=…` | `include/{spec.training_set.sql}` |
| preprocess | pod → `channels/{{train,validation,inference}}/ds=…` | `include/{spec.preprocess.entrypoint}` |
| train | SageMaker training → `model/ds=…/model.tar.gz` | `include/{spec.training.entry_point}` ({spec.training.instance_type}) |
| batch_inference | SageMaker batch transform → `predictions/ds=…` | `include/{spec.inference.entry_point}` |
| inference_stats | counts rows and classes → `stats/ds=…` | aggregate, never loads the predictions |
| drift_guard | class mix vs baseline (PSI, JS distance) → continue or quarantine | `stats/ds=…/drift.json` |
| quarantine | a swung day's predictions → `quarantine/ds=…`; nothing published | only on block |
| postprocess | pod → `outputs/ds=…` | `include/{spec.postprocess.entrypoint}` |
| publish | replaces the `ds` partition of `{spec.publish.table}` | warehouse load |
| run_report | HTML report → `reports/ds=…/report.html`; the run's Slack message | teardown: runs after any outcome |

## Sizing of post-processing

| tier | rows | cpu request / limit | memory request / limit |
|---|---|---|---|
{tiers}

Beyond the last tier: {scale.rows_per_shard:,} rows per shard, at most {scale.max_shards} shards.

## Drift guard

Baseline: {spec.drift.baseline.replace("_", " ")}; warn at {spec.drift.warn}, block at {spec.drift.block}
(on {spec.drift.metric.upper()}; PSI and JS distance are both reported). On *warn* the run
publishes and alerts; on *block* the predictions go to `quarantine/ds=…`, post-processing and
publish are skipped, and the alert shows the class shares side by side. To publish a
quarantined day after checking it, trigger it again with `accept_drift` on (trigger form or
`--conf '{{"accept_drift": true}}'`).

## Notifications and metrics

Slack connection `{spec.notifications.slack_conn_id}`: start, success and failure of every run
(with rows, tier, drift verdict, duration; failures name the task and link its log), drift
and zero-row alerts. Without that connection, messages go to `.water/outbox/slack.jsonl`.
Metrics go to StatsD (Datadog tags `pipeline`, `ds`, `task`, `tier`) as `water.*`.

## Run it locally

```
water run {spec.name} --date 2026-11-01
AIRFLOW_HOME=.water/airflow .venv/bin/airflow dags test {spec.name} 2026-11-01
```
"""
