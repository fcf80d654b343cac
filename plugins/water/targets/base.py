"""A target is a registry: for each step kind, a builder that returns the operator(s) running it.

The graph itself is built once, target-agnostic, by water.factory from the spec's datasets.
Adding a kind is one model in water.spec plus one builder per target, registered with
`@REGISTRY.builds("kind")` in that target's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypedDict

from water.spec import PipelineSpec, Step

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, TaskGroup, XComArg
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from water.targets.cloud.lazy import OperatorRef  # a provider operator, built where its task runs

# A step's part of the graph: a task, a task mapped over shards, or a task group.
Node: TypeAlias = "BaseOperator | MappedOperator | TaskGroup"


@dataclass(frozen=True)
class Built:
    """What a builder made: `head` is what upstream steps connect to, `tail` what downstream
    steps connect from (the same task or task group for most kinds). `on_nothing_published`:
    a publish step's retraction, which the factory runs after the tasks that end a day
    unpublished (PipelineSpec.nothing_published_endings)."""

    head: Node
    tail: Node
    on_nothing_published: Node | None = None

    @classmethod
    def one(cls, node: Node) -> Built:
        return cls(node, node)


# (target, spec, step name, step) -> its tasks. The target and the step are Any: the registry
# dispatches on the kind, and each builder takes its own target class and its kind's model.
Builder = Callable[[Any, PipelineSpec, str, Any], Built]


class Registry:
    """kind -> builder, for one target."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.builders: dict[str, Builder] = {}

    def builds(self, kind: str) -> Callable[[Builder], Builder]:
        def register(builder: Builder) -> Builder:
            if kind in self.builders:
                raise ValueError(f"{self.target} target: two builders for kind {kind!r}")
            self.builders[kind] = builder
            return builder

        return register

    def __getitem__(self, kind: str) -> Builder:
        try:
            return self.builders[kind]
        except KeyError:
            raise NotImplementedError(
                f"the {self.target} target has no builder for step kind {kind!r} (it builds {', '.join(sorted(self.builders))})"
            ) from None

    def __contains__(self, kind: object) -> bool:
        return kind in self.builders


class LakeAccess(TypedDict):
    """What target-agnostic operators take to reach a pipeline's lake (water.store.LakeStore)."""

    pipeline: str
    lake_root: str
    storage_conn_id: str | None


class Target:
    name: str
    registry: ClassVar[Registry]

    if TYPE_CHECKING:  # a field of one target, a property of another: read-only here

        @property
        def lake_root(self) -> str:
            """URI of the lake root (file://… locally, s3://… in the cloud)."""

        @property
        def storage_conn_id(self) -> str | None:
            """Connection for the lake's object store (None: no credentials needed)."""

    def build(self, spec: PipelineSpec, name: str, step: Step) -> Built:
        """The task(s) of one step; the task (or group) id is the step's name."""
        return self.registry[step.kind](self, spec, name, step)

    def lake_access(self, spec: PipelineSpec) -> LakeAccess:
        """What target-agnostic operators need to reach the pipeline's lake (water.store)."""
        return {"pipeline": spec.name, "lake_root": self.lake_root, "storage_conn_id": self.storage_conn_id}


def external(timeout: timedelta) -> dict[str, Any]:
    """Arguments of a task that runs external work: it must not hang forever."""
    return {"execution_timeout": timeout}


def per_shard(
    operator: type[BaseOperator] | OperatorRef, arguments: dict[str, Any], shards: XComArg | None
) -> BaseOperator | MappedOperator:
    """One task of `operator`, or, with `shards` (an XComArg), one mapped over them (`shard=`)."""
    if shards is None:
        return operator(**arguments)
    return operator.partial(**arguments).expand(shard=shards)
