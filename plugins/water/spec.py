"""The pipeline spec: one YAML file per pipeline in include/pipelines/, validated by a typed model.

`load_spec(path)` returns a `PipelineSpec` or raises `SpecError`, whose message names the
spec file and every offending field. Loading reads only local files (safe at parse time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypedDict, get_args, overload

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from water import events, paths

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


# --- steps ---------------------------------------------------------------------------------
#
# A pipeline is a named set of steps. Each step has a `kind` (the discriminator below), the
# datasets it reads and the dataset(s) it writes. A dataset is a lake dataset
# (`<lake>/<pipeline>/<name>/ds=…`, a name such as `features` or `channels/train`) or a
# warehouse table (`dataset.table`, with a dot). Dependencies follow from the datasets.
# Adding a kind is one model here plus one builder per target (water.targets.*).

DATASET = r"^[a-z][a-z0-9_]*(/[a-z][a-z0-9_]*)*$"  # a lake dataset
TABLE = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"  # a warehouse table
FLAG = r"^[a-z][a-z0-9_\-]*$"  # a command-line flag or argument name (without --)

Dataset = Annotated[str, Field(pattern=DATASET)]
DatasetOrTable = Annotated[str, Field(pattern=f"{DATASET}|{TABLE}")]
Table = Annotated[str, Field(pattern=TABLE)]
Flag = Annotated[str, Field(pattern=FLAG)]


def is_table(name: str) -> bool:
    """A warehouse table (`dataset.table`), not a lake dataset."""
    return "." in name


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"{value!r} is not valid here: use a string, number or boolean")


ArgValue = Annotated[Any, BeforeValidator(_scalar)]


def _snake_case_args(args: dict[str, Any]) -> dict[str, Any]:
    for name in args:
        if not re.fullmatch(IDENTIFIER, name):
            raise ValueError(f"argument name {name!r} must be snake_case (it becomes --{name})")
    return args


class Step(Strict):
    """What every step kind has: the datasets it reads and writes."""

    kind: str

    def inputs(self) -> list[str]:
        """Every dataset or table this step reads, in a stable order."""
        raise NotImplementedError

    def outputs(self) -> list[str]:
        """Every dataset or table this step writes."""
        raise NotImplementedError

    @property
    def step_timeout(self) -> timedelta:
        return getattr(self, "timeout", timedelta(hours=1))

    def artifact(self) -> str | None:
        """The file under include/ this step runs (SQL, script, entrypoint), if any."""
        return next((getattr(self, f) for f in ("sql", "script", "entrypoint", "entry_point") if hasattr(self, f)), None)

    @classmethod
    def summary(cls) -> str:
        """What the kind does, in one line (its docstring's first line)."""
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


# --- data-quality gates (checked by water.quality before a step's output replaces the day's) ---

Column = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ColumnType = Literal["integer", "float", "number", "string", "boolean", "date", "timestamp"]
Share = Annotated[float, Field(ge=0, le=1)]


class DatasetChecks(Strict):
    """Gates on one written dataset: at least `min_rows` rows, at most a share of nulls per
    named column, and the named columns present with their type (`number`: integer or float)."""

    min_rows: int | None = Field(default=None, ge=1)
    max_null_share: dict[Column, Share] = Field(default_factory=dict)
    columns: dict[Column, ColumnType] = Field(default_factory=dict)

    def any(self) -> bool:
        return self.min_rows is not None or bool(self.max_null_share) or bool(self.columns)


class MetricCheck(Strict):
    """The training gate: the validation metric `name` (by default the step's objective_metric)
    at least `at_least`, and/or at least the majority-class share of the validation channel's
    labels (`validation`, a channel of `reads`; column `label_column`) plus `above_majority_by`."""

    name: str | None = None
    at_least: float | None = None
    above_majority_by: float | None = Field(default=None, ge=0, le=1)
    validation: str = "validation"
    label_column: Column = "label"

    @model_validator(mode="after")
    def _a_bound(self) -> MetricCheck:
        if self.at_least is None and self.above_majority_by is None:
            raise ValueError("give at_least (a floor), above_majority_by (a margin over the majority class), or both")
        return self


class Checks(DatasetChecks):
    """A step's `checks`: its written dataset's gates; a pod writing several datasets gives them
    per writes flag under `outputs`; a training step adds `metric`."""

    outputs: dict[Flag, DatasetChecks] = Field(default_factory=dict)
    metric: MetricCheck | None = None

    def own(self) -> DatasetChecks:
        """The gates given directly (not under outputs)."""
        return DatasetChecks(min_rows=self.min_rows, max_null_share=self.max_null_share, columns=self.columns)


class CheckedStep(Step):
    """A step that writes lake datasets, each of which may be gated by `checks`."""

    checks: Checks | None = None
    # Metrics a kind reports by itself, without metric_definitions (AutoML's evaluation).
    reported_metrics: ClassVar[tuple[str, ...]] = ()

    def written(self) -> dict[str, tuple[str, str]]:
        """label (a pod's writes flag, else the dataset) -> (dataset, row format) of what it writes."""
        return {self.writes: (self.writes, "parquet")}  # type: ignore[attr-defined]

    def output_checks(self) -> dict[str, tuple[str, DatasetChecks]]:
        """dataset -> (row format, its gates), for every written dataset that has any."""
        if self.checks is None:
            return {}
        written = self.written()
        gates = {label: c for label, c in self.checks.outputs.items() if c.any()}
        if self.checks.own().any() and len(written) == 1:
            gates[next(iter(written))] = self.checks.own()
        return {written[label][0]: (written[label][1], c) for label, c in gates.items() if label in written}

    def metric_check(self) -> MetricCheck | None:
        """The training gate with its metric named (the objective_metric unless it names one)."""
        check = self.checks.metric if self.checks else None
        if check is None:
            return None
        return check.model_copy(update={"name": check.name or getattr(self, "objective_metric", None)})

    def check_problems(self) -> list[tuple[str, str]]:
        """(field under checks, message) for every check that cannot apply to this step."""
        if self.checks is None:
            return []
        problems: list[tuple[str, str]] = []
        written = self.written()
        own = self.checks.own()
        if self.checks.outputs and self.kind != "pod":
            problems.append(("outputs", "only a pod step names its outputs (by writes flag); put the checks on checks itself"))
        for label in self.checks.outputs:
            if label not in written:
                problems.append((f"outputs.{label}", f"not one of the step's writes flags ({', '.join(written)})"))
        if own.any() and len(written) > 1:
            problems.append(
                (
                    next(f for f in ("min_rows", "max_null_share", "columns") if getattr(own, f)),
                    f"the step writes {len(written)} datasets; give each its checks under "
                    f"checks.outputs.<flag> ({', '.join(written)})",
                )
            )
        for label, gate in [*([(next(iter(written)), own)] if len(written) == 1 else []), *self.checks.outputs.items()]:
            if label not in written or not gate.any():
                continue
            dataset, row_format = written[label]
            where = f"outputs.{label}." if label in self.checks.outputs else ""
            if row_format == "files":
                problems.append(
                    (
                        where + next(f for f in ("min_rows", "max_null_share", "columns") if getattr(gate, f)),
                        f"{dataset} is written as files (a model), not rows; a training step checks its metric (checks.metric)",
                    )
                )
            elif row_format == "csv" and (gate.columns or gate.max_null_share):
                problems.append(
                    (
                        where + ("columns" if gate.columns else "max_null_share"),
                        f"{dataset} is CSV without a header: its columns have no names, only min_rows applies",
                    )
                )
        problems += self._metric_problems()
        return problems

    def _metric_problems(self) -> list[tuple[str, str]]:
        check = self.checks.metric if self.checks else None
        if check is None:
            return []
        definitions = [m.name for m in getattr(self, "metric_definitions", [])] or list(self.reported_metrics)
        if not definitions:
            return [
                (
                    "metric",
                    "only a training step (sagemaker_training, a Vertex training step, or a pod with "
                    "metric_definitions) reports a metric to check",
                )
            ]
        name = check.name or getattr(self, "objective_metric", None)
        problems = []
        if name is None:
            problems.append(
                ("metric.name", f"name the metric to check (one of {', '.join(definitions)}); the step has no objective_metric")
            )
        elif name not in definitions:
            problems.append(("metric.name", f"{name!r} is not among metric_definitions ({', '.join(definitions)})"))
        reads = getattr(self, "reads", {})
        if check.above_majority_by is not None and check.validation not in reads:
            problems.append(
                (
                    "metric.validation",
                    f"{check.validation!r} is not one of the step's reads ({', '.join(reads)}); "
                    "name the channel whose labels give the majority-class baseline",
                )
            )
        return problems

    def validation_dataset(self) -> str | None:
        """The dataset whose labels give the training gate's majority-class baseline."""
        check = self.checks.metric if self.checks else None
        if check is None or check.above_majority_by is None:
            return None
        return getattr(self, "reads", {}).get(check.validation)


class BigQuerySqlStep(CheckedStep):
    """BigQuery Standard SQL, parameterised by @ds, into a lake dataset (exported as Parquet)."""

    kind: Literal["bigquery_sql"]
    sql: IncludeFile
    reads: list[Table] = Field(min_length=1)
    writes: Dataset
    timeout: Duration = timedelta(minutes=30)

    def inputs(self) -> list[str]:
        return list(self.reads)

    def outputs(self) -> list[str]:
        return [self.writes]


class AthenaSqlStep(CheckedStep):
    """Trino SQL run by Athena (locally on DuckDB), parameterised by ? = ds, UNLOADed to Parquet.

    An unqualified table is the lake dataset of that name in this pipeline's catalog database.
    """

    kind: Literal["athena_sql"]
    sql: IncludeFile
    reads: list[Dataset] = Field(min_length=1)
    writes: Dataset
    workgroup: str = "primary"
    timeout: Duration = timedelta(minutes=30)

    def inputs(self) -> list[str]:
        return list(self.reads)

    def outputs(self) -> list[str]:
        return [self.writes]


class GluePySparkStep(CheckedStep):
    """A PySpark script run as an AWS Glue job (locally on Spark).

    `reads` maps a script argument to the dataset whose partition URI it receives
    (`--input_path s3://…/raw/ds=…`); the written partition arrives as `--output_path`.
    """

    kind: Literal["glue_pyspark"]
    script: IncludeFile
    reads: dict[Annotated[str, Field(pattern=IDENTIFIER)], Dataset] = Field(min_length=1)
    writes: Dataset
    args: dict[str, ArgValue] = Field(default_factory=dict)
    glue_version: str = "5.0"
    worker_type: Literal["G.025X", "G.1X", "G.2X", "G.4X", "G.8X", "R.1X", "R.2X", "R.4X", "R.8X"] = "G.1X"
    workers: int = Field(default=2, ge=2, le=1000)
    timeout: Duration = timedelta(hours=1)

    _arg_names = field_validator("args")(_snake_case_args)

    @model_validator(mode="after")
    def _reserved_args(self) -> GluePySparkStep:
        clash = sorted(({"output_path", "ds"} | set(self.reads)) & set(self.args))
        if clash:
            raise ValueError(f"args {clash} are set by water (reads, output_path, ds); rename them")
        if "output_path" in self.reads or "ds" in self.reads:
            raise ValueError("reads: output_path and ds are arguments water sets itself")
        return self

    def inputs(self) -> list[str]:
        return list(self.reads.values())

    def outputs(self) -> list[str]:
        return [self.writes]


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


RowFormat = Literal["parquet", "csv", "csv_header", "files"]


class PodOutput(Strict):
    """A dataset a pod writes, and how its rows are counted (the summary's rows out):
    Parquet rows, CSV lines (with or without a header), or just files (a model)."""

    dataset: Dataset
    format: RowFormat = "parquet"


def _pod_output(value: Any) -> Any:
    return {"dataset": value} if isinstance(value, str) else value


class PodStep(CheckedStep):
    """A container entrypoint run as a Kubernetes pod (locally as a limited subprocess).

    `reads` and `writes` map a flag to a dataset: the entrypoint gets `--FLAG <partition URI>`.
    """

    kind: Literal["pod"]
    entrypoint: IncludeFile
    reads: dict[Flag, Dataset] = Field(min_length=1)
    writes: dict[Flag, Annotated[PodOutput, BeforeValidator(_pod_output)]] = Field(min_length=1)
    image: str = "water-jobs"
    args: dict[str, ArgValue] = Field(default_factory=dict)
    resources: Resources
    placement: Placement = Placement()
    timeout: Duration = timedelta(hours=1)
    # Figures the entrypoint prints (e.g. a pod that trains: `validation:accuracy=0.84`).
    metric_definitions: list[MetricDefinition] = Field(default_factory=list)
    objective_metric: str | None = None

    @model_validator(mode="after")
    def _flags_distinct(self) -> PodStep:
        clash = sorted(set(self.reads) & set(self.writes))
        if clash:
            raise ValueError(f"flags {clash} are both read and written")
        taken = {a.replace("_", "-") for a in self.args} & (set(self.reads) | set(self.writes))
        if taken:
            raise ValueError(f"args {sorted(taken)} clash with the reads/writes flags")
        if self.objective_metric and self.objective_metric not in {m.name for m in self.metric_definitions}:
            raise ValueError(f"objective_metric {self.objective_metric!r} is not among metric_definitions")
        return self

    def inputs(self) -> list[str]:
        return list(self.reads.values())

    def outputs(self) -> list[str]:
        return [o.dataset for o in self.writes.values()]

    def written(self) -> dict[str, tuple[str, str]]:
        return {flag: (o.dataset, o.format) for flag, o in self.writes.items()}


class ScriptTrainingStep(CheckedStep):
    """What a training step that runs a script has, whatever the engine: the script, its
    hyperparameters (`--name value`), the model it writes (files), a time limit, and the
    metrics read from its log (`metric_definitions`) with the one its gate checks."""

    entry_point: IncludeFile
    writes: Dataset
    hyperparameters: dict[str, ArgValue] = Field(default_factory=dict)
    max_runtime: Duration = timedelta(hours=2)
    metric_definitions: list[MetricDefinition] = Field(default_factory=list)
    objective_metric: str | None = None

    @model_validator(mode="after")
    def _objective_is_defined(self) -> ScriptTrainingStep:
        names = {m.name for m in self.metric_definitions}
        if self.objective_metric and self.objective_metric not in names:
            raise ValueError(f"objective_metric {self.objective_metric!r} is not among metric_definitions")
        return self

    @property
    def step_timeout(self) -> timedelta:
        return self.max_runtime

    def outputs(self) -> list[str]:
        return [self.writes]

    def written(self) -> dict[str, tuple[str, str]]:
        return {self.writes: (self.writes, "files")}  # SageMaker's model.tar.gz, Vertex's model files


InstanceType = Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")]


class SageMakerTrainingStep(ScriptTrainingStep):
    """SageMaker script-mode training with the scikit-learn framework container.

    `reads` maps a channel name (SM_CHANNEL_<NAME>) to a dataset of CSV files with a header;
    the model (model.tar.gz) is written to `writes`.
    """

    kind: Literal["sagemaker_training"]
    reads: dict[Annotated[str, Field(pattern=IDENTIFIER)], Dataset] = Field(min_length=1)
    framework_version: str = "1.4-2"
    instance_type: InstanceType = "ml.m5.xlarge"
    instance_count: int = Field(default=1, ge=1, le=100)
    volume_size_gb: int = Field(default=30, ge=1)

    def inputs(self) -> list[str]:
        return list(self.reads.values())


class SageMakerTransformStep(CheckedStep):
    """SageMaker batch transform with a model from a training step and an inference script.

    Reads `input` (CSV lines, no header) with the model a sagemaker_training step wrote to
    `model` (same container; the inference script sits beside the training script); writes
    the predictions (CSV lines `id,class,confidence`, see docs/pipelines.md).
    """

    kind: Literal["sagemaker_transform"]
    entry_point: IncludeFile
    model: Dataset
    input: Dataset
    writes: Dataset
    instance_type: InstanceType = "ml.m5.xlarge"
    instance_count: int = Field(default=1, ge=1, le=100)
    max_payload_mb: int = Field(default=6, ge=1, le=100)
    timeout: Duration = timedelta(hours=2)

    def inputs(self) -> list[str]:
        return [self.model, self.input]

    def outputs(self) -> list[str]:
        return [self.writes]

    def written(self) -> dict[str, tuple[str, str]]:
        return {self.writes: (self.writes, "csv")}  # prediction lines, no header


# --- Vertex AI (Google Cloud) -------------------------------------------------------------

MachineType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+){1,3}$")]  # n1-standard-4
ImageUri = Annotated[str, Field(pattern=r"^[a-z0-9.\-]+(:\d+)?(/[a-z0-9._\-]+)+(:[\w.\-]+|@sha256:[0-9a-f]{64})$")]
# A Vertex training job gets its data as AIP_TRAINING_DATA_URI, AIP_VALIDATION_DATA_URI and
# AIP_TEST_DATA_URI: the channels a Vertex step reads are these three.
VertexChannel = Literal["train", "validation", "test"]
# The Python package a Vertex CustomJob installs: the script's folder, run as `trainer.<script>`.
VERTEX_PACKAGE = "trainer"
VERTEX_CHANNEL_VARIABLES: dict[str, str] = {
    "train": "AIP_TRAINING_DATA_URI",
    "validation": "AIP_VALIDATION_DATA_URI",
    "test": "AIP_TEST_DATA_URI",
}


