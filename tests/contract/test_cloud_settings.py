"""The cloud target's settings and the small rules its requests depend on, and the DAG it
builds for every shipped spec (step names as task ids, deferrable waits)."""

from __future__ import annotations

import dataclasses
import io
import re
import tarfile

import pytest
import sqlglot
from sqlglot import exp

from tests.contract.cloud import CLOUD_ENV, PIPELINES, as_run, rendered_name, spec_of, steps, tasks_as_run


def test_settings_name_every_missing_variable():
    from water.targets.cloud.target import CloudSettings, SettingsError

    with pytest.raises(SettingsError) as raised:
        CloudSettings.from_environment({"WATER_LAKE": "s3://acme-ml-lake/water"})
    message = str(raised.value)
    required = [CloudSettings.variable(f.name) for f in dataclasses.fields(CloudSettings) if f.default is dataclasses.MISSING]
    for name in required:
        if name != "WATER_LAKE":
            assert f"{name} is not set" in message
    assert "WATER_LAKE" not in message
    assert "WATER_AWS_CONN_ID" not in message  # has a default


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("WATER_LAKE", "/data/lake", "s3://bucket/prefix"),
        ("WATER_GCS_STAGING", "s3://wrong-store/x", "gs://bucket/prefix"),
        ("WATER_SAGEMAKER_ROLE_ARN", "water-sagemaker", "an IAM role ARN"),
        ("WATER_VERTEX_REGION", "EU", "a Google Cloud region"),
        ("WATER_VERTEX_SERVICE_ACCOUNT", "water-vertex", "a service account email"),
        ("WATER_DEFERRABLE", "yes", "true or false"),
        ("WATER_JOB_IMAGE", "registry.example/water-jobs:latest", "without a tag"),
    ],
)
def test_settings_name_a_malformed_variable(variable, value, says):
    from water.targets.cloud.target import CloudSettings, SettingsError

    with pytest.raises(SettingsError, match=re.escape(f"{variable}={value!r}") + ".*" + re.escape(says)):
        CloudSettings.from_environment({**CLOUD_ENV, variable: value})


def test_the_vertex_settings_are_needed_only_by_a_pipeline_with_vertex_steps():
    """A deployment without Vertex AI steps sets no WATER_VERTEX_*; a pipeline with them fails
    its own DAG build, naming both."""
    from water.factory import build_dag
    from water.spec import load_pipeline
    from water.targets.cloud.target import CloudSettings, CloudTarget, SettingsError

    env = {k: v for k, v in CLOUD_ENV.items() if not k.startswith("WATER_VERTEX_")}
    target = CloudTarget(settings=CloudSettings.from_environment(env))
    for name in PIPELINES:
        spec = load_pipeline(name)
        if any(step.kind.startswith("vertex_") for step in spec.steps.values()):
            with pytest.raises(SettingsError, match="WATER_VERTEX_REGION and WATER_VERTEX_SERVICE_ACCOUNT not set"):
                build_dag(spec, target)
        else:
            assert build_dag(spec, target).dag_id == name


def test_settings_defaults_and_parsing():
    from water.targets.cloud.target import CloudSettings

    env = {k: v for k, v in CLOUD_ENV.items() if k not in ("WATER_AWS_CONN_ID", "WATER_GCP_CONN_ID", "WATER_DEFERRABLE")}
    settings = CloudSettings.from_environment({**env, "WATER_LAKE": "s3://acme-ml-lake/water/"})
    assert settings.aws_conn_id == "aws_default" and settings.gcp_conn_id == "google_cloud_default"
    assert settings.deferrable is False and settings.lake == "s3://acme-ml-lake/water"
    assert CloudSettings.from_environment({**CLOUD_ENV, "WATER_DEFERRABLE": "TRUE"}).deferrable is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lake = "s3://other/lake"


def test_the_docstring_table_lists_exactly_the_settings():
    """The table deploy docs copy stays the list the code reads."""
    from water.targets.cloud import target as cloud

    documented = re.findall(r"^\| `(WATER_[A-Z0-9_]+)` \|", cloud.__doc__, re.M)
    read = [cloud.CloudSettings.variable(f.name) for f in dataclasses.fields(cloud.CloudSettings)]
    assert sorted(documented) == sorted(read)
    # each pipeline's Athena/Glue database is its spec's (water_<pipeline>), not a setting
    assert "WATER_ATHENA_DATABASE" not in documented + read
    assert "water_<pipeline>" in cloud.__doc__


def test_sklearn_image_per_region_and_unknown_regions():
    from water.targets.cloud.target import SettingsError, sklearn_image

    assert (
        sklearn_image("us-east-1", "1.4-2") == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    )
    with pytest.raises(SettingsError, match=r"WATER_AWS_REGION='mars-north-1'.*known regions"):
        sklearn_image("mars-north-1", "1.4-2")


