"""`water deploy/pods/logs/edit`: the exact commands, the config they read, what happens without the tools.

Each test builds a small project (water.toml, helm-values/) in a temporary folder. Real
execution runs fake docker/helm/kubectl executables from a temporary PATH that record their
argv and working directory, so the tests see exactly what would reach the real tools.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT
from water.cli import TOOL_MISSING, app, cluster

VENDORED_CHART = ROOT / "tests" / "contract" / "chart"  # the official chart's values.schema.json and values.yaml

CONFIG = """\
[cluster]
context = "kind-water"
namespace = "water-dev"
release = "water"
registry = "localhost:5000/ml"

[env.dev]

[env.prod]
context = "prod cluster"
namespace = "water"
chart_version = "1.18.0"
registry = "registry.example/ml"
"""
TAG = "abc123"
LOCAL_REGISTRY, PROD_REGISTRY = "localhost:5000/ml", "registry.example/ml"
AIRFLOW_IMAGE = f"{LOCAL_REGISTRY}/water-airflow:{TAG}"
JOBS_IMAGE = f"{LOCAL_REGISTRY}/water-jobs:{TAG}"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "water.toml").write_text(CONFIG)
    (tmp_path / "helm-values").mkdir()
    for env in ("base", "dev", "prod"):
        (tmp_path / "helm-values" / f"{env}.yaml").write_text("executor: KubernetesExecutor\n")
    monkeypatch.setenv("WATER_PROJECT_ROOT", str(tmp_path))
    return tmp_path


def water(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def lines(result) -> list[list[str]]:
    return [shlex.split(line) for line in result.stdout.splitlines()]


def deploy_argv(
    kube_context: str, namespace: str, env: str, version: list[str] = (), registry: str = LOCAL_REGISTRY
) -> list[list[str]]:
    airflow_image, jobs_image = f"{registry}/water-airflow:{TAG}", f"{registry}/water-jobs:{TAG}"
    return [
        ["docker", "build", "--platform", "linux/amd64", "--target", "airflow", "--tag", airflow_image, "--file", "Dockerfile", "."],
        ["docker", "build", "--platform", "linux/amd64", "--target", "jobs", "--tag", jobs_image, "--file", "Dockerfile", "."],
        ["docker", "push", airflow_image],
        ["docker", "push", jobs_image],
        ["helm", "upgrade", "--install", "water", "apache-airflow/airflow", *version,
         "--kube-context", kube_context, "--namespace", namespace,
         "--values", "helm-values/base.yaml", "--values", f"helm-values/{env}.yaml",
         "--set-string", f"images.airflow.repository={registry}/water-airflow",
         "--set-string", f"images.airflow.tag={TAG}",
         "--set-string", f"images.pod_template.repository={registry}/water-airflow",
         "--set-string", f"images.pod_template.tag={TAG}",
         "--wait", "--timeout", "15m"],
    ]  # fmt: skip


# --- --dry-run: the exact command lines ------------------------------------------------------


def test_deploy_dry_run_prints_build_push_and_helm(project):
    result = water("deploy", "dev", "--tag", TAG, "--dry-run")
    assert result.exit_code == 0, result.output
    assert lines(result) == deploy_argv("kind-water", "water-dev", "dev")


def test_deploy_dry_run_applies_the_env_overrides_and_quotes(project):
    result = water("deploy", "prod", "--tag", TAG, "--dry-run")
    assert result.exit_code == 0, result.output
    assert lines(result) == deploy_argv("prod cluster", "water", "prod", ["--version", "1.18.0"], PROD_REGISTRY)
    assert "--kube-context 'prod cluster'" in result.stdout  # shell-quoted, so it can be pasted


def test_pods_logs_edit_dry_run(project):
    kubectl = ["kubectl", "--context", "kind-water", "--namespace", "water-dev"]
    prod = ["kubectl", "--context", "prod cluster", "--namespace", "water"]
    cases = {
        ("pods",): [*kubectl, "get", "pods", "--output", "wide"],
        ("pods", "churn", "--watch", "--env", "prod"): [
            *prod,
            "get",
            "pods",
            "--output",
            "wide",
            "--selector",
            "dag_id=churn",
            "--watch",
        ],
        ("logs", "churn-train-x1"): [*kubectl, "logs", "churn-train-x1"],
        ("logs", "p1", "-f", "-c", "base", "--tail", "50", "--previous"): [
            *kubectl,
            "logs",
            "p1",
            "--container",
            "base",
            "--follow",
            "--tail=50",
            "--previous",
        ],
        ("edit", "p1", "-e", "prod"): [*prod, "edit", "pod/p1"],
    }
    for args, argv in cases.items():
        result = water(*args, "--dry-run")
        assert result.exit_code == 0, (args, result.output)
        assert lines(result) == [argv], args


def test_dry_run_needs_no_tool(project, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert water("deploy", "dev", "--tag", TAG, "--dry-run").exit_code == 0
    assert water("pods", "--dry-run").exit_code == 0


def test_default_tag_is_the_commit(project):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=project, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    result = water("deploy", "dev", "--dry-run")
    assert f"water-airflow:{head} " in result.stdout
    (project / "helm-values" / "dev.yaml").write_text("executor: CeleryExecutor\n")
    assert f"images.airflow.tag={head}-dirty" in water("deploy", "dev", "--dry-run").stdout


def test_default_tag_outside_git_asks_for_one(project):
    result = water("deploy", "dev", "--dry-run")
    assert result.exit_code == 2
    assert "not a git checkout; pass --tag" in result.stderr


def test_a_bad_tag_is_refused(project):
    result = water("deploy", "dev", "--tag", "v1 final", "--dry-run")
    assert result.exit_code == 2 and "is not a Docker image tag" in result.stderr


# --- real execution, with fake tools -----------------------------------------------------------

FAKE = """\
#!{python}
import json, os, shutil, sys
tool = os.path.basename(sys.argv[0])
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": [tool, *sys.argv[1:]], "cwd": os.getcwd()}}) + "\\n")
code = int(os.environ.get("FAKE_EXIT_" + tool.upper(), "0"))
if tool == "helm" and sys.argv[1] == "pull" and os.environ.get("FAKE_CHART") and not code:
    # helm pull CHART --untar --untardir DIR unpacks the chart into DIR/NAME
    shutil.copytree(os.environ["FAKE_CHART"], os.path.join(sys.argv[sys.argv.index("--untardir") + 1], "airflow"))
