"""Spec validation: a malformed spec, or a faulty graph of steps, names its file and field, and
breaks no other DAG; the graph of a valid spec follows from the datasets its steps read and write."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, import_errors_beside_the_demo
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


def sizing_path(data: dict) -> str:
    """Where the demo's sized step keeps a sizing policy: its own (one job for every class) or
    its first route's. A case's field may say `{sizing}` for it."""
    step = data["steps"]["postprocess"]
    if step.get("routes"):
        return f"steps.postprocess.routes.{next(iter(step['routes']))}.sizing"
    return "steps.postprocess.sizing"


def get_path(data: dict, dotted: str):
    node = data
    for key in dotted.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def reorder_tiers(data: dict) -> dict:
    get_path(data, sizing_path(data))["tiers"].reverse()
    return data


def duplicate_tier_name(data: dict) -> dict:
    get_path(data, sizing_path(data))["tiers"][1]["name"] = "small"
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
    "path outside include": (
        lambda d: set_path(d, "steps.train.entry_point", "../README.md"),
        "steps.train.entry_point",
        "inside include/",
    ),
    "bad cron": (lambda d: set_path(d, "schedule", "61 * * * *"), "schedule", "cron"),
    "bad memory quantity": (
        lambda d: set_path(d, "steps.preprocess.resources.limits.memory", "2 gigs"),
        "steps.preprocess.resources.limits.memory",
        "Kubernetes quantity",
    ),
    "zero cpu": (
        lambda d: set_path(d, "steps.preprocess.resources.requests.cpu", "0"),
        "steps.preprocess.resources.requests.cpu",
        "greater than zero",
    ),
    "request above limit": (
        lambda d: set_path(d, "steps.preprocess.resources.requests.memory", "4Gi"),
        "steps.preprocess.resources",
        "above limits.memory",
    ),
    "tiers out of order": (reorder_tiers, "{sizing}", "increasing max_rows"),
    "tier with bad quantity": (
        lambda d: set_path(d, f"{sizing_path(d)}.tiers.0.resources.limits.cpu", "lots"),
        "{sizing}.tiers.0.resources.limits.cpu",
        "Kubernetes quantity",
    ),
    "drift warn above block": (lambda d: set_path(d, "steps.drift_guard.warn", 0.5), "steps.drift_guard", "must be below block"),
    "bad duration": (lambda d: set_path(d, "steps.features.timeout", "forever"), "steps.features.timeout", "duration"),
    "bad glue worker type": (lambda d: set_path(d, "steps.features.worker_type", "G.3X"), "steps.features.worker_type", "G.1X"),
    "nested hyperparameter": (
        lambda d: set_path(d, "steps.train.hyperparameters.max_iter", {"a": 1}),
        "steps.train.hyperparameters.max_iter",
        "valid",
    ),
    "objective not defined": (
        lambda d: set_path(d, "steps.train.objective_metric", "auc"),
        "steps.train",
        "not among metric_definitions",
    ),
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
        lambda d: set_path(d, "steps.batch_inference.entry_point", "jobs/recipe_engagement/preprocess.py"),
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
    "glue too few workers": (
        lambda d: set_path(d, "steps.features.workers", 1),
        "steps.features.workers",
        "greater than or equal to 2",
    ),
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
    "bigquery reads a lake dataset": (
        lambda d: set_path(d, "steps.extract.reads", ["users"]),
        "steps.extract.reads.0",
        "pattern",
    ),
    "bad dataset name": (lambda d: set_path(d, "steps.extract.writes", "Raw"), "steps.extract.writes", "pattern"),
    "publish to a lake dataset": (lambda d: set_path(d, "steps.publish.table", "segments"), "steps.publish.table", "pattern"),
    "bad instance type": (
        lambda d: set_path(d, "steps.batch_inference.instance_type", "m5.xlarge"),
        "steps.batch_inference.instance_type",
        "pattern",
    ),
    "sizing tiers in reverse": (reorder_tiers, "{sizing}", "strictly increasing max_rows"),
    "sizing tier names repeat": (duplicate_tier_name, "{sizing}", "tier names must be unique"),
    "sizing one shard at most": (
        lambda d: set_path(d, f"{sizing_path(d)}.scale_out.max_shards", 1),
        "{sizing}.scale_out.max_shards",
        "greater than or equal to 2",
    ),
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
    field = field.format(sizing=sizing_path(demo()))
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
    routes = sized.all_routes(spec.classes, name)  # one job for every class, or routes
    assert all(route.sizing.tiers[0].name == "small" for route in routes.values())
    assert sorted([c for route in routes.values() for c in route.classes] + sized.drop) == sorted(spec.classes)
    assert spec.steps["preprocess"].resources.memory_limit_bytes == 2**30
    assert {s: k.kind for s, k in spec.steps.items()} == {
        "extract": "bigquery_sql",
        "features": "glue_pyspark",
        "training_set": "athena_sql",
        "preprocess": "pod",
        "train": "sagemaker_training",
        "batch_inference": "sagemaker_transform",
        "inference_stats": "inference_stats",
        "drift_guard": "drift_guard",
        "postprocess": "sized_postprocess",
        "publish": "publish",
    }
    assert set(spec.sources) == {"app.users", "app.recipe_events", "engagement_labels"}
    assert spec.label_sources() == {"engagement_labels": "segment"}
    assert spec.local_data.seed == "seeds/recipe_engagement.py"


DEMO_ORDER = [
    "extract",
    "features",
    "training_set",
    "preprocess",
    "train",
    "batch_inference",
    "inference_stats",
    "drift_guard",
    "postprocess",
    "publish",
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
        # reads the guarded predictions, sized by inference_stats' counts of them (and the
        # day's events, when a route reads them too)
        "postprocess": [
            *(["extract"] if "raw" in spec.steps["postprocess"].inputs() else []),
            "batch_inference",
            "inference_stats",
            "drift_guard",
        ],
        "publish": ["postprocess"],
    }
    # The DAG draws no edge another path implies: a chain, one step after the other.
    assert spec.direct_upstream() == {name: ([] if i == 0 else [DEMO_ORDER[i - 1]]) for i, name in enumerate(DEMO_ORDER)}
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
        "nothing_published": {
            "endings": ["quarantine", "no_predictions"],
            "setting": "retract",
            "retract": "retract_publish",
            "table": "ml.engagement_segments",
            "dataset": "outputs",
        },
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
    from water.targets.local.target import LocalTarget

    path = tmp_path / "minimal.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    spec = load_spec(path, include_dir=ROOT / "include")
    assert spec.order() == ["extract", "summary"]
    assert spec.upstream() == spec.direct_upstream() == {"extract": [], "summary": ["extract"]}
    assert spec.guarded_steps() == []
    assert spec.roles() == {
        "stats": None,
        "stats_dataset": None,
        "training": None,
        "objective_metric": None,
        "drift": None,
        "quarantine": None,
        "decision": None,
        "publish": None,
        "nothing_published": None,
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
    from water.targets.local.target import LocalTarget

    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    dag = build_dag(load_spec(DEMO), target)
    assert {"force_tier", "accept_drift"} <= set(dag.params)


def test_every_kind_has_a_builder_on_every_target():
    from water.targets.cloud import target as cloud
    from water.targets.local import target as local

    for registry in (local.REGISTRY, cloud.REGISTRY):
        missing = [kind for kind in STEP_KINDS if kind not in registry]
        assert not missing, f"the {registry.target} target builds no {missing}"
        assert set(registry.builders) == set(STEP_KINDS), f"the {registry.target} target builds kinds the spec lacks"


def test_broken_specs_are_import_errors_of_their_own_dag_files(tmp_path, monkeypatch):
    """Three broken pipelines beside the demo: each fails alone, naming its spec and field."""
    broken = {
        "bad_yaml": ("name: bad_yaml\nsteps: [oops\n", "not valid YAML"),
        "bad_field": (yaml.safe_dump({**demo(), "name": "bad_field", "schedule": "every day"}), "schedule"),
        "bad_quantity": (
            yaml.safe_dump(set_path({**demo(), "name": "bad_quantity"}, "steps.preprocess.resources.limits.memory", "1GB!")),
            "steps.preprocess.resources.limits.memory",
        ),
    }
    errors = import_errors_beside_the_demo(tmp_path, monkeypatch, {name: text.encode() for name, (text, _) in broken.items()})
    assert set(errors) == set(broken)
    for name, (_, field) in broken.items():
        assert f"include/pipelines/{name}.yaml" in errors[name]
        assert field in errors[name]


@pytest.mark.parametrize(
    "text",
    [
        "500m",
        "1",
        "2",
        "0.5",
        "250m",
        "512Mi",
        "2Gi",
        "1.5Gi",
        "100k",
        "1M",
        "1e3",
        "64Ki",
        "3Ti",
        ".5",
        "10n",
        "7u",
        "2E",
        "1Pi",
    ],
)
def test_quantity_parser_agrees_with_the_kubernetes_client(text):
    from kubernetes.utils.quantity import parse_quantity as k8s_parse_quantity

    from water.spec import parse_quantity

    assert parse_quantity(text) == k8s_parse_quantity(text)


@pytest.mark.parametrize("text", ["2 gigs", "GB", "1GB", "-", "", "1.2.3", "Mi"])
def test_quantity_parser_rejects_what_the_kubernetes_client_rejects(text):
    from kubernetes.utils.quantity import parse_quantity as k8s_parse_quantity

    from water.spec import parse_quantity

    with pytest.raises(ValueError, match=r"Invalid number format|has unknown suffix"):
        k8s_parse_quantity(text)
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


# --- class routes of a sized_postprocess step ----------------------------------------------
# On the routed pipeline of tests/routes.py (classes cook, browse, dormant, spam; routes
# weekly_menu: cook, first_cook_nudge: browse, win_back: dormant; drop: spam), in a temporary
# project: none of these depends on the shipped specs.


def routed_step(data: dict) -> dict:
    return data["steps"]["postprocess"]


def mutate_routed(change):
    """A mutation of tests/routes.py's routed spec: `change(step)` edits the sized step in place."""

    def mutate() -> dict:
        from tests import routes

        data = routes.spec_data()
        change(routed_step(data))
        return data

    return mutate


