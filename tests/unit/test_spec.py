"""Spec validation: a malformed spec, or a faulty graph of steps, names its file and field, and
breaks no other DAG; the graph of a valid spec follows from the datasets its steps read and write."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from water.spec import STEP_KINDS, SpecError, load_spec

DEMO = ROOT / "include" / "pipelines" / "recipe_engagement.yaml"


def demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def set_path(data: dict, dotted: str, value) -> dict:
    """Set `a.b.0.c` (a list index as a number) in the spec's data."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[leaf] = value
    return data


def drop(data: dict, dotted: str) -> dict:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node.pop(leaf)
    return data


def add_steps(data: dict, **steps) -> dict:
    data["steps"].update(steps)
    return data


def reorder_tiers(data: dict) -> dict:
    data["steps"]["postprocess"]["sizing"]["tiers"].reverse()
    return data


def duplicate_tier_name(data: dict) -> dict:
    data["steps"]["postprocess"]["sizing"]["tiers"][1]["name"] = "small"
    return data


def a_second(step: str, **changes):
    """The demo's step `step` once more, as `<step>_2`, with `changes`."""

    def mutate(data: dict) -> dict:
        return add_steps(data, **{f"{step}_2": {**copy.deepcopy(data["steps"][step]), **changes}})

    return mutate


ATHENA_SQL = "sql/recipe_engagement/training_set.sql"  # any SQL file that exists


CASES = {
    # case name: (mutation of the demo spec, field the error must name, words it must say)
    "unknown top-level field": (lambda d: {**d, "trainng": {}}, "trainng", "unknown field"),
    "unknown step field": (lambda d: set_path(d, "steps.preprocess.resource", {}), "steps.preprocess.resource", "unknown field"),
    "no steps": (lambda d: drop(d, "steps"), "steps", "required"),
    "missing step field": (lambda d: drop(d, "steps.extract.sql"), "steps.extract.sql", "required"),
    "missing SQL file": (lambda d: set_path(d, "steps.extract.sql", "sql/nope.sql"), "steps.extract.sql", "does not exist"),
    "path outside include": (lambda d: set_path(d, "steps.train.entry_point", "../README.md"), "steps.train.entry_point", "inside include/"),
    "bad cron": (lambda d: set_path(d, "schedule", "61 * * * *"), "schedule", "cron"),
    "bad memory quantity": (lambda d: set_path(d, "steps.preprocess.resources.limits.memory", "2 gigs"), "steps.preprocess.resources.limits.memory", "Kubernetes quantity"),
    "zero cpu": (lambda d: set_path(d, "steps.preprocess.resources.requests.cpu", "0"), "steps.preprocess.resources.requests.cpu", "greater than zero"),
    "request above limit": (lambda d: set_path(d, "steps.preprocess.resources.requests.memory", "4Gi"), "steps.preprocess.resources", "above limits.memory"),
    "tiers out of order": (reorder_tiers, "steps.postprocess.sizing", "increasing max_rows"),
    "tier with bad quantity": (lambda d: set_path(d, "steps.postprocess.sizing.tiers.0.resources.limits.cpu", "lots"), "steps.postprocess.sizing.tiers.0.resources.limits.cpu", "Kubernetes quantity"),
    "drift warn above block": (lambda d: set_path(d, "steps.drift_guard.warn", 0.5), "steps.drift_guard", "must be below block"),
    "bad duration": (lambda d: set_path(d, "steps.features.timeout", "forever"), "steps.features.timeout", "duration"),
    "bad glue worker type": (lambda d: set_path(d, "steps.features.worker_type", "G.3X"), "steps.features.worker_type", "G.1X"),
    "nested hyperparameter": (lambda d: set_path(d, "steps.train.hyperparameters.max_iter", {"a": 1}), "steps.train.hyperparameters.max_iter", "valid"),
    "objective not defined": (lambda d: set_path(d, "steps.train.objective_metric", "auc"), "steps.train", "not among metric_definitions"),
    "name differs from file": (lambda d: set_path(d, "name", "other_name"), "name", "must match the file name"),
}

