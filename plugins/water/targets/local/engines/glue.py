"""Run a Glue PySpark script on local Spark through spark-submit, with Glue's arguments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil

from water.targets.local.engines.process import ProcessResult, python_executable, run_limited

# Glue worker types: (vCPU, memory GiB) of one worker.
WORKER_TYPES = {
    "G.025X": (2, 4),
    "G.1X": (4, 16),
    "G.2X": (8, 32),
    "G.4X": (16, 64),
    "G.8X": (32, 128),
    "R.1X": (4, 32),
    "R.2X": (8, 64),
    "R.4X": (16, 128),
    "R.8X": (32, 256),
}


def glue_arguments(job_name: str, args: dict[str, object]) -> list[str]:
    """What Glue passes the script: --JOB_NAME then each `--name value`."""
    argv = ["--JOB_NAME", job_name]
    for name, value in args.items():
        argv += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def local_limits(worker_type: str) -> tuple[float, int]:
    """CPU and memory for local Spark: one worker's share, within half of this machine."""
    cpus, memory_gib = WORKER_TYPES[worker_type]
    machine = psutil.virtual_memory().total
    return float(min(cpus, psutil.cpu_count() or 1)), int(min(memory_gib * 2**30, machine // 2))


def spark_home() -> Path:
    """The Spark distribution that ships inside the pyspark package."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pyspark is not installed; install requirements.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def run_glue_script(
    script: Path,
    job_name: str,
    args: dict[str, object],
    worker_type: str,
    log: Callable[[str], None],
) -> ProcessResult:
    cpu, memory = local_limits(worker_type)
    driver_memory_mib = int(memory * 0.6) // 2**20
    home = spark_home()
    env = {"SPARK_HOME": str(home), "PYSPARK_PYTHON": python_executable(), "PYSPARK_DRIVER_PYTHON": python_executable()}
    argv = [
        str(home / "bin" / "spark-submit"),
        "--master",
        f"local[{int(cpu)}]",
        "--driver-memory",
        f"{driver_memory_mib}m",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.log.level=WARN",
        "--conf",
        "spark.sql.shuffle.partitions=8",
        "--conf",
        "spark.sql.session.timeZone=UTC",
        str(script),
        *glue_arguments(job_name, args),
    ]
    return run_limited(argv, name=f"glue job {job_name}", memory_bytes=memory, cpu=cpu, env=env, log=log)