def rename_route(step: dict, old: str, new: str) -> None:
    step["routes"] = {(new if name == old else name): route for name, route in step["routes"].items()}


ROUTE_CASES = {
    "a class in two routes": (
        mutate_routed(lambda s: s["routes"]["first_cook_nudge"]["classes"].append("cook")),
        "steps.postprocess.routes.first_cook_nudge.classes",
        "'cook' is in route 'weekly_menu' too; a class takes one route",
    ),
    "a class in no route and not dropped": (
        mutate_routed(lambda s: s.update(drop=[])),
        "steps.postprocess.routes",
        ("no route takes ['spam']", "add them to a route's classes, or to drop"),
    ),
    "two classes in no route": (
        mutate_routed(lambda s: (s.update(drop=[]), s["routes"].pop("win_back"))),
        "steps.postprocess.routes",
        "no route takes ['dormant', 'spam']",
    ),
    "drop of an unknown class": (
        mutate_routed(lambda s: s["drop"].append("ghost")),
        "steps.postprocess.drop",
        "'ghost' is not among the classes ['cook', 'browse', 'dormant', 'spam']",
    ),
    "a class both routed and dropped": (
        mutate_routed(lambda s: s["drop"].append("cook")),
        "steps.postprocess.drop",
        "'cook' is in route 'weekly_menu'; drop it or route it, not both",
    ),
    "a route takes an unknown class": (
        mutate_routed(lambda s: s["routes"]["win_back"]["classes"].append("lapsed")),
        "steps.postprocess.routes.win_back.classes",
        "'lapsed' is not among the classes",
    ),
    "routes and an entrypoint": (
        mutate_routed(lambda s: s.update(entrypoint=s["routes"]["weekly_menu"]["entrypoint"])),
        "steps.postprocess",
        "give either entrypoint and sizing (one job for every class) or routes, not both",
    ),
    "routes and entrypoint and sizing": (
        mutate_routed(
            lambda s: s.update(entrypoint=s["routes"]["weekly_menu"]["entrypoint"], sizing=s["routes"]["weekly_menu"]["sizing"])
        ),
        "steps.postprocess",
        "or routes, not both",
    ),
    "neither routes nor an entrypoint": (
        mutate_routed(lambda s: (s.pop("routes"), s.pop("drop"))),
        "steps.postprocess",
        "needs routes, or entrypoint and sizing",
    ),
    "an entrypoint without sizing": (
        mutate_routed(lambda s: (s.update(entrypoint=s["routes"]["weekly_menu"]["entrypoint"]), s.pop("routes"), s.pop("drop"))),
        "steps.postprocess",
        "entrypoint and sizing go together",
    ),
    "drop without routes": (
        mutate_routed(
            lambda s: (
                s.update(entrypoint=s["routes"]["weekly_menu"]["entrypoint"], sizing=s["routes"]["weekly_menu"]["sizing"]),
                s.pop("routes"),
            )
        ),
        "steps.postprocess",
        "drop needs routes",
    ),
    "a route named like a step": (
        mutate_routed(lambda s: rename_route(s, "win_back", "publish")),
        "steps.postprocess.routes.publish",
        "a step has that name; name the route otherwise",
    ),
    "a route named like its own step": (
        mutate_routed(lambda s: rename_route(s, "win_back", "postprocess")),
        "steps.postprocess.routes.postprocess",
        "a step has that name",
    ),
    "a route name not snake_case": (
        mutate_routed(lambda s: rename_route(s, "win_back", "Win-Back")),
        "steps.postprocess.routes.Win-Back",
        "pattern",
    ),
    "a route without classes": (
        mutate_routed(lambda s: s["routes"]["win_back"].update(classes=[])),
        "steps.postprocess.routes.win_back.classes",
        "at least 1 item",
    ),
    "a route's entrypoint missing": (
        mutate_routed(lambda s: s["routes"]["win_back"].update(entrypoint="jobs/routed/nope.py")),
        "steps.postprocess.routes.win_back.entrypoint",
        "file include/jobs/routed/nope.py does not exist",
    ),
    "a route without sizing": (
        mutate_routed(lambda s: s["routes"]["win_back"].pop("sizing")),
        "steps.postprocess.routes.win_back.sizing",
        "required",
    ),
    "a route's tiers out of order": (
        mutate_routed(lambda s: s["routes"]["weekly_menu"]["sizing"]["tiers"].reverse()),
        "steps.postprocess.routes.weekly_menu.sizing",
        "strictly increasing max_rows",
    ),
    "a route's unknown field": (
        mutate_routed(lambda s: s["routes"]["weekly_menu"].update(resources={})),
        "steps.postprocess.routes.weekly_menu.resources",
        "unknown field",
    ),
    "a route reads what nobody writes": (
        mutate_routed(lambda s: s["routes"]["weekly_menu"].update(reads={"menus": "weekly_menus"})),
        "steps.postprocess",
        "reads 'weekly_menus', which no step writes and sources does not declare",
    ),
    **{
        f"a route arg named {flag}": (
            mutate_routed(lambda s, flag=flag: s["routes"]["win_back"]["args"].update({flag: "x"})),
            "steps.postprocess.routes.win_back",
            f"flags ['{flag.replace('_', '-')}'] are set by water; rename them",
        )
        for flag in ("classes", "input", "output", "row_start", "row_end")
    },
    "a route read named input": (
        mutate_routed(lambda s: s["routes"]["win_back"].update(reads={"input": "stats"})),
        "steps.postprocess.routes.win_back",
        "flags ['input'] are set by water",
    ),
    "a route read named row-end": (
        mutate_routed(lambda s: s["routes"]["win_back"].update(reads={"row-end": "stats"})),
        "steps.postprocess.routes.win_back",
        "flags ['row-end'] are set by water",
    ),
}