sys.exit(code)
"""


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """docker, helm and kubectl on a PATH of their own; returns (bin dir, recorded calls)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for tool in ("docker", "helm", "kubectl"):
        path = bin_dir / tool
        path.write_text(FAKE.format(python=sys.executable, log=str(log)))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return bin_dir, calls


def test_deploy_runs_the_commands_from_the_project_root(project, fake_tools):
    _, calls = fake_tools
    result = water("deploy", "dev", "--tag", TAG)
    assert result.exit_code == 0, result.output
    assert [c["argv"] for c in calls()] == deploy_argv("kind-water", "water-dev", "dev")
    assert {c["cwd"] for c in calls()} == {str(project)}
    assert "$ docker push " + AIRFLOW_IMAGE in result.stdout  # each step is shown as it starts


@pytest.mark.parametrize("dry_run", [False, True])
def test_deploy_refuses_a_bad_spec_before_building_anything(project, fake_tools, dry_run):
    """A spec `water validate` refuses (here a Vertex step a CustomJob cannot carry) stops the
    deploy before docker runs, naming the file and the field."""
    import shutil

    import yaml

    _, calls = fake_tools
    shutil.copytree(ROOT / "include", project / "include")
    spec_file = project / "include/pipelines/recipe_engagement_vertex.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["steps"]["batch_inference"]["replica_count"] = 2
    spec_file.write_text(yaml.safe_dump(spec))
    result = water("deploy", "dev", "--tag", TAG, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "recipe_engagement_vertex.yaml" in message and "steps.batch_inference.replica_count" in message
    assert "nothing built or deployed" in message
    assert calls() == [] and "docker" not in result.stdout


def test_deploy_stops_at_the_first_failing_command(project, fake_tools, monkeypatch):
    _, calls = fake_tools
    monkeypatch.setenv("FAKE_EXIT_DOCKER", "3")
    result = water("deploy", "dev", "--tag", TAG)
    assert result.exit_code == 1
    assert "exit code 3" in result.stderr
    assert [c["argv"][:2] for c in calls()] == [["docker", "build"]]  # no push, no helm


def test_pods_logs_edit_run_kubectl(project, fake_tools, monkeypatch):
    _, calls = fake_tools
    assert water("pods", "churn").exit_code == 0
    assert water("logs", "p1", "--follow").exit_code == 0
    assert water("edit", "p1", "--env", "prod").exit_code == 0
    assert [c["argv"] for c in calls()] == [
        [
            "kubectl",
            "--context",
            "kind-water",
            "--namespace",
            "water-dev",
            "get",
            "pods",
            "--output",
            "wide",
            "--selector",
            "dag_id=churn",
        ],
        ["kubectl", "--context", "kind-water", "--namespace", "water-dev", "logs", "p1", "--follow"],
        ["kubectl", "--context", "prod cluster", "--namespace", "water", "edit", "pod/p1"],
    ]
    monkeypatch.setenv("FAKE_EXIT_KUBECTL", "1")  # e.g. the pod does not exist
    assert water("logs", "gone").exit_code == 1


def test_a_missing_tool_is_named_and_nothing_runs(project, fake_tools):
    bin_dir, calls = fake_tools
    (bin_dir / "helm").unlink()
    result = water("deploy", "dev", "--tag", TAG)
    assert result.exit_code == TOOL_MISSING == 127  # the documented code (water --help epilog, README)
    assert "helm is not installed" in result.stderr
    assert calls() == []  # docker found, but no image was built for a deploy that cannot finish
    (bin_dir / "kubectl").unlink()
    for args in (("pods",), ("logs", "p1"), ("edit", "p1")):
        result = water(*args)
        assert result.exit_code == TOOL_MISSING and "kubectl is not installed" in result.stderr, args


# --- config errors ---------------------------------------------------------------------------


def test_missing_config_file_is_named(project):
    (project / "water.toml").unlink()
    result = water("pods", "--dry-run")
    assert result.exit_code == 2
    assert "water.toml not found" in result.stderr


def test_unknown_env_lists_the_ones_there_are(project):
    result = water("pods", "--env", "staging", "--dry-run")
    assert result.exit_code == 2
    assert "water.toml has no [env.staging] table; environments defined there: dev, prod" in result.stderr


def test_deploy_to_an_env_without_values_lists_the_values_files(project):
    result = water("deploy", "staging", "--tag", TAG, "--dry-run")
    assert result.exit_code == 2
    assert "no helm-values/staging.yaml for environment 'staging'; environments with values files: dev, prod" in result.stderr
    assert water("deploy", "../base", "--tag", TAG, "--dry-run").exit_code == 2  # never a path


def test_deploy_needs_the_env_in_water_toml_too(project):
    (project / "helm-values" / "staging.yaml").write_text("{}\n")
    result = water("deploy", "staging", "--tag", TAG, "--dry-run")
    assert result.exit_code == 2 and "no [env.staging] table" in result.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            CONFIG.replace('namespace = "water-dev"', 'namespace = "Water_Dev"'),
            "cluster.namespace: 'Water_Dev' is not a Kubernetes namespace",
        ),
        (CONFIG.replace("registry =", "regsitry ="), "cluster.regsitry: unknown field"),
        (CONFIG.replace('[env.prod]\ncontext = "prod cluster"', "[env.prod]\ncontxt = 1"), "env.prod.contxt: unknown field"),
        (
            CONFIG.replace("[cluster]\ncontext", "[cluster]\n#context"),
            "cluster.context: not set (write it in [cluster] or [env.dev])",
        ),
        ("[cluster\n", "water.toml: not valid TOML"),
        ("[clusters]\n", "clusters: unknown table"),
    ],
)
def test_config_errors_name_the_file_and_field(project, config, message):
    (project / "water.toml").write_text(config)
    result = water("deploy", "dev", "--tag", TAG, "--dry-run")
    assert result.exit_code == 2
    assert "water.toml" in result.stderr and message in result.stderr


