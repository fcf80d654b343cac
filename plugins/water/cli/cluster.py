"""The cluster side of water: build and push the images, install the release, look at pods.

Every command is docker, helm or kubectl, run from the project root in the kube context and
namespace that water.toml names ([cluster], with [env.NAME] overriding it for one
environment). Commands are built as argv lists first, so `--dry-run` prints exactly what
would run, and nothing starts before every tool the command needs is found. A deploy with a
pinned chart_version first pulls that chart and validates the values against it
(check_pinned_chart, chart_values): nothing is built before the chart accepts them.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from copy import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from water import paths
from water.cli import chart_values

CONFIG_FILE = "water.toml"
HELM_VALUES = "helm-values"
BASE_VALUES = "base"
DOCKERFILE = "Dockerfile"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[a-z0-9][a-z0-9_-]*$"
IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
KIND_CONTEXT = "kind-"  # kind names the kubeconfig context of cluster NAME kind-NAME
LOCAL_HOSTS = {"localhost", "127.0.0.1"}


class ConfigError(ValueError):
    """water.toml, an environment or an argument is wrong; the message names file and field."""


class CommandFailed(RuntimeError):
    """A command water runs before the plan (helm pull) failed; its own message is shown."""

    def __init__(self, argv: Sequence[str], code: int):
        self.code = code
        super().__init__(f"{shell_line(argv)} failed (exit code {code})")


class ToolMissing(RuntimeError):
    """docker, helm or kubectl is not on PATH."""

    def __init__(self, tool: str):
        self.tool = tool
        super().__init__(f"{tool} is not installed (not found on PATH); this command runs {tool}")


# --- water.toml ------------------------------------------------------------------------------


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    context: str = Field(min_length=1, description="the kubeconfig context kubectl and helm use")
    namespace: str = Field(pattern=DNS_LABEL, max_length=63, description="a Kubernetes namespace (a-z, 0-9, -)")
    release: str = Field(default="water", pattern=DNS_LABEL, max_length=53, description="a Helm release name (a-z, 0-9, -)")
    chart: str = Field(default="apache-airflow/airflow", min_length=1, description="the chart, REPO/NAME")
    chart_version: str | None = Field(default=None, description="the chart version to install")
    registry: str = Field(pattern=r"^[^\s/:]+(:\d+)?(/[a-z0-9._-]+)*$", description="registry host[:port]/path, no scheme")
    airflow_image: str = Field(default="water-airflow", pattern=r"^[a-z0-9][a-z0-9._/-]*$", description="an image name")
    jobs_image: str = Field(default="water-jobs", pattern=r"^[a-z0-9][a-z0-9._/-]*$", description="an image name")
    platform: str = Field(default="linux/amd64", pattern=r"^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$", description="OS/ARCH")
    helm_timeout: str = Field(default="15m", pattern=r"^(\d+h)?(\d+m)?(\d+s)?$", description="a Go duration, e.g. 15m")


class Settings(_Settings):
    """Where the cluster commands act: one environment's settings, overrides applied."""

    def image(self, name: str, tag: str) -> str:
        return f"{self.registry}/{name}:{tag}"

    @property
    def local_cluster(self) -> bool:
        """A kind cluster on this machine (the only kind of cluster a localhost registry serves)."""
        return self.context.startswith(KIND_CONTEXT)

    @property
    def local_registry(self) -> bool:
        host = self.registry.split("/", 1)[0].split(":", 1)[0]
        return host in LOCAL_HOSTS or host.endswith(".localhost")


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:  # Any: a type made at run time
    optional = copy(field)
    optional.default = None
    assert field.annotation is not None  # every field of _Settings has one
    return field.annotation | None, optional


# A table as written: [env.NAME] may leave any field to [cluster], [cluster] any to its default.
# dict[str, Any]: create_model takes field definitions by keyword beside its own __config__ and the like
_TABLE_FIELDS: dict[str, Any] = {name: _optional(f) for name, f in _Settings.model_fields.items()}
_Table = create_model("_Table", __config__=ConfigDict(extra="forbid"), **_TABLE_FIELDS)


def config_path() -> Path:
    return paths.project_root() / CONFIG_FILE