def _needs_train(reads: dict[str, str]) -> dict[str, str]:
    if "train" not in reads:
        raise ValueError("needs a train channel (AIP_TRAINING_DATA_URI)")
    return reads


VertexChannels = Annotated[dict[VertexChannel, Dataset], AfterValidator(_needs_train)]


class VertexCustomTrainingStep(ScriptTrainingStep):
    """Vertex AI custom training: a CustomJob running the same script-mode training script.

    `reads` maps the channels train, validation and test (AIP_TRAINING_DATA_URI, …; CSV with
    a header) to datasets; the script writes the model's files to AIP_MODEL_DIR, which water
    copies into `writes` (a folder, where SageMaker's is a model.tar.gz). The script runs from
    a Python package on Google's prebuilt scikit-learn training image (`executor_image`).
    """

    kind: Literal["vertex_custom_training"]
    reads: VertexChannels
    executor_image: ImageUri = "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-3.py310:latest"
    machine_type: MachineType = "n1-standard-4"
    boot_disk_size_gb: int = Field(default=100, ge=100, le=64000)

    def inputs(self) -> list[str]:
        return list(self.reads.values())


AutoMLColumnType = Literal["auto", "numeric", "categorical", "text", "timestamp"]
AutoMLObjective = Literal["minimize-log-loss", "maximize-au-roc", "maximize-au-prc"]


