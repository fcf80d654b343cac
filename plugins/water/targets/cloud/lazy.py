"""Provider operators named by import path, built only where their task runs.

Importing a provider operator's module imports its whole client stack (google-cloud-bigquery
and pandas, the Kubernetes clients, boto3's resources): seconds of CPU, which a DAG file would
pay at every parse, in the DAG processor and again in every task's process for every task of
the DAG. The cloud target names its provider operators by path (`OperatorRef`); the DAG holds
a `LazyOperator` for each, with the same task id, arguments, dependencies and task settings.

Where the task runs, Airflow's task runner calls `prepare_for_execution()` on the task before
rendering its templates; a LazyOperator answers with the real operator, built with the same
arguments the way Airflow builds the task of a mapped operator (`MappedOperator.unmap`). From
then on the runner renders, records, executes, defers, resumes and kills that operator itself.
A mapped LazyOperator (`OperatorRef.partial(...).expand(shard=...)`) hands over when Airflow
renders the task it unmapped.

What the DAG processor serializes of a task is the stand-in's: the operator's name, colour
and extra links (declared on the ref, checked against the class by the contract tests) and
its arguments (`operator_kwargs`, a template field, so a changed argument is a new DAG
version, and an XComArg in it makes its task upstream); where the task runs, the operator's
own template fields are rendered and recorded.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import attrs
from airflow.sdk import BaseOperator, BaseOperatorLink, Context

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk.definitions.mappedoperator import OperatorPartial
    from airflow.sdk.types import TaskInstanceKey

# Arguments every operator takes (BaseOperator's): the stand-in keeps them, the rest are the operator's own.
TASK_ARGUMENTS = frozenset(inspect.signature(BaseOperator.__init__).parameters) - {"self", "kwargs"}
# Set from the stand-in itself when the real operator is built (as MappedOperator.unmap sets them).
_BUILT_FROM_TASK = frozenset({"task_id", "dag", "task_group", "start_date", "end_date"})


@attrs.define
class StoredLink(BaseOperatorLink):
    """An extra link of the real operator by name and XCom key: what the DAG processor
    serializes of a link, and the key under which the task runner stores the URL the real
    operator's own link gives once its task ran."""

    name: str
    xcom_key: str

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return ""  # a stand-in that never became its operator has run nothing to link to


def load_operator(path: str) -> type[BaseOperator]:
    module, _, name = path.rpartition(".")
    # an operator class: the contract tests import every path the cloud target names
    return cast("type[BaseOperator]", getattr(importlib.import_module(module), name))


class LazyOperator(BaseOperator):
    """Stands in for the operator at `operator_path` until the task runs. Keywords that are
    task arguments (BaseOperator's) are the stand-in's too; the others, with `operator_kwargs`,
    are the operator's own."""

    template_fields = ("operator_kwargs",)  # serialized, never rendered: the operator renders its own

    def __init__(
        self,
        *,
        operator_path: str,
        operator_kwargs: Mapping[str, Any] | None = None,
        operator_links: Mapping[str, str] | None = None,
        operator_ui_color: str | None = None,
        **kwargs: Any,
    ) -> None:
        own = {k: kwargs.pop(k) for k in list(kwargs) if k not in TASK_ARGUMENTS and not k.startswith("_airflow")}
        super().__init__(**kwargs)
        self.operator_path = operator_path
        self.operator_kwargs = {**(operator_kwargs or {}), **own}
        self.task_kwargs = {k: v for k, v in kwargs.items() if k not in _BUILT_FROM_TASK and not k.startswith("_airflow")}
        self.operator_extra_links = tuple(StoredLink(name, key) for name, key in (operator_links or {}).items())
        self.custom_operator_name = operator_path.rpartition(".")[2]
        if operator_ui_color:
            self.ui_color = operator_ui_color

    def build(self) -> BaseOperator:
        """The real operator of this task: its class imported now, its arguments as given."""
        task = load_operator(self.operator_path)(
            **self.operator_kwargs,
            **self.task_kwargs,
            task_id=self.task_id,
            dag=self.dag,
            task_group=self.task_group,
            start_date=self.start_date,
            end_date=self.end_date,
            _airflow_from_mapped=True,  # already in the DAG: the stand-in holds its place
        )
        task.is_setup, task.is_teardown = self.is_setup, self.is_teardown
        task.on_failure_fail_dagrun = self.on_failure_fail_dagrun
        task.upstream_task_ids, task.downstream_task_ids = self.upstream_task_ids, self.downstream_task_ids
        task.resolve_template_files()  # as the DagBag does for every task it parses
        return task

    # BaseOperator declares -> Self (a locked copy); the stand-in hands over another operator,
    # which is what the task runner executes (ti.task = ti.task.prepare_for_execution()).
    def prepare_for_execution(self) -> BaseOperator:  # type: ignore[override]
        return self.build().prepare_for_execution()

    def _do_render_template_fields(
        self, parent: Any, template_fields: Iterable[str], context: Context, jinja_env: jinja2.Environment, seen_oids: set[int]
    ) -> None:
        """Rendering the stand-in (the task Airflow unmapped from a mapped one) renders the real
        operator instead, which becomes the context's task: the one the runner executes."""
        if parent is not self:
            return super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        task = self.prepare_for_execution()
        context["task"] = context["ti"].task = task
        task._do_render_template_fields(task, task.template_fields, context, jinja_env, seen_oids)

    def execute(self, context: Context) -> None:
        raise RuntimeError(
            f"task {self.task_id}: a stand-in for {self.operator_path}; Airflow runs the operator it builds "
            "(prepare_for_execution), never the stand-in"
        )


class LazyShardOperator(LazyOperator):
    """A LazyOperator mapped over `shard`, the argument water's sharded operators take
    (water.targets.base.per_shard)."""

    def __init__(self, *, shard: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.operator_kwargs["shard"] = shard


@cache
def _shard_class(path: str, links: tuple[tuple[str, str], ...], ui_color: str | None) -> type[LazyShardOperator]:
    """LazyShardOperator for one operator: a mapped task shows its class's name, links and colour."""
    name = path.rpartition(".")[2]
    shown = {
        "__module__": __name__,
        "custom_operator_name": name,
        "operator_extra_links": tuple(StoredLink(link, key) for link, key in links),
        "ui_color": ui_color or LazyShardOperator.ui_color,
    }
    return type(f"Lazy{name}", (LazyShardOperator,), shown)


@dataclass(frozen=True)
class OperatorRef:
    """A provider operator class by import path; calling it makes the task's LazyOperator.

    `extra_links` (name -> XCom key) and `ui_color` are the class's own, so the UI shows them
    before the class is imported (tests/contract/test_dag_parse_cost.py checks them)."""

    path: str
    extra_links: Mapping[str, str] = field(default_factory=dict)
    ui_color: str | None = None

    def __call__(self, **kwargs: Any) -> LazyOperator:
        return LazyOperator(operator_path=self.path, operator_links=self.extra_links, operator_ui_color=self.ui_color, **kwargs)

    def partial(self, **kwargs: Any) -> OperatorPartial:
        """The operator mapped over `shard` (`.expand(shard=...)`)."""
        own = {k: kwargs.pop(k) for k in list(kwargs) if k not in TASK_ARGUMENTS}
        return _shard_class(self.path, tuple(self.extra_links.items()), self.ui_color).partial(
            operator_path=self.path,
            operator_kwargs=own,
            operator_links=self.extra_links,
            operator_ui_color=self.ui_color,
            **kwargs,
        )

    def load(self) -> type[BaseOperator]:
        return load_operator(self.path)
