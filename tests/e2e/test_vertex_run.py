"""End to end: the demo's pipeline on Vertex AI's training engines, on the local target.

`recipe_engagement_vertex` ships with `train` on vertex_custom_training and `batch_inference` on
vertex_batch_prediction: the demo's own train.py and inference.py, run under Vertex's
environment contract (AIP_*), the model a folder of files instead of model.tar.gz. Its spec
changed to AutoML (the train step's kind and fields, batch_inference without a script) runs a
real AutoML search (FLAML) on the same training set. Everything else in the pipeline is the
demo's, unchanged.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.runs import water_run
from tests.helpers import switched_to_automl
from water.spec import load_pipeline

pytestmark = pytest.mark.e2e

PIPELINE = "recipe_engagement_vertex"
DS = "2026-11-01"
USERS = "2000"
SPEC = load_pipeline(PIPELINE)


def task_states(summary: dict) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in summary["tasks"]}


def inference_rows(state, ds: str) -> int:
    folder = state / "lake" / PIPELINE / "channels/inference" / f"ds={ds}"
    return sum(1 for f in folder.glob("*.csv") for line in f.read_text().splitlines() if line.strip())


def prediction_lines(state, ds: str) -> list[list[str]]:
    folder = state / "lake" / PIPELINE / "predictions" / f"ds={ds}"
    return [line.split(",") for f in sorted(folder.iterdir()) for line in f.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    state = tmp_path_factory.mktemp("vertex-custom")
    return water_run(PIPELINE, DS, "--users", USERS, state=state), state


def test_vertex_custom_training_runs_the_demos_scripts(custom):
    summary, state = custom
    assert summary["state"] == "success"
    states = task_states(summary)
    assert states["train"] == states["batch_inference"] == "success"
    assert summary["validation_accuracy"] >= 0.6  # the spec's gate passed on the script's printed metric
    model = state / "lake" / PIPELINE / "model" / f"ds={DS}"
    assert {"model.joblib", "features.json"} <= {p.name for p in model.iterdir()}  # AIP_MODEL_DIR's files
    assert not (model / "model.tar.gz").exists()  # SageMaker's form is not what Vertex writes
    metrics = json.loads((model / "metrics.json").read_text())["metrics"]
    assert metrics["validation:accuracy"] == pytest.approx(summary["validation_accuracy"], abs=1e-4)


def test_every_user_to_score_gets_one_prediction_of_a_known_class(custom):
    summary, state = custom
    lines = prediction_lines(state, DS)
    assert len(lines) == inference_rows(state, DS) > 0
    assert {line[1] for line in lines} <= set(SPEC.classes)
    assert len({line[0] for line in lines}) == len(lines)
    assert sum(summary["predicted_class_counts"].values()) == len(lines)
    assert summary["rows_published"] > 0


@pytest.fixture(scope="module")
def automl(tmp_path_factory):
    """The same pipeline with its spec switched to AutoML: the train step, and no script for inference."""
    project = tmp_path_factory.mktemp("vertex-automl")
    for folder in ("include", "dags"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    spec_file = project / "include/pipelines" / f"{PIPELINE}.yaml"
    spec = switched_to_automl(
        yaml.safe_load(spec_file.read_text()),
        local_time_budget="8s",
        checks={"metric": {"above_majority_by": 0.0, "at_least": 0.6}},
    )
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    state = project / ".water"
    return water_run(PIPELINE, DS, "--users", USERS, project=project, state=state), state


def test_automl_searches_the_same_training_set_and_scores_every_user(automl):
    summary, state = automl
    assert summary["state"] == "success"
    states = task_states(summary)
    assert states["train"] == states["batch_inference"] == "success"
    assert summary["validation_accuracy"] >= 0.6
    lines = prediction_lines(state, DS)
    assert len(lines) == inference_rows(state, DS) > 0
    assert {line[1] for line in lines} <= set(SPEC.classes)
    assert all(0.0 <= float(line[2]) <= 1.0 for line in lines)
    assert summary["rows_published"] > 0