@pytest.mark.parametrize("case", sorted(ROUTE_CASES))
def test_route_spec_error_names_file_and_field(tmp_path, case):
    from tests import routes

    mutate, field, words = ROUTE_CASES[case]
    path = routes.write_project(tmp_path, mutate())
    with pytest.raises(SpecError) as caught:
        load_spec(path, include_dir=tmp_path / "include")
    message = str(caught.value)
    assert str(path) in message, message
    assert field in caught.value.fields, (caught.value.fields, message)
    for said in (words,) if isinstance(words, str) else words:
        assert said in message, message


def test_routed_spec_is_valid_and_names_its_tasks(tmp_path):
    from tests import routes

    data = routes.spec_data()
    routed_step(data)["routes"]["weekly_menu"]["reads"] = {"menus": "stats"}  # an extra read, as a flag
    spec = routes.load_project(tmp_path, data)
    name, step = spec.step_of("sized_postprocess")
    assert list(step.routes) == ["weekly_menu", "first_cook_nudge", "win_back"] and step.drop == ["spam"]
    assert step.all_routes(spec.classes, name) == step.routes
    assert step.inputs() == ["predictions", "stats"]  # its extra read puts it after inference_stats
    assert spec.upstream()["postprocess"] == ["inference_stats"]
    assert step.tier_task_id(name, "win_back", "small") == "win_back_small"
    assert step.plan_task_id("win_back") == "plan_win_back_shards"
    assert step.artifact() is None  # each route has its own entrypoint