class VertexAutoMLTabularStep(CheckedStep):
    """Vertex AI AutoML tabular classification: a managed dataset from the training set, a search within a budget.

    The managed tabular dataset is made of the `reads` channels' CSV files (train, and
    validation when given: AutoML splits the rows itself); `target_column` is the label,
    `column_specs` name the feature columns and their transformation (the others are left
    out). `budget_milli_node_hours` bounds the cloud search (1,000 = one node hour);
    locally FLAML searches for `local_time_budget` on the same rows. Writes the model: a
    reference to the Vertex model (cloud) or FLAML's (local).
    """

    kind: Literal["vertex_automl_tabular"]
    reads: VertexChannels
    writes: Dataset
    target_column: Column = "label"
    column_specs: dict[Column, AutoMLColumnType] = Field(min_length=1)
    optimization_objective: AutoMLObjective = "minimize-log-loss"
    budget_milli_node_hours: int = Field(default=1000, ge=1000, le=72000)
    local_time_budget: Duration = timedelta(seconds=30)
    disable_early_stopping: bool = False
    timeout: Duration = timedelta(hours=6)

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> VertexAutoMLTabularStep:
        if self.target_column in self.column_specs:
            raise ValueError(f"column_specs: {self.target_column!r} is the target_column, not a feature")
        if self.local_time_budget <= timedelta(0) or self.local_time_budget > self.timeout:
            raise ValueError("local_time_budget must be above zero and within timeout")
        return self

    # The training gate's metric: the local search's accuracy on the validation rows, the
    # cloud's from the model's evaluation.
    objective_metric: ClassVar[str] = "validation:accuracy"
    reported_metrics: ClassVar[tuple[str, ...]] = ("validation:accuracy",)

    def metric_check(self) -> MetricCheck | None:
        """The gate's labels are the target column unless the check names another."""
        check = super().metric_check()
        if check is not None and "label_column" not in check.model_fields_set:
            check = check.model_copy(update={"label_column": self.target_column})
        return check

    def inputs(self) -> list[str]:
        return list(self.reads.values())

    def outputs(self) -> list[str]:
        return [self.writes]

    def written(self) -> dict[str, tuple[str, str]]:
        return {self.writes: (self.writes, "files")}