@pytest.mark.parametrize(
    ("prod_table", "messages"),
    [
        (  # the registry inherited from [cluster]: localhost, which only this machine reaches
            '[env.prod]\ncontext = "prod cluster"\nnamespace = "water"\nchart_version = "1.18.0"\n',
            ["env.prod.registry: 'localhost:5000/ml' is a registry on this machine", "not context 'prod cluster'"],
        ),
        (
            '[env.prod]\ncontext = "prod cluster"\nnamespace = "water"\nregistry = "registry.example/ml"\n',
            ["env.prod.chart_version: not set"],
        ),
        (
            '[env.prod]\ncontext = "prod cluster"\nnamespace = "water"\nregistry = "127.0.0.1:5000/ml"\n',
            ["env.prod.registry: '127.0.0.1:5000/ml'", "env.prod.chart_version: not set"],
        ),
    ],
    ids=["inherited-localhost-registry", "unpinned-chart", "loopback-registry-unpinned-chart"],
)
def test_deploy_to_a_real_cluster_needs_its_own_registry_and_a_pinned_chart(project, fake_tools, prod_table, messages):
    _, calls = fake_tools
    (project / "water.toml").write_text(CONFIG.split("[env.prod]")[0] + prod_table)
    for args in (("deploy", "prod", "--tag", TAG, "--dry-run"), ("deploy", "prod", "--tag", TAG)):
        result = water(*args)
        assert result.exit_code == 2, result.output
        assert "water.toml: cannot deploy 'prod' to context 'prod cluster'" in result.stderr
        for message in messages:
            assert message in result.stderr
    assert calls() == []  # nothing built, pushed or installed
    assert water("pods", "--env", "prod", "--dry-run").exit_code == 0  # looking is fine