def _problems(exc: ValidationError, where: str, tables: str = "") -> list[str]:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        message = error["msg"]
        if error["type"] == "missing":
            message = f"not set (write it in {tables})"
        elif error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif error["type"] == "string_pattern_mismatch":
            message = f"{error['input']!r} is not {_Settings.model_fields[str(error['loc'][-1])].description}"
        lines.append(f"{where}.{field}: {message}" if field else f"{where}: {message}")
    return lines


def load_settings(env: str | None = None) -> Settings:
    """[cluster] of water.toml, with [env.ENV] over it when env is given. Raises ConfigError."""
    path = config_path()
    shown = paths.shown(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{shown} not found: the cluster commands read the kube context, namespace, release "
            f"and registry from it (see README, 'Deploying')"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - {"cluster", "env"})
    problems = [f"{key}: unknown table (expected [cluster] and [env.NAME])" for key in unknown]
    base = raw.get("cluster")
    envs = raw.get("env", {})
    if not isinstance(base, dict):
        problems.append("cluster: missing [cluster] table")
        base = {}
    if not isinstance(envs, dict) or not all(isinstance(v, dict) for v in envs.values()):
        problems.append("env: write one [env.NAME] table per environment")
        envs = {}
    for where, table in [("cluster", base), *((f"env.{name}", t) for name, t in envs.items())]:
        try:
            _Table.model_validate(table)
        except ValidationError as exc:
            problems += _problems(exc, where)
    if problems:
        raise ConfigError(f"invalid {shown}:\n  " + "\n  ".join(problems))
    merged = dict(base)
    if env is not None:
        if env not in envs:
            known = ", ".join(sorted(envs)) or "none"
            raise ConfigError(f"{shown} has no [env.{env}] table; environments defined there: {known}")
        merged.update(envs[env])
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        tables = f"[cluster] or [env.{env}]" if env else "[cluster]"
        raise ConfigError(f"invalid {shown}:\n  " + "\n  ".join(_problems(exc, "cluster", tables))) from None


def helm_environments() -> list[str]:
    """The environments with a values file: helm-values/NAME.yaml, besides base.yaml."""
    folder = paths.project_root() / HELM_VALUES
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != BASE_VALUES)


def values_files(env: str) -> list[str]:
    """helm-values/base.yaml and helm-values/ENV.yaml (relative to the project root); ConfigError
    naming the environments there are when ENV has none."""
    if not re.match(ENV_NAME, env):
        raise ConfigError(f"{env!r} is not an environment name (lower-case letters, digits, - and _)")
    root = paths.project_root()
    files = [f"{HELM_VALUES}/{BASE_VALUES}.yaml", f"{HELM_VALUES}/{env}.yaml"]
    if not (root / files[1]).is_file():
        known = ", ".join(helm_environments()) or "none"
        raise ConfigError(f"no {files[1]} for environment {env!r}; environments with values files: {known}")
    if not (root / files[0]).is_file():
        raise ConfigError(f"{files[0]} is missing: every environment's values go over it")
    return files


def default_tag() -> str:
    """The image tag of this checkout: the commit's short hash, `-dirty` when files changed."""
    root = paths.project_root()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise ConfigError(f"cannot name the images after a commit: {root} is not a git checkout; pass --tag") from None
    return f"{head}-dirty" if dirty.strip() else head


# --- the commands ----------------------------------------------------------------------------


def _kubectl(settings: Settings, *args: str) -> list[str]:
    return ["kubectl", "--context", settings.context, "--namespace", settings.namespace, *args]


def deploy_commands(settings: Settings, env: str, tag: str) -> list[list[str]]:
    """Build and push both images, then install or upgrade the release with them."""
    if not re.match(IMAGE_TAG, tag):
        raise ConfigError(f"{tag!r} is not a Docker image tag (letters, digits, _ . -; at most 128)")
    images = {"airflow": settings.image(settings.airflow_image, tag), "jobs": settings.image(settings.jobs_image, tag)}
    commands = [
        ["docker", "build", "--platform", settings.platform, "--target", target, "--tag", image, "--file", DOCKERFILE, "."]
        for target, image in images.items()
    ]
    commands += [["docker", "push", image] for image in images.values()]
    helm = ["helm", "upgrade", "--install", settings.release, settings.chart]
    if settings.chart_version:
        helm += ["--version", settings.chart_version]
    helm += ["--kube-context", settings.context, "--namespace", settings.namespace]
    for values in values_files(env):
        helm += ["--values", values]
    for key, value in set_strings(settings, tag).items():
        helm += ["--set-string", f"{key}={value}"]
    helm += ["--wait", "--timeout", settings.helm_timeout]
    return [*commands, helm]


