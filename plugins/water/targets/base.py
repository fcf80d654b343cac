"""A target answers one question: which operator runs this stage of this pipeline?

The graph itself is built once, target-agnostic, by water.factory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from collections.abc import Callable
from typing import Any

from water.spec import PipelineSpec, Tier


class Target(ABC):
    name: str
    lake_root: str  # URI of the lake root (file://… locally, s3://… in the cloud)
    storage_conn_id: str | None  # connection for the lake's object store (None: no credentials needed)

    @abstractmethod
    def extract(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def features(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def training_set(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def preprocess(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def train(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def batch_inference(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def inference_stats(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def prediction_counter(self, spec: PipelineSpec) -> Callable[[str], dict[str, int]]:
        """ds -> rows per predicted class, by an aggregate where the predictions live."""

    @abstractmethod
    def postprocess(self, spec: PipelineSpec, tier: Tier, shards: Any | None) -> Any:
        """The post-processing task of one tier; mapped over `shards` (an XComArg) when given."""

    @abstractmethod
    def commit_outputs(self, spec: PipelineSpec, decision_task_id: str) -> Any:
        """Replaces the outputs partition with what the chosen tier's task(s) wrote."""

    @abstractmethod
    def publish(self, spec: PipelineSpec) -> Any: ...


def external(timeout: timedelta) -> dict[str, Any]:
    """Arguments of a task that runs external work: it must not hang forever."""
    return {"execution_timeout": timeout}


def per_shard(operator: type, arguments: dict[str, Any], shards: Any | None) -> Any:
    """One task of `operator`, or, with `shards` (an XComArg), one mapped over them (`shard=`)."""
    if shards is None:
        return operator(**arguments)
    return operator.partial(**arguments).expand(shard=shards)