class VertexBatchPredictionStep(CheckedStep):
    """Vertex AI batch prediction with the model a Vertex training step wrote.

    A custom model (vertex_custom_training) is scored by its inference handlers
    (`entry_point`, beside the training script) in a CustomJob, as SageMaker's transform runs
    them; an AutoML model by a BatchPredictionJob. Reads `input` (CSV lines without header,
    the id first), writes the predictions (CSV lines `id,class,confidence`).
    """

    kind: Literal["vertex_batch_prediction"]
    model: Dataset
    input: Dataset
    writes: Dataset
    entry_point: IncludeFile | None = None
    executor_image: ImageUri = "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-3.py310:latest"
    machine_type: MachineType = "n1-standard-4"
    replica_count: int = Field(default=1, ge=1, le=100)
    max_payload_mb: int = Field(default=6, ge=1, le=100)
    timeout: Duration = timedelta(hours=2)

    def inputs(self) -> list[str]:
        return [self.model, self.input]

    def outputs(self) -> list[str]:
        return [self.writes]

    def written(self) -> dict[str, tuple[str, str]]:
        return {self.writes: (self.writes, "csv")}  # prediction lines, no header


class InferenceStatsStep(Step):
    """Counts the predictions (rows, rows per class) with an aggregate; never loads them."""

    kind: Literal["inference_stats"]
    reads: Dataset
    writes: Dataset
    workgroup: str = "primary"  # Athena's, in the cloud
    timeout: Duration = timedelta(minutes=30)

    def inputs(self) -> list[str]:
        return [self.reads]

    def outputs(self) -> list[str]:
        return [self.writes]


class BaselineLabels(Strict):
    """Where the training labels are, for `baseline: training_labels`."""

    dataset: Dataset
    column: str = Field(pattern=IDENTIFIER)


class DriftGuardStep(Step):
    """The drift guard: today's predicted class mix against a baseline (see water.drift).

    Reads the stats an inference_stats step wrote; every step that reads the `guards`
    dataset runs only when the guard lets the day through, else that partition moves to
    `writes` (the quarantine). Thresholds apply to `metric` (PSI by default; JS distance is
    between 0 and 1); both are always reported.
    """

    kind: Literal["drift_guard"]
    reads: Dataset
    guards: Dataset
    writes: Dataset = "quarantine"
    baseline: Literal["previous_run", "training_labels"] = "previous_run"
    baseline_labels: BaselineLabels | None = None
    metric: Literal["psi", "js"] = "psi"
    warn: float = Field(default=0.1, gt=0)
    block: float = Field(default=0.25, gt=0)
    timeout: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _warn_below_block(self) -> DriftGuardStep:
        if self.warn >= self.block:
            raise ValueError(f"warn ({self.warn}) must be below block ({self.block})")
        if self.metric == "js" and self.block > 1:
            raise ValueError(f"block ({self.block}) can never be reached: JS distance is at most 1")
        if self.baseline == "training_labels" and self.baseline_labels is None:
            raise ValueError("baseline training_labels needs baseline_labels: {dataset: ..., column: ...}")
        return self

    quarantine_task_id: ClassVar[str] = "quarantine"  # the guard's other branch

    def inputs(self) -> list[str]:
        return [self.reads, *([self.baseline_labels.dataset] if self.baseline_labels else [])]

    def outputs(self) -> list[str]:
        return [self.writes]


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


class Route(Strict):
    """One route of a sized step: the classes it takes, its own job and its own sizing.

    Its pod reads only its classes' rows of the predictions (`--classes a,b`, a filter pushed
    into the read) and, when sharded, only its slice of them (`--row-start/--row-end` count
    the route's rows in file order). `reads` adds inputs (flag -> dataset) the job needs.
    """

    classes: list[Annotated[str, Field(pattern=IDENTIFIER)]] = Field(min_length=1)
    entrypoint: IncludeFile
    args: dict[str, ArgValue] = Field(default_factory=dict)
    reads: dict[Flag, Dataset] = Field(default_factory=dict)
    sizing: SizingPolicy
    placement: Placement = Placement()

    @model_validator(mode="after")
    def _own_flags(self) -> Route:
        taken = {"input", "output", "classes", "row-start", "row-end"}
        clash = sorted(taken & (set(self.reads) | {a.replace("_", "-") for a in self.args}))
        if clash:
            raise ValueError(f"flags {clash} are set by water; rename them")
        return self


class SizedPostprocessStep(CheckedStep):
    """Post-processing sized per run, route by route, from the predictions' class counts.

    Reads the predictions (`--input`), writes shards that a commit swaps into `writes`
    (`--output`); the counts come from the inference_stats step over the same predictions.
    Either one job for every class (`entrypoint`, `args`, `sizing` here), or `routes`: per
    route the classes it takes, its job and its sizing; every class is in exactly one route
    or in `drop`.
    """

    kind: Literal["sized_postprocess"]
    reads: Dataset
    writes: Dataset
    entrypoint: IncludeFile | None = None
    args: dict[str, ArgValue] = Field(default_factory=dict)
    sizing: SizingPolicy | None = None
    placement: Placement = Placement()
    routes: dict[Annotated[str, Field(pattern=IDENTIFIER)], Route] = Field(default_factory=dict)
    drop: list[str] = Field(default_factory=list)  # classes no route takes, on purpose
    image: str = "water-jobs"
    timeout: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _one_form(self) -> SizedPostprocessStep:
        single = self.entrypoint is not None or self.sizing is not None
        if single and self.routes:
            raise ValueError("give either entrypoint and sizing (one job for every class) or routes, not both")
        if not single and not self.routes:
            raise ValueError("needs routes, or entrypoint and sizing (one job for every class)")
        if single and (self.entrypoint is None or self.sizing is None):
            raise ValueError("entrypoint and sizing go together (or use routes)")
        if single and self.drop:
            raise ValueError("drop needs routes: one job takes every class")
        return self

    def all_routes(self, classes: list[str], name: str) -> dict[str, Route]:
        """The routes, the single form as one route (named after the step) taking every class."""
        if self.routes:
            return dict(self.routes)
        # Built from fields validated with the step: validating again would look the entrypoint
        # up in this process's include/, not the one the spec was loaded with.
        return {
            name: Route.model_construct(
                classes=list(classes),
                entrypoint=self.entrypoint,
                args=self.args,
                sizing=self.sizing,
                placement=self.placement,
            )
        }

    def inputs(self) -> list[str]:
        extra = [d for route in self.routes.values() for d in route.reads.values()]
        return list(dict.fromkeys([self.reads, *extra]))

    def outputs(self) -> list[str]:
        return [self.writes]

    @property
    def shards_dataset(self) -> str:
        """Where the tier tasks write, route by route and shard by shard, before the commit."""
        return f"{self.writes}_shards"

    # The tasks of this kind (one sized step per pipeline, so the no-input id is fixed).
    no_predictions_task_id: ClassVar[str] = "no_predictions"

    @staticmethod
    def size_task_id(name: str) -> str:
        return f"size_{name}"

    def tier_task_id(self, name: str, route: str, tier: str) -> str:
        return f"{route}_{tier}" if self.routes else f"{name}_{tier}"

    def plan_task_id(self, route: str) -> str:
        """The task returning the shards the route's largest tier maps over."""
        return f"plan_{route}_shards" if self.routes else "plan_shards"

    def commit_task_id(self) -> str:
        return f"commit_{self.writes}"

    def check_task_id(self) -> str:
        """The task of the step's gates on its shards, where a target checks in a task of its own."""
        return f"check_{self.writes}"


