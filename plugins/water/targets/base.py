"""A target answers one question: which operator runs this stage of this pipeline?

The graph itself is built once, target-agnostic, by water.factory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any

from water.spec import PipelineSpec


class Target(ABC):
    name: str

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
    def postprocess(self, spec: PipelineSpec) -> Any: ...

    @abstractmethod
    def publish(self, spec: PipelineSpec) -> Any: ...


def external(timeout: timedelta) -> dict[str, Any]:
    """Arguments of a task that runs external work: it must not hang forever."""
    return {"execution_timeout": timeout}
