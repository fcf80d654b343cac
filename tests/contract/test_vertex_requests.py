"""The Vertex AI steps on the cloud target, offline: the requests water builds from a spec are
what google-cloud-aiplatform's own types take, a request they refuse is a spec error naming the
file and the step field, the DAG sends exactly the checked requests, and the water operators
around the jobs (the Python package, the gates, AutoML's JSON Lines) do what they say.

Every shipped spec with a Vertex step is checked, and the AutoML variant of the Vertex example
(its `train` step swapped for the commented vertex_automl_tabular one, as the spec's comment
says to do).
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from unittest import mock

import pytest
import yaml

from tests.conftest import ROOT
from tests.contract.cloud import CLOUD_ENV, DS, PIPELINES, FakeTI, as_run, make_context, spec_of
from tests.contract.test_dag_parse_cost import stand_ins
from water.spec import SpecError

EXAMPLE = "recipe_engagement_vertex"
VERTEX_PIPELINES = [p for p in PIPELINES if any(s.kind.startswith("vertex_") for s in spec_of(p).steps.values())]


def spec_file(pipeline: str) -> str:
    return f"include/pipelines/{pipeline}.yaml"


def automl_text() -> str:
    """The example's spec with `train` as the commented vertex_automl_tabular step, and
    batch_inference without entry_point: what its comment tells a person to do."""
    text = (ROOT / spec_file(EXAMPLE)).read_text()
    lines = text.splitlines()
    start = lines.index("  # train:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        block.append(line.replace("  # ", "  ", 1) if line.strip() != "#" else "")
    steps = yaml.safe_load("\n".join(block))
    data = yaml.safe_load(text)
    data["steps"]["train"] = steps["train"]
    del data["steps"]["batch_inference"]["entry_point"]
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def automl_spec(tmp_path_factory):
    from water import paths
    from water.spec import load_spec

    path = tmp_path_factory.mktemp("automl") / f"{EXAMPLE}.yaml"
    path.write_text(automl_text())
    return load_spec(path, include_dir=paths.include_dir())


@pytest.fixture(scope="module")
def place():
    from water.targets.cloud.target import CloudSettings, CloudTarget

    return CloudTarget(settings=CloudSettings.from_environment(CLOUD_ENV)).vertex_place(spec_of(EXAMPLE))


# --- the requests pass google-cloud-aiplatform's types ------------------------------------------


def test_the_example_ships_vertex_steps():
    assert EXAMPLE in VERTEX_PIPELINES


@pytest.mark.parametrize("pipeline", VERTEX_PIPELINES)
def test_the_shipped_specs_vertex_requests_pass_the_aiplatform_types(pipeline, place):
    from google.cloud import aiplatform_v1

    from water.targets.cloud import vertex

    spec = spec_of(pipeline)
    requests = vertex.spec_requests(spec, place)
    assert {(r.step, r.kind) for r in requests} >= {("train", "CustomJob"), ("batch_inference", "CustomJob")}
    vertex.validate_spec(spec, spec_file(pipeline))  # raises SpecError naming file and field
    for request in requests:
        message = getattr(aiplatform_v1, request.kind)(vertex.rendered(request.body))
        assert message.display_name.startswith(f"water-{pipeline.replace('_', '-')}-")


def test_the_automl_variant_requests_pass_the_aiplatform_types(automl_spec, place):
    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform.v1.schema.trainingjob.definition_v1.types import AutoMlTablesInputs

    from water.targets.cloud import vertex

    requests = {(r.step, r.kind): r for r in vertex.spec_requests(automl_spec, place)}
    assert set(requests) == {("train", "Dataset"), ("train", "TrainingPipeline"), ("batch_inference", "BatchPredictionJob")}
    vertex.validate_spec(automl_spec, spec_file(EXAMPLE))
    body = vertex.rendered(requests["train", "TrainingPipeline"].body)
    pipeline = aiplatform_v1.TrainingPipeline(body)
    assert pipeline.training_task_inputs["targetColumn"] == "label"
    assert pipeline.input_data_config.dataset_id == "1"  # the dataset task's XCom, rendered
    inputs = AutoMlTablesInputs.from_json(json.dumps(body["training_task_inputs"]))
    step = automl_spec.steps["train"]
    assert inputs.target_column == "label" and inputs.prediction_type == "classification"
    assert inputs.train_budget_milli_node_hours == step.budget_milli_node_hours
    assert [t.numeric.column_name or t.categorical.column_name for t in inputs.transformations] == list(step.column_specs)
    job = aiplatform_v1.BatchPredictionJob(vertex.rendered(requests["batch_inference", "BatchPredictionJob"].body))
    assert list(job.instance_config.excluded_fields) == ["id"]
    assert job.service_account == CLOUD_ENV["WATER_VERTEX_SERVICE_ACCOUNT"]
    dataset = aiplatform_v1.Dataset(vertex.rendered(requests["train", "Dataset"].body))
    assert [u.endswith("/*.csv") for u in dataset.metadata["inputConfig"]["gcsSource"]["uri"]] == [True, True]


def test_the_schemata_are_the_sdks():
    from google.cloud.aiplatform import schema

    from water.targets.cloud import vertex

    assert schema.training_job.definition.automl_tabular == vertex.AUTOML_TABULAR_DEFINITION
    assert schema.dataset.metadata.tabular == vertex.TABULAR_DATASET_SCHEMA


def test_the_custom_job_runs_the_script_under_vertex_s_contract(place):
    from water.spec import VERTEX_CHANNEL_VARIABLES
    from water.targets.cloud import vertex

    spec = spec_of(EXAMPLE)
    step = spec.steps["train"]
    job = vertex.custom_training_job(place, "train", step)
    (pool,) = job["job_spec"]["worker_pool_specs"]
    package = pool["python_package_spec"]
    assert package["python_module"] == "trainer.train" and package["package_uris"] == [place.package_uri("train")]
    assert package["args"] == ["--max_iter", "150", "--learning_rate", "0.1", "--max_leaf_nodes", "31"]
    env = {e["name"]: e["value"] for e in package["env"]}
    exchange = f"{CLOUD_ENV['WATER_GCS_STAGING']}/{EXAMPLE}"
    assert env == {
        **{VERTEX_CHANNEL_VARIABLES[c]: f"{exchange}/{d}/ds={{{{ ds }}}}/*.csv" for c, d in step.reads.items()},
        "AIP_DATA_FORMAT": "csv",
    }
    # Vertex sets AIP_MODEL_DIR to <base_output_directory>/model/: the exchange folder the model is copied from
    base = job["job_spec"]["base_output_directory"]["output_uri_prefix"]
    assert f"{base}/model" == place.model_dir("model") == f"{exchange}/model/ds={{{{ ds }}}}/model"
    assert job["job_spec"]["scheduling"] == {"timeout": "3600s"}
    assert job["job_spec"]["service_account"] == CLOUD_ENV["WATER_VERTEX_SERVICE_ACCOUNT"]
    assert job["labels"] == {"app": "water", "pipeline": EXAMPLE, "step": "train", "ds": "{{ ds }}"}


def test_the_batch_custom_job_runs_the_handler_driver_on_mounted_paths(place):
    from water.targets.cloud import vertex
    from water.targets.local.engines import transform_container

    job = vertex.batch_prediction_custom_job(place, "batch_inference", spec_of(EXAMPLE).steps["batch_inference"])
    package = job["job_spec"]["worker_pool_specs"][0]["python_package_spec"]
    assert package["python_module"] == "trainer.transform_container"
    args = dict(zip(package["args"][::2], package["args"][1::2], strict=True))
    assert set(args) == {"--model-dir", "--code-dir", "--program", "--input", "--output", "--max-payload-mb"}
    assert all(
        args[a].startswith("/gcs/acme-water-staging/exchange/") for a in ("--model-dir", "--code-dir", "--input", "--output")
    )
    assert args["--program"] == "inference.py" and args["--max-payload-mb"] == "6"
    # the driver packaged is the local engine's own (standalone: it imports nothing of water)
    assert Path(transform_container.__file__).name == vertex.DRIVER


# --- a request the types refuse is a spec error naming file and field ---------------------------


def _broken(request, path: list[str], value):
    body = copy.deepcopy(request.body)
    node = body
    for key in path[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[path[-1]] = value
    return type(request)(request.step, request.kind, body, request.sources)


def test_an_unknown_field_is_refused_naming_it(place):
    from water.targets.cloud import vertex

    (train, _) = vertex.spec_requests(spec_of(EXAMPLE), place)
    bad = _broken(train, ["job_spec", "worker_pool_specs", "0", "python_package_spec", "arguments"], ["--x", "1"])
    with pytest.raises(SpecError) as raised:
        vertex.validate([bad], spec_file(EXAMPLE))
    message = str(raised.value)
    assert spec_file(EXAMPLE) in message
    assert "'job_spec.worker_pool_specs.0.python_package_spec.arguments'" in message
    assert raised.value.fields == ["steps.train.kind"]  # no spec field makes it: the kind's request is at fault


def test_a_value_the_types_refuse_names_the_step_field(place):
    from water.targets.cloud import vertex

    (train, _) = vertex.spec_requests(spec_of(EXAMPLE), place)
    with pytest.raises(SpecError) as raised:
        vertex.validate([_broken(train, ["job_spec", "scheduling", "timeout"], "1 hour")], spec_file(EXAMPLE))
    assert raised.value.fields == ["steps.train.max_runtime"]
    with pytest.raises(SpecError) as raised:
        vertex.validate([_broken(train, ["job_spec", "worker_pool_specs", "0", "disk_spec", "boot_disk_size_gb"], "big")], "x")
    assert raised.value.fields == ["steps.train.boot_disk_size_gb"]


def test_an_unknown_automl_input_is_refused_naming_it(automl_spec, place):
    from water.targets.cloud import vertex

    requests = {r.kind: r for r in vertex.spec_requests(automl_spec, place)}
    bad = _broken(requests["TrainingPipeline"], ["training_task_inputs", "budgetMilliNodeHours"], 1000)
    with pytest.raises(SpecError) as raised:
        vertex.validate([bad], spec_file(EXAMPLE))
    assert "'training_task_inputs.budgetMilliNodeHours'" in str(raised.value) and "AutoMlTablesInputs" in str(raised.value)
    kind = next(iter(requests["TrainingPipeline"].body["training_task_inputs"]["transformations"][0]))
    bad = _broken(requests["TrainingPipeline"], ["training_task_inputs", "transformations", "0", kind, "columnName2"], "x")
    with pytest.raises(SpecError) as raised:
        vertex.validate([bad], spec_file(EXAMPLE))
    assert raised.value.fields == ["steps.train.column_specs"]
    bad = _broken(requests["BatchPredictionJob"], ["input_config", "gcs_source", "uri"], ["gs://b/x"])
    with pytest.raises(SpecError) as raised:
        vertex.validate([bad], spec_file(EXAMPLE))
    assert raised.value.fields == ["steps.batch_inference.input"]


def test_a_label_vertex_refuses_is_a_spec_error(place):
    from water.targets.cloud import vertex

    (train, _) = vertex.spec_requests(spec_of(EXAMPLE), place)
    with pytest.raises(SpecError, match=r"label pipeline='Recipe Engagement'"):
        vertex.validate([_broken(train, ["labels", "pipeline"], "Recipe Engagement")], spec_file(EXAMPLE))


def test_water_validate_checks_the_vertex_requests(tmp_path):
    """`water validate` runs the check for a spec with Vertex steps: a custom model scored by more
    than one replica (each would read every input file) is named by file and field."""
    import shutil

    from tests.e2e.runs import edit, water

    shutil.copytree(ROOT / "include", tmp_path / "include")
    shutil.copytree(ROOT / "dags", tmp_path / "dags")
    edit(tmp_path, spec_file(EXAMPLE), "    max_payload_mb: 6\n", "    max_payload_mb: 6\n    replica_count: 2\n")
    result = water("validate", project=tmp_path, state=tmp_path / ".water")
    assert result.returncode == 1, result.stdout + result.stderr
    assert spec_file(EXAMPLE) in result.stdout and "steps.batch_inference.replica_count" in result.stdout


# --- the DAG sends the checked requests ---------------------------------------------------------


def test_the_dag_sends_the_checked_custom_jobs(cloud_dags, place):
    from water.targets.cloud import vertex

    dag = cloud_dags(EXAMPLE)
    spec = spec_of(EXAMPLE)
    fit = as_run(dag.get_task("train.fit"))
    assert fit.custom_job == vertex.custom_training_job(place, "train", spec.steps["train"])
    assert (fit.project_id, fit.region, fit.deferrable) == (
        CLOUD_ENV["WATER_GCP_PROJECT"],
        CLOUD_ENV["WATER_VERTEX_REGION"],
        False,
    )
    predict = as_run(dag.get_task("batch_inference.predict"))
    assert predict.custom_job == vertex.batch_prediction_custom_job(place, "batch_inference", spec.steps["batch_inference"])
    fit.render_template_fields(make_context(EXAMPLE))
    rendered = json.dumps(fit.custom_job)
    assert "{{" not in rendered and f"ds={DS}" in rendered and '"ds": "2026-11-01"' in rendered


def test_the_custom_training_group_stages_checks_and_promotes(cloud_dags):
    dag = cloud_dags(EXAMPLE)
    group = {t.task_id.removeprefix("train."): t for t in dag.tasks if t.task_id.startswith("train.")}
    assert set(group) == {
        "clear_exchange",
        "to_gcs_train",
        "to_gcs_validation",
        "package",
        "fit",
        "clear_staging",
        "to_s3",
        "check",
        "promote",
    }
    assert group["fit"].upstream_task_ids == {"train.package", "train.to_gcs_train", "train.to_gcs_validation"}
    assert group["check"].upstream_task_ids == {"train.to_s3"} and group["promote"].upstream_task_ids == {"train.check"}
    to_s3 = as_run(group["to_s3"])
    assert to_s3.prefix == f"exchange/{EXAMPLE}/model/ds={{{{ ds }}}}/model/"
    assert to_s3.dest_s3_key == f"{CLOUD_ENV['WATER_LAKE']}/{EXAMPLE}/model/_staging/ds={{{{ ds }}}}/"


@pytest.fixture(scope="module")
def automl_dag(automl_spec):
    from water.factory import build_dag
    from water.targets.cloud.target import CloudSettings, CloudTarget

    return build_dag(automl_spec, CloudTarget(settings=CloudSettings.from_environment(CLOUD_ENV)))


def test_every_stand_in_of_the_automl_variant_builds_its_operator(automl_dag):
    tasks = stand_ins(automl_dag)
    paths = set(tasks.values())
    assert {
        "water.targets.cloud.vertex_operators.TemplatedCreateDatasetOperator",
        "airflow.providers.google.cloud.operators.vertex_ai.auto_ml.CreateAutoMLTabularTrainingJobOperator",
        "water.targets.cloud.vertex_operators.VertexBatchPredictionOperator",
    } <= paths
    for task, path in tasks.items():
        built = as_run(task)
        assert f"{type(built).__module__}.{type(built).__name__}" == path, task.task_id
        assert (built.upstream_task_ids, built.downstream_task_ids) == (task.upstream_task_ids, task.downstream_task_ids)
        assert {link.name: link.xcom_key for link in built.operator_extra_links} == {
            link.name: link.xcom_key for link in task.operator_extra_links
        }, task.task_id


def test_the_automl_dag_sends_the_checked_requests(automl_dag, automl_spec, place):
    from water.targets.cloud import vertex

    context = make_context(
        EXAMPLE,
        FakeTI(
            {
                ("train.dataset", "dataset_id"): "123",
                ("batch_inference.instances", "return_value"): {"model": "projects/p/locations/r/models/9"},
            }
        ),
    )
    dataset = as_run(automl_dag.get_task("train.dataset"))
    dataset.render_template_fields(context)
    assert dataset.dataset == vertex.rendered(vertex.tabular_dataset(place, "train", automl_spec.steps["train"]))
    fit = as_run(automl_dag.get_task("train.fit"))
    fit.render_template_fields(context)
    arguments = vertex.automl_arguments(place, "train", automl_spec.steps["train"], "123")
    assert {k: getattr(fit, k if k != "labels" else "labels") for k in arguments} == arguments
    predict = as_run(automl_dag.get_task("batch_inference.predict"))
    predict.render_template_fields(context)
    model = "projects/p/locations/r/models/9"
    assert predict.batch_prediction_job == vertex.rendered(
        vertex.batch_prediction_job(place, "batch_inference", automl_spec.steps["batch_inference"], model)
    )
    assert predict.model_name == model and predict.deferrable is False


def test_the_batch_prediction_operator_creates_the_whole_request_and_waits():
    from google.cloud.aiplatform_v1 import BatchPredictionJob, JobState

    from water.targets.cloud.vertex_operators import VertexBatchPredictionOperator

    request = {"display_name": "j", "model": "projects/p/locations/r/models/9", "instance_config": {"excluded_fields": ["id"]}}
    operator = VertexBatchPredictionOperator(
        task_id="predict",
        batch_prediction_job=request,
        project_id="p",
        region="r",
        job_display_name="j",
        model_name="m",
        poll_interval=0,
    )
    client = mock.Mock()
    client.common_location_path.return_value = "projects/p/locations/r"
    client.create_batch_prediction_job.return_value = BatchPredictionJob(name="projects/p/locations/r/batchPredictionJobs/42")
    states = iter([JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_SUCCEEDED])
    hook = mock.Mock()
    hook.get_job_service_client.return_value = client
    hook.get_batch_prediction_job.side_effect = lambda **_: BatchPredictionJob(
        name="projects/p/locations/r/batchPredictionJobs/42", state=next(states)
    )
    ti = FakeTI()
    with (
        mock.patch.object(type(operator), "hook", new=hook),
        mock.patch("airflow.providers.google.cloud.links.vertex_ai.VertexAIBatchPredictionJobLink.persist"),
    ):
        result = operator.execute({"ti": ti, "ds": DS})
    client.create_batch_prediction_job.assert_called_once_with(
        parent="projects/p/locations/r", batch_prediction_job=BatchPredictionJob(request), timeout=None
    )
    assert ti.pushed["batch_prediction_job_id"] == "42" and result["name"].endswith("/42")


# --- the water operators around the jobs ---------------------------------------------------------


def test_the_python_package_is_reproducible_and_installs(tmp_path):
    from water import paths
    from water.targets.cloud.operators import python_package
    from water.targets.cloud.vertex import DRIVER

    folder = paths.include_dir() / "training" / "recipe_engagement"
    driver = ROOT / "plugins" / "water" / "targets" / "local" / "engines" / DRIVER
    data = python_package(folder, {DRIVER: driver})
    assert data == python_package(folder, {DRIVER: driver})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert {"trainer-0.0.0/setup.py", "trainer-0.0.0/PKG-INFO", "trainer-0.0.0/trainer/__init__.py"} <= set(names)
    assert {"trainer-0.0.0/trainer/train.py", "trainer-0.0.0/trainer/inference.py", f"trainer-0.0.0/trainer/{DRIVER}"} <= set(
        names
    )
    sdist = tmp_path / "trainer-0.0.0.tar.gz"
    sdist.write_bytes(data)
    target = tmp_path / "site"
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(target),
        str(sdist),
    ]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("no pip in this environment")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (target / "trainer" / DRIVER).read_bytes() == driver.read_bytes()
    helped = subprocess.run(
        [sys.executable, "-m", "trainer.transform_container", "--help"], cwd=target, capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0 and "--max-payload-mb" in helped.stdout


def test_the_evaluation_accuracy_is_the_confusion_matrix_diagonal():
    from water.targets.cloud.operators import evaluation_accuracy

    evaluation = {"metrics": {"confusionMatrix": {"annotationSpecs": [{}, {}], "rows": [[8, 2], [1, 9]]}, "logLoss": 0.3}}
    assert evaluation_accuracy([{"metrics": {"auPrc": 0.9}}, evaluation]) == pytest.approx(17 / 20)
    with pytest.raises(ValueError, match="no classification evaluation"):
        evaluation_accuracy([{"metrics": {}}])


@pytest.fixture
def s3_lake(tmp_path):
    """WATER_LAKE mirrored by a local folder (as tests/contract/test_cloud_quality.py does)."""
    from airflow.sdk import ObjectStoragePath

    from water.store import LakeStore

    root = CLOUD_ENV["WATER_LAKE"]

    def local(store, uri):
        assert uri.startswith(root + "/"), uri
        return ObjectStoragePath(f"file://{tmp_path}/{uri[len(root) + 1 :]}")

    with mock.patch.object(LakeStore, "_path", local):
        yield tmp_path / EXAMPLE


def _validation(lake: Path) -> None:
    folder = lake / "channels" / "validation" / f"ds={DS}"
    folder.mkdir(parents=True)
    (folder / "part-00000.csv").write_text("label,x\n" + "cook,1\n" * 6 + "browse,2\n" * 4)


@pytest.mark.parametrize(("accuracy", "passes"), [(0.9, True), (0.55, False)])
def test_the_custom_training_gate_reads_metrics_json_from_the_staged_model(cloud_dags, s3_lake, accuracy, passes):
    from water.quality import QualityCheckFailed

    check = as_run(cloud_dags(EXAMPLE).get_task("train.check"))
    staged = s3_lake / "model" / "_staging" / f"ds={DS}"
    staged.mkdir(parents=True)
    (staged / "metrics.json").write_text(json.dumps({"metrics": {"validation:accuracy": accuracy, "train:accuracy": 0.99}}))
    _validation(s3_lake)
    context = make_context(EXAMPLE)
    if passes:
        figures = check.execute(context)["checks"]["metric"]
        assert figures == {"validation:accuracy": accuracy, "majority_share": 0.6}
    else:  # below the spec's floor (at_least: 0.6) and the majority class's share (0.6)
        with pytest.raises(QualityCheckFailed, match="validation:accuracy"):
            check.execute(context)


def test_the_custom_training_gate_fails_without_metrics(cloud_dags, s3_lake):
    check = as_run(cloud_dags(EXAMPLE).get_task("train.check"))
    with pytest.raises(FileNotFoundError, match=r"metrics\.json"):
        check.execute(make_context(EXAMPLE))


def test_the_automl_model_reference_gates_on_the_evaluation(automl_dag, s3_lake):
    from water.quality import QualityCheckFailed

    register = as_run(automl_dag.get_task("train.register"))
    train = s3_lake / "channels" / "train" / f"ds={DS}"
    train.mkdir(parents=True)
    (train / "part-00000.csv").write_text("label,is_ios,n_events\ncook,1,3\n")
    _validation(s3_lake)
    context = make_context(EXAMPLE, FakeTI({("train.fit", "model_id"): "77"}))
    good = [{"metrics": {"confusionMatrix": {"rows": [[9, 1], [0, 10]]}}}]
    with mock.patch.object(type(register), "evaluations", return_value=good) as evaluations:
        reference = register.execute(context)
    evaluations.assert_called_once_with(
        f"projects/{CLOUD_ENV['WATER_GCP_PROJECT']}/locations/{CLOUD_ENV['WATER_VERTEX_REGION']}/models/77"
    )
    written = json.loads((s3_lake / "model" / "_staging" / f"ds={DS}" / "model.json").read_text())
    assert written == reference and written["features"] == ["is_ios", "n_events"]
    assert written["metrics"] == {"validation:accuracy": 0.95}
    poor = [{"metrics": {"confusionMatrix": {"rows": [[5, 5], [5, 5]]}}}]
    with mock.patch.object(type(register), "evaluations", return_value=poor), pytest.raises(QualityCheckFailed):
        register.execute(context)


class FakeGCS:
    """GCSHook's list/upload/download/delete on a dict of objects."""

    def __init__(self, objects: dict[str, bytes] | None = None):
        self.objects = dict(objects or {})

    def list(self, bucket_name, prefix=None, **_):
        return sorted(k for k in self.objects if k.startswith(prefix or ""))

    def upload(self, bucket_name, object_name, data=None, **_):
        self.objects[object_name] = data.encode() if isinstance(data, str) else data

    def download(self, bucket_name, object_name, **_):
        return self.objects[object_name]

    def delete(self, bucket_name, object_name, **_):
        del self.objects[object_name]