class PublishStep(Step):
    """The day's partition of a lake dataset into a warehouse table (BigQuery; locally DuckDB).

    `when_nothing_published`: what a run that ends the day without publishing (the drift
    guard quarantined it, or inference produced no predictions) does with what an earlier
    run of that day published: `retract` (the default) removes the table's `ds` rows and
    the `reads` partition; `keep` leaves them. A failed run keeps them either way.
    """

    kind: Literal["publish"]
    reads: Dataset
    table: Table
    when_nothing_published: Literal["retract", "keep"] = "retract"
    timeout: Duration = timedelta(minutes=30)

    @staticmethod
    def retract_task_id(name: str) -> str:
        return f"retract_{name}"

    def inputs(self) -> list[str]:
        return [self.reads]

    def outputs(self) -> list[str]:
        return [self.table]


AnyStep = Annotated[
    BigQuerySqlStep
    | AthenaSqlStep
    | GluePySparkStep
    | PodStep
    | SageMakerTrainingStep
    | SageMakerTransformStep
    | VertexCustomTrainingStep
    | VertexAutoMLTabularStep
    | VertexBatchPredictionStep
    | InferenceStatsStep
    | DriftGuardStep
    | SizedPostprocessStep
    | PublishStep,
    Field(discriminator="kind"),
]
# kind -> its model: AnyStep is Annotated[union of the models, ...], each model's kind a Literal.
STEP_KINDS: dict[str, type[Step]] = {
    get_args(cls.model_fields["kind"].annotation)[0]: cls for cls in get_args(get_args(AnyStep)[0])
}
# Kinds the factory wires itself (a branch, or a fan-out), at most one of each per pipeline.
SINGLETON_KINDS = ("drift_guard", "sized_postprocess")


class Source(Strict):
    """A dataset or table the pipeline reads but no step writes.

    `label_column` names the column holding class labels: its values are checked against
    `classes` by the first step that reads this source. `fixture` (a CSV or Parquet file
    under include/) is what the local target loads as this source (`water seed`); a lake
    source's fixture needs a `ds` column, which splits it into partitions.
    """

    label_column: str | None = Field(default=None, pattern=IDENTIFIER)
    fixture: IncludeFile | None = None
    description: str = ""


class LocalData(Strict):
    """How the local target gets the sources: fixtures (per source) and/or a seed entrypoint.

    The seed entrypoint is run as `python include/<seed> --warehouse DIR --lake DIR --days
    D1,D2 [--users N] [--seed N] [--mix D=CLASS:SHARE,...]` for the days `water seed`, `run`
    and `up` ask for; it must be idempotent (a day already written is kept).
    """

    seed: IncludeFile | None = None


class ReportSettings(Strict):
    history_days: int = Field(default=14, ge=1, le=366)


def _event_key(value: Any) -> str:
    if isinstance(value, str) and events.ROUTING_KEY.match(value):
        return value
    raise ValueError(f"{value!r} is not a completion event: write pipeline.<name>.{'|'.join(events.OUTCOMES)}")


class Trigger(Strict):
    """Start this pipeline when another finishes: `on` is a completion event's routing key,
    `pipeline.<name>.succeeded|failed|quarantined` (one, or a list). The started run processes
    the finished run's ds. A schedule may be given too, or left out."""

    on: list[Annotated[str, BeforeValidator(_event_key)]] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads an unquoted `on` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        if isinstance(data, dict) and isinstance(data.get("on"), str):
            data = {**data, "on": [data["on"]]}
        return data

    @field_validator("on")
    @classmethod
    def _known_pipelines(cls, keys: list[str], info: ValidationInfo) -> list[str]:
        pipelines = Path((info.context or {}).get("include_dir") or paths.include_dir()) / "pipelines"
        for key in keys:
            match = events.ROUTING_KEY.match(key)
            if match and not (pipelines / f"{match['pipeline']}.yaml").is_file():
                raise ValueError(f"{key!r}: no pipeline {match['pipeline']!r} (include/pipelines/{match['pipeline']}.yaml)")
        if len(set(keys)) != len(keys):
            raise ValueError(f"lists an event twice: {keys}")
        return keys

    def pipelines(self) -> list[str]:
        """The pipelines whose completion starts this one."""
        return [m["pipeline"] for key in self.on if (m := events.ROUTING_KEY.match(key))]


class Notifications(Strict):
    slack_conn_id: str = "slack_water"


class NothingPublished(TypedDict):
    """What a day that ends before the publish step does with that day's earlier outputs."""

    endings: list[str]  # the tasks that end such a day
    setting: Literal["retract", "keep"]
    retract: str | None  # the retraction's task, when there is one
    table: str
    dataset: str


class Roles(TypedDict, total=False):
    """Which task holds which figure (PipelineSpec.roles). Not total: a run record written by
    an older water, or an unknown pipeline's roles ({}), lacks keys; readers use .get."""

    stats: str | None
    stats_dataset: str | None
    training: str | None
    objective_metric: str | None
    drift: str | None
    quarantine: str | None
    decision: str | None
    publish: str | None
    nothing_published: NothingPublished | None


