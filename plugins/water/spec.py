"""The pipeline spec: one YAML file per pipeline in include/pipelines/, validated by a typed model.

`load_spec(path)` returns a `PipelineSpec` or raises `SpecError`, whose message names the
spec file and every offending field. Loading reads only local files (safe at parse time).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from water import paths

IDENTIFIER = r"^[a-z][a-z0-9_]*$"


class SpecError(ValueError):
    """A malformed pipeline spec; the message names the file and the fields."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{field}: {message}" if field else message for field, message in problems]
        super().__init__(f"invalid pipeline spec {self.path}:\n  " + "\n  ".join(lines))

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.problems]


# --- value types ---------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION.match(value)) and int(m.group(1)) > 0:
        return timedelta(seconds=int(m.group(1)) * _DURATION_UNITS[m.group(2)])
    raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 30m, 2h or 1d")


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "2Gi", 1, "1e3") as a Decimal; ValueError when malformed.

    The grammar of kubernetes.utils.quantity (tests check both agree), without importing the
    Kubernetes client at DAG parse time.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)")
    number, exponent, suffix = match.groups()
    amount = Decimal(number)
    if exponent:
        return amount * Decimal(10) ** int(exponent[1:])
    if suffix in _BINARY:
        return amount * Decimal(1024) ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return amount * Decimal(10) ** _DECIMAL[suffix]
    return amount


def _quantity(value: Any) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return str(value)


Quantity = Annotated[str, BeforeValidator(_quantity)]


