"""Spec validation: a malformed spec names its file and field, and breaks no other DAG."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from water.spec import SpecError, load_spec

DEMO = ROOT / "include" / "pipelines" / "recipe_engagement.yaml"


def demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def set_path(data: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key][int(key)] if isinstance(node, list) else node[key]
    node[leaf] = value
    return data


def drop(data: dict, key: str) -> dict:
    data.pop(key)
    return data


def reorder_tiers(data: dict) -> dict:
    data["sizing"]["tiers"].reverse()
    return data


def tiers_list(data: dict, index: int, dotted: str, value) -> dict:
    node = data["sizing"]["tiers"][index]
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return data


CASES = {
    # case name: (mutation of the demo spec, field the error must name, words it must say)
    "unknown top-level field": (lambda d: {**d, "trainng": {}}, "trainng", "unknown field"),
    "unknown nested field": (lambda d: set_path(d, "preprocess.resource", {}), "preprocess.resource", "unknown field"),
    "missing stage": (lambda d: drop(d, "extract"), "extract", "required"),
    "missing SQL file": (lambda d: set_path(d, "extract.sql", "sql/nope.sql"), "extract.sql", "does not exist"),
    "path outside include": (lambda d: set_path(d, "training.entry_point", "../README.md"), "training.entry_point", "inside include/"),
    "bad cron": (lambda d: set_path(d, "schedule", "61 * * * *"), "schedule", "cron"),
    "bad memory quantity": (lambda d: set_path(d, "preprocess.resources.limits.memory", "2 gigs"), "preprocess.resources.limits.memory", "Kubernetes quantity"),
    "zero cpu": (lambda d: set_path(d, "preprocess.resources.requests.cpu", "0"), "preprocess.resources.requests.cpu", "greater than zero"),
    "request above limit": (lambda d: set_path(d, "preprocess.resources.requests.memory", "4Gi"), "preprocess.resources", "above limits.memory"),
    "tiers out of order": (reorder_tiers, "sizing", "increasing max_rows"),
    "tier with bad quantity": (lambda d: tiers_list(d, 0, "resources.limits.cpu", "lots"), "sizing.tiers.0.resources.limits.cpu", "Kubernetes quantity"),
    "drift warn above block": (lambda d: set_path(d, "drift.warn", 0.5), "drift", "must be below block"),
    "bad duration": (lambda d: set_path(d, "features.timeout", "forever"), "features.timeout", "duration"),
    "bad glue worker type": (lambda d: set_path(d, "features.worker_type", "G.3X"), "features.worker_type", "G.1X"),
    "nested hyperparameter": (lambda d: set_path(d, "training.hyperparameters.max_iter", {"a": 1}), "training.hyperparameters.max_iter", "valid"),
    "objective not defined": (lambda d: set_path(d, "training.objective_metric", "auc"), "training", "not among metric_definitions"),
    "name differs from file": (lambda d: set_path(d, "name", "other_name"), "name", "must match the file name"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_spec_names_file_and_field(tmp_path, case):
    mutate, field, words = CASES[case]
    path = tmp_path / "recipe_engagement.yaml"
    path.write_text(yaml.safe_dump(mutate(demo())))
    with pytest.raises(SpecError) as caught:
        load_spec(path, include_dir=ROOT / "include")
    message = str(caught.value)
    assert str(path) in message
    assert field in caught.value.fields, message
    assert words in message, message


def test_bad_yaml_says_where(tmp_path):
    path = tmp_path / "recipe_engagement.yaml"
    path.write_text("name: recipe_engagement\nextract: [unclosed\n")
    with pytest.raises(SpecError, match=r"not valid YAML: line \d+, column \d+"):
        load_spec(path)


def test_not_a_mapping(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(path)


def test_demo_spec_is_valid():
    spec = load_spec(DEMO)
    assert spec.classes == ["cook", "browse", "dormant"]
    assert [t.name for t in spec.sizing.tiers] == ["small", "medium", "large"]
    assert spec.preprocess.resources.memory_limit_bytes == 2**30


def test_broken_specs_are_import_errors_of_their_own_dag_files(tmp_path, monkeypatch):
    """Three broken pipelines beside the demo: each fails alone, naming its spec and field."""
    from airflow.dag_processing.dagbag import DagBag

    shutil.copytree(ROOT / "include", tmp_path / "include")
    shutil.copytree(ROOT / "dags", tmp_path / "dags")
    broken = {
        "bad_yaml": ("name: bad_yaml\nextract: [oops\n", "not valid YAML"),
        "bad_field": (yaml.safe_dump({**demo(), "name": "bad_field", "schedule": "every day"}), "schedule"),
        "bad_quantity": (
            yaml.safe_dump(set_path({**demo(), "name": "bad_quantity"}, "preprocess.resources.limits.memory", "1GB!")),
            "preprocess.resources.limits.memory",
        ),
    }
    for name, (text, _) in broken.items():
        (tmp_path / "include" / "pipelines" / f"{name}.yaml").write_text(text)
        (tmp_path / "dags" / f"{name}.py").write_text(
            (ROOT / "dags" / "recipe_engagement.py").read_text().replace("recipe_engagement", name)
        )
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(tmp_path))
    bag = DagBag(str(tmp_path / "dags"))
    assert "recipe_engagement" in bag.dags
    errors = {Path(path).stem: str(error) for path, error in bag.import_errors.items()}
    assert set(errors) == set(broken)
    for name, (_, field) in broken.items():
        assert f"include/pipelines/{name}.yaml" in errors[name]
        assert field in errors[name]


@pytest.mark.parametrize("text", ["500m", "1", "2", "0.5", "250m", "512Mi", "2Gi", "1.5Gi", "100k", "1M", "1e3", "64Ki", "3Ti", ".5", "10n", "7u", "2E", "1Pi"])
def test_quantity_parser_agrees_with_the_kubernetes_client(text):
    from kubernetes.utils.quantity import parse_quantity as k8s_parse_quantity

    from water.spec import parse_quantity

    assert parse_quantity(text) == k8s_parse_quantity(text)


@pytest.mark.parametrize("text", ["2 gigs", "GB", "1GB", "-", "", "1.2.3", "Mi"])
def test_quantity_parser_rejects_what_the_kubernetes_client_rejects(text):
    from kubernetes.utils.quantity import parse_quantity as k8s_parse_quantity

    from water.spec import parse_quantity

    with pytest.raises(ValueError):
        k8s_parse_quantity(text)
    with pytest.raises(ValueError):
        parse_quantity(text)