class PipelineSpec(Strict):
    name: str = Field(pattern=IDENTIFIER)
    description: str
    owner: str
    schedule: Schedule = None
    start_date: date
    catchup: bool = False
    # Runs of the DAG at a time; 1 judges days in order (the drift guard's baseline is the
    # newest earlier day that passed it).
    max_active_runs: int = Field(default=1, ge=1, le=64)
    tags: list[str] = Field(default_factory=list)
    retries: int = Field(default=2, ge=0, le=10)
    retry_delay: Duration = timedelta(minutes=5)
    classes: list[Annotated[str, Field(pattern=IDENTIFIER)]] = Field(min_length=2)
    # The pipeline's Glue/Athena database; always water_…, so one IAM wildcard
    # (docs/iam/airflow-role-policy.json: database/water_*) covers every pipeline's.
    catalog_database: str | None = Field(default=None, pattern=r"^water_[a-z0-9_]{1,249}$")
    notifications: Notifications = Notifications()
    trigger: Trigger | None = None  # started by another pipeline's completion event
    sources: dict[DatasetOrTable, Source] = Field(default_factory=dict)
    local_data: LocalData = LocalData()
    steps: dict[Annotated[str, Field(pattern=IDENTIFIER)], AnyStep] = Field(min_length=1)
    report: ReportSettings = ReportSettings()

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, classes: list[str]) -> list[str]:
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be unique, got {classes}")
        return classes

    @model_validator(mode="after")
    def _not_triggered_by_itself(self) -> PipelineSpec:
        if self.trigger and self.name in self.trigger.pipelines():
            raise ValueError(f"trigger.on: {self.name} would start itself when it finishes; name another pipeline")
        return self

    @property
    def dag_id(self) -> str:
        return self.name

    @property
    def database(self) -> str:
        """The pipeline's Glue/Athena catalog database: its lake datasets as tables
        (`catalog_database`, by default `water_<name>`)."""
        return self.catalog_database or f"water_{self.name}"

    # --- the graph ---------------------------------------------------------------------

    def writer(self, dataset: str) -> str | None:
        """The step that writes `dataset`, or None for a source."""
        return next((name for name, step in self.steps.items() if dataset in step.outputs()), None)

    # The step model of each kind, for the type checker (the discriminated union picks it at run time).
    @overload
    def steps_of(self, kind: Literal["bigquery_sql"]) -> dict[str, BigQuerySqlStep]: ...
    @overload
    def steps_of(self, kind: Literal["athena_sql"]) -> dict[str, AthenaSqlStep]: ...
    @overload
    def steps_of(self, kind: Literal["glue_pyspark"]) -> dict[str, GluePySparkStep]: ...
    @overload
    def steps_of(self, kind: Literal["pod"]) -> dict[str, PodStep]: ...
    @overload
    def steps_of(self, kind: Literal["sagemaker_training"]) -> dict[str, SageMakerTrainingStep]: ...
    @overload
    def steps_of(self, kind: Literal["sagemaker_transform"]) -> dict[str, SageMakerTransformStep]: ...
    @overload
    def steps_of(self, kind: Literal["vertex_custom_training"]) -> dict[str, VertexCustomTrainingStep]: ...
    @overload
    def steps_of(self, kind: Literal["vertex_automl_tabular"]) -> dict[str, VertexAutoMLTabularStep]: ...
    @overload
    def steps_of(self, kind: Literal["vertex_batch_prediction"]) -> dict[str, VertexBatchPredictionStep]: ...
    @overload
    def steps_of(self, kind: Literal["inference_stats"]) -> dict[str, InferenceStatsStep]: ...
    @overload
    def steps_of(self, kind: Literal["drift_guard"]) -> dict[str, DriftGuardStep]: ...
    @overload
    def steps_of(self, kind: Literal["sized_postprocess"]) -> dict[str, SizedPostprocessStep]: ...
    @overload
    def steps_of(self, kind: Literal["publish"]) -> dict[str, PublishStep]: ...
    @overload
    def steps_of(self, kind: str) -> dict[str, Step]: ...
    def steps_of(self, kind: str) -> Mapping[str, Step]:
        return {name: step for name, step in self.steps.items() if step.kind == kind}

    def counting_step(self, predictions: str) -> str | None:
        """The inference_stats step that counts `predictions` (a sized step takes its counts)."""
        return next((n for n, s in self.steps_of("inference_stats").items() if s.reads == predictions), None)

    @overload
    def step_of(self, kind: Literal["drift_guard"]) -> tuple[str, DriftGuardStep] | None: ...
    @overload
    def step_of(self, kind: Literal["sized_postprocess"]) -> tuple[str, SizedPostprocessStep] | None: ...
    @overload
    def step_of(self, kind: str) -> tuple[str, Step] | None: ...
    def step_of(self, kind: str) -> tuple[str, Step] | None:
        """The (name, step) of a singleton kind, or None when the pipeline has none."""
        found = self.steps_of(kind)
        return next(iter(found.items())) if found else None

    def upstream(self) -> dict[str, list[str]]:
        """step -> the steps it runs after: the writers of what it reads, and a drift guard
        before every step that reads the guarded dataset (other than the guard's own ancestors)."""
        edges = {
            name: sorted({w for d in step.inputs() if (w := self.writer(d)) and w != name}, key=list(self.steps).index)
            for name, step in self.steps.items()
        }
        for name, sized in self.steps_of("sized_postprocess").items():  # sizing reads its stats' counts
            counting = self.counting_step(sized.reads)
            edges[name] = sorted({*edges[name], *([counting] if counting else [])}, key=list(self.steps).index)
        guard = self.step_of("drift_guard")
        if guard:
            guard_name, guard_step = guard
            ancestors = _ancestors(edges, guard_name)
            for name, step in self.steps.items():
                if name != guard_name and name not in ancestors and guard_step.guards in step.inputs():
                    edges[name] = sorted({*edges[name], guard_name}, key=list(self.steps).index)
        return edges

    def direct_upstream(self) -> dict[str, list[str]]:
        """upstream() without the edges another path already implies: the edges the DAG draws."""
        edges = self.upstream()
        return {
            name: [u for u in ups if not any(u in _ancestors(edges, other) for other in ups if other != u)]
            for name, ups in edges.items()
        }

    def guarded_steps(self) -> list[str]:
        """The steps that run only when the drift guard lets the day through."""
        guard = self.step_of("drift_guard")
        if not guard:
            return []
        return [name for name, ups in self.upstream().items() if guard[0] in ups]

    def nothing_published_endings(self, name: str) -> list[str]:
        """The tasks that end a day before step `name` with nothing wrong: the drift guard's
        quarantine and the sizing's no_predictions, when they come before it."""
        ancestors = _ancestors(self.upstream(), name)
        guard, sized = self.step_of("drift_guard"), self.step_of("sized_postprocess")
        return [
            *([DriftGuardStep.quarantine_task_id] if guard and guard[0] in ancestors else []),
            *([SizedPostprocessStep.no_predictions_task_id] if sized and sized[0] in ancestors else []),
        ]

    def retracts(self, name: str) -> bool:
        """Whether publish step `name` gets a retraction: it says `retract` and a day can end unpublished before it."""
        step = self.steps[name]
        return getattr(step, "when_nothing_published", None) == "retract" and bool(self.nothing_published_endings(name))

    def order(self) -> list[str]:
        """The steps in dependency order (ties kept in the spec's order)."""
        return _topological(self.upstream(), list(self.steps))

    @model_validator(mode="after")
    def _graph(self) -> PipelineSpec:
        problems: list[str] = []
        writers: dict[str, str] = {}
        for name, step in self.steps.items():
            for out in step.outputs():
                if out in writers:
                    problems.append(f"steps.{name}: writes {out!r}, which step {writers[out]!r} writes too")
                elif out in self.sources:
                    problems.append(f"steps.{name}: writes {out!r}, which sources declares as a source")
                else:
                    writers[out] = name
        for name, step in self.steps.items():
            for dataset in step.inputs():
                if dataset not in writers and dataset not in self.sources:
                    problems.append(f"steps.{name}: reads {dataset!r}, which no step writes and sources does not declare")
        for kind in SINGLETON_KINDS:
            found = list(self.steps_of(kind))
            if len(found) > 1:
                problems.append(f"steps: at most one {kind} step per pipeline, got {', '.join(found)}")
        if problems:
            raise ValueError("\n  ".join(problems))
        cycle = _find_cycle(self.upstream())
        if cycle:
            raise ValueError(f"steps: the datasets form a cycle: {' -> '.join(cycle)}")
        self._kind_links()
        checks = [
            f"steps.{name}.checks.{field}: {message}"
            for name, step in self.steps.items()
            if isinstance(step, CheckedStep)
            for field, message in step.check_problems()
        ]
        if checks:
            raise ValueError("\n".join(checks))
        return self

    def _kind_links(self) -> None:
        """Cross-step rules of water's own kinds."""
        stats_outputs = {s.writes for s in self.steps_of("inference_stats").values()}
        guard = self.step_of("drift_guard")
        if guard:
            name, guard_step = guard
            if guard_step.reads not in stats_outputs:
                raise ValueError(f"steps.{name}.reads: {guard_step.reads!r} is not written by an inference_stats step")
            if self.writer(guard_step.guards) is None:
                raise ValueError(f"steps.{name}.guards: {guard_step.guards!r} is not written by any step")
        for name, transform in self.steps_of("sagemaker_transform").items():
            trainer = self.writer(transform.model)
            training = self.steps.get(trainer or "")
            if not isinstance(training, SageMakerTrainingStep):
                raise ValueError(f"steps.{name}.model: {transform.model!r} is not written by a sagemaker_training step")
            if Path(transform.entry_point).parent != Path(training.entry_point).parent:
                raise ValueError(
                    f"steps.{name}.entry_point: must sit beside {trainer}'s entry_point "
                    f"({Path(training.entry_point).parent}/), whose folder is the model's code"
                )
        for name, automl in self.steps_of("vertex_automl_tabular").items():
            if automl.optimization_objective != "minimize-log-loss" and len(self.classes) != 2:
                raise ValueError(
                    f"steps.{name}.optimization_objective: {automl.optimization_objective} is for two classes; "
                    f"Vertex AutoML takes only minimize-log-loss for {len(self.classes)} classes"
                )
        for name, prediction in self.steps_of("vertex_batch_prediction").items():
            self._vertex_prediction_link(name, prediction)
        sized = self.step_of("sized_postprocess")
        if sized:
            name, sized_step = sized
            if self.counting_step(sized_step.reads) is None:
                raise ValueError(
                    f"steps.{name}.reads: no inference_stats step counts {sized_step.reads!r} (sizing needs its counts)"
                )
            if sized_step.shards_dataset in {o for s in self.steps.values() for o in s.outputs()} | set(self.sources):
                raise ValueError(f"steps.{name}.writes: {sized_step.shards_dataset!r} is reserved for its shards")
            self._routes_cover_classes(name, sized_step)
        for name in self.steps_of("publish"):
            if PublishStep.retract_task_id(name) in self.steps and self.retracts(name):
                raise ValueError(
                    f"steps.{PublishStep.retract_task_id(name)}: the name of {name}'s retraction task; name the step otherwise"
                )

    def _vertex_prediction_link(self, name: str, step: VertexBatchPredictionStep) -> None:
        """A Vertex model is scored by the engine that made it: a custom model by the inference
        handlers beside its training script, an AutoML model by Vertex itself (no script)."""
        trainer = self.writer(step.model)
        training = self.steps.get(trainer or "")
        if isinstance(training, VertexCustomTrainingStep):
            if step.entry_point is None:
                raise ValueError(
                    f"steps.{name}.entry_point: a custom model ({trainer}) is scored by its inference handlers; "
                    f"name the script beside {Path(training.entry_point).parent}/"
                )
            if Path(step.entry_point).parent != Path(training.entry_point).parent:
                raise ValueError(
                    f"steps.{name}.entry_point: must sit beside {trainer}'s entry_point "
                    f"({Path(training.entry_point).parent}/), whose folder is the model's code"
                )
            if step.replica_count != 1:
                raise ValueError(
                    f"steps.{name}.replica_count: a custom model is scored by one CustomJob replica (its handler "
                    "driver reads every input file); replica_count applies to an AutoML model's batch prediction"
                )
        elif isinstance(training, VertexAutoMLTabularStep):
            if step.entry_point is not None:
                raise ValueError(
                    f"steps.{name}.entry_point: an AutoML model ({trainer}) is scored by Vertex itself; remove entry_point"
                )
        else:
            raise ValueError(
                f"steps.{name}.model: {step.model!r} is not written by a vertex_custom_training or vertex_automl_tabular step"
            )

    def _routes_cover_classes(self, name: str, step: SizedPostprocessStep) -> None:
        """Every class in exactly one route, or dropped on purpose; route names free as task ids."""
        if not step.routes:
            return
        taken: dict[str, str] = {}
        for route_name, route in step.routes.items():
            if route_name in self.steps:
                raise ValueError(f"steps.{name}.routes.{route_name}: a step has that name; name the route otherwise")
            for cls in route.classes:
                if cls not in self.classes:
                    raise ValueError(f"steps.{name}.routes.{route_name}.classes: {cls!r} is not among the classes {self.classes}")
                if cls in taken:
                    raise ValueError(
                        f"steps.{name}.routes.{route_name}.classes: {cls!r} is in route {taken[cls]!r} too; a class takes one route"
                    )
                taken[cls] = route_name
        for cls in step.drop:
            if cls not in self.classes:
                raise ValueError(f"steps.{name}.drop: {cls!r} is not among the classes {self.classes}")
            if cls in taken:
                raise ValueError(f"steps.{name}.drop: {cls!r} is in route {taken[cls]!r}; drop it or route it, not both")
        missing = [c for c in self.classes if c not in taken and c not in step.drop]
        if missing:
            raise ValueError(
                f"steps.{name}.routes: no route takes {missing}; add them to a route's classes, or to drop to discard them"
            )

    def roles(self) -> Roles:
        """Which task holds which figure, found by kind (never by a step's name): what the run
        summary, the report, the stack's status and the metrics read."""
        stats = next(iter(self.steps_of("inference_stats").items()), None)
        training: tuple[str, PodStep | SageMakerTrainingStep | VertexCustomTrainingStep | VertexAutoMLTabularStep] | None = next(
            (
                (n, s)
                for n, s in self.steps.items()
                if isinstance(s, PodStep | SageMakerTrainingStep | VertexCustomTrainingStep | VertexAutoMLTabularStep)
                and s.objective_metric
            ),
            next(
                ((n, s) for n, s in self.steps.items() if isinstance(s, SageMakerTrainingStep | VertexCustomTrainingStep)), None
            ),
        )
        guard = self.step_of("drift_guard")
        sized = self.step_of("sized_postprocess")
        publish = next(iter(self.steps_of("publish").items()), None)
        endings = self.nothing_published_endings(publish[0]) if publish else []
        return {
            "stats": stats[0] if stats else None,
            "stats_dataset": stats[1].writes if stats else None,
            "training": training[0] if training else None,
            "objective_metric": training[1].objective_metric if training else None,
            "drift": guard[0] if guard else None,
            "quarantine": DriftGuardStep.quarantine_task_id if guard else None,
            "decision": SizedPostprocessStep.size_task_id(sized[0]) if sized else None,
            "publish": publish[0] if publish else None,
            # what a day that ends before the publish step does with that day's earlier outputs
            "nothing_published": {
                "endings": endings,
                "setting": publish[1].when_nothing_published,
                "retract": PublishStep.retract_task_id(publish[0]) if self.retracts(publish[0]) else None,
                "table": publish[1].table,
                "dataset": publish[1].reads,
            }
            if publish and endings
            else None,
        }

    def label_sources(self) -> dict[str, str]:
        """source -> its label column, for the sources that carry class labels."""
        return {name: s.label_column for name, s in self.sources.items() if s.label_column}