def test_a_local_kind_cluster_may_use_a_localhost_registry_and_the_newest_chart(project):
    result = water("deploy", "dev", "--tag", TAG, "--dry-run")  # kind-water, localhost:5000, no chart_version
    assert result.exit_code == 0, result.output
    assert lines(result) == deploy_argv("kind-water", "water-dev", "dev")


def test_the_repository_config_covers_every_values_file(monkeypatch):
    """water.toml of the repository loads, and every helm-values/ENV.yaml has its [env.ENV]."""
    monkeypatch.delenv("WATER_PROJECT_ROOT", raising=False)
    envs = tomllib.loads((ROOT / "water.toml").read_text())["env"]
    for env in sorted(set(envs) | set(cluster.helm_environments())):
        settings = cluster.load_settings(env)
        assert settings.context and settings.namespace, env


# --- the pinned chart, checked before anything is built ---------------------------------------

CHART_YAML = "apiVersion: v2\nname: airflow\nversion: 1.18.0\nappVersion: 3.2.2\n"  # as [env.prod] pins it


@pytest.fixture
def pinned_chart(project, fake_tools, monkeypatch, tmp_path):
    """The chart the fake `helm pull` unpacks: the vendored schema and defaults with a Chart.yaml;
    the project's values set the Airflow version requirements.txt pins. Returns the chart folder."""
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text(CHART_YAML)
    for name in ("values.schema.json", "values.yaml"):
        (chart / name).write_bytes((VENDORED_CHART / name).read_bytes())
    (project / "requirements.txt").write_text("apache-airflow==3.3.2\n    # via -r requirements.in\n")
    (project / "helm-values" / "base.yaml").write_text('airflowVersion: "3.3.2"\nexecutor: KubernetesExecutor\n')
    (project / "helm-values" / "prod.yaml").write_text("scheduler:\n  replicas: 2\n")
    monkeypatch.setenv("FAKE_CHART", str(chart))
    return chart


def edit_schema(chart: Path, edit) -> None:
    schema = json.loads((chart / "values.schema.json").read_text())
    edit(schema)
    (chart / "values.schema.json").write_text(json.dumps(schema))


def test_deploy_validates_the_values_against_the_pinned_chart_before_building(project, fake_tools, pinned_chart):
    _, calls = fake_tools
    result = water("deploy", "prod", "--tag", TAG)
    assert result.exit_code == 0, result.output
    pull, *rest = [c["argv"] for c in calls()]
    assert pull[:6] == ["helm", "pull", "apache-airflow/airflow", "--version", "1.18.0", "--untar"]
    assert pull[6] == "--untardir" and not Path(pull[7]).exists()  # a temporary folder, removed after
    assert rest == deploy_argv("prod cluster", "water", "prod", ["--version", "1.18.0"], PROD_REGISTRY)
    assert (
        "chart apache-airflow/airflow 1.18.0 (appVersion 3.2.2): the values of 'prod' (airflowVersion 3.3.2) pass"
        in result.stdout
    )