# Faults of the graph the datasets make: each names the step (or `steps`) at fault.
GRAPH_CASES = {
    "cycle": (
        lambda d: add_steps(
            d,
            left={"kind": "athena_sql", "sql": ATHENA_SQL, "reads": ["right_out"], "writes": "left_out"},
            right={"kind": "athena_sql", "sql": ATHENA_SQL, "reads": ["left_out"], "writes": "right_out"},
        ),
        "steps",
        ("form a cycle", "left -> right", "right -> left"),
    ),
    "read but never written nor a source": (
        lambda d: set_path(d, "steps.features.reads.input_path", "rwa"),
        "steps.features",
        "reads 'rwa', which no step writes and sources does not declare",
    ),
    "two writers of one dataset": (
        lambda d: set_path(d, "steps.training_set.writes", "raw"),
        "steps.training_set",
        "writes 'raw', which step 'extract' writes too",
    ),
    "a step writes a source": (
        lambda d: set_path(d, "steps.training_set.writes", "engagement_labels"),
        "steps.training_set",
        "writes 'engagement_labels', which sources declares as a source",
    ),
    "a step writes a source table": (
        lambda d: set_path(d, "steps.publish.table", "app.users"),
        "steps.publish",
        "writes 'app.users', which sources declares as a source",
    ),
    "unknown kind": (
        lambda d: set_path(d, "steps.features.kind", "spark_job"),
        "steps.features",
        ("unknown step kind 'spark_job'", *STEP_KINDS),
    ),
    "missing kind": (
        lambda d: drop(d, "steps.features.kind"),
        "steps.features",
        ("needs a kind", *STEP_KINDS),
    ),
    "two drift guards": (
        a_second("drift_guard", writes="quarantine_2"),
        "steps",
        "at most one drift_guard step per pipeline, got drift_guard, drift_guard_2",
    ),
    "two sized post-processings": (
        a_second("postprocess", writes="outputs_2"),
        "steps",
        "at most one sized_postprocess step per pipeline, got postprocess, postprocess_2",
    ),
    "drift guard reads no inference_stats": (
        lambda d: set_path(d, "steps.drift_guard.reads", "predictions"),
        "steps.drift_guard.reads",
        "'predictions' is not written by an inference_stats step",
    ),
    "drift guard guards a source": (
        lambda d: set_path(d, "steps.drift_guard.guards", "engagement_labels"),
        "steps.drift_guard.guards",
        "'engagement_labels' is not written by any step",
    ),
    "sized post-processing without inference_stats": (
        lambda d: set_path(d, "steps.postprocess.reads", "channels/inference"),
        "steps.postprocess.reads",
        "no inference_stats step counts 'channels/inference'",
    ),
    "sized post-processing shards dataset taken": (
        lambda d: set_path(d, "sources.outputs_shards", {}),
        "steps.postprocess.writes",
        "'outputs_shards' is reserved for its shards",
    ),
    "transform model not from training": (
        lambda d: set_path(d, "steps.batch_inference.model", "features"),
        "steps.batch_inference.model",
        "'features' is not written by a sagemaker_training step",
    ),
    "transform entry point in another folder": (
        lambda d: set_path(d, "steps.batch_inference.entry_point", "jobs/recipe_engagement/postprocess.py"),
        "steps.batch_inference.entry_point",
        "must sit beside train's entry_point (training/recipe_engagement/)",
    ),
}