def test_single_form_is_one_route_named_after_the_step(tmp_path):
    """Its route is built from the validated step, wherever the spec's include/ is (not this process's)."""
    from tests import routes

    spec = routes.load_project(tmp_path, routes.single_form(routes.spec_data()))
    name, step = spec.step_of("sized_postprocess")
    ((route_name, route),) = step.all_routes(spec.classes, name).items()
    assert route_name == name == "postprocess"
    assert route.classes == spec.classes and route.entrypoint == step.entrypoint and route.sizing == step.sizing
    assert step.tier_task_id(name, name, "small") == "postprocess_small" and step.plan_task_id(name) == "plan_shards"


def test_routed_dag_offers_force_tier_per_route_or_class(tmp_path):
    from airflow.sdk.exceptions import ParamValidationError

    from tests import routes
    from water.factory import build_dag
    from water.targets.local.engines.partitions import file_uri
    from water.targets.local.target import LocalTarget

    spec = routes.load_project(tmp_path, routes.spec_data())
    target = LocalTarget(lake_root=file_uri(tmp_path / "lake"), warehouse_dir=str(tmp_path / "warehouse"))
    param = build_dag(spec, target).params.get_param("force_tier")
    assert "weekly_menu (cook): small, medium, large" in param.description
    for good in (None, "small", {"weekly_menu": "large"}, {"dormant": "medium"}, {"cook": "small", "first_cook_nudge": "large"}):
        assert param.resolve(good) == good
    for bad in ("medium", "huge", {"nope": "small"}, {"win_back": "large"}, {"spam": "small"}, ["small"]):
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