def _typed_replicas(schema):
    schema["properties"]["scheduler"]["properties"]["replicas"]["type"] = "string"


def _no_pod_template_image(schema):
    del schema["properties"]["images"]["properties"]["pod_template"]


@pytest.mark.parametrize(
    ("edit", "values", "message"),
    [
        (_typed_replicas, {}, "helm-values/prod.yaml: scheduler.replicas: 2 is not of type 'string'"),
        (_no_pod_template_image, {}, "--set-string: images.pod_template: not a field the chart's schema allows here"),
        (None, {"prod": "executr: KubernetesExecutor\n"}, "helm-values/prod.yaml: executr: not a key of the chart"),
        (None, {"base": "executor: KubernetesExecutor\nscheduler:\n  replicaz: 2\n"},
         "helm-values/base.yaml: scheduler.replicaz: not a field the chart's schema allows here"),
        (None, {"base": 'airflowVersion: "3.2.2"\n'}, "helm-values/base.yaml: airflowVersion: '3.2.2', but the image runs Airflow 3.3.2"),
        (None, {"base": "executor: KubernetesExecutor\n"}, "airflowVersion: not set, so the chart configures Airflow '3.0.5' (its default)"),
    ],
    ids=["schema-types-a-field-differently", "schema-lacks-a-field-water-sets", "top-level-typo", "nested-typo",
         "airflow-version-not-the-image's", "airflow-version-unset"],
)  # fmt: skip
def test_values_the_pinned_chart_refuses_stop_the_deploy(project, fake_tools, pinned_chart, edit, values, message):
    _, calls = fake_tools
    if edit:
        edit_schema(pinned_chart, edit)
    for env, text in values.items():
        (project / "helm-values" / f"{env}.yaml").write_text(text)
    result = water("deploy", "prod", "--tag", TAG)
    assert result.exit_code == 2, result.output
    assert (
        "chart apache-airflow/airflow 1.18.0 (appVersion 3.2.2, water.toml env.prod.chart_version) refuses the values of 'prod'"
        in result.stderr
    )
    assert message in result.stderr
    assert [c["argv"][:2] for c in calls()] == [["helm", "pull"]]  # nothing built, pushed or installed


@pytest.mark.parametrize(
    ("chart_yaml", "message"),
    [
        (CHART_YAML.replace("name: airflow", "name: other"), "Chart.yaml: name is 'other', not 'airflow'"),
        (
            CHART_YAML.replace("appVersion: 3.2.2", "appVersion: 2.9.3"),
            "Chart.yaml: appVersion 2.9.3: this chart version is for Airflow 2",
        ),
        (
            CHART_YAML.replace("version: 1.18.0", "version: 1.18.1"),
            "'1.18.0' pulled chart version '1.18.1': pin one version exactly",
        ),
    ],
    ids=["not-the-airflow-chart", "chart-for-airflow-2", "another-version"],
)
def test_a_chart_not_made_for_the_airflow_water_ships_stops_the_deploy(project, fake_tools, pinned_chart, chart_yaml, message):
    _, calls = fake_tools
    (pinned_chart / "Chart.yaml").write_text(chart_yaml)
    result = water("deploy", "prod", "--tag", TAG)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert [c["argv"][:2] for c in calls()] == [["helm", "pull"]]


def test_a_failed_chart_pull_stops_the_deploy(project, fake_tools, pinned_chart, monkeypatch):
    _, calls = fake_tools
    monkeypatch.setenv("FAKE_EXIT_HELM", "1")  # e.g. no such chart version, or the repository is not added
    result = water("deploy", "prod", "--tag", TAG)
    assert result.exit_code == 1
    assert "helm pull apache-airflow/airflow --version 1.18.0" in result.stderr and "failed (exit code 1)" in result.stderr
    assert [c["argv"][:2] for c in calls()] == [["helm", "pull"]]


def test_no_chart_is_pulled_without_docker_or_in_a_dry_run(project, fake_tools, pinned_chart):
    bin_dir, calls = fake_tools
    assert water("deploy", "prod", "--tag", TAG, "--dry-run").exit_code == 0
    assert calls() == []  # a dry run contacts no repository
    (bin_dir / "docker").unlink()
    result = water("deploy", "prod", "--tag", TAG)
    assert result.exit_code == TOOL_MISSING and "docker is not installed" in result.stderr
    assert calls() == []