def _sagemaker_kinds(pipeline: str) -> list[str]:
    """The names the target gives sagemaker_name for the pipeline's jobs and models (and a
    few more, for a pipeline that has none)."""
    spec = spec_of(pipeline) if pipeline in PIPELINES else None
    if spec is None:
        return ["train", "model", "transform", "a" * 80]
    names = [*spec.steps_of("sagemaker_training"), *spec.steps_of("sagemaker_transform")]
    names += [f"{n}-model" for n in spec.steps_of("sagemaker_transform")]
    return names or ["train", "model", "transform"]


@pytest.mark.parametrize("pipeline", [*PIPELINES, "a" * 80, "x"])
def test_sagemaker_names_fit_the_api_even_with_a_timestamp(pipeline):
    from water.targets.cloud.target import sagemaker_name

    for kind in _sagemaker_kinds(pipeline):
        name = rendered_name(sagemaker_name(pipeline, kind), try_number=12)
        with_timestamp = f"{name}-1767225600"  # what the operators append when a name exists
        assert re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", with_timestamp), with_timestamp
        assert name.startswith("water-")


def test_bind_ds_binds_only_real_placeholders():
    from water.targets.cloud.target import bind_ds

    sql = "-- the parameter (?) is ds\nSELECT 'what?' AS q, \"odd?name\" FROM t /* why? */\nWHERE ds = ? AND note <> 'it''s ?'"
    bound = bind_ds(sql, "'2026-11-01'")
    assert bound.count("'2026-11-01'") == 1
    assert "(?) is ds" in bound and "'what?'" in bound and '"odd?name"' in bound and "/* why? */" in bound
    assert "'it''s ?'" in bound
    tree = sqlglot.parse_one(bound, read="trino")
    assert not list(tree.find_all(exp.Placeholder))


def test_script_mode_hyperparameters_are_json_strings():
    import json

    from water.targets.cloud.target import script_mode_hyperparameters

    hp = script_mode_hyperparameters(
        {"max_iter": 150, "rate": 0.1, "flag": True, "name": "x"}, "train.py", "s3://b/k.tar.gz", "eu-west-1"
    )
    assert hp["max_iter"] == "150" and hp["rate"] == "0.1" and hp["flag"] == "true" and hp["name"] == '"x"'
    assert json.loads(hp["sagemaker_program"]) == "train.py"
    assert json.loads(hp["sagemaker_submit_directory"]) == "s3://b/k.tar.gz"


@pytest.mark.parametrize(("pipeline", "name"), steps("sagemaker_training"))
def test_sourcedir_tarball_is_reproducible(pipeline, name):
    from pathlib import Path

    from water import paths
    from water.targets.cloud.operators import sourcedir_tarball

    entry_point = Path(spec_of(pipeline).steps[name].entry_point)
    folder = paths.include_dir() / entry_point.parent
    first, second = sourcedir_tarball(folder), sourcedir_tarball(folder)
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        names = tar.getnames()
    assert entry_point.name in names and not any("__pycache__" in n for n in names)


def test_sourcedir_tarball_of_an_empty_folder(tmp_path):
    from water.targets.cloud.operators import sourcedir_tarball

    with pytest.raises(FileNotFoundError):
        sourcedir_tarball(tmp_path)


def test_split_s3_uri():
    from water.targets.cloud.operators import split_s3_uri

    assert split_s3_uri("s3://acme-ml-lake/water/p/raw/ds=2026-11-01/") == ("acme-ml-lake", "water/p/raw/ds=2026-11-01")
    assert split_s3_uri("s3://acme-ml-lake") == ("acme-ml-lake", "")
    with pytest.raises(ValueError, match="is not an s3://bucket/prefix URI"):
        split_s3_uri("gs://acme/x")


def test_get_target_cloud(monkeypatch):
    from water.targets import TARGETS, get_target
    from water.targets.cloud.target import CloudTarget, SettingsError

    assert "cloud" in TARGETS
    for name, value in CLOUD_ENV.items():
        monkeypatch.setenv(name, value)
    target = get_target()
    assert isinstance(target, CloudTarget)
    assert target.lake_root == "s3://acme-ml-lake/water" and target.storage_conn_id == "aws_default"
    monkeypatch.delenv("WATER_GLUE_ROLE")
    with pytest.raises(SettingsError, match="WATER_GLUE_ROLE is not set"):
        get_target()