def test_scaffolding_from_a_routed_pipeline_copies_each_routes_job(tmp_path):
    """`water new` from a routed example: every route's entrypoint is copied and the new spec
    points at the copies (a routed step has no entrypoint of its own)."""
    from datetime import date

    from tests import routes
    from water.cli import scaffold

    data = routes.spec_data()
    routed_step(data)["routes"]["win_back"]["entrypoint"] = "jobs/routed/win_back.py"
    routes.write_project(tmp_path, data)
    (tmp_path / "include" / "jobs" / "routed" / "win_back.py").write_text(routes.JOB)
    assert scaffold.artifacts(
        load_spec(tmp_path / "include" / "pipelines" / "routed.yaml", include_dir=tmp_path / "include")
    ) == [
        "jobs/routed/route_job.py",
        "jobs/routed/win_back.py",
    ]
    planned = scaffold.plan("churn", "routed", tmp_path, date(2026, 11, 20))
    assert {str(p.relative_to(tmp_path)) for p in planned} >= {
        "include/jobs/churn/route_job.py",
        "include/jobs/churn/win_back.py",
    }
    new = yaml.safe_load(planned[tmp_path / "include" / "pipelines" / "churn.yaml"])
    assert {r["entrypoint"] for r in routed_step(new)["routes"].values()} == {"jobs/churn/route_job.py", "jobs/churn/win_back.py"}


TRIGGER_CASES = {
    # `trigger: {on: ...}`: started by another pipeline's completion event
    "trigger on an unknown pipeline": ("pipeline.nope.succeeded", "trigger.on", "no pipeline 'nope'"),
    "trigger on itself": ("pipeline.recipe_engagement.succeeded", "trigger.on", "would start itself"),
    "trigger on not an event": ("customer_value.done", "trigger.on.0", "is not a completion event"),
    "trigger on an unknown outcome": ("pipeline.customer_value.finished", "trigger.on.0", "succeeded|failed|quarantined"),
    "trigger on nothing": ([], "trigger.on", "at least 1 item"),
}


@pytest.mark.parametrize("case", sorted(TRIGGER_CASES))
def test_trigger_on_names_file_and_field(tmp_path, case):
    on, field, words = TRIGGER_CASES[case]
    assert_spec_error(tmp_path, {**demo(), "trigger": {"on": on}}, field, words)


def test_trigger_on_as_yaml_writes_it(tmp_path):
    """An unquoted `on:` (a YAML 1.1 boolean key) is the field `on`; one event or a list."""
    path = tmp_path / "recipe_engagement.yaml"
    for written, expected in [
        ("trigger:\n  on: pipeline.customer_value.succeeded\n", ["pipeline.customer_value.succeeded"]),
        (
            "trigger:\n  on: [pipeline.customer_value.succeeded, pipeline.customer_value.quarantined]\n",
            ["pipeline.customer_value.succeeded", "pipeline.customer_value.quarantined"],
        ),
    ]:
        path.write_text(DEMO.read_text() + written)
        spec = load_spec(path, include_dir=ROOT / "include")
        assert spec.trigger is not None and spec.trigger.on == expected
        assert spec.trigger.pipelines() == ["customer_value"] * len(expected)
    assert load_spec(DEMO).trigger is None
