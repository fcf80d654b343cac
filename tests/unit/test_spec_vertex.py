"""Spec errors of the Vertex AI kinds (vertex_custom_training, vertex_automl_tabular,
vertex_batch_prediction): each names the file and the field, as every other kind's do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import VERTEX_SPEC, switched_to_automl, vertex_spec_data
from water.spec import SpecError, load_spec

FEATURES = {"n_events": "numeric", "is_ios": "categorical"}
vertex = vertex_spec_data
automl = switched_to_automl


def set_path(data: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[leaf] = value
    return data


def drop(data: dict, dotted: str) -> dict:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node.pop(leaf)
    return data


CASES = {
    # custom training
    "custom: a channel Vertex has no variable for": (
        lambda d: set_path(d, "steps.train.reads.holdout", "channels/validation"),
        "steps.train.reads.holdout",
        "'train', 'validation' or 'test'",
    ),
    "custom: no train channel": (
        lambda d: drop(d, "steps.train.reads.train"),
        "steps.train.reads",
        "needs a train channel",
    ),
    "custom: machine type": (
        lambda d: set_path(d, "steps.train.machine_type", "ml.m5.xlarge"),
        "steps.train.machine_type",
        "pattern",
    ),
    "custom: boot disk below Vertex's minimum": (
        lambda d: set_path(d, "steps.train.boot_disk_size_gb", 10),
        "steps.train.boot_disk_size_gb",
        "greater than or equal to 100",
    ),
    "custom: executor image without a tag": (
        lambda d: set_path(d, "steps.train.executor_image", "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu"),
        "steps.train.executor_image",
        "pattern",
    ),
    "custom: SageMaker's instance_type": (
        lambda d: set_path(d, "steps.train.instance_type", "ml.m5.xlarge"),
        "steps.train.instance_type",
        "unknown field",
    ),
    "custom: objective not defined": (
        lambda d: set_path(d, "steps.train.objective_metric", "auc"),
        "steps.train",
        "not among metric_definitions",
    ),
    "custom: missing script": (
        lambda d: set_path(d, "steps.train.entry_point", "training/nope/train.py"),
        "steps.train.entry_point",
        "does not exist",
    ),
    # batch prediction
    "prediction: a custom model without its handlers": (
        lambda d: drop(d, "steps.batch_inference.entry_point"),
        "steps.batch_inference.entry_point",
        "is scored by its inference handlers",
    ),
    "prediction: handlers in another folder": (
        lambda d: set_path(d, "steps.batch_inference.entry_point", "jobs/recipe_engagement/preprocess.py"),
        "steps.batch_inference.entry_point",
        "must sit beside train's entry_point (training/recipe_engagement/)",
    ),
    "prediction: a model no Vertex step writes": (
        lambda d: set_path(d, "steps.batch_inference.model", "features"),
        "steps.batch_inference.model",
        "not written by a vertex_custom_training or vertex_automl_tabular step",
    ),
    "prediction: an AutoML model with a script": (
        lambda d: set_path(automl(d), "steps.batch_inference.entry_point", "training/recipe_engagement/inference.py"),
        "steps.batch_inference.entry_point",
        "scored by Vertex itself",
    ),
    "prediction: replicas": (
        lambda d: set_path(d, "steps.batch_inference.replica_count", 0),
        "steps.batch_inference.replica_count",
        "greater than or equal to 1",
    ),
    "prediction: replicas of a custom model's job": (
        lambda d: set_path(d, "steps.batch_inference.replica_count", 3),
        "steps.batch_inference.replica_count",
        "scored by one CustomJob replica",
    ),
    # AutoML
    "automl: budget below one node hour": (
        lambda d: automl(d, budget_milli_node_hours=500),
        "steps.train.budget_milli_node_hours",
        "greater than or equal to 1000",
    ),
    "automl: no column specs": (
        lambda d: automl(d, column_specs={}),
        "steps.train.column_specs",
        "at least 1",
    ),
    "automl: unknown transformation": (
        lambda d: automl(d, column_specs={"n_events": "float"}),
        "steps.train.column_specs.n_events",
        "'numeric'",
    ),
    "automl: the target is a feature": (
        lambda d: automl(d, column_specs={"label": "categorical", **FEATURES}),
        "steps.train",
        "'label' is the target_column, not a feature",
    ),
    "automl: unknown objective": (
        lambda d: automl(d, optimization_objective="maximize-accuracy"),
        "steps.train.optimization_objective",
        "minimize-log-loss",
    ),
    "automl: a two-class objective on three classes": (
        lambda d: automl(d, optimization_objective="maximize-au-roc"),
        "steps.train.optimization_objective",
        "Vertex AutoML takes only minimize-log-loss for 3 classes",
    ),
    "automl: local budget beyond the timeout": (
        lambda d: automl(d, local_time_budget="2h", timeout="1h"),
        "steps.train",
        "local_time_budget must be above zero and within timeout",
    ),
    "automl: a metric gate on a metric it does not report": (
        lambda d: automl(d, checks={"metric": {"name": "auc", "at_least": 0.5}}),
        "steps.train.checks.metric.name",
        "'auc' is not among metric_definitions (validation:accuracy)",
    ),
    "automl: a row gate on a model": (
        lambda d: automl(d, checks={"min_rows": 10}),
        "steps.train.checks.min_rows",
        "written as files (a model)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_vertex_kind_error_names_file_and_field(tmp_path: Path, case: str):
    mutate, field, words = CASES[case]
    path = tmp_path / "recipe_engagement_vertex.yaml"
    path.write_text(yaml.safe_dump(mutate(vertex())))
    with pytest.raises(SpecError) as caught:
        load_spec(path, include_dir=ROOT / "include")
    message = str(caught.value)
    assert str(path) in message
    assert field in caught.value.fields, message
    assert words in message, message


def test_the_vertex_example_and_its_automl_switch_are_valid(tmp_path: Path):
    spec = load_spec(VERTEX_SPEC)
    kinds = {name: step.kind for name, step in spec.steps.items()}
    assert kinds["train"] == "vertex_custom_training" and kinds["batch_inference"] == "vertex_batch_prediction"
    demo = load_spec(ROOT / "include" / "pipelines" / "recipe_engagement.yaml")
    # the rest of the pipeline is the demo's
    assert {n: k for n, k in kinds.items() if n not in ("train", "batch_inference")} == {
        n: s.kind for n, s in demo.steps.items() if n not in ("train", "batch_inference")
    }
    assert spec.roles()["training"] == "train" and spec.roles()["objective_metric"] == "validation:accuracy"

    path = tmp_path / "recipe_engagement_vertex.yaml"
    path.write_text(yaml.safe_dump(automl(vertex(), checks={"metric": {"above_majority_by": 0.0}})))
    switched = load_spec(path, include_dir=ROOT / "include")
    assert switched.steps["train"].kind == "vertex_automl_tabular"
    assert switched.roles()["objective_metric"] == "validation:accuracy"
    gate = switched.steps["train"].metric_check()
    assert (gate.name, gate.label_column) == ("validation:accuracy", "label")
    path.write_text(yaml.safe_dump(automl(vertex(), target_column="segment", checks={"metric": {"above_majority_by": 0.0}})))
    assert load_spec(path, include_dir=ROOT / "include").steps["train"].metric_check().label_column == "segment"