# A kind's own fields and the rules between them.
KIND_CASES = {
    "glue arg named output_path": (
        lambda d: set_path(d, "steps.features.args.output_path", "s3://elsewhere"),
        "steps.features",
        "args ['output_path'] are set by water",
    ),
    "glue arg named like a read": (
        lambda d: set_path(d, "steps.features.args.input_path", "s3://elsewhere"),
        "steps.features",
        "args ['input_path'] are set by water",
    ),
    "glue read named ds": (
        lambda d: set_path(d, "steps.features.reads.ds", "raw"),
        "steps.features",
        "output_path and ds are arguments water sets itself",
    ),
    "glue arg not snake_case": (
        lambda d: set_path(d, "steps.features.args.outputFiles", 1),
        "steps.features.args",
        "must be snake_case",
    ),
    "glue too few workers": (lambda d: set_path(d, "steps.features.workers", 1), "steps.features.workers", "greater than or equal to 2"),
    "pod flag read and written": (
        lambda d: set_path(d, "steps.preprocess.reads", {"train-output": "training"}),
        "steps.preprocess",
        "flags ['train-output'] are both read and written",
    ),
    "pod arg clashes with a flag": (
        lambda d: set_path(d, "steps.preprocess.args.train_output", 1),
        "steps.preprocess",
        "args ['train-output'] clash with the reads/writes flags",
    ),
    "pod without resources": (lambda d: drop(d, "steps.preprocess.resources"), "steps.preprocess.resources", "required"),
    "pod output of unknown format": (
        lambda d: set_path(d, "steps.preprocess.writes.train-output.format", "json"),
        "steps.preprocess.writes.train-output.format",
        "csv_header",
    ),
    "bigquery reads a lake dataset": (lambda d: set_path(d, "steps.extract.reads", ["users"]), "steps.extract.reads.0", "pattern"),
    "bad dataset name": (lambda d: set_path(d, "steps.extract.writes", "Raw"), "steps.extract.writes", "pattern"),
    "publish to a lake dataset": (lambda d: set_path(d, "steps.publish.table", "segments"), "steps.publish.table", "pattern"),
    "bad instance type": (lambda d: set_path(d, "steps.batch_inference.instance_type", "m5.xlarge"), "steps.batch_inference.instance_type", "pattern"),
    "sizing tiers in reverse": (reorder_tiers, "steps.postprocess.sizing", "strictly increasing max_rows"),
    "sizing tier names repeat": (duplicate_tier_name, "steps.postprocess.sizing", "tier names must be unique"),
    "sizing one shard at most": (lambda d: set_path(d, "steps.postprocess.sizing.scale_out.max_shards", 1), "steps.postprocess.sizing.scale_out.max_shards", "greater than or equal to 2"),
    "drift warn equals block": (
        lambda d: set_path(set_path(d, "steps.drift_guard.warn", 0.25), "steps.drift_guard.block", 0.25),
        "steps.drift_guard",
        "warn (0.25) must be below block (0.25)",
    ),
    "drift JS block above one": (
        lambda d: set_path(set_path(d, "steps.drift_guard.metric", "js"), "steps.drift_guard.block", 1.5),
        "steps.drift_guard",
        "JS distance is at most 1",
    ),
    "drift training_labels without baseline_labels": (
        lambda d: set_path(d, "steps.drift_guard.baseline", "training_labels"),
        "steps.drift_guard",
        "baseline training_labels needs baseline_labels",
    ),
    "drift baseline labels nobody writes": (
        lambda d: set_path(
            set_path(d, "steps.drift_guard.baseline", "training_labels"),
            "steps.drift_guard.baseline_labels",
            {"dataset": "crm_labels", "column": "segment"},
        ),
        "steps.drift_guard",
        "reads 'crm_labels', which no step writes",
    ),
    "metric regex without a group": (
        lambda d: set_path(d, "steps.train.metric_definitions.0.regex", "accuracy=[0-9.]+"),
        "steps.train.metric_definitions.0.regex",
        "exactly one capture group",
    ),
    # A step or an argument named like a kind keeps its name in the field (the demo's
    # drift_guard, inference_stats and publish steps are named after their kinds).
    "arg named like a kind": (
        lambda d: set_path(d, "steps.features.args.publish", {"a": 1}),
        "steps.features.args.publish",
        "use a string, number or boolean",
    ),
    "step named like its kind": (
        lambda d: set_path(d, "steps.inference_stats.reads", "Predictions"),
        "steps.inference_stats.reads",
        "pattern",
    ),
    "label column not an identifier": (
        lambda d: set_path(d, "sources.engagement_labels.label_column", "Segment"),
        "sources.engagement_labels.label_column",
        "pattern",
    ),
}