def _include_file(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a path relative to include/")
    include = Path((info.context or {}).get("include_dir") or paths.include_dir())
    if Path(value).is_absolute() or ".." in Path(value).parts:
        raise ValueError(f"{value!r} must be a path inside include/")
    if not (include / value).is_file():
        raise ValueError(f"file include/{value} does not exist")
    return value


IncludeFile = Annotated[str, BeforeValidator(_include_file)]


def _schedule(value: Any) -> str | None:
    if value is None:
        return None
    from croniter import croniter

    presets = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
    if isinstance(value, str) and (value in presets or croniter.is_valid(value)):
        return value
    raise ValueError(f"{value!r} is not a cron expression or preset (e.g. '0 6 * * *' or '@daily')")


Schedule = Annotated[str | None, BeforeValidator(_schedule)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- resources -----------------------------------------------------------------------------


class Compute(Strict):
    cpu: Quantity
    memory: Quantity


class Resources(Strict):
    """Kubernetes requests and limits; requests never exceed limits."""

    requests: Compute
    limits: Compute

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for key in ("cpu", "memory"):
            request, limit = getattr(self.requests, key), getattr(self.limits, key)
            if parse_quantity(request) > parse_quantity(limit):
                raise ValueError(f"requests.{key} {request} is above limits.{key} {limit}")
        return self

    @property
    def memory_limit_bytes(self) -> int:
        return int(parse_quantity(self.limits.memory))

    @property
    def cpu_limit(self) -> float:
        return float(parse_quantity(self.limits.cpu))

    def as_k8s_dict(self) -> dict[str, dict[str, str]]:
        return {"requests": self.requests.model_dump(), "limits": self.limits.model_dump()}


# --- stages --------------------------------------------------------------------------------

def _scalar(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"{value!r} is not valid here: use a string, number or boolean")


ArgValue = Annotated[Any, BeforeValidator(_scalar)]


class ExtractStage(Strict):
    """BigQuery Standard SQL, parameterised by @ds, producing the raw partition."""

    sql: IncludeFile
    timeout: Duration = timedelta(minutes=30)


class GlueStage(Strict):
    """A PySpark script run as an AWS Glue job (locally on Spark)."""

    script: IncludeFile
    args: dict[str, ArgValue] = Field(default_factory=dict)
    glue_version: str = "5.0"
    worker_type: Literal["G.025X", "G.1X", "G.2X", "G.4X", "G.8X", "R.1X", "R.2X", "R.4X", "R.8X"] = "G.1X"
    workers: int = Field(default=2, ge=2, le=1000)
    timeout: Duration = timedelta(hours=1)

    @field_validator("args")
    @classmethod
    def _arg_names(cls, args: dict[str, ArgValue]) -> dict[str, ArgValue]:
        for name in args:
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"argument name {name!r} must be snake_case (it becomes --{name})")
        return args


class AthenaStage(Strict):
    """Trino SQL run by Athena (locally on DuckDB), parameterised by ? = ds."""

    sql: IncludeFile
    workgroup: str = "primary"
    timeout: Duration = timedelta(minutes=30)


class Toleration(Strict):
    """A Kubernetes toleration of the pod (cloud target), as in a pod spec."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class Placement(Strict):
    """Where and how patiently a pod is scheduled on the cluster (cloud target; unused locally)."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    startup_timeout: Duration = timedelta(minutes=10)


class PodStage(Strict):
    """A container entrypoint run as a Kubernetes pod (locally as a limited subprocess)."""

    entrypoint: IncludeFile
    image: str = "water-jobs"
    args: dict[str, ArgValue] = Field(default_factory=dict)
    resources: Resources
    placement: Placement = Placement()
    timeout: Duration = timedelta(hours=1)


class PostprocessStage(Strict):
    """Like a pod stage, but sized per run by the sizing policy."""

    entrypoint: IncludeFile
    image: str = "water-jobs"
    args: dict[str, ArgValue] = Field(default_factory=dict)
    placement: Placement = Placement()
    timeout: Duration = timedelta(hours=1)


class MetricDefinition(Strict):
    name: str
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            if re.compile(regex).groups != 1:
                raise ValueError("must have exactly one capture group")
        except re.error as exc:
            raise ValueError(f"is not a regular expression: {exc}") from None
        return regex


class TrainingStage(Strict):
    """SageMaker script-mode training with the scikit-learn framework container."""

    entry_point: IncludeFile
    framework_version: str = "1.4-2"
    hyperparameters: dict[str, ArgValue] = Field(default_factory=dict)
    instance_type: str = Field(default="ml.m5.xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(default=1, ge=1, le=100)
    volume_size_gb: int = Field(default=30, ge=1)
    max_runtime: Duration = timedelta(hours=2)
    metric_definitions: list[MetricDefinition] = Field(default_factory=list)
    objective_metric: str | None = None

    @model_validator(mode="after")
    def _objective_is_defined(self) -> TrainingStage:
        names = {m.name for m in self.metric_definitions}
        if self.objective_metric and self.objective_metric not in names:
            raise ValueError(f"objective_metric {self.objective_metric!r} is not among metric_definitions")
        return self


class InferenceStage(Strict):
    """SageMaker batch transform with the same container and an inference script."""

    entry_point: IncludeFile
    instance_type: str = Field(default="ml.m5.xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(default=1, ge=1, le=100)
    max_payload_mb: int = Field(default=6, ge=1, le=100)
    timeout: Duration = timedelta(hours=2)


class Tier(Strict):
    name: str = Field(pattern=IDENTIFIER)
    max_rows: int = Field(gt=0)
    resources: Resources


class ScaleOut(Strict):
    rows_per_shard: int = Field(gt=0)
    max_shards: int = Field(ge=2, le=256)


class SizingPolicy(Strict):
    """Post-processing pod size chosen from the inference output's row count."""

    tiers: list[Tier] = Field(min_length=1)
    scale_out: ScaleOut

    @model_validator(mode="after")
    def _tiers_ordered(self) -> SizingPolicy:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        bounds = [t.max_rows for t in self.tiers]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(f"tiers must be ordered by strictly increasing max_rows, got {bounds}")
        return self


class DriftPolicy(Strict):
    """The drift guard: today's predicted class mix against a baseline (see water.drift).

    Thresholds apply to `metric` (PSI by default; JS distance is between 0 and 1); both are
    always reported.
    """

    baseline: Literal["previous_run", "training_labels"] = "previous_run"
    metric: Literal["psi", "js"] = "psi"
    warn: float = Field(default=0.1, gt=0)
    block: float = Field(default=0.25, gt=0)

    @model_validator(mode="after")
    def _warn_below_block(self) -> DriftPolicy:
        if self.warn >= self.block:
            raise ValueError(f"warn ({self.warn}) must be below block ({self.block})")
        if self.metric == "js" and self.block > 1:
            raise ValueError(f"block ({self.block}) can never be reached: JS distance is at most 1")
        return self


class ReportSettings(Strict):
    history_days: int = Field(default=14, ge=1, le=366)


class PublishStage(Strict):
    table: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    timeout: Duration = timedelta(minutes=30)


class Notifications(Strict):
    slack_conn_id: str = "slack_water"


class PipelineSpec(Strict):
    name: str = Field(pattern=IDENTIFIER)
    description: str
    owner: str
    schedule: Schedule = None
    start_date: date
    catchup: bool = False
    tags: list[str] = Field(default_factory=list)
    retries: int = Field(default=2, ge=0, le=10)
    retry_delay: Duration = timedelta(minutes=5)
    classes: list[str] = Field(min_length=2)
    notifications: Notifications = Notifications()
    extract: ExtractStage
    features: GlueStage
    training_set: AthenaStage
    preprocess: PodStage
    training: TrainingStage
    inference: InferenceStage
    postprocess: PostprocessStage
    sizing: SizingPolicy
    drift: DriftPolicy = DriftPolicy()
    report: ReportSettings = ReportSettings()
    publish: PublishStage

    @property
    def dag_id(self) -> str:
        return self.name


# --- loading -------------------------------------------------------------------------------


def _field_path(loc: tuple[Any, ...]) -> str:
    # pydantic puts validator names (function-before[...]) into loc for Annotated types; drop them.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    return ".".join(parts)


def spec_path(name: str) -> Path:
    return paths.pipelines_dir() / f"{name}.yaml"


def load_spec(path: Path | str, include_dir: Path | None = None) -> PipelineSpec:
    """Read and validate one spec file. Raises SpecError naming the file and fields."""
    path = Path(path)
    shown = paths.shown(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(shown, [("", "file not found")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(shown, [("", f"not valid YAML: {where}{getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(raw, dict):
        raise SpecError(shown, [("", "must be a YAML mapping of fields")])
    try:
        spec = PipelineSpec.model_validate(
            raw, context={"include_dir": include_dir or paths.include_dir()}
        )
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field (check the spelling)"
            problems.append((_field_path(err["loc"]), message))
        raise SpecError(shown, problems) from None
    if spec.name != path.stem:
        raise SpecError(shown, [("name", f"{spec.name!r} must match the file name {path.stem!r}")])
    return spec


def load_pipeline(name: str) -> PipelineSpec:
    return load_spec(spec_path(name))


def pipeline_names() -> list[str]:
    return sorted(p.stem for p in paths.pipelines_dir().glob("*.yaml"))
