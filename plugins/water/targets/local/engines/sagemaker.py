"""SageMaker's script-mode contracts, run locally: a training job and a batch transform job.

Training lays out /opt/ml the way the scikit-learn container does (code, input channels,
hyperparameters.json, model and output folders), sets the SM_* environment, passes the
hyperparameters as `--name value` arguments, reads metrics from the log with the job's metric
definitions, and packs model.tar.gz and output.tar.gz as SageMaker uploads them.
Transform runs the inference script's model_fn/input_fn/predict_fn/output_fn over every input
file (SplitType=Line, mini-batches up to MaxPayloadInMB, AssembleWith=Line), one `.out` per input.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from water.quality import parse_metrics
from water.targets.local.engines.process import ProcessResult, python_executable, run_limited

# GiB of memory per vCPU by instance family; vCPUs by size.
FAMILY_GIB_PER_VCPU = {"m": 4, "c": 2, "r": 8, "t": 2, "g": 4, "p": 8, "inf": 2, "trn": 4}
SIZE_VCPUS = {"medium": 1, "large": 2, "xlarge": 4}


def instance_limits(instance_type: str) -> tuple[float, int]:
    """(vCPU, memory bytes) of an ml.* instance, within this machine."""
    _, family, size = instance_type.split(".")
    family_letters = re.match(r"[a-z]+", family)
    assert family_letters, instance_type  # ml.<letters><generation>.<size>, as the spec's pattern has it
    letters = family_letters.group(0)
    vcpus = SIZE_VCPUS.get(size) or 4 * int(size.removesuffix("xlarge"))
    memory = vcpus * FAMILY_GIB_PER_VCPU.get(letters, 4) * 2**30
    machine_cpus = psutil.cpu_count() or 1
    return float(min(vcpus, machine_cpus)), int(min(memory, psutil.virtual_memory().total * 3 // 4))


def deterministic_targz(source: Path, target: Path) -> None:
    """tar.gz of a folder's contents with fixed order, owners and times (same input, same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(source.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(source)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    with open(target, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buffer.getvalue())


@dataclass(frozen=True)
class TrainingResult:
    process: ProcessResult
    metrics: dict[str, float]


def train(
    *,
    job_name: str,
    entry_point: Path,
    hyperparameters: dict[str, object],
    channels: dict[str, Path],
    instance_type: str,
    metric_definitions: list[tuple[str, str]],
    work_dir: Path,
    model_out: Path,
    log: Callable[[str], None],
) -> TrainingResult:
    """Run the training script as SageMaker would; write model.tar.gz and output.tar.gz to model_out."""
    opt_ml = work_dir / job_name / "opt" / "ml"
    shutil.rmtree(opt_ml.parent.parent, ignore_errors=True)
    code = opt_ml / "code"
    shutil.copytree(entry_point.parent, code)  # SageMaker unpacks sourcedir.tar.gz here
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    hps = {k: str(v) for k, v in hyperparameters.items()}
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    for name, source in channels.items():
        target = opt_ml / "input" / "data" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)
    model_dir, output_data = opt_ml / "model", opt_ml / "output" / "data"
    model_dir.mkdir(parents=True)
    output_data.mkdir(parents=True)

    cpu, memory = instance_limits(instance_type)
    env = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_data),
        "SM_OUTPUT_DIR": str(opt_ml / "output"),
        "SM_INPUT_DIR": str(opt_ml / "input"),
        "SM_INPUT_CONFIG_DIR": str(config),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(hps),
        "SM_USER_ENTRY_POINT": entry_point.name,
        "SM_MODULE_NAME": entry_point.stem,
        "SM_MODULE_DIR": str(code),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_NUM_CPUS": str(math.ceil(cpu)),
        "SM_NUM_GPUS": "0",
        "SM_TRAINING_ENV": json.dumps({"job_name": job_name, "hyperparameters": hps}),
        **{f"SM_CHANNEL_{name.upper()}": str(opt_ml / "input" / "data" / name) for name in channels},
        **{f"SM_HP_{name.upper()}": value for name, value in hps.items()},
    }
    argv = [python_executable(), entry_point.name]
    for name, value in hps.items():
        argv += [f"--{name}", value]
    process = run_limited(argv, name=f"training job {job_name}", memory_bytes=memory, cpu=cpu, env=env, cwd=code, log=log)
    model_out.mkdir(parents=True, exist_ok=True)
    deterministic_targz(model_dir, model_out / "model.tar.gz")
    deterministic_targz(output_data, model_out / "output.tar.gz")
    return TrainingResult(process, parse_metrics(process.output, metric_definitions))


def transform(
    *,
    job_name: str,
    model_tar: Path,
    entry_point: Path,
    input_dir: Path,
    output_dir: Path,
    instance_type: str,
    max_payload_mb: int,
    work_dir: Path,
    log: Callable[[str], None],
) -> ProcessResult:
    """Run a batch transform job over every file in input_dir, writing `<file>.out` to output_dir."""
    cpu, memory = instance_limits(instance_type)
    job_dir = work_dir / job_name
    shutil.rmtree(job_dir, ignore_errors=True)
    model_dir = job_dir / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(model_tar) as tar:
        tar.extractall(model_dir, filter="data")
    return run_handlers(
        name=f"transform job {job_name}",
        model_dir=model_dir,
        entry_point=entry_point,
        input_dir=input_dir,
        output_dir=output_dir,
        max_payload_mb=max_payload_mb,
        cpu=cpu,
        memory_bytes=memory,
        log=log,
    )


def run_handlers(
    *,
    name: str,
    model_dir: Path,
    entry_point: Path,
    input_dir: Path,
    output_dir: Path,
    max_payload_mb: int,
    cpu: float,
    memory_bytes: int,
    log: Callable[[str], None],
) -> ProcessResult:
    """The inference script's handlers over every file in input_dir, with the model folder
    model_dir (transform_container, as a process within the limits): `<file>.out` each."""
    argv = [
        python_executable(),
        "-m",
        "water.targets.local.engines.transform_container",
        "--model-dir",
        str(model_dir),
        "--code-dir",
        str(entry_point.parent),
        "--program",
        entry_point.name,
        "--input",
        str(input_dir),
        "--output",
        str(output_dir),
        "--max-payload-mb",
        str(max_payload_mb),
    ]
    plugins = str(Path(__file__).resolve().parents[4])
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))}
    return run_limited(argv, name=name, memory_bytes=memory_bytes, cpu=cpu, env=env, log=log)
