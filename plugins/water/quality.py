"""Data-quality gates: a step's `checks` (water.spec) against what it wrote. Pure logic, no Airflow.

Both targets use it the same way: list the files a step wrote (a local folder, or the lake
through water.store), `profile` them, and `enforce` the step's checks. Profiles read as little
as they can: a Parquet file's row count, schema and null counts come from its footer; CSV
files are streamed, keeping only the columns a check names.

A failed gate raises `QualityCheckFailed`, whose message names the step, the check and the
figures ("features: check min_rows failed: 0 rows < 1000").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from water.spec import CheckedStep, DatasetChecks, MetricCheck, Step

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

# A file of a partition: its path relative to the partition (Hive folders such as segment=cook/
# become columns) and how to open it for binary reading.
PartitionFile = tuple[str, Callable[[], IO[bytes]]]

# The column type names a spec may expect, and the Arrow types each one admits.
TYPE_NAMES = ("integer", "float", "number", "string", "boolean", "date", "timestamp")


class QualityCheckFailed(RuntimeError):
    """A step's output did not pass its checks; the message lists every failed check."""

    def __init__(self, step: str, failures: list[str]):
        self.step, self.failures = step, list(failures)
        super().__init__("\n".join(f"{step}: check {failure}" for failure in failures))


@dataclass
class Profile:
    """What a written dataset holds, as far as the checks need it."""

    rows: int = 0
    files: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # name -> type family (TYPE_NAMES) or the Arrow type
    nulls: dict[str, int] = field(default_factory=dict)  # column -> null values, for the columns asked about

    def as_figures(self) -> dict[str, Any]:
        return {"rows": self.rows, "files": self.files, **({"nulls": dict(self.nulls)} if self.nulls else {})}


def type_family(arrow_type: pa.DataType) -> str:
    """The spec's name for an Arrow type ("integer", "string", ...), or the Arrow type itself."""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_null(t):
        return "null"  # a column with no value at all (e.g. every row NULL in a CSV)
    return str(t)


def _matches(expected: str, family: str) -> bool:
    if family == "null":  # no value to tell the type by: only the null-share check can judge it
        return True
    return family == expected or (expected == "number" and family in ("integer", "float"))


def _hive_columns(relative: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in relative.split("/")[:-1] if "=" in part)


def profile(files: Iterable[PartitionFile], row_format: str, checks: DatasetChecks | None = None) -> Profile:
    """The rows, columns and (for the columns `checks` names) null counts of a partition's files.

    `row_format` is the spec's: parquet, csv_header, csv (no header: rows only) or files.
    A zero-byte file holds no rows (SageMaker writes one for an empty input); a zero-byte
    Parquet file is not a Parquet file and fails, naming it.
    """
    wanted = sorted(set(checks.max_null_share) | set(checks.columns)) if checks else []
    result = Profile()
    for relative, opener in sorted(files, key=lambda f: f[0]):
        result.files += 1
        hive = _hive_columns(relative)
        if row_format == "parquet":
            _add_parquet(result, relative, opener, wanted)
        elif row_format == "csv_header":
            _add_csv(result, opener, wanted)
        elif row_format == "csv":
            result.rows += _count_lines(opener)
        else:  # "files": a model or other artefacts; no rows
            continue
        for name in hive:  # a Hive folder's value is never null
            result.columns.setdefault(name, "string")
    return result


