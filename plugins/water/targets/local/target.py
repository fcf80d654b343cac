"""The local target (the embedded default): the same artifacts on engines of this machine.

One builder per step kind (REGISTRY); each returns the local operator running that kind's
production artifact: SQL on DuckDB, Glue scripts on local Spark, pod entrypoints and
SageMaker and Vertex AI scripts as processes under their limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from water import paths
from water.lake import Lake
from water.quality import Gates
from water.spec import (
    AthenaSqlStep,
    BigQuerySqlStep,
    GluePySparkStep,
    InferenceStatsStep,
    PipelineSpec,
    PodStep,
    PublishStep,
    Route,
    SageMakerTrainingStep,
    SageMakerTransformStep,
    SizedPostprocessStep,
    Step,
    Tier,
    VertexAutoMLTabularStep,
    VertexBatchPredictionStep,
    VertexCustomTrainingStep,
    is_table,
)
from water.targets import common
from water.targets.base import Built, Registry, Target, external, per_shard
from water.targets.local.engines.partitions import local_path
from water.targets.local.operators import (
    LocalAutoMLTrainingOperator,
    LocalCommitShardsOperator,
    LocalGlueJobOperator,
    LocalInferenceStatsOperator,
    LocalPodOperator,
    LocalPublishOperator,
    LocalQueryOperator,
    LocalRetractOperator,
    LocalTrainingOperator,
    LocalTransformOperator,
    LocalVertexBatchPredictionOperator,
    LocalVertexTrainingOperator,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, XComArg
    from airflow.sdk.definitions.mappedoperator import MappedOperator

REGISTRY = Registry("local")


@dataclass(frozen=True)
class LocalTarget(Target):
    lake_root: str
    warehouse_dir: str
    name: str = "local"
    storage_conn_id: str | None = None
    registry: ClassVar[Registry] = REGISTRY

    @classmethod
    def from_environment(cls) -> LocalTarget:
        return cls(lake_root=paths.lake_uri(), warehouse_dir=str(paths.warehouse_dir()))

    def common(self, spec: PipelineSpec, step: Step | None = None) -> dict[str, Any]:
        """What every local operator takes; with the step, the label sources it reads to check."""
        labels = spec.label_sources()
        checks = {
            source: (str(self.source_folder(spec, source)), labels[source])
            for source in (step.inputs() if step is not None else [])
            if source in labels
        }
        return {
            "pipeline": spec.name,
            "lake_root": self.lake_root,
            **({"label_checks": checks, "label_classes": spec.classes} if checks else {}),
        }

    def source_folder(self, spec: PipelineSpec, source: str) -> Path:
        """Where the local target keeps a source: the warehouse folder of a table, else the lake's."""
        if is_table(source):
            return Path(self.warehouse_dir, *source.split("."))
        return local_path(Lake(self.lake_root, spec.name).dataset_uri(source))

    def sql(
        self, spec: PipelineSpec, name: str, step: BigQuerySqlStep | AthenaSqlStep, dialect: str, tables: str
    ) -> LocalQueryOperator:
        return LocalQueryOperator(
            task_id=name,
            sql=step.sql,
            dialect=dialect,
            tables=tables,
            warehouse_dir=self.warehouse_dir,
            database=spec.database,
            reads=step.inputs(),
            destination=step.writes,
            gates=Gates.of(name, step),
            **self.common(spec, step),
            **external(step.timeout),
        )

    def prediction_counter(self, spec: PipelineSpec, dataset: str) -> Callable[[str], dict[str, int]]:
        from water.targets.local.engines.stats import count_predictions

        predictions = Lake(self.lake_root, spec.name)
        return lambda ds: count_predictions(local_path(predictions.uri(dataset, ds)))


@REGISTRY.builds("bigquery_sql")
def bigquery_sql(target: LocalTarget, spec: PipelineSpec, name: str, step: BigQuerySqlStep) -> Built:
    return Built.one(target.sql(spec, name, step, "bigquery", "warehouse"))


@REGISTRY.builds("athena_sql")
def athena_sql(target: LocalTarget, spec: PipelineSpec, name: str, step: AthenaSqlStep) -> Built:
    return Built.one(target.sql(spec, name, step, "trino", "lake"))


@REGISTRY.builds("glue_pyspark")
def glue_pyspark(target: LocalTarget, spec: PipelineSpec, name: str, step: GluePySparkStep) -> Built:
    return Built.one(
        LocalGlueJobOperator(
            task_id=name,
            script=step.script,
            script_args=step.args,
            worker_type=step.worker_type,
            sources=step.reads,
            destination=step.writes,
            gates=Gates.of(name, step),
            **target.common(spec, step),
            **external(step.timeout),
        )
    )


@REGISTRY.builds("pod")
def pod(target: LocalTarget, spec: PipelineSpec, name: str, step: PodStep) -> Built:
    return Built.one(
        LocalPodOperator(
            task_id=name,
            entrypoint=step.entrypoint,
            arguments=step.args,
            inputs=step.reads,
            outputs={flag: (out.dataset, out.format) for flag, out in step.writes.items()},
            container_resources=step.resources.as_k8s_dict(),
            metric_definitions=[(m.name, m.regex) for m in step.metric_definitions],
            gates=Gates.of(name, step),
            **target.common(spec, step),
            **external(step.timeout),
        )
    )


@REGISTRY.builds("sagemaker_training")
def sagemaker_training(target: LocalTarget, spec: PipelineSpec, name: str, step: SageMakerTrainingStep) -> Built:
    return Built.one(
        LocalTrainingOperator(
            task_id=name,
            entry_point=step.entry_point,
            hyperparameters=step.hyperparameters,
            instance_type=step.instance_type,
            metric_definitions=[(m.name, m.regex) for m in step.metric_definitions],
            channels=step.reads,
            destination=step.writes,
            gates=Gates.of(name, step),
            **target.common(spec, step),
            **external(step.max_runtime),
        )
    )