def test_automl_instances_and_predictions_round_trip(automl_dag, s3_lake, monkeypatch):
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "google_cloud_platform", "extra": {"project": "p"}})
    )

    model = s3_lake / "model" / f"ds={DS}"
    model.mkdir(parents=True)
    (model / "model.json").write_text(
        json.dumps({"model": "projects/p/locations/r/models/9", "features": ["is_ios", "n_events"]})
    )
    inputs = s3_lake / "channels" / "inference" / f"ds={DS}"
    inputs.mkdir(parents=True)
    (inputs / "part-00000.csv").write_text("11,1,3\n12,0,\n")
    gcs = FakeGCS({f"exchange/{EXAMPLE}/channels/inference/ds={DS}/stale.jsonl": b"{}"})
    context = make_context(EXAMPLE)
    with mock.patch.multiple(GCSHook, list=gcs.list, upload=gcs.upload, download=gcs.download, delete=gcs.delete):
        instances = as_run(automl_dag.get_task("batch_inference.instances"))
        instances.render_template_fields(context)
        result = instances.execute(context)
        assert result == {"model": "projects/p/locations/r/models/9", "files": 1, "instances": 2}
        (written,) = [k for k in gcs.objects if "channels/inference" in k]
        assert written.endswith("part-00000.csv.jsonl")
        lines = [json.loads(line) for line in gcs.objects[written].decode().splitlines()]
        assert lines == [{"id": "11", "is_ios": "1", "n_events": "3"}, {"id": "12", "is_ios": "0", "n_events": None}]
        out = f"exchange/{EXAMPLE}/predictions/ds={DS}/prediction-m-2026/"
        gcs.objects[out + "predictions_00001.jsonl"] = b"\n".join(
            json.dumps({"instance": {"id": i}, "prediction": {"classes": ["cook", "browse", "dormant"], "scores": s}}).encode()
            for i, s in (("11", [0.7, 0.2, 0.1]), ("12", [0.1, 0.3, 0.6]))
        )
        gcs.objects[out + "errors_00001.jsonl"] = b""
        convert = as_run(automl_dag.get_task("batch_inference.convert"))
        convert.render_template_fields(context)
        assert convert.execute(context) == {"files": 1, "rows": 2}
    staged = s3_lake / "predictions" / "_staging" / f"ds={DS}" / "part-00000.csv"
    assert staged.read_text() == "11,cook,0.7\n12,dormant,0.6\n"