def columns(files: Iterable[PartitionFile], row_format: str) -> dict[str, str]:
    """The columns (name -> type, as `profile` names them) of a partition, from its first data
    file alone: a Parquet footer or a CSV header and first block. {} for headerless CSV, a
    model's files, or no readable file (lineage's schema facet; never fails on a broken file)."""
    if row_format not in ("parquet", "csv_header"):
        return {}
    for relative, opener in sorted(files, key=lambda f: f[0]):
        result = Profile()
        try:
            if row_format == "parquet":
                import pyarrow.parquet as pq

                with opener() as handle:
                    schema = pq.ParquetFile(handle).schema_arrow
                result.columns = {name: type_family(schema.field(name).type) for name in schema.names}
            else:
                import pyarrow.csv as pacsv

                with opener() as handle:
                    if not handle.read(1):
                        continue  # zero bytes: no header
                    handle.seek(0)
                    reader = pacsv.open_csv(handle, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
                    result.columns = {name: type_family(reader.schema.field(name).type) for name in reader.schema.names}
        except (OSError, ValueError):  # pyarrow's errors are both; a broken file has no schema to report
            continue
        for name in _hive_columns(relative):
            result.columns.setdefault(name, "string")
        return result.columns
    return {}


def _add_parquet(result: Profile, relative: str, opener: Callable[[], IO[bytes]], wanted: list[str]) -> None:
    import pyarrow.parquet as pq

    with opener() as handle:
        handle.seek(0, 2)
        if handle.tell() == 0:
            raise ValueError(f"{relative} is zero bytes: not a Parquet file")
        handle.seek(0)
        parquet = pq.ParquetFile(handle)
        metadata, schema = parquet.metadata, parquet.schema_arrow
        result.rows += metadata.num_rows
        for name in schema.names:
            result.columns.setdefault(name, type_family(schema.field(name).type))
        for name in wanted:
            if name not in schema.names:
                continue
            nulls = _footer_nulls(metadata, schema.names.index(name))
            if nulls is None:  # no statistics written: read that column alone
                nulls = parquet.read(columns=[name]).column(name).null_count
            result.nulls[name] = result.nulls.get(name, 0) + nulls


def _footer_nulls(metadata: pq.FileMetaData, index: int) -> int | None:
    """Null values of a top-level column from the row groups' statistics, or None when absent."""
    total = 0
    for group in range(metadata.num_row_groups):
        column = metadata.row_group(group).column(index)
        stats = column.statistics
        if column.path_in_schema.count(".") or stats is None or not stats.has_null_count:
            return None
        total += stats.null_count
    return total


def _add_csv(result: Profile, opener: Callable[[], IO[bytes]], wanted: list[str]) -> None:
    """A CSV file with a header, streamed: every column's type, nulls of the wanted columns."""
    import pyarrow.csv as pacsv

    with opener() as handle:
        if not handle.read(1):
            return  # zero bytes: no header, no rows
        handle.seek(0)
        reader = pacsv.open_csv(handle, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        for name in reader.schema.names:
            result.columns.setdefault(name, type_family(reader.schema.field(name).type))
        for batch in reader:
            result.rows += batch.num_rows
            for name in wanted:
                if name in batch.schema.names:
                    result.nulls[name] = result.nulls.get(name, 0) + batch.column(name).null_count


def _count_lines(opener: Callable[[], IO[bytes]]) -> int:
    """Lines of a file without a header (a last line without a newline counts); zero bytes, zero lines."""
    lines, last = 0, b"\n"
    with opener() as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def dataset_failures(checks: DatasetChecks, found: Profile, dataset: str | None = None) -> list[str]:
    """Each failed check as "<check> failed[ on <dataset>]: <figures>"; empty when all pass."""
    on = f" on {dataset}" if dataset else ""
    failures = []
    if checks.min_rows is not None and found.rows < checks.min_rows:
        failures.append(f"min_rows failed{on}: {found.rows:,} rows < {checks.min_rows:,}")
    problems = []
    for name, expected in checks.columns.items():
        if name not in found.columns:
            problems.append(f"{name} is missing")
        elif not _matches(expected, found.columns[name]):
            problems.append(f"{name} is {found.columns[name]}, expected {expected}")
    if problems:
        failures.append(f"columns failed{on}: " + "; ".join(problems) + f" (columns: {', '.join(found.columns) or 'none'})")
    for name, most in checks.max_null_share.items():
        if name not in found.columns:
            failures.append(f"max_null_share failed{on}: column {name} is missing")
            continue
        nulls = found.nulls.get(name, 0)
        share = nulls / found.rows if found.rows else 0.0
        if share > most:
            failures.append(
                f"max_null_share failed{on}: {name} is {share:.1%} null ({nulls:,} of {found.rows:,} rows) > {most:.1%}"
            )
    return failures


def label_counts(files: Iterable[PartitionFile], column: str) -> dict[str, int]:
    """Rows per value of `column` over CSV files with a header (a training channel's labels), streamed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    counts: dict[str, int] = {}
    for relative, opener in sorted(files, key=lambda f: f[0]):
        with opener() as handle:
            if not handle.read(1):
                continue  # zero bytes: no rows
            handle.seek(0)
            options = pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()})
            try:
                reader = pacsv.open_csv(handle, convert_options=options)
            except (pa.ArrowInvalid, KeyError) as exc:
                raise ValueError(f"{relative}: no column {column!r} in its header ({exc})") from None
            for batch in reader:
                grouped = pa.table(batch).group_by(column).aggregate([(column, "count")])
                for value, n in zip(grouped[column].to_pylist(), grouped[f"{column}_count"].to_pylist(), strict=True):
                    if value is not None:
                        counts[value] = counts.get(value, 0) + int(n)
    return dict(sorted(counts.items()))


def metric_failures(check: MetricCheck, metrics: dict[str, float], labels: dict[str, int] | None) -> list[str]:
    """The training gate: `check.name` at least `at_least`, and at least the majority-class share
    of the validation labels plus `above_majority_by`. `labels` (class -> rows) is needed for the latter."""
    name = check.name
    value = metrics.get(name) if name is not None else None
    if value is None:
        reported = ", ".join(sorted(metrics)) or "none"
        return [f"metric failed: {name} was not reported by the training job (metrics reported: {reported})"]
    failures = []
    if check.at_least is not None and value < check.at_least:
        failures.append(f"metric failed: {name} {value:.4f} < at_least {check.at_least:.4f}")
    if check.above_majority_by is not None:
        total = sum((labels or {}).values())
        if not total:
            failures.append(
                f"metric failed: the validation channel holds no labelled rows, so {name} {value:.4f} has no baseline"
            )
        else:
            majority, rows = max((labels or {}).items(), key=lambda item: (item[1], item[0]))
            share = rows / total
            floor = share + check.above_majority_by
            if value < floor:
                failures.append(
                    f"metric failed: {name} {value:.4f} < {floor:.4f}, the majority-class baseline "
                    f"({majority!r} {share:.1%} of {total:,} validation rows) + {check.above_majority_by}"
                )
    return failures


def parse_metrics(lines: Iterable[str], definitions: list[tuple[str, str]]) -> dict[str, float]:
    """The last value each metric definition's regex captured in a log, as SageMaker keeps it
    (its FinalMetricDataList): a training job's, or a training pod's."""
    patterns = [(name, re.compile(regex)) for name, regex in definitions]
    found: dict[str, float] = {}
    for line in lines:
        for name, pattern in patterns:
            for match in pattern.finditer(line):
                found[name] = float(match.group(1))
    return found


def majority_share(labels: dict[str, int]) -> float | None:
    total = sum(labels.values())
    return max(labels.values()) / total if total else None


def enforce(step: str, failures: list[str]) -> None:
    """Raise QualityCheckFailed naming the step when any check failed."""
    if failures:
        raise QualityCheckFailed(step, failures)


@dataclass(frozen=True)
class Gates:
    """A step's gates as its tasks apply them: the step's name (for messages), each gated
    dataset's row format and checks, and the training gate with its validation dataset."""

    step: str
    outputs: dict[str, tuple[str, DatasetChecks]] = field(default_factory=dict)
    metric: MetricCheck | None = None
    validation: str | None = None  # the dataset whose labels give the majority-class baseline

    @classmethod
    def of(cls, name: str, step: Step) -> Gates | None:
        """The gates of step `name`, or None when it has no checks."""
        if not isinstance(step, CheckedStep):
            return None  # only the checked kinds have checks
        outputs = step.output_checks()
        metric = step.metric_check()
        if not outputs and metric is None:
            return None
        return cls(step=name, outputs=outputs, metric=metric, validation=step.validation_dataset())

    def failures(
        self,
        written: Mapping[str, Iterable[PartitionFile]],
        metrics: dict[str, float] | None = None,
        validation: Iterable[PartitionFile] | None = None,
    ) -> tuple[list[str], dict[str, Any]]:
        """Every failed check of what the step wrote (`written`: dataset -> its files) and of
        the metrics it reported (`validation`: the validation channel's files); and the figures."""
        failures: list[str] = []
        figures: dict[str, Any] = {}
        many = len(self.outputs) > 1
        for dataset, (row_format, checks) in self.outputs.items():
            if dataset not in written:
                continue
            found = profile(written[dataset], row_format, checks)
            figures[dataset] = found.as_figures()
            failures += dataset_failures(checks, found, dataset if many else None)
        if self.metric is not None and metrics is not None:
            labels = (
                label_counts(validation or [], self.metric.label_column) if self.metric.above_majority_by is not None else None
            )
            figures["metric"] = {
                self.metric.name: metrics.get(self.metric.name) if self.metric.name is not None else None,
                **({"majority_share": majority_share(labels)} if labels is not None else {}),
            }
            failures += metric_failures(self.metric, metrics, labels)
        return failures, figures

    def enforce(
        self,
        written: Mapping[str, Iterable[PartitionFile]],
        metrics: dict[str, float] | None = None,
        validation: Iterable[PartitionFile] | None = None,
    ) -> dict[str, Any]:
        """Raise QualityCheckFailed naming the step when any check failed; else the figures."""
        failures, figures = self.failures(written, metrics, validation)
        enforce(self.step, failures)
        return figures