@REGISTRY.builds("sagemaker_transform")
def sagemaker_transform(target: LocalTarget, spec: PipelineSpec, name: str, step: SageMakerTransformStep) -> Built:
    return Built.one(
        LocalTransformOperator(
            task_id=name,
            entry_point=step.entry_point,
            model=step.model,
            source=step.input,
            destination=step.writes,
            instance_type=step.instance_type,
            max_payload_mb=step.max_payload_mb,
            gates=Gates.of(name, step),
            **target.common(spec, step),
            **external(step.timeout),
        )
    )


@REGISTRY.builds("vertex_custom_training")
def vertex_custom_training(target: LocalTarget, spec: PipelineSpec, name: str, step: VertexCustomTrainingStep) -> Built:
    return Built.one(
        LocalVertexTrainingOperator(
            task_id=name,
            entry_point=step.entry_point,
            hyperparameters=step.hyperparameters,
            instance_type=step.machine_type,
            metric_definitions=[(m.name, m.regex) for m in step.metric_definitions],
            channels={str(channel): dataset for channel, dataset in step.reads.items()},
            destination=step.writes,
            gates=Gates.of(name, step),
            **target.common(spec, step),
            **external(step.max_runtime),
        )
    )


@REGISTRY.builds("vertex_batch_prediction")
def vertex_batch_prediction(target: LocalTarget, spec: PipelineSpec, name: str, step: VertexBatchPredictionStep) -> Built:
    # The engine that made the model scores it: an AutoML model by AutoML, a custom one by its handlers.
    automl = isinstance(spec.steps.get(spec.writer(step.model) or ""), VertexAutoMLTabularStep)
    return Built.one(
        LocalVertexBatchPredictionOperator(
            task_id=name,
            entry_point=step.entry_point or "",
            automl=automl,
            classes=spec.classes,
            model=step.model,
            source=step.input,
            destination=step.writes,
            instance_type=step.machine_type,
            max_payload_mb=step.max_payload_mb,
            gates=Gates.of(name, step),
            **target.common(spec, step),
            **external(step.timeout),
        )
    )


@REGISTRY.builds("inference_stats")
def inference_stats(target: LocalTarget, spec: PipelineSpec, name: str, step: InferenceStatsStep) -> Built:
    return Built.one(
        LocalInferenceStatsOperator(
            task_id=name,
            predictions=step.reads,
            destination=step.writes,
            classes=spec.classes,
            **target.common(spec, step),
            **external(step.timeout),
        )
    )


REGISTRY.builds("drift_guard")(common.drift_guard)  # target-agnostic: the lake through water.store


@REGISTRY.builds("sized_postprocess")
def sized_postprocess(target: LocalTarget, spec: PipelineSpec, name: str, step: SizedPostprocessStep) -> Built:
    def tier_task(route_name: str, route: Route, tier: Tier, shards: XComArg | None) -> BaseOperator | MappedOperator:
        arguments = {
            "task_id": step.tier_task_id(name, route_name, tier.name),
            "entrypoint": route.entrypoint,
            "arguments": route.args,
            "inputs": {"input": step.reads, **route.reads},
            "outputs": {"output": (step.shards_dataset, "parquet")},
            "container_resources": tier.resources.as_k8s_dict(),
            "shard_output": route_name,
            "classes": route.classes if step.routes else None,  # one job for all: no filter
            "escalation": route.sizing,
            **target.common(spec, step),
            **external(step.timeout),
        }
        return per_shard(LocalPodOperator, arguments, shards)

    def commit_task() -> LocalCommitShardsOperator:
        return LocalCommitShardsOperator(
            task_id=step.commit_task_id(),
            source=step.shards_dataset,
            destination=step.writes,
            decision_task_id=step.size_task_id(name),
            trigger_rule="none_failed_min_one_success",
            **target.common(spec, step),
            **external(step.timeout),
        )

    counter = target.prediction_counter(spec, step.reads)
    return common.sized_postprocess(target, spec, name, step, counter, tier_task, commit_task)


@REGISTRY.builds("vertex_automl_tabular")
def vertex_automl_tabular(target: LocalTarget, spec: PipelineSpec, name: str, step: VertexAutoMLTabularStep) -> Built:
    # FLAML's search on this machine for local_time_budget; budget_milli_node_hours is the cloud's.
    return Built.one(
        LocalAutoMLTrainingOperator(
            task_id=name,
            channels={str(channel): dataset for channel, dataset in step.reads.items()},
            destination=step.writes,
            target_column=step.target_column,
            column_specs=dict(step.column_specs),
            objective=step.optimization_objective,
            time_budget_s=step.local_time_budget.total_seconds(),
            gates=Gates.of(name, step),
            **target.common(spec, step),
            **external(step.timeout),
        )
    )


@REGISTRY.builds("publish")
def publish(target: LocalTarget, spec: PipelineSpec, name: str, step: PublishStep) -> Built:
    task = LocalPublishOperator(
        task_id=name,
        source=step.reads,
        table=step.table,
        warehouse_dir=target.warehouse_dir,
        **target.common(spec, step),
        **external(step.timeout),
    )
    retract = common.retraction(
        spec,
        name,
        lambda: LocalRetractOperator(
            task_id=step.retract_task_id(name),
            source=step.reads,
            table=step.table,
            warehouse_dir=target.warehouse_dir,
            trigger_rule=common.RETRACT_TRIGGER_RULE,
            **target.common(spec),
            **external(step.timeout),
        ),
    )
    return Built(task, task, on_nothing_published=retract)
