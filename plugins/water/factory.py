"""One factory turns a pipeline spec into its DAG. The graph is the same for every target."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param, XComArg, chain

from water import metrics, notify, paths
from water.docs import dag_doc
from water.operators.drift import DRIFT_GUARD, QUARANTINE, DriftGuardOperator, QuarantineOperator
from water.operators.report import RUN_REPORT, RunReportOperator
from water.operators.sizing import PLAN_SHARDS, NoPredictionsOperator, PlanShardsOperator, SizePostprocessOperator
from water.sizing import NO_PREDICTIONS
from water.spec import PipelineSpec, load_pipeline, spec_path
from water.targets import Target, get_target


def build_dag(spec: PipelineSpec, target: Target) -> DAG:
    retries = os.environ.get("WATER_RETRIES")  # `water run --retries N` overrides the spec
    default_args = {
        "owner": spec.owner,
        "retries": int(retries) if retries else spec.retries,
        "retry_delay": spec.retry_delay,
        "on_execute_callback": notify.on_run_start(spec.notifications.slack_conn_id),
        "on_success_callback": metrics.on_task_success,
    }
    start = datetime(spec.start_date.year, spec.start_date.month, spec.start_date.day, tzinfo=timezone.utc)
    tier_names = [t.name for t in spec.sizing.tiers]
    params = {
        "force_tier": Param(
            None,
            type=["null", "string"],
            enum=[None, *tier_names],
            title="Force post-processing tier",
            description=f"Override the sizing decision for this run: one of {', '.join(tier_names)}.",
        ),
        "accept_drift": Param(
            False,
            type="boolean",
            title="Accept drift",
            description=(
                "Publish this day even if the drift guard would block it (re-run a quarantined day "
                f"after checking it). Thresholds: warn {spec.drift.warn}, block {spec.drift.block} on {spec.drift.metric.upper()}."
            ),
        ),
    }
    with DAG(
        dag_id=spec.dag_id,
        description=spec.description.strip().splitlines()[0][:200],
        schedule=spec.schedule,
        start_date=start,
        catchup=spec.catchup,
        tags=sorted({*spec.tags, "water", f"target:{target.name}"}),
        default_args=default_args,
        doc_md=dag_doc(spec, target.name),
        params=params,
    ) as dag:
        stats = target.inference_stats(spec)
        lake_access = {"pipeline": spec.name, "lake_root": target.lake_root, "storage_conn_id": target.storage_conn_id}
        slack = spec.notifications.slack_conn_id
        size = SizePostprocessOperator(
            task_id="size_postprocess",
            policy=spec.sizing,
            stats_task_id=stats.task_id,
            count_predictions=target.prediction_counter(spec),
            spec_file=str(paths.shown(spec_path(spec.name))),
            execution_timeout=spec.inference.timeout,
        )
        guard = DriftGuardOperator(
            task_id=DRIFT_GUARD,
            classes=spec.classes,
            policy=spec.drift,
            stats_task_id=stats.task_id,
            continue_task_id=size.task_id,
            slack_conn_id=slack,
            execution_timeout=timedelta(minutes=10),
            **lake_access,
        )
        quarantine = QuarantineOperator(
            task_id=QUARANTINE, guard_task_id=guard.task_id, execution_timeout=timedelta(minutes=30), **lake_access
        )
        chain(
            target.extract(spec),
            target.features(spec),
            target.training_set(spec),
            target.preprocess(spec),
            target.train(spec),
            target.batch_inference(spec),
            stats,
            guard,
            size,
        )
        guard >> quarantine
        plan = PlanShardsOperator(task_id=PLAN_SHARDS, decision_task_id=size.task_id, execution_timeout=timedelta(minutes=5))
        *fixed, largest = spec.sizing.tiers
        tiers = [target.postprocess(spec, t, None) for t in fixed]
        fan_out = target.postprocess(spec, largest, XComArg(plan))  # mapped over the shards
        no_predictions = NoPredictionsOperator(task_id=NO_PREDICTIONS, slack_conn_id=slack, execution_timeout=timedelta(minutes=5))
        size >> [no_predictions, *tiers, plan]
        plan >> fan_out
        publish = target.publish(spec)
        [*tiers, fan_out] >> target.commit_outputs(spec, size.task_id) >> publish
        # Runs whatever happened upstream; as a teardown it never masks a failed run.
        run_report = RunReportOperator(
            task_id=RUN_REPORT,
            classes=spec.classes,
            target=target.name,
            decision_task_id=size.task_id,
            history_days=spec.report.history_days,
            slack_conn_id=slack,
            execution_timeout=timedelta(minutes=10),
            **lake_access,
        ).as_teardown()
        [publish, quarantine, no_predictions] >> run_report
    return dag


def build_pipeline_dag(name: str) -> DAG:
    """The DAG of include/pipelines/<name>.yaml on the target WATER_TARGET selects.

    A malformed spec raises SpecError naming the file and fields; Airflow shows it as this
    DAG file's import error, and the other pipelines' DAG files load as usual.
    """
    return build_dag(load_pipeline(name), get_target())
