"""Vertex AI's custom-job contracts, run locally: custom training and batch prediction.

Training runs the entry point as a CustomJob's Python package does on Google's prebuilt
scikit-learn image: a copy of the script's folder is the package `trainer` (as the cloud
target packages it), the script runs as `python -m trainer.<script> --name value ...`, and the AIP_* environment says where the data and the
model are: AIP_TRAINING_DATA_URI, AIP_VALIDATION_DATA_URI and AIP_TEST_DATA_URI name each
channel's CSV files by wildcard (`<partition>/*.csv`, Vertex's own form: here the lake's
folder, in the cloud gs://, which the script reads through /gcs), AIP_DATA_FORMAT=csv, and
AIP_MODEL_DIR is the folder the model's files go to (the step's staged partition). It runs
under the CPU and memory of the spec's machine type; metrics are read from the log with the
step's metric definitions.

Batch prediction runs the inference script's handlers over every input file with the model
folder as it is (files, no model.tar.gz): the same handler driver as SageMaker's transform.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import psutil

from water.quality import parse_metrics
from water.spec import VERTEX_CHANNEL_VARIABLES
from water.spec import VERTEX_PACKAGE as PACKAGE
from water.targets.local.engines.process import ProcessResult, python_executable, run_limited
from water.targets.local.engines.sagemaker import TrainingResult, run_handlers

# GiB of memory per vCPU by machine class (Compute Engine's "GB" are GiB); N1 has its own.
CLASS_GIB_PER_VCPU = {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}
N1_GIB_PER_VCPU = {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9}
# Shared-core machines: (vCPU share, GiB).
SHARED_CORE = {
    "e2-micro": (0.5, 1.0),
    "e2-small": (1.0, 2.0),
    "e2-medium": (2.0, 4.0),
    "f1-micro": (0.2, 0.6),
    "g1-small": (0.5, 1.7),
}


def machine_limits(machine_type: str) -> tuple[float, int]:
    """(vCPU, memory bytes) of a Compute Engine machine type (n1-standard-4: 4 vCPU, 15 GiB;
    <family>-custom-<vCPU>-<MiB> too), within this machine."""
    if machine_type in SHARED_CORE:
        vcpus, gib = SHARED_CORE[machine_type]
    else:
        custom = re.fullmatch(r"[a-z0-9]+-custom-(\d+)-(\d+)(-ext)?", machine_type)
        sized = re.fullmatch(r"([a-z0-9]+)-([a-z]+)-(\d+)", machine_type)
        if custom:
            vcpus, gib = float(custom.group(1)), int(custom.group(2)) / 1024
        elif sized and sized.group(2) in CLASS_GIB_PER_VCPU:
            family, kind, count = sized.groups()
            vcpus = float(count)
            gib = vcpus * (N1_GIB_PER_VCPU if family == "n1" else CLASS_GIB_PER_VCPU)[kind]
        else:
            raise ValueError(
                f"machine type {machine_type!r}: the local target knows <family>-standard|highmem|highcpu-<vCPUs>, "
                f"<family>-custom-<vCPUs>-<MiB> and {', '.join(SHARED_CORE)}"
            )
    machine_cpus = psutil.cpu_count() or 1
    return min(vcpus, float(machine_cpus)), int(min(gib * 2**30, psutil.virtual_memory().total * 3 // 4))


def channel_uri(folder: Path) -> str:
    """A channel's CSV files as Vertex names them to the job: a wildcard."""
    return f"{folder}/*.csv"


def custom_training(
    *,
    job_name: str,
    entry_point: Path,
    hyperparameters: dict[str, object],
    channels: dict[str, Path],
    machine_type: str,
    metric_definitions: list[tuple[str, str]],
    work_dir: Path,
    model_dir: Path,
    log: Callable[[str], None],
) -> TrainingResult:
    """Run the training script as a Vertex CustomJob would; its model's files land in model_dir."""
    unknown = sorted(set(channels) - set(VERTEX_CHANNEL_VARIABLES))
    if unknown:
        raise ValueError(f"Vertex names only the channels {', '.join(VERTEX_CHANNEL_VARIABLES)} to a job, not {unknown}")
    job = work_dir / job_name
    shutil.rmtree(job, ignore_errors=True)
    installed = job / "site-packages"
    package = installed / PACKAGE
    shutil.copytree(entry_point.parent, package)  # the Python package the job installs
    (package / "__init__.py").touch()
    for folder in ("checkpoints", "logs"):
        (job / "output" / folder).mkdir(parents=True)
    model_dir.mkdir(parents=True, exist_ok=True)

    cpu, memory = machine_limits(machine_type)
    env = {
        "AIP_MODEL_DIR": f"{model_dir}/",
        "AIP_CHECKPOINT_DIR": f"{job / 'output' / 'checkpoints'}/",
        "AIP_TENSORBOARD_LOG_DIR": f"{job / 'output' / 'logs'}/",
        "AIP_DATA_FORMAT": "csv",
        "CLOUD_ML_JOB_ID": job_name,
        **{VERTEX_CHANNEL_VARIABLES[name]: channel_uri(folder) for name, folder in channels.items()},
    }
    argv = [python_executable(), "-m", f"{PACKAGE}.{entry_point.stem}"]
    for name, value in hyperparameters.items():
        argv += [f"--{name}", str(value)]
    process = run_limited(argv, name=f"custom job {job_name}", memory_bytes=memory, cpu=cpu, env=env, cwd=installed, log=log)
    return TrainingResult(process, parse_metrics(process.output, metric_definitions))


def batch_prediction(
    *,
    job_name: str,
    model_dir: Path,
    entry_point: Path,
    input_dir: Path,
    output_dir: Path,
    machine_type: str,
    max_payload_mb: int,
    work_dir: Path,
    log: Callable[[str], None],
) -> ProcessResult:
    """The inference handlers over every file in input_dir with the model folder's files (a
    copy, as the job downloads them), writing `<file>.out` to output_dir."""
    cpu, memory = machine_limits(machine_type)
    job = work_dir / job_name
    shutil.rmtree(job, ignore_errors=True)
    model = job / "model"
    shutil.copytree(model_dir, model)
    return run_handlers(
        name=f"batch prediction job {job_name}",
        model_dir=model,
        entry_point=entry_point,
        input_dir=input_dir,
        output_dir=output_dir,
        max_payload_mb=max_payload_mb,
        cpu=cpu,
        memory_bytes=memory,
        log=log,
    )
