"""The OpenLineage facets of each local stage (get_openlineage_facets_on_complete): its datasets
named as water.lineage names them (the step's, so the graph joins), the partition in the
`version` facet, the columns in `schema`, the rows in the statistics facets.

Every step of every shipped pipeline is built by the local target on a tiny lake of hand-made
partitions; the figures an operator keeps from its run are set as execute keeps them. One
test runs real stages (publish, then retract) to see execute keep its figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openlineage.client.serde import Serde

from tests.conftest import make_task_context
from water.lineage import step_datasets
from water.spec import load_pipeline
from water.targets.local.engines.partitions import file_uri, local_path
from water.targets.local.operators import LocalPodOperator, LocalPublishOperator, LocalRetractOperator, LocalStageOperator
from water.targets.local.target import LocalTarget

DS = "2026-11-01"
PIPELINES = ("recipe_engagement", "customer_value", "recipe_engagement_vertex")
PARQUET_COLUMNS = {"user_id": "integer", "segment": "string"}
CSV_COLUMNS = {"label": "string", "feature": "integer"}
FIGURES = {"rows_in": 5, "rows_out": 7, "rows_retracted": 3}


def write_partition(folder: Path, dataset: str) -> None:
    """A tiny partition in the form the demo's stages read and write `dataset`."""
    folder.mkdir(parents=True, exist_ok=True)
    if dataset.startswith("channels/"):  # CSV with a header (training channels, inference rows)
        (folder / "part-00000.csv").write_text("label,feature\ncook,1\nbake,2\n")
    elif dataset == "predictions":  # prediction lines, no header
        (folder / "part-00000.csv.out").write_text("cook,0.9\nbake,0.8\n")
    elif dataset == "model":
        (folder / "model.tar.gz").write_bytes(b"not read")
    elif dataset == "stats":
        (folder / "inference_stats.json").write_text(json.dumps({"ds": DS}))
    else:
        pq.write_table(pa.table({"user_id": [1, 2], "segment": ["a", "b"]}), folder / "part-00000.parquet")


class Lake:
    """Every dataset and table of a pipeline, one day of each, and its steps' local tasks."""

    def __init__(self, root: Path, pipeline: str) -> None:
        self.spec = load_pipeline(pipeline)
        self.target = LocalTarget(lake_root=file_uri(root / "lake"), warehouse_dir=str(root / "warehouse"))
        for step in self.spec.steps.values():
            for dataset in [
                *step.inputs(),
                *step.outputs(),
                *([f"{step.writes}_shards"] if step.kind == "sized_postprocess" else []),
            ]:
                if "." in dataset:
                    write_partition(Path(root / "warehouse", *dataset.split(".")) / f"ds={DS}", dataset)
                else:
                    write_partition(root / "lake" / pipeline / dataset / f"ds={DS}", dataset)

    def tasks(self, name: str) -> list[LocalStageOperator]:
        """The step's local stage tasks (a mapped tier, built for its shards, is left out)."""
        from airflow.sdk import DAG

        with DAG(f"lineage_{name}", schedule=None) as dag:
            self.target.build(self.spec, name, self.spec.steps[name])
        # the retraction of a publish step is another path of the run (test_publish_and_retract_…)
        tasks = [t for t in dag.tasks if isinstance(t, LocalStageOperator) and not isinstance(t, LocalRetractOperator)]
        for task in tasks:  # a tier task's shard, as it writes it
            if isinstance(task, LocalPodOperator) and task.shard_output:
                for dataset, _ in task.outputs.values():
                    write_partition(local_path(task._output_uri(dataset, DS)), dataset)
        return tasks


def facets_of(op: LocalStageOperator, figures: dict[str, Any] | None = None) -> tuple[list[dict], list[dict]]:
    """The operator's lineage as the provider gets it, after a run on DS that computed `figures`."""
    figures = dict(figures if figures is not None else FIGURES)
    figures.setdefault("outputs", dict.fromkeys(getattr(op, "outputs", {}), 7))
    figures.setdefault("channels", dict.fromkeys(getattr(op, "channels", {}), 5))
    op.lineage_run = (DS, figures)
    lineage = op.get_openlineage_facets_on_complete(None)
    return [Serde.to_dict(d) for d in lineage.inputs], [Serde.to_dict(d) for d in lineage.outputs]


