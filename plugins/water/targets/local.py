"""The local target (the embedded default): the same artifacts on engines of this machine."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from water import lake, paths
from water.lake import Lake
from water.local.partitions import local_path
from water.operators.local import (
    LocalCommitShardsOperator,
    LocalGlueJobOperator,
    LocalInferenceStatsOperator,
    LocalPodOperator,
    LocalPublishOperator,
    LocalQueryOperator,
    LocalTrainingOperator,
    LocalTransformOperator,
)
from water.operators.sizing import postprocess_task_id
from water.spec import PipelineSpec, Tier
from water.targets.base import Target, external, per_shard


@dataclass(frozen=True)
class LocalTarget(Target):
    lake_root: str
    warehouse_dir: str
    name: str = "local"
    storage_conn_id: str | None = None

    @classmethod
    def from_environment(cls) -> LocalTarget:
        return cls(lake_root=paths.lake_uri(), warehouse_dir=str(paths.warehouse_dir()))

    def _common(self, spec: PipelineSpec) -> dict[str, Any]:
        return {"pipeline": spec.name, "lake_root": self.lake_root}

    def extract(self, spec: PipelineSpec) -> Any:
        return LocalQueryOperator(
            task_id="extract",
            sql=spec.extract.sql,
            dialect="bigquery",
            tables="warehouse",
            warehouse_dir=self.warehouse_dir,
            destination=lake.RAW,
            **self._common(spec),
            **external(spec.extract.timeout),
        )

    def features(self, spec: PipelineSpec) -> Any:
        return LocalGlueJobOperator(
            task_id="features",
            script=spec.features.script,
            script_args=spec.features.args,
            worker_type=spec.features.worker_type,
            source=lake.RAW,
            destination=lake.FEATURES,
            **self._common(spec),
            **external(spec.features.timeout),
        )

    def training_set(self, spec: PipelineSpec) -> Any:
        return LocalQueryOperator(
            task_id="training_set",
            sql=spec.training_set.sql,
            dialect="trino",
            tables="lake",
            warehouse_dir=self.warehouse_dir,
            destination=lake.TRAINING,
            **self._common(spec),
            **external(spec.training_set.timeout),
        )

    def preprocess(self, spec: PipelineSpec) -> Any:
        return LocalPodOperator(
            task_id="preprocess",
            entrypoint=spec.preprocess.entrypoint,
            arguments=spec.preprocess.args,
            inputs={"input": lake.TRAINING},
            outputs={
                "train-output": (lake.CHANNEL_TRAIN, "csv+header"),
                "validation-output": (lake.CHANNEL_VALIDATION, "csv+header"),
                "inference-output": (lake.CHANNEL_INFERENCE, "csv"),
            },
            container_resources=spec.preprocess.resources.as_k8s_dict(),
            **self._common(spec),
            **external(spec.preprocess.timeout),
        )

    def train(self, spec: PipelineSpec) -> Any:
        return LocalTrainingOperator(
            task_id="train",
            entry_point=spec.training.entry_point,
            hyperparameters=spec.training.hyperparameters,
            instance_type=spec.training.instance_type,
            metric_definitions=[(m.name, m.regex) for m in spec.training.metric_definitions],
            channels={"train": lake.CHANNEL_TRAIN, "validation": lake.CHANNEL_VALIDATION},
            destination=lake.MODEL,
            **self._common(spec),
            **external(spec.training.max_runtime),
        )

    def batch_inference(self, spec: PipelineSpec) -> Any:
        return LocalTransformOperator(
            task_id="batch_inference",
            entry_point=spec.inference.entry_point,
            model=lake.MODEL,
            source=lake.CHANNEL_INFERENCE,
            destination=lake.PREDICTIONS,
            instance_type=spec.inference.instance_type,
            max_payload_mb=spec.inference.max_payload_mb,
            **self._common(spec),
            **external(spec.inference.timeout),
        )

    def inference_stats(self, spec: PipelineSpec) -> Any:
        return LocalInferenceStatsOperator(
            task_id="inference_stats",
            predictions=lake.PREDICTIONS,
            destination=lake.STATS,
            classes=spec.classes,
            **self._common(spec),
            **external(spec.inference.timeout),
        )

    def prediction_counter(self, spec: PipelineSpec) -> Callable[[str], dict[str, int]]:
        from water.local.stats import count_predictions

        predictions = Lake(self.lake_root, spec.name)
        return lambda ds: count_predictions(local_path(predictions.uri(lake.PREDICTIONS, ds)))

    def postprocess(self, spec: PipelineSpec, tier: Tier, shards: Any | None) -> Any:
        arguments = {
            "task_id": postprocess_task_id(tier.name),
            "entrypoint": spec.postprocess.entrypoint,
            "arguments": spec.postprocess.args,
            "inputs": {"input": lake.PREDICTIONS},
            "outputs": {"output": (lake.POSTPROCESS_SHARDS, "parquet")},
            "container_resources": tier.resources.as_k8s_dict(),
            "shard_output": True,
            "escalation": spec.sizing,
            **self._common(spec),
            **external(spec.postprocess.timeout),
        }
        return per_shard(LocalPodOperator, arguments, shards)

    def commit_outputs(self, spec: PipelineSpec, decision_task_id: str) -> Any:
        return LocalCommitShardsOperator(
            task_id="commit_outputs",
            source=lake.POSTPROCESS_SHARDS,
            destination=lake.OUTPUTS,
            decision_task_id=decision_task_id,
            trigger_rule="none_failed_min_one_success",
            **self._common(spec),
            **external(spec.postprocess.timeout),
        )

    def publish(self, spec: PipelineSpec) -> Any:
        return LocalPublishOperator(
            task_id="publish",
            source=lake.OUTPUTS,
            table=spec.publish.table,
            warehouse_dir=self.warehouse_dir,
            **self._common(spec),
            **external(spec.publish.timeout),
        )
