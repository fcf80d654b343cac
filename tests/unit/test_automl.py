"""The local AutoML tabular engine (FLAML) and its operator, on a small synthetic three-class set.

The rows have a signal a learner finds (a rule over two numeric columns and a categorical one,
with a few labels flipped) and a column column_specs leaves out. One search (a few seconds of
budget) is shared by the engine's tests; the operator's run their own through a small lake.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import make_task_context
from water import paths
from water.quality import Gates, QualityCheckFailed
from water.spec import VertexAutoMLTabularStep, load_spec
from water.targets.local.engines import automl
from water.targets.local.engines.partitions import file_uri
from water.targets.local.engines.process import ProcessFailed
from water.targets.local.operators import LocalAutoMLTrainingOperator

CLASSES = ["cook", "browse", "dormant"]
HEADER = "label,a,b,c,noise"
SPECS = {"a": "numeric", "b": "auto", "c": "categorical"}
BUDGET_S = 2.0
DS = "2026-11-01"


def labelled(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """(labels, feature lines `a,b,c,noise`): cook when a (or c == x) is high, else browse when b > 0."""
    a, b = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["x", "y", "z"], n)
    labels = np.where(a + (c == "x") > 0.8, "cook", np.where(b > 0, "browse", "dormant"))
    flip = rng.random(n) < 0.05
    labels = np.where(flip, rng.choice(CLASSES, n), labels)
    lines = [f"{x:.4f},{y:.4f},{z},{rng.integers(100)}" for x, y, z in zip(a, b, c, strict=True)]
    return [str(label) for label in labels], lines


def write_channel(folder: Path, labels: list[str], lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-00000.csv").write_text(HEADER + "\n" + "".join(f"{y},{x}\n" for y, x in zip(labels, lines, strict=True)))


def majority(labels: list[str]) -> float:
    return max(labels.count(c) for c in set(labels)) / len(labels)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("automl")
    rng = np.random.default_rng(7)
    for name, n in (("train", 600), ("validation", 200)):
        write_channel(root / name, *labelled(rng, n))
    labels, lines = labelled(rng, 300)
    (root / "inference").mkdir()
    rows = [f"{9000 + i},{line}\n" for i, line in enumerate(lines)]
    (root / "inference" / "part-00000.csv").write_text("".join(rows[:250]))
    (root / "inference" / "part-00001.csv").write_text("".join(rows[250:]))
    (root / "inference" / "part-00002.csv").write_bytes(b"")  # zero records
    return root, labels


@pytest.fixture(scope="module")
def trained(data):
    root, _ = data
    result = automl.train(
        channels={"train": root / "train", "validation": root / "validation"},
        target_column="label",
        column_specs=SPECS,
        objective="minimize-log-loss",
        time_budget_s=BUDGET_S,
        model_out=root / "model",
        log=lambda _: None,
    )
    return root / "model", result


@pytest.mark.training
def test_search_beats_the_majority_class_and_reports_its_validation_accuracy(data, trained):
    root, _ = data
    model, result = trained
    validation = [line.split(",")[0] for line in (root / "validation" / "part-00000.csv").read_text().splitlines()[1:]]
    accuracy = result.metrics["validation:accuracy"]
    assert accuracy > majority(validation) + 0.2, (accuracy, majority(validation))
    assert any(line.startswith("validation:accuracy=") for line in result.process.output)
    assert json.loads((model / automl.METRICS_FILE).read_text()) == pytest.approx(result.metrics, abs=1e-6)
    schema = json.loads((model / automl.SCHEMA_FILE).read_text())
    assert schema["features"] == {"a": "numeric", "b": "numeric", "c": "categorical"}  # b: auto, all numbers
    assert schema["inference_columns"] == ["a", "b", "c", "noise"]  # the training CSV's order, label out
    assert schema["classes"] == sorted(CLASSES)
    assert schema["best_estimator"] in automl.LEARNERS and schema["trials"] >= 1
    assert (schema["metric"], schema["time_budget_s"]) == ("log_loss", BUDGET_S)
    assert (model / automl.MODEL_FILE).stat().st_size > 0


@pytest.mark.training
def test_predict_answers_each_line_with_its_id_a_class_and_a_confidence(data, trained, tmp_path):
    root, labels = data
    model, _ = trained
    automl.predict(model, root / "inference", tmp_path / "out", lambda _: None, classes=CLASSES, work_dir=tmp_path / "jsonl")
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == ["part-00000.csv.out", "part-00001.csv.out", "part-00002.csv.out"]
    assert (tmp_path / "out" / "part-00002.csv.out").stat().st_size == 0  # zero-byte in, zero-byte out
    lines = [line.split(",") for name in outputs[:2] for line in (tmp_path / "out" / name).read_text().splitlines()]
    assert [int(fields[0]) for fields in lines] == list(range(9000, 9300))  # one line per row, in order
    assert {fields[1] for fields in lines} <= set(CLASSES)
    assert all(1 / 3 - 1e-6 <= float(fields[2]) <= 1 for fields in lines)
    hits = sum(fields[1] == label for fields, label in zip(lines, labels, strict=True)) / len(labels)
    assert hits > majority(labels) + 0.2, hits
    # the Vertex batch prediction output it went through: the instance (id included) and the scores
    first = json.loads((tmp_path / "jsonl" / "part-00000.csv.jsonl").read_text().splitlines()[0])
    assert first["instance"]["id"] == "9000" and set(first["instance"]) == {"id", "a", "b", "c", "noise"}
    assert first["prediction"]["classes"] == sorted(CLASSES)
    assert sum(first["prediction"]["scores"]) == pytest.approx(1.0)


@pytest.mark.training
def test_predict_refuses_a_model_whose_classes_the_spec_does_not_have(data, trained, tmp_path):
    root, _ = data
    model, _ = trained
    with pytest.raises(ProcessFailed, match="the model's class 'browse' is not among the spec's classes"):
        automl.predict(model, root / "inference", tmp_path / "out", lambda _: None, classes=["cook", "dormant"])


@pytest.mark.training
def test_a_column_spec_missing_from_the_training_csv_fails_naming_it(data, tmp_path):
    root, _ = data
    with pytest.raises(ProcessFailed, match=r"train channel file part-00000\.csv: no column 'n_cooks'"):
        automl.train(
            channels={"train": root / "train"},
            target_column="label",
            column_specs={**SPECS, "n_cooks": "numeric"},
            objective="minimize-log-loss",
            time_budget_s=BUDGET_S,
            model_out=tmp_path / "model",
            log=lambda _: None,
        )


@pytest.mark.training
def test_a_two_class_objective_on_three_classes_fails_as_vertex_would(data, tmp_path):
    root, _ = data
    with pytest.raises(ProcessFailed, match="'maximize-au-roc' is for two classes; 'label' holds 3"):
        automl.train(
            channels={"train": root / "train"},
            target_column="label",
            column_specs=SPECS,
            objective="maximize-au-roc",
            time_budget_s=BUDGET_S,
            model_out=tmp_path / "model",
            log=lambda _: None,
        )


# --- the operator, through a small lake --------------------------------------------------------


def automl_step(**checks) -> VertexAutoMLTabularStep:
    return VertexAutoMLTabularStep.model_validate(
        {
            "kind": "vertex_automl_tabular",
            "reads": {"train": "channels/train", "validation": "channels/validation"},
            "writes": "model",
            "column_specs": SPECS,
            "local_time_budget": "2s",
            **({"checks": {"metric": checks}} if checks else {}),
        }
    )


def lake_with_channels(data, tmp_path: Path, empty_validation: bool = False) -> Path:
    root, _ = data
    lake = tmp_path / "lake"
    for name in ("train", "validation"):
        folder = lake / "pipe" / "channels" / name / f"ds={DS}"
        folder.mkdir(parents=True)
        source = (root / name / "part-00000.csv").read_text()
        (folder / "part-00000.csv").write_text(HEADER + "\n" if empty_validation and name == "validation" else source)
    return lake


def operator(lake: Path, step: VertexAutoMLTabularStep) -> LocalAutoMLTrainingOperator:
    return LocalAutoMLTrainingOperator(
        task_id="train",
        pipeline="pipe",
        lake_root=file_uri(lake),
        channels=dict(step.reads),
        destination=step.writes,
        target_column=step.target_column,
        column_specs=dict(step.column_specs),
        objective=step.optimization_objective,
        time_budget_s=step.local_time_budget.total_seconds(),
        gates=Gates.of("train", step),
    )


@pytest.mark.training
def test_operator_trains_into_the_lake_through_the_metric_gate(data, tmp_path):
    lake = lake_with_channels(data, tmp_path)
    step = automl_step(above_majority_by=0.1, at_least=0.5)
    figures = operator(lake, step).run(DS, make_task_context(DS))
    model = lake / "pipe" / "model" / f"ds={DS}"
    assert sorted(p.name for p in model.iterdir()) == sorted([automl.MODEL_FILE, automl.SCHEMA_FILE, automl.METRICS_FILE])
    assert figures["channels"] == {"train": 600, "validation": 200}
    gate = figures["checks"]["metric"]
    assert gate["validation:accuracy"] == figures["metrics"]["validation:accuracy"] > gate["majority_share"] + 0.1


@pytest.mark.training
def test_operator_keeps_no_model_below_the_gate(data, tmp_path):
    lake = lake_with_channels(data, tmp_path)
    with pytest.raises(QualityCheckFailed, match=r"train: check metric failed: validation:accuracy [01]\.\d+ < at_least 1\.0100"):
        operator(lake, automl_step(at_least=1.01)).run(DS, make_task_context(DS))
    assert not (lake / "pipe" / "model" / f"ds={DS}").exists()


def test_operator_refuses_an_empty_channel_before_the_search(data, tmp_path):
    lake = lake_with_channels(data, tmp_path, empty_validation=True)
    with pytest.raises(ValueError, match=r"channel validation \(channels/validation/ds=2026-11-01\) holds no rows"):
        operator(lake, automl_step()).run(DS, make_task_context(DS))


def test_the_local_target_builds_the_automl_step_from_the_spec(tmp_path):
    """The demo's Vertex pipeline with its train step switched to AutoML, as its comment says."""
    from airflow.sdk import DAG

    from water.targets.local.target import LocalTarget

    document = yaml.safe_load((paths.pipelines_dir() / "recipe_engagement_vertex.yaml").read_text())
    document["steps"]["train"] = {
        "kind": "vertex_automl_tabular",
        "reads": {"train": "channels/train", "validation": "channels/validation"},
        "writes": "model",
        "column_specs": {"is_ios": "categorical", "n_events": "numeric", "cook_rate": "auto"},
        "local_time_budget": "45s",
        "checks": {"metric": {"above_majority_by": 0.0, "at_least": 0.6}},
    }
    document["steps"]["batch_inference"].pop("entry_point", None)
    path = tmp_path / "recipe_engagement_vertex.yaml"
    path.write_text(yaml.safe_dump(document))
    spec = load_spec(path, include_dir=paths.include_dir())
    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    with DAG("automl_build", schedule=None):
        task = target.build(spec, "train", spec.steps["train"]).head
    assert isinstance(task, LocalAutoMLTrainingOperator)
    assert (task.time_budget_s, task.objective, task.target_column) == (45.0, "minimize-log-loss", "label")
    assert task.column_specs == {"is_ios": "categorical", "n_events": "numeric", "cook_rate": "auto"}
    assert task.channels == {"train": "channels/train", "validation": "channels/validation"}
    assert task.gates is not None and task.gates.metric is not None
    assert (task.gates.metric.name, task.gates.validation) == ("validation:accuracy", "channels/validation")
    assert task.execution_timeout == timedelta(hours=6)