@pytest.mark.parametrize(("pipeline", "name"), steps("pod", "sized_postprocess"))
def test_a_bad_placement_names_the_spec_field(tmp_path, pipeline, name):
    import yaml

    from water import paths
    from water.spec import SpecError, load_spec

    raw = yaml.safe_load((paths.pipelines_dir() / f"{pipeline}.yaml").read_text())
    raw["steps"][name]["placement"] = {"tolerations": [{"key": "dedicated", "effect": "NoScheduling"}]}
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as raised:
        load_spec(path, include_dir=paths.include_dir())
    assert raised.value.fields == [f"steps.{name}.placement.tolerations.0.effect"]


def test_every_step_is_built_under_its_name(cloud_dag, spec):
    """A step's task (or task group) id is its name, but the sized step's tasks, which are named
    after it (size_<name>, <name>_<tier>, commit_<dataset>); the cloud target builds every kind."""
    from water.targets.cloud.target import REGISTRY

    assert {step.kind for step in spec.steps.values()} <= set(REGISTRY.builders)
    ids = {t.task_id for t in cloud_dag.tasks} | set(cloud_dag.task_group.get_task_group_dict())
    expected = set()
    for name, step in spec.steps.items():
        if step.kind == "sized_postprocess":
            expected |= {step.size_task_id(name), step.no_predictions_task_id, step.commit_task_id()}
            for route_name, route in step.all_routes(spec.classes, name).items():
                expected |= {step.plan_task_id(route_name)}
                expected |= {step.tier_task_id(name, route_name, t.name) for t in route.sizing.tiers}
        elif step.kind == "drift_guard":
            expected |= {name, step.quarantine_task_id}
        else:
            expected.add(name)
    assert expected <= ids, expected - ids


def _deferrable_waits(spec) -> set[str]:
    """The tasks of the spec that wait on a cloud service, by kind: the ones that must defer."""
    waits = set()
    for name, step in spec.steps.items():
        if step.kind == "sized_postprocess":  # each route's largest tier is mapped: see partial_kwargs
            for route_name, route in step.all_routes(spec.classes, name).items():
                waits |= {step.tier_task_id(name, route_name, t.name) for t in route.sizing.tiers[:-1]}
            continue
        waits |= {
            "bigquery_sql": {f"{name}.query", f"{name}.export"},
            "glue_pyspark": {f"{name}.glue_job"},
            "athena_sql": {f"{name}.unload"},
            "pod": {name},
            "sagemaker_training": {f"{name}.fit"},
            "sagemaker_transform": {f"{name}.transform"},
            "publish": {f"{name}.load"},
            "vertex_custom_training": {f"{name}.fit"},
            "vertex_batch_prediction": {f"{name}.predict"},  # a CustomJob or a BatchPredictionJob
        }.get(step.kind, set())
    return waits


def _transfers_to_gcs(spec) -> set[str]:
    """The S3ToGCSOperator tasks of the spec: the publish step's, and each Vertex step's inputs."""
    found = {f"{name}.to_gcs" for name in spec.steps_of("publish")}
    for name, step in spec.steps.items():
        if step.kind in ("vertex_custom_training", "vertex_automl_tabular"):
            found |= {f"{name}.to_gcs_{channel}" for channel in step.reads}
        elif step.kind == "vertex_batch_prediction" and step.entry_point is not None:
            found |= {f"{name}.to_gcs_input", f"{name}.to_gcs_model"}
    return found


def test_deferrable_reaches_every_operator_that_has_it(spec):
    from water.factory import build_dag
    from water.targets.cloud.target import CloudSettings, CloudTarget

    settings = CloudSettings.from_environment({**CLOUD_ENV, "WATER_DEFERRABLE": "true"})
    dag = build_dag(spec, CloudTarget(settings=settings))
    deferrable = {t.task_id for t in tasks_as_run(dag) if getattr(t, "deferrable", None) is True}
    waits = {t.task_id for t in tasks_as_run(dag) if hasattr(t, "deferrable")}
    # S3ToGCSOperator's deferrable mode is a Storage Transfer job that needs AWS keys: kept off
    assert waits - deferrable == _transfers_to_gcs(spec)
    assert _deferrable_waits(spec) <= deferrable
    sized = spec.step_of("sized_postprocess")
    if sized:
        name, step = sized
        for route_name, route in step.all_routes(spec.classes, name).items():
            mapped = dag.get_task(step.tier_task_id(name, route_name, route.sizing.tiers[-1].name))
            assert as_run(mapped).deferrable is True
    # and with WATER_DEFERRABLE=false, none defers
    dag = build_dag(spec, CloudTarget(settings=CloudSettings.from_environment(CLOUD_ENV)))
    assert not any(getattr(t, "deferrable", None) is True for t in tasks_as_run(dag))
