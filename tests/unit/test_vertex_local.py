"""Vertex AI custom training and batch prediction on the local target.

The demo's train.py and inference.py are one script for every engine: run on the same small
channels under SageMaker's contract (engines/sagemaker.train: SM_*, model.tar.gz) and under
Vertex's (engines/vertex.custom_training: AIP_*, the model's files), they give the same model.
The channels are made here (a few hundred rows whose segment follows from the features), so
each job takes a second or two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, make_task_context
from water.quality import QualityCheckFailed
from water.spec import load_spec
from water.targets.local.engines import sagemaker, vertex
from water.targets.local.engines.partitions import data_files, file_uri
from water.targets.local.engines.transform_container import load_handlers
from water.targets.local.target import LocalTarget

DS = "2026-11-01"
SCRIPTS = ROOT / "include" / "training" / "recipe_engagement"
TRAIN = SCRIPTS / "train.py"
HYPERPARAMETERS = {"max_iter": 30, "learning_rate": 0.1, "max_leaf_nodes": 15}
DEFINITIONS = [("validation:accuracy", r"validation:accuracy=([0-9.]+)"), ("train:accuracy", r"train:accuracy=([0-9.]+)")]
FEATURES = ["n_events", "n_cooks", "tenure_days"]


def segment(n_events: np.ndarray, n_cooks: np.ndarray) -> np.ndarray:
    return np.where(n_cooks >= 2, "cook", np.where(n_events >= 3, "browse", "dormant"))


def feature_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    events = rng.integers(0, 10, n)
    return np.column_stack([events, np.minimum(events, rng.integers(0, 5, n)), rng.integers(1, 400, n)])


def write_channel(folder: Path, rng: np.random.Generator, sizes: list[int]) -> None:
    """CSV files with a header, `label` first (the preprocess pod's channels); ~5 % noise."""
    folder.mkdir(parents=True, exist_ok=True)
    for shard, n in enumerate(sizes):
        x = feature_rows(rng, n)
        labels = segment(x[:, 0], x[:, 1])
        noisy = rng.random(n) < 0.05
        labels[noisy] = rng.choice(["cook", "browse", "dormant"], noisy.sum())
        lines = ["label," + ",".join(FEATURES)] + [f"{y}," + ",".join(map(str, row)) for y, row in zip(labels, x, strict=True)]
        (folder / f"part-{shard:05d}.csv").write_text("\n".join(lines) + "\n")


def write_inference(folder: Path, rng: np.random.Generator, sizes: list[int]) -> None:
    """CSV lines without a header, the user id first; a size of 0 is a zero-byte file."""
    folder.mkdir(parents=True, exist_ok=True)
    user = 1000
    for shard, n in enumerate(sizes):
        x = feature_rows(rng, n)
        lines = [f"{user + i}," + ",".join(map(str, row)) for i, row in enumerate(x)]
        user += n
        (folder / f"part-{shard:05d}.csv").write_text("".join(line + "\n" for line in lines))


@pytest.fixture(scope="module")
def channels(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("channels")
    rng = np.random.default_rng(7)
    write_channel(root / "train", rng, [250, 150])  # two files: a wildcard and a folder read both
    write_channel(root / "validation", rng, [120])
    write_inference(root / "inference", rng, [80, 40])
    return SimpleNamespace(train=root / "train", validation=root / "validation", inference=root / "inference")


@pytest.fixture(scope="module")
def both(channels, tmp_path_factory) -> SimpleNamespace:
    """The same train.py on the same channels as a SageMaker job and as a Vertex CustomJob, on
    machines of as many vCPUs (4: the same threads, so the same sums in the same order)."""
    work = tmp_path_factory.mktemp("jobs")
    lines: list[str] = []
    common = {
        "entry_point": TRAIN,
        "hyperparameters": HYPERPARAMETERS,
        "channels": {"train": channels.train, "validation": channels.validation},
        "metric_definitions": DEFINITIONS,
        "log": lines.append,
    }
    sm = sagemaker.train(
        job_name="sm", instance_type="ml.m5.xlarge", work_dir=work / "sagemaker", model_out=work / "sm-model", **common
    )
    vx = vertex.custom_training(
        job_name="vx", machine_type="n1-standard-4", work_dir=work / "vertex", model_dir=work / "vx-model", **common
    )
    return SimpleNamespace(sm=sm, vx=vx, sm_model=work / "sm-model", vx_model=work / "vx-model", work=work, log=lines)


def tar_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def handlers() -> ModuleType:
    return load_handlers(SCRIPTS, "inference.py")


def predictions(model_dir: Path, inference: Path) -> list[str]:
    """inference.py's handlers over every inference file, with the model read by model_fn."""
    module = handlers()
    model = module.model_fn(str(model_dir))
    answers = []
    for path in sorted(p for p in inference.iterdir() if p.stat().st_size):
        data = module.input_fn(path.read_bytes(), "text/csv")
        answers.append(module.output_fn(module.predict_fn(data, model), "text/csv"))
    return answers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.training
def test_the_same_script_gives_the_same_model_under_both_contracts(both, channels):
    # SageMaker's artifact: model.tar.gz (and output.tar.gz); Vertex's: the files themselves.
    assert sorted(p.name for p in both.sm_model.iterdir()) == ["model.tar.gz", "output.tar.gz"]
    assert sorted(p.name for p in both.vx_model.iterdir()) == ["features.json", "metrics.json", "model.joblib"]
    assert tar_member(both.sm_model / "model.tar.gz", "features.json") == (both.vx_model / "features.json").read_bytes()
    assert json.loads((both.vx_model / "features.json").read_text())["features"] == FEATURES
    # The same metrics: read from the log, and written (beside the model under Vertex, where
    # SageMaker's go to the output data folder).
    assert both.sm.metrics == both.vx.metrics and set(both.vx.metrics) == {"validation:accuracy", "train:accuracy"}
    sm_metrics = json.loads(tar_member(both.sm_model / "output.tar.gz", "metrics.json"))
    vx_metrics = json.loads((both.vx_model / "metrics.json").read_text())
    assert sm_metrics == vx_metrics
    assert vx_metrics["metrics"] == both.vx.metrics  # the printed figures, by the metric definitions' names
    assert vx_metrics["validation_accuracy"] > vx_metrics["validation_majority_accuracy"] + 0.2  # it learned
    # The same predictions from inference.py's handlers: model_fn reads the tar and the folder.
    sm_answers, vx_answers = predictions(both.sm_model, channels.inference), predictions(both.vx_model, channels.inference)
    assert sm_answers == vx_answers and sum(len(a.splitlines()) for a in vx_answers) == 120
    # And the same bytes: the estimator pickles identically (same rows, same order, same seed).
    assert sha(tar_member(both.sm_model / "model.tar.gz", "model.joblib")) == sha((both.vx_model / "model.joblib").read_bytes())


@pytest.mark.training
def test_custom_job_environment_is_vertex_s(both, channels):
    """The script runs as the module trainer.train (the folder is the package `trainer`, as the
    cloud target packages it); no SM_* variable reaches it; the channels are CSV wildcards."""
    probe = both.work / "probe"
    probe.mkdir()
    (probe / "train.py").write_text(
        "import json, os\nprint('MODULE=' + __spec__.name)\nprint('ENV=' + json.dumps({k: v for k, v in os.environ.items() if k.startswith(('AIP_', 'SM_', 'CLOUD_ML'))}))\n"
    )
    lines: list[str] = []
    vertex.custom_training(
        job_name="probe",
        entry_point=probe / "train.py",
        hyperparameters={"max_iter": 3},
        channels={"train": channels.train, "validation": channels.validation},
        machine_type="e2-standard-2",
        metric_definitions=[],
        work_dir=both.work / "vertex",
        model_dir=both.work / "probe-model",
        log=lines.append,
    )
    env = json.loads(next(line for line in lines if line.startswith("ENV="))[4:])
    assert "MODULE=trainer.train" in lines
    assert not [k for k in env if k.startswith("SM_")]
    assert env["AIP_TRAINING_DATA_URI"] == f"{channels.train}/*.csv"
    assert env["AIP_VALIDATION_DATA_URI"] == f"{channels.validation}/*.csv"
    assert "AIP_TEST_DATA_URI" not in env and env["AIP_DATA_FORMAT"] == "csv"
    assert env["AIP_MODEL_DIR"].rstrip("/") == str(both.work / "probe-model") and env["CLOUD_ML_JOB_ID"] == "probe"


def run_train(env: dict[str, str], gcs_mount: Path | None = None) -> None:
    """train.py as a process with exactly the AIP_* environment given (and /gcs at gcs_mount)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "AIP_"))}
    code = "import train\n" + (f"train.GCS_MOUNT = {str(gcs_mount)!r}\n" if gcs_mount else "") + "train.main()\n"
    args = [f"--{k}={v}" for k, v in HYPERPARAMETERS.items()]  # Vertex's args may come as --name=value
    subprocess.run([sys.executable, "-c", code, *args], cwd=SCRIPTS, env={**clean, **env}, check=True, capture_output=True)


@pytest.mark.training
def test_vertex_uris_as_folder_and_as_gcs_wildcard_give_the_same_model(both, channels, tmp_path):
    # A folder of CSV files (no wildcard).
    folder_model = tmp_path / "folder-model"
    run_train(
        {
            "AIP_TRAINING_DATA_URI": str(channels.train),
            "AIP_VALIDATION_DATA_URI": str(channels.validation),
            "AIP_MODEL_DIR": str(folder_model),
            "AIP_DATA_FORMAT": "csv",
        }
    )
    # gs:// URIs, read and written through the bucket's mount at /gcs (here, a folder).
    mount = tmp_path / "gcs"
    shutil.copytree(channels.train, mount / "lake-bucket" / "channels" / "train" / f"ds={DS}")
    shutil.copytree(channels.validation, mount / "lake-bucket" / "channels" / "validation" / f"ds={DS}")
    run_train(
        {
            "AIP_TRAINING_DATA_URI": f"gs://lake-bucket/channels/train/ds={DS}/*.csv",
            "AIP_VALIDATION_DATA_URI": f"gs://lake-bucket/channels/validation/ds={DS}/*.csv",
            "AIP_MODEL_DIR": "gs://out-bucket/jobs/train/model/",
            "AIP_DATA_FORMAT": "csv",
        },
        gcs_mount=mount,
    )
    gcs_model = mount / "out-bucket" / "jobs" / "train" / "model"
    for model in (folder_model, gcs_model):
        assert sorted(p.name for p in model.iterdir()) == ["features.json", "metrics.json", "model.joblib"]
        for name in ("features.json", "metrics.json", "model.joblib"):
            assert (model / name).read_bytes() == (both.vx_model / name).read_bytes(), (model, name)


@pytest.mark.training
def test_a_wildcard_matching_no_file_stops_the_script(channels, tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        run_train(
            {
                "AIP_TRAINING_DATA_URI": f"{channels.train}/*.parquet",
                "AIP_VALIDATION_DATA_URI": str(channels.validation),
                "AIP_MODEL_DIR": str(tmp_path / "model"),
            }
        )
    assert b"no CSV files in channel" in failed.value.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.training
def test_model_fn_reads_a_folder_or_a_model_tar(both, tmp_path):
    module = handlers()
    from_files, from_tar = module.model_fn(str(both.vx_model)), module.model_fn(str(both.sm_model))
    assert from_files["features"] == from_tar["features"] == FEATURES
    assert type(from_files["model"]) is type(from_tar["model"])
    with pytest.raises(FileNotFoundError, match=r"neither model\.joblib and features\.json nor model\.tar\.gz"):
        module.model_fn(str(tmp_path))
    lacking = tmp_path / "lacking"
    lacking.mkdir()
    with tarfile.open(lacking / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("model.joblib")
        data = (both.vx_model / "model.joblib").read_bytes()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(FileNotFoundError, match=r"lacks features\.json"):
        module.model_fn(str(lacking))


@pytest.mark.parametrize(
    ("machine_type", "vcpus", "gib"),
    [
        ("n1-standard-4", 4, 15),
        ("n1-highmem-8", 8, 52),
        ("e2-standard-4", 4, 16),
        ("n2-highmem-4", 4, 32),
        ("n2-highcpu-16", 16, 16),
        ("c2-standard-8", 8, 32),
        ("e2-medium", 2, 4),
        ("n2-custom-6-20480", 6, 20),
    ],
)
def test_machine_limits(machine_type, vcpus, gib, monkeypatch):
    big = SimpleNamespace(total=2**50)
    monkeypatch.setattr(vertex.psutil, "cpu_count", lambda: 512)
    monkeypatch.setattr(vertex.psutil, "virtual_memory", lambda: big)
    assert vertex.machine_limits(machine_type) == (vcpus, gib * 2**30)


def test_machine_limits_are_capped_by_this_machine_and_unknown_types_refused(monkeypatch):
    monkeypatch.setattr(vertex.psutil, "cpu_count", lambda: 2)
    monkeypatch.setattr(vertex.psutil, "virtual_memory", lambda: SimpleNamespace(total=8 * 2**30))
    assert vertex.machine_limits("n1-standard-4") == (2, 6 * 2**30)
    with pytest.raises(ValueError, match="a2-highgpu-1g"):
        vertex.machine_limits("a2-highgpu-1g")


# --- the local operators, on a small lake --------------------------------------------------


def vertex_spec(tmp_path: Path, automl: bool = False, train: dict | None = None):
    """The shipped Vertex demo, or its AutoML variant (the spec's comment: train replaced, no
    entry_point); `train` replaces fields of its train step."""
    data = yaml.safe_load((ROOT / "include" / "pipelines" / "recipe_engagement_vertex.yaml").read_text())
    data["steps"]["train"].update(train or {})
    data["steps"]["train"] = {k: v for k, v in data["steps"]["train"].items() if v is not None}
    if automl:
        data["steps"]["train"] = {
            "kind": "vertex_automl_tabular",
            "reads": {"train": "channels/train", "validation": "channels/validation"},
            "writes": "model",
            "column_specs": dict.fromkeys(FEATURES, "numeric"),
            "local_time_budget": "5s",
        }
        del data["steps"]["batch_inference"]["entry_point"]
    path = tmp_path / "pipelines" / "recipe_engagement_vertex.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return load_spec(path, ROOT / "include")


@pytest.fixture
def lake(channels, tmp_path) -> SimpleNamespace:
    """The channels as the day's partitions of the Vertex demo's lake (and its inference input
    with a zero-byte file, as a shard of no rows leaves)."""
    spec = vertex_spec(tmp_path)
    root = tmp_path / "lake"
    for dataset, folder in (("channels/train", channels.train), ("channels/validation", channels.validation)):
        shutil.copytree(folder, root / spec.name / dataset / f"ds={DS}")
    inference = root / spec.name / "channels/inference" / f"ds={DS}"
    shutil.copytree(channels.inference, inference)
    (inference / "part-00002.csv").write_bytes(b"")
    target = LocalTarget(lake_root=file_uri(root), warehouse_dir=str(tmp_path / "warehouse"))
    return SimpleNamespace(spec=spec, target=target, root=root / spec.name)


def build(lake: SimpleNamespace, name: str, spec=None):
    from airflow.sdk import DAG

    spec = spec or lake.spec
    with DAG(f"vertex_{name}", schedule=None):
        op = lake.target.build(spec, name, spec.steps[name]).head
    if spec.steps[name].kind == "vertex_custom_training":
        op.hyperparameters = dict(HYPERPARAMETERS)  # fewer boosting rounds than the demo's: a small day
    return op


def run(op):
    return op.run(DS, make_task_context(DS))


def partition(lake: SimpleNamespace, dataset: str) -> Path:
    return lake.root / dataset / f"ds={DS}"


@pytest.mark.training
def test_local_vertex_training_writes_the_model_s_files_and_gates_its_metric(lake):
    figures = run(build(lake, "train"))
    model = partition(lake, "model")
    assert sorted(p.name for p in data_files(model)) == ["features.json", "metrics.json", "model.joblib"]
    written = json.loads((model / "metrics.json").read_text())
    assert figures["metrics"] == written["metrics"]
    rows = {"train": written["train_rows"], "validation": written["validation_rows"]}
    assert figures["channels"] == rows == {"train": 400, "validation": 120}
    assert figures["checks"]["metric"]["validation:accuracy"] == written["metrics"]["validation:accuracy"]


@pytest.mark.training
def test_local_vertex_training_below_its_gate_keeps_the_day_s_model(lake):
    model = partition(lake, "model")
    model.mkdir(parents=True)
    (model / "model.joblib").write_bytes(b"yesterday's")
    op = build(lake, "train")
    assert op.gates is not None and op.gates.metric is not None
    op.gates = dataclasses.replace(op.gates, metric=op.gates.metric.model_copy(update={"at_least": 0.999}))
    with pytest.raises(QualityCheckFailed, match=r"validation:accuracy 0\.\d+ < at_least 0\.9990"):
        run(op)
    assert [p.name for p in data_files(model)] == ["model.joblib"] and (model / "model.joblib").read_bytes() == b"yesterday's"


def test_an_empty_channel_is_refused_before_the_job_starts(lake, state_dir):
    validation = partition(lake, "channels/validation")
    for path in data_files(validation):
        path.write_text("label," + ",".join(FEATURES) + "\n")  # a header, no rows
    op = build(lake, "train")
    job = state_dir / "vertex" / op.job_name(make_task_context(DS))
    shutil.rmtree(job, ignore_errors=True)  # another test's run of the same job
    with pytest.raises(ValueError, match=r"channel validation \(channels/validation/ds=2026-11-01\) holds no rows"):
        run(op)
    assert not job.exists()  # never started
    assert not partition(lake, "model").exists()


@pytest.mark.training
def test_local_vertex_batch_prediction_scores_every_file_with_the_model_s_files(lake):
    run(build(lake, "train"))
    op = build(lake, "batch_inference")
    assert op.automl is False
    figures = run(op)
    inputs = data_files(partition(lake, "channels/inference"))
    outputs = data_files(partition(lake, "predictions"))
    assert [p.name for p in outputs] == [f"{p.name}.out" for p in inputs]
    assert figures["rows_in"] == figures["rows_out"] == 120 and figures["checks"]["predictions"]["rows"] == 120
    assert outputs[-1].stat().st_size == 0  # a zero-byte input: zero predictions
    for source, answer in zip(inputs[:2], outputs[:2], strict=True):
        lines = [line.split(",") for line in answer.read_text().splitlines()]
        assert [row[0] for row in lines] == [line.split(",")[0] for line in source.read_text().splitlines()]
        assert {row[1] for row in lines} <= {"cook", "browse", "dormant"} and all(0 < float(row[2]) <= 1 for row in lines)
    # The handlers' own answers with the day's model: what the job wrote.
    expected = predictions(partition(lake, "model"), partition(lake, "channels/inference"))
    assert [p.read_text() for p in outputs[:2]] == [answer + "\n" for answer in expected]


def test_batch_prediction_of_an_automl_model_is_automl_s(lake, tmp_path):
    spec = vertex_spec(tmp_path / "automl", automl=True)
    op = build(lake, "batch_inference", spec)
    assert op.automl is True and op.classes == spec.classes
    assert build(lake, "batch_inference").automl is False


def test_a_custom_training_step_without_objective_is_still_the_run_s_training(tmp_path):
    """As a sagemaker_training step: the run summary and report find its figures by kind."""
    spec = vertex_spec(tmp_path, train={"objective_metric": None, "checks": None})
    assert spec.roles()["training"] == "train" and spec.roles()["objective_metric"] is None