def _ancestors(edges: dict[str, list[str]], node: str) -> set[str]:
    seen: set[str] = set()
    stack = list(edges.get(node, []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(edges.get(current, []))
    return seen


def _find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle of steps in data-flow order (first == last), or None."""
    state: dict[str, str] = {}

    def visit(path: list[str]) -> list[str] | None:
        node = path[-1]
        state[node] = "visiting"
        for up in edges.get(node, []):
            if state.get(up) == "visiting":
                return list(reversed([*path[path.index(up) :], up]))
            if up not in state and (found := visit([*path, up])):
                return found
        state[node] = "done"
        return None

    for node in edges:
        if node not in state and (found := visit([node])):
            return found
    return None


def _topological(edges: dict[str, list[str]], names: list[str]) -> list[str]:
    done: list[str] = []
    remaining = list(names)
    while remaining:
        ready = next(n for n in remaining if all(u in done for u in edges[n]))
        done.append(ready)
        remaining.remove(ready)
    return done


# --- loading -------------------------------------------------------------------------------


def _field_path(loc: tuple[int | str, ...]) -> str:
    # pydantic puts validator names (function-before[...]) and a union's tag (the step kind)
    # into loc; drop them. The tag is only the part right after steps.<name>: a step or an
    # argument may well be named like a kind (a step `publish` of kind publish).
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    if len(parts) > 2 and parts[0] == "steps" and parts[2] in STEP_KINDS:
        del parts[2]
    return ".".join(parts)


def _problems(err: ErrorDetails) -> list[tuple[str, str]]:
    """One validation error as (field, message) pairs; a graph error may name several fields."""
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif err["type"] == "union_tag_invalid":
        message = f"unknown step kind {err['input'].get('kind')!r}; water knows {', '.join(STEP_KINDS)}"
    elif err["type"] == "union_tag_not_found":
        message = f"needs a kind: one of {', '.join(STEP_KINDS)}"
    field = _field_path(err["loc"])
    if field:
        return [(field, message)]
    pairs = []
    for line in message.split("\n"):
        head, sep, rest = line.strip().partition(": ")
        pairs.append((head, rest) if sep and re.match(r"^[a-z_][a-z0-9_.\-/]*$", head) else ("", line.strip()))
    return pairs


def spec_path(name: str) -> Path:
    return paths.pipelines_dir() / f"{name}.yaml"


# A spec is a few KB of YAML; these bounds refuse a file that would take the validator (or the
# DAG processor parsing a DAG file) minutes or all memory: a huge file, or a small one whose
# aliases expand to millions of values (a "billion laughs"), or one nested deeper than any spec
# is (PyYAML's scanner is quadratic in the depth of `[[[…`: seconds before Python's recursion
# limit stops it).
MAX_SPEC_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_SPEC_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested deeper than MAX_SPEC_DEPTH or whose
    aliases expand past MAX_EXPANDED_NODES, and turning a value its constructors cannot make
    (`2026-02-30`) into an error at its place."""

    _document: yaml.Node | None = None
    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_SPEC_DEPTH:
                raise _SpecProblem("", f"nested too deeply to be a spec (more than {MAX_SPEC_DEPTH} levels)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        expanded = _expanded_size(node)
        if expanded > MAX_EXPANDED_NODES:
            raise _SpecProblem("", f"its aliases expand to {expanded:,} values; a spec may have at most {MAX_EXPANDED_NODES:,}")
        self._document = node
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, _SpecProblem):
            raise
        except Exception as exc:
            mark = node.start_mark
            value = f"{node.value!r} " if isinstance(node, yaml.ScalarNode) else ""
            raise _SpecProblem(
                _node_field(self._document, node),
                f"line {mark.line + 1}, column {mark.column + 1}: {value}is not a valid {node.tag.rpartition(':')[2]} ({exc})",
            ) from None


class _SpecProblem(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded, counted without expanding:
    each node is sized once (aliases share node objects); a recursive alias counts once."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
        elif id(node) not in sizes:
            sizes[id(node)] = 1  # in progress: a cycle back to it counts once
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _node_field(root: yaml.Node | None, target: yaml.Node) -> str:
    """The dotted field path (`start_date`, `steps.train.args.x`) of a node in the document."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    seen: set[int] = set()
    while stack:
        node, field = stack.pop()
        if node is target:
            return field
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                stack += [(key, field), (value, f"{field}.{name}" if field else name)]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, f"{field}.{i}" if field else str(i)) for i, item in enumerate(node.value)]
    return ""


def _read_yaml(path: Path, shown: Path) -> Any:
    """The spec file's YAML data, within the bounds above; any failure is a SpecError naming the file."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(shown, [("", "file not found")]) from None
    except OSError as exc:
        raise SpecError(shown, [("", f"cannot be read: {exc.strerror or exc}")]) from None
    if len(data) > MAX_SPEC_BYTES:
        size = path.stat().st_size
        figure = f" ({size:,} bytes)" if size > MAX_SPEC_BYTES else ""
        raise SpecError(shown, [("", f"is larger than the {MAX_SPEC_BYTES:,} bytes (1 MiB) a spec may have{figure}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            shown, [("", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} (offset {exc.start}) cannot be decoded")]
        ) from None
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _SpecProblem as exc:
        raise SpecError(shown, [(exc.field, exc.message)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(shown, [("", f"not valid YAML: {where}{getattr(exc, 'problem', None) or exc}")]) from None
    except RecursionError:
        raise SpecError(shown, [("", "nested too deeply to be a spec")]) from None
    except Exception as exc:
        raise SpecError(shown, [("", f"cannot be read as YAML: {type(exc).__name__}: {exc}")]) from exc
    finally:
        loader.dispose()


def load_spec(path: Path | str, include_dir: Path | None = None) -> PipelineSpec:
    """Read and validate one spec file. Raises SpecError naming the file and fields."""
    path = Path(path)
    shown = paths.shown(path)
    raw = _read_yaml(path, shown)
    if not isinstance(raw, dict):
        raise SpecError(shown, [("", "must be a YAML mapping of fields")])
    try:
        spec = PipelineSpec.model_validate(raw, context={"include_dir": include_dir or paths.include_dir()})
    except ValidationError as exc:
        raise SpecError(shown, [p for err in exc.errors() for p in _problems(err)]) from None
    except RecursionError:  # a recursive alias (`&a [*a]`)
        raise SpecError(shown, [("", "a value contains itself (a recursive YAML alias)")]) from None
    except Exception as exc:
        raise SpecError(shown, [("", f"cannot be validated: {type(exc).__name__}: {exc}")]) from exc
    if spec.name != path.stem:
        raise SpecError(shown, [("name", f"{spec.name!r} must match the file name {path.stem!r}")])
    return spec


def load_pipeline(name: str) -> PipelineSpec:
    return load_spec(spec_path(name))


def pipeline_names() -> list[str]:
    return sorted(p.stem for p in paths.pipelines_dir().glob("*.yaml"))