def assert_spec_error(tmp_path: Path, data: dict, field: str, words: str | tuple[str, ...]) -> SpecError:
    path = tmp_path / "recipe_engagement.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as caught:
        load_spec(path, include_dir=ROOT / "include")
    message = str(caught.value)
    assert str(path) in message
    assert field in caught.value.fields, message
    for said in (words,) if isinstance(words, str) else words:
        assert said in message, message
    return caught.value


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_spec_names_file_and_field(tmp_path, case):
    mutate, field, words = CASES[case]
    assert_spec_error(tmp_path, mutate(demo()), field, words)


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_graph_fault_names_file_and_field(tmp_path, case):
    mutate, field, words = GRAPH_CASES[case]
    assert_spec_error(tmp_path, mutate(demo()), field, words)


@pytest.mark.parametrize("case", sorted(KIND_CASES))
def test_kind_field_error_names_file_and_field(tmp_path, case):
    mutate, field, words = KIND_CASES[case]
    assert_spec_error(tmp_path, mutate(demo()), field, words)


def test_bad_yaml_says_where(tmp_path):
    path = tmp_path / "recipe_engagement.yaml"
    path.write_text("name: recipe_engagement\nsteps: [unclosed\n")
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
    name, sized = spec.step_of("sized_postprocess")
    assert name == "postprocess"
    assert [t.name for t in sized.sizing.tiers] == ["small", "medium", "large"]
    assert spec.steps["preprocess"].resources.memory_limit_bytes == 2**30
    assert {s: k.kind for s, k in spec.steps.items()} == {
        "extract": "bigquery_sql", "features": "glue_pyspark", "training_set": "athena_sql", "preprocess": "pod",
        "train": "sagemaker_training", "batch_inference": "sagemaker_transform", "inference_stats": "inference_stats",
        "drift_guard": "drift_guard", "postprocess": "sized_postprocess", "publish": "publish",
    }
    assert set(spec.sources) == {"app.users", "app.recipe_events", "engagement_labels"}
    assert spec.label_sources() == {"engagement_labels": "segment"}
    assert spec.local_data.seed == "seeds/recipe_engagement.py"


DEMO_ORDER = [
    "extract", "features", "training_set", "preprocess", "train",
    "batch_inference", "inference_stats", "drift_guard", "postprocess", "publish",
]


def test_demo_graph_follows_the_datasets():
    spec = load_spec(DEMO)
    assert spec.order() == DEMO_ORDER
    assert spec.upstream() == {
        "extract": [],
        "features": ["extract"],
        "training_set": ["features"],
        "preprocess": ["training_set"],
        "train": ["preprocess"],
        "batch_inference": ["preprocess", "train"],  # the inference channel and the model
        "inference_stats": ["batch_inference"],  # reads the guarded predictions, but the guard needs its stats
        "drift_guard": ["inference_stats"],
        # reads the guarded predictions, sized by inference_stats' counts of them
        "postprocess": ["batch_inference", "inference_stats", "drift_guard"],
        "publish": ["postprocess"],
    }
    # The DAG draws no edge another path implies: a chain, one step after the other.
    assert spec.direct_upstream() == {
        name: ([] if i == 0 else [DEMO_ORDER[i - 1]]) for i, name in enumerate(DEMO_ORDER)
    }
    assert spec.guarded_steps() == ["postprocess"]
    assert spec.roles() == {
        "stats": "inference_stats",
        "stats_dataset": "stats",
        "training": "train",
        "objective_metric": "validation:accuracy",
        "drift": "drift_guard",
        "quarantine": "quarantine",
        "decision": "size_postprocess",
        "publish": "publish",
    }