def ids(datasets: list[dict]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def schema(dataset: dict) -> dict[str, str] | None:
    fields = (dataset.get("facets") or {}).get("schema", {}).get("fields")
    return None if fields is None else {f["name"]: f["type"] for f in fields}


@pytest.fixture(scope="module", params=PIPELINES)
def lake(request, tmp_path_factory) -> Lake:
    return Lake(tmp_path_factory.mktemp(request.param), request.param)


def test_every_local_task_names_its_steps_datasets_with_the_partition(lake):
    """A step's task reads and writes the datasets step_datasets names (a sized step: its tier
    tasks read the step's inputs and write its shards, the commit turns the shards into its output)."""
    for name, step in lake.spec.steps.items():
        tasks = lake.tasks(name)
        if step.kind == "drift_guard":
            assert tasks == []  # target-agnostic (water.operators.drift; tests/unit/test_drift_guard.py)
            continue
        assert tasks, name
        step_inputs, step_outputs = step_datasets(lake.spec, lake.target, name)
        for op in tasks:
            inputs, outputs = facets_of(op)
            assert inputs and outputs, (name, op.task_id)
            for dataset in inputs + outputs:
                assert dataset["facets"]["version"]["datasetVersion"].startswith(f"ds={DS}"), (op.task_id, dataset["name"])
                assert "ds=" not in dataset["name"]
            if step.kind != "sized_postprocess":
                assert ids(inputs) == step_inputs and ids(outputs) == step_outputs, op.task_id
            elif op.task_id == step.commit_task_id():
                assert ids(outputs) == step_outputs and ids(inputs)[0][1].endswith(f"/{step.shards_dataset}")
            else:  # a tier task
                assert set(ids(inputs)) <= set(step_inputs), op.task_id
                assert [n for _, n in ids(outputs)] == [f"{step_outputs[0][1]}_shards"]
                assert outputs[0]["facets"]["version"]["datasetVersion"].startswith(f"ds={DS}/route=")


def test_parquet_outputs_carry_their_columns_and_rows(lake):
    for name, step in lake.spec.steps.items():
        for op in lake.tasks(name) if step.kind != "drift_guard" else []:
            _, outputs = facets_of(op)
            for dataset in outputs:
                if dataset["name"].rsplit("/", 1)[-1] in ("model", "stats") or "channels/" in dataset["name"]:
                    continue
                if dataset["name"].endswith("/predictions"):  # prediction lines: rows, no header to name columns
                    assert schema(dataset) is None, op.task_id
                else:
                    assert schema(dataset) == PARQUET_COLUMNS, (op.task_id, dataset["name"])
                assert dataset["outputFacets"]["outputStatistics"]["rowCount"] == 7, (op.task_id, dataset["name"])


def test_training_reads_its_channels_columns_and_rows_and_writes_a_model(lake):
    name = next(
        n
        for n, s in lake.spec.steps.items()
        if s.kind in ("sagemaker_training", "vertex_custom_training", "pod") and "model" in s.outputs()
    )
    (op,) = lake.tasks(name)
    inputs, outputs = facets_of(op)
    if lake.spec.steps[name].kind != "pod":  # a training job: the channels are CSV with a header
        assert [schema(d) for d in inputs] == [CSV_COLUMNS, CSV_COLUMNS]
        assert [d["inputFacets"]["inputStatistics"]["rowCount"] for d in inputs] == [5, 5]
    assert [n.rsplit("/", 1)[-1] for _, n in ids(outputs)] == ["model"]
    assert schema(outputs[0]) is None  # a model's files: no columns


def test_a_query_reads_the_warehouse_tables_columns(lake):
    name = next(n for n, s in lake.spec.steps.items() if s.kind == "bigquery_sql")
    (op,) = lake.tasks(name)
    inputs, outputs = facets_of(op)
    assert all(d["namespace"] == "file" and "/warehouse/" in d["name"] for d in inputs)
    assert [schema(d) for d in inputs] == [{**PARQUET_COLUMNS, "ds": "string"}] * len(inputs)
    assert outputs[0]["outputFacets"]["outputStatistics"]["rowCount"] == 7


def test_an_operator_that_failed_before_its_figures_names_its_datasets_only(lake):
    name = next(n for n, s in lake.spec.steps.items() if s.kind == "publish")
    (op,) = lake.tasks(name)
    lineage = op.get_openlineage_facets_on_complete(None)  # never ran here: no partition, no figures
    assert [(d.namespace, d.name) for d in lineage.outputs] == step_datasets(lake.spec, lake.target, name)[1]
    assert all(not d.outputFacets and "version" not in d.facets for d in lineage.outputs)


def test_publish_and_retract_keep_their_figures_for_the_event(tmp_path):
    """Real stages: execute keeps what it computed; the retraction marks the partitions it removed."""
    lake = Lake(tmp_path, "recipe_engagement")
    name = next(n for n, s in lake.spec.steps.items() if s.kind == "publish")
    publish = next(t for t in lake.tasks(name) if isinstance(t, LocalPublishOperator))
    publish.execute(make_task_context(DS))
    (source,), (table,) = ([Serde.to_dict(d) for d in side] for side in _lineage(publish))
    assert source["inputFacets"]["inputStatistics"]["rowCount"] == 2
    assert table["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert schema(table) == PARQUET_COLUMNS and table["facets"]["version"]["datasetVersion"] == f"ds={DS}"

    retract = LocalRetractOperator(
        task_id="retract",
        source=publish.source_dataset,
        table=publish.table,
        warehouse_dir=publish.warehouse_dir,
        pipeline=publish.pipeline,
        lake_root=publish.lake_root,
    )
    retract.execute(make_task_context(DS))
    inputs, outputs = ([Serde.to_dict(d) for d in side] for side in _lineage(retract))
    assert inputs == []
    assert [d["facets"]["lifecycleStateChange"]["lifecycleStateChange"] for d in outputs] == ["TRUNCATE", "TRUNCATE"]
    assert outputs[0]["outputFacets"]["outputStatistics"]["rowCount"] == 2  # the rows it retracted


def _lineage(op: LocalStageOperator) -> tuple[list[Any], list[Any]]:
    lineage = op.get_openlineage_facets_on_complete(None)
    return lineage.inputs, lineage.outputs


def test_the_provider_takes_a_stages_own_lineage_and_not_the_hook_collectors(lake, monkeypatch):
    """The OpenLineage provider's extractor manager, as its listener calls it on success: a
    water stage's datasets, never what hooks left in the process's collector."""
    from types import SimpleNamespace

    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.sdk import lineage, plugins_manager
    from airflow.utils.state import TaskInstanceState

    monkeypatch.setattr(plugins_manager, "get_hook_lineage_readers_plugins", lambda: [lineage.HookLineageReader])
    lineage.get_hook_lineage_collector.cache_clear()
    try:
        get_hook_lineage_collector().add_input_asset(context=object(), uri="s3://elsewhere/some/file.csv")
        name = next(n for n, s in lake.spec.steps.items() if s.kind == "publish")
        (op,) = lake.tasks(name)
        op.lineage_run = (DS, dict(FIGURES))
        got = ExtractorManager().extract_metadata(
            dagrun=SimpleNamespace(run_id="manual__x"), task=op, task_instance_state=TaskInstanceState.SUCCESS, task_instance=None
        )
    finally:
        lineage.get_hook_lineage_collector.cache_clear()
    expected = step_datasets(lake.spec, lake.target, name)
    assert ([(d.namespace, d.name) for d in got.inputs], [(d.namespace, d.name) for d in got.outputs]) == expected