def set_strings(settings: Settings, tag: str) -> dict[str, str]:
    """The values `water deploy` sets over the values files: the scheduler's and the task pods'
    image (images.airflow, images.pod_template); the job pods take the same tag from
    images.airflow.tag (helm-values: WATER_IMAGE_TAG). --set-string: a commit hash of digits
    would otherwise become a number."""
    image = f"{settings.registry}/{settings.airflow_image}"
    return {
        f"images.{key}.{field}": value
        for key in ("airflow", "pod_template")
        for field, value in (("repository", image), ("tag", tag))
    }


def check_deployable(settings: Settings, env: str) -> None:
    """A cluster that is not a local kind cluster needs a registry it can pull from (not this
    machine's localhost) and a pinned chart version. Raises ConfigError naming the fields."""
    if settings.local_cluster:
        return
    problems = []
    if settings.local_registry:
        problems.append(
            f"env.{env}.registry: {settings.registry!r} is a registry on this machine, which only a local "
            f"kind cluster (context kind-*) pulls from, not context {settings.context!r}: set registry in "
            f"[env.{env}] to the registry that cluster pulls from"
        )
    if settings.chart_version is None:
        problems.append(
            f"env.{env}.chart_version: not set, so helm would install whatever chart version the repository "
            f"has newest: pin the version the values are validated against (docs/deploy.md, '7. Install')"
        )
    if problems:
        shown = paths.shown(config_path())
        raise ConfigError(f"{shown}: cannot deploy {env!r} to context {settings.context!r}:\n  " + "\n  ".join(problems))


def values_sources(settings: Settings, env: str, tag: str) -> list[tuple[str, chart_values.Values]]:
    """What `helm upgrade` gets, in its order: each values file, then the --set-string values."""
    root = paths.project_root()
    sources = []
    for name in values_files(env):
        try:
            values = chart_values.load_yaml(root / name)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not valid YAML for helm: {exc}") from None
        if not isinstance(values, (dict, type(None))):
            raise ConfigError(f"{name}: a values file is a map of keys, not a {type(values).__name__}")
        sources.append((name, values or {}))
    return [*sources, ("--set-string", chart_values.set_string_values(set_strings(settings, tag)))]


def shipped_airflow() -> str | None:
    """The Airflow version the image installs: requirements.txt's apache-airflow pin, if any."""
    try:
        return chart_values.pinned_airflow((paths.project_root() / "requirements.txt").read_text())
    except FileNotFoundError:
        return None


def pull_command(settings: Settings, into: Path) -> list[str]:
    return ["helm", "pull", settings.chart, "--version", str(settings.chart_version), "--untar", "--untardir", str(into)]