def test_order_is_the_datasets_not_the_spec_file(tmp_path):
    """Steps written in reverse still run in dependency order."""
    data = demo()
    data["steps"] = dict(reversed(list(data["steps"].items())))
    path = tmp_path / "recipe_engagement.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_spec(path, include_dir=ROOT / "include")
    assert list(spec.steps) == list(reversed(DEMO_ORDER))
    assert spec.order() == DEMO_ORDER


def minimal() -> dict:
    """Two steps and nothing of water's own kinds: no drift guard, no sizing, no publish."""
    return {
        "name": "minimal",
        "description": "Extracts the app's events and summarises them.",
        "owner": "ml-platform",
        "schedule": "@daily",
        "start_date": "2026-11-01",
        "classes": ["cook", "browse", "dormant"],
        "sources": {"app.users": {}, "app.recipe_events": {}},
        "steps": {
            "extract": {
                "kind": "bigquery_sql",
                "sql": "sql/recipe_engagement/extract.sql",
                "reads": ["app.users", "app.recipe_events"],
                "writes": "raw",
            },
            "summary": {"kind": "athena_sql", "sql": ATHENA_SQL, "reads": ["raw"], "writes": "summary"},
        },
    }


def test_a_pipeline_without_guard_sizing_or_publish_builds_its_dag(tmp_path):
    from water.factory import build_dag
    from water.targets.local.engines.partitions import file_uri
    from water.targets.local import LocalTarget

    path = tmp_path / "minimal.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    spec = load_spec(path, include_dir=ROOT / "include")
    assert spec.order() == ["extract", "summary"]
    assert spec.upstream() == spec.direct_upstream() == {"extract": [], "summary": ["extract"]}
    assert spec.guarded_steps() == []
    assert spec.roles() == {
        "stats": None, "stats_dataset": None, "training": None, "objective_metric": None,
        "drift": None, "quarantine": None, "decision": None, "publish": None,
    }
    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    dag = build_dag(spec, target)
    assert {t.task_id for t in dag.tasks} == {"extract", "summary", "run_report"}
    assert dag.get_task("summary").upstream_task_ids == {"extract"}
    report = dag.get_task("run_report")
    assert report.is_teardown and report.upstream_task_ids == {"summary"}
    assert "force_tier" not in dag.params and "accept_drift" not in dag.params


def test_demo_dag_offers_the_run_parameters_of_its_kinds(tmp_path):
    from water.factory import build_dag
    from water.targets.local.engines.partitions import file_uri
    from water.targets.local import LocalTarget

    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    dag = build_dag(load_spec(DEMO), target)
    assert {"force_tier", "accept_drift"} <= set(dag.params)


def test_every_kind_has_a_builder_on_every_target():
    from water.targets import cloud, local

    for registry in (local.REGISTRY, cloud.REGISTRY):
        missing = [kind for kind in STEP_KINDS if kind not in registry]
        assert not missing, f"the {registry.target} target builds no {missing}"
        assert set(registry.builders) == set(STEP_KINDS), f"the {registry.target} target builds kinds the spec lacks"


def test_broken_specs_are_import_errors_of_their_own_dag_files(tmp_path, monkeypatch):
    """Three broken pipelines beside the demo: each fails alone, naming its spec and field."""
    from airflow.dag_processing.dagbag import DagBag

    shutil.copytree(ROOT / "include", tmp_path / "include")
    (tmp_path / "dags").mkdir()
    shutil.copy(ROOT / "dags" / "recipe_engagement.py", tmp_path / "dags")
    broken = {
        "bad_yaml": ("name: bad_yaml\nsteps: [oops\n", "not valid YAML"),
        "bad_field": (yaml.safe_dump({**demo(), "name": "bad_field", "schedule": "every day"}), "schedule"),
        "bad_quantity": (
            yaml.safe_dump(set_path({**demo(), "name": "bad_quantity"}, "steps.preprocess.resources.limits.memory", "1GB!")),
            "steps.preprocess.resources.limits.memory",
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