def check_pinned_chart(settings: Settings, env: str, tag: str, say: Callable[[str], None]) -> None:
    """Pull the pinned chart and validate what `helm upgrade` would install against that chart's
    own values.schema.json and Chart.yaml. ConfigError naming the source, field and chart version;
    CommandFailed when helm pull fails."""
    chart = f"{settings.chart} {settings.chart_version}"
    sources = values_sources(settings, env, tag)  # a values file helm cannot read stops it before the pull
    with tempfile.TemporaryDirectory(prefix="water-chart-") as tmp:
        argv = pull_command(settings, Path(tmp))
        say(f"$ {shell_line(argv)}")
        code = subprocess.run(argv, cwd=paths.project_root(), check=False).returncode
        if code:
            raise CommandFailed(argv, code)
        pulled = [p.parent for p in Path(tmp).glob("*/Chart.yaml")]
        if len(pulled) != 1:
            raise ConfigError(f"helm pull {chart} left no chart folder with a Chart.yaml in {tmp}")
        folder = pulled[0]
        meta = yaml.safe_load((folder / "Chart.yaml").read_text()) or {}
        schema_file, defaults_file = folder / "values.schema.json", folder / "values.yaml"
        if not schema_file.is_file():
            raise ConfigError(f"chart {chart} has no values.schema.json: water validates the values against it before deploying")
        try:
            schema = json.loads(schema_file.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"chart {chart}: values.schema.json is not JSON: {exc}") from None
        defaults = (yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else None) or {}
    where = f"water.toml env.{env}.chart_version"
    if str(meta.get("version", "")).removeprefix("v") != str(settings.chart_version).removeprefix("v"):
        raise ConfigError(
            f"{where}: {settings.chart_version!r} pulled chart version {meta.get('version')!r}: pin one version exactly, "
            f"so helm upgrade installs the chart the values were checked against"
        )
    problems = chart_values.airflow_problems(meta, sources, defaults, shipped_airflow())
    problems += chart_values.values_problems(sources, schema, defaults)
    if problems:
        raise ConfigError(
            f"chart {chart} (appVersion {meta.get('appVersion')}, {where}) refuses the values of {env!r}; "
            f"nothing was built, pushed or installed:\n  " + "\n  ".join(problems)
        )
    user: chart_values.Values = {}
    for _, values in sources:
        user = chart_values.merge_files(user, values)
    say(
        f"chart {chart} (appVersion {meta.get('appVersion')}): the values of {env!r} "
        f"(airflowVersion {user.get('airflowVersion', defaults.get('airflowVersion'))}) pass its values.schema.json"
    )


def deploy_plan(env: str, tag: str | None = None, say: Callable[[str], None] | None = None) -> list[list[str]]:
    """`water deploy ENV`: the environment's values files and settings are checked first, then
    the images are named (after the commit unless a tag is given). With say (a real deploy, not
    a dry run) and a pinned chart_version, the tools are looked for and the values are checked
    against that chart (check_pinned_chart) before anything is built."""
    values_files(env)
    settings = load_settings(env)
    check_deployable(settings, env)
    tag = tag or default_tag()
    commands = deploy_commands(settings, env, tag)
    if say is not None and settings.chart_version:
        require_tools(commands)
        check_pinned_chart(settings, env, tag, say)
    return commands


def pods_command(settings: Settings, pipeline: str | None = None, watch: bool = False) -> list[str]:
    """The namespace's pods; a pipeline's only (KubernetesPodOperator labels its pods dag_id=...)."""
    argv = _kubectl(settings, "get", "pods", "--output", "wide")
    if pipeline:
        argv += ["--selector", f"dag_id={pipeline}"]
    if watch:
        argv.append("--watch")
    return argv


def logs_command(
    settings: Settings,
    pod: str,
    follow: bool = False,
    container: str | None = None,
    tail: int | None = None,
    previous: bool = False,
) -> list[str]:
    argv = _kubectl(settings, "logs", pod)
    if container:
        argv += ["--container", container]
    if follow:
        argv.append("--follow")
    if tail is not None:
        argv.append(f"--tail={tail}")
    if previous:
        argv.append("--previous")
    return argv


def edit_command(settings: Settings, pod: str) -> list[str]:
    return _kubectl(settings, "edit", f"pod/{pod}")


# --- running them ----------------------------------------------------------------------------


def shell_line(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def require_tools(commands: Sequence[Sequence[str]]) -> None:
    """Raise ToolMissing for the first program not on PATH, before anything runs."""
    for tool in dict.fromkeys(argv[0] for argv in commands):
        if shutil.which(tool) is None:
            raise ToolMissing(tool)


def execute(commands: Sequence[Sequence[str]], *, dry_run: bool, say: Callable[[str], None], cwd: Path | None = None) -> int:
    """Run the commands one by one from the project root (or print them, with dry_run); stop at the
    first that fails and return its exit code. 0 when all succeed."""
    cwd = cwd or paths.project_root()
    if dry_run:
        for argv in commands:
            say(shell_line(argv))
        return 0
    require_tools(commands)
    for argv in commands:
        if len(commands) > 1:
            say(f"$ {shell_line(argv)}")
        code = subprocess.run(list(argv), cwd=cwd, check=False).returncode
        if code != 0:
            return code
    return 0
