"""Operators of the local target: each runs a stage's production artifact on this machine.

Every operator reads committed `ds` partitions, writes its own partitions aside and swaps
them in only when it succeeds (water.targets.local.engines.partitions), and returns a small dict of figures
(rows in and out, memory, metrics) as its XCom for the run summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context

from water import lineage, paths
from water.lake import Lake
from water.quality import Gates
from water.spec import Resources, SizingPolicy
from water.targets.local.engines.counting import parquet_rows, text_rows
from water.targets.local.engines.partitions import data_files, file_uri, local_files, local_path, staged

if TYPE_CHECKING:
    from water.targets.local.engines.process import ProcessResult
    from water.targets.local.engines.sagemaker import TrainingResult


class LocalStageOperator(BaseOperator):
    """Base: knows the pipeline's lake; `run(ds, context)` does the stage and returns its figures."""

    ui_color = "#e8f4fa"

    def __init__(
        self,
        *,
        pipeline: str,
        lake_root: str,
        label_checks: dict[str, tuple[str, str]] | None = None,
        label_classes: list[str] | None = None,
        gates: Gates | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.lake_root = lake_root
        self.gates = gates  # the step's checks, applied to what it wrote before the swap
        # source -> (its local folder, its label column): checked against label_classes first
        self.label_checks, self.label_classes = dict(label_checks or {}), list(label_classes or [])

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_root, self.pipeline)

    def partition(self, dataset: str, ds: str) -> Path:
        return local_path(self.lake.uri(dataset, ds))

    def require(self, dataset: str, ds: str) -> Path:
        """An input partition: there, and without a zero-byte Parquet file (an empty CSV file is
        zero rows, but a zero-byte Parquet file is a broken write, not an empty table)."""
        folder = self.partition(dataset, ds)
        if not folder.is_dir():
            raise FileNotFoundError(f"input partition {dataset}/ds={ds} is missing at {folder}")
        broken = [p for p in data_files(folder) if p.suffix == ".parquet" and p.stat().st_size == 0]
        if broken:
            raise ValueError(
                f"{self.task_id}: input partition {dataset}/ds={ds} holds a zero-byte Parquet file "
                f"{broken[0].relative_to(folder)} (not a Parquet file: a broken write upstream); re-run the step that writes {dataset}"
            )
        return folder

    def require_data(self, dataset: str, ds: str) -> Path:
        """An input partition that holds at least one data file (readers cannot take an empty folder)."""
        folder = self.require(dataset, ds)
        if not data_files(folder):
            raise FileNotFoundError(f"{self.task_id}: input partition {dataset}/ds={ds} holds no data files at {folder}")
        return folder

    def gate(self, ds: str, written: dict[str, Path], metrics: dict[str, float] | None = None) -> dict[str, Any]:
        """The step's checks on what it wrote (`written`: dataset -> its staged folder) and the
        metrics it reported; raises QualityCheckFailed (so the staged output is discarded and the
        day's previous partition stays). Returns {"checks": figures} or {} without checks."""
        if self.gates is None:
            return {}
        validation = None
        if self.gates.metric is not None and self.gates.validation is not None:
            validation = local_files(self.require(self.gates.validation, ds))
        figures = self.gates.enforce({dataset: local_files(folder) for dataset, folder in written.items()}, metrics, validation)
        self.log.info("%s: checks passed: %s", self.gates.step, json.dumps(figures, sort_keys=True, default=str))
        return {"checks": figures}

    def job_name(self, context: Context) -> str:
        ti = context["ti"]
        return f"{self.pipeline}-{self.task_id}-{context['ds']}-{ti.try_number}".replace("_", "-")

    def check_labels(self, ds: str) -> None:
        """A label outside the spec's classes fails the first step that reads it, before any work."""
        from water.targets.local.engines.sql import distinct_values, folder_table

        for source, (folder, column) in self.label_checks.items():
            files, hive_types = folder_table(Path(folder), source, {"ds": "VARCHAR"} if "." not in source else None)
            values = distinct_values(files, hive_types, column, ds)
            unknown = sorted(str(v) for v in values if v is not None and v not in self.label_classes)
            if unknown:
                raise ValueError(
                    f"source {source} ds={ds}: {column} holds {unknown}, which are not among the spec's classes "
                    f"{self.label_classes} (sources.{source}.label_column)"
                )

    def execute(self, context: Context) -> dict[str, Any]:
        started = time.monotonic()
        self.check_labels(context["ds"])
        self.lineage_run: tuple[str, dict[str, Any]] = (context["ds"], {})  # a failed run: the datasets, no figures
        figures = self.run(context["ds"], context)
        figures["work_seconds"] = round(time.monotonic() - started, 3)  # the stage's own work
        self.log.info("%s figures: %s", self.task_id, json.dumps(figures, sort_keys=True))
        self.lineage_run = (context["ds"], figures)  # for get_openlineage_facets_on_complete, in this process
        return figures

    def run(self, ds: str, context: Context) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- OpenLineage: what the stage read and wrote (water.lineage) ---------------------------

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        """(inputs, outputs) of the stage's run on `ds`, with what its `figures` counted."""
        raise NotImplementedError

    def seen(
        self, name: str, ds: str | None, row_format: str = "", rows: int | None = None, below: str = "", deleted: bool = False
    ) -> lineage.Seen:
        """A lake dataset (or, with warehouse_dir, a warehouse `dataset.table`) the stage touched on
        `ds`; its columns read from the partition's first file in `row_format` ("": by its files)."""
        from water.quality import columns

        table = "." in name
        if table:
            identity = lineage.warehouse_table(name, warehouse_dir=getattr(self, "warehouse_dir", None))
            folder = Path(identity[1])
        else:
            identity = lineage.lake_dataset(self.lake_root, self.pipeline, name)
            folder = self.partition(name, ds) / below if ds is not None else Path(identity[1])
        found: dict[str, str] = {}
        if ds is not None and folder.is_dir() and not deleted:
            fmt = row_format or ("parquet" if any(p.suffix == ".parquet" for p in data_files(folder)) else "")
            found = columns(local_files(folder), fmt)
        return lineage.Seen(identity, lineage.partition_of(ds, below), found or None, rows, deleted)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The OpenLineage provider's hook: this stage's own datasets (never the hook collector's)."""
        ds, figures = lineage.ran(self)
        inputs, outputs = self.lineage_io(ds, figures)
        return lineage.operator_lineage(inputs, outputs)


class LocalQueryOperator(LocalStageOperator):
    """BigQuery or Athena SQL on DuckDB; tables come from the warehouse folder or the lake."""

    def __init__(
        self,
        *,
        sql: str,
        dialect: str,
        destination: str,
        tables: str,
        warehouse_dir: str,
        database: str | None = None,
        reads: list[str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if dialect not in ("bigquery", "trino") or tables not in ("warehouse", "lake"):
            raise ValueError(f"unsupported dialect/tables {dialect}/{tables}")
        self.sql, self.dialect, self.destination = sql, dialect, destination
        self.tables, self.warehouse_dir, self.database = tables, warehouse_dir, database
        self.reads = list(reads or [])  # the step's tables or datasets (its spec's reads), for lineage

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        return [self.seen(name, ds) for name in self.reads], [self.seen(self.destination, ds, "parquet", figures.get("rows_out"))]

    def resolve_table(self, schema: str | None, name: str) -> tuple[list[str], dict[str, str]]:
        from water.targets.local.engines.sql import folder_table

        if self.tables == "warehouse":
            if not schema:
                raise LookupError(f"BigQuery table {name} needs a dataset (dataset.table)")
            return folder_table(Path(self.warehouse_dir) / schema / name, f"{schema}.{name}")
        # Athena: a table is the lake dataset of the same name in the pipeline's catalog
        # database, partitioned by ds (a string).
        if schema and schema != self.database:
            raise LookupError(f"table {schema}.{name}: only this pipeline's database {self.database} is in its lake")
        return folder_table(local_path(self.lake.dataset_uri(name)), name, {"ds": "VARCHAR"})

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.targets.local.engines.sql import date_literal, run_to_parquet, string_literal

        sql = (paths.include_dir() / self.sql).read_text()
        named = {"ds": date_literal(ds)} if self.dialect == "bigquery" else {}
        positional = [string_literal(ds)] if self.dialect == "trino" else []
        with staged({"out": self.lake.uri(self.destination, ds)}) as out:
            rows = run_to_parquet(sql, self.dialect, out["out"] / "part-00000.parquet", self.resolve_table, named, positional)
            checked = self.gate(ds, {self.destination: out["out"]})
        return {"rows_out": rows, **checked}


class LocalGlueJobOperator(LocalStageOperator):
    """A Glue PySpark script on local Spark (spark-submit) with Glue-style arguments."""

    def __init__(
        self,
        *,
        script: str,
        script_args: dict[str, Any],
        worker_type: str,
        sources: dict[str, str],
        destination: str,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.script, self.script_args, self.worker_type = script, dict(script_args), worker_type
        self.sources, self.destination = dict(sources), destination

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        def rows(dataset: str) -> int | None:  # Parquet footers: cheap
            folder = self.partition(dataset, ds) if ds is not None else None
            return parquet_rows(folder) if figures and folder is not None and folder.is_dir() else None

        inputs = [self.seen(dataset, ds, "parquet", rows(dataset)) for dataset in self.sources.values()]
        return inputs, [self.seen(self.destination, ds, "parquet", figures.get("rows_out"))]

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.targets.local.engines.glue import run_glue_script

        # Spark cannot read a schema from an empty folder: say which input it is
        inputs = {arg: self.require_data(dataset, ds) for arg, dataset in self.sources.items()}
        with staged({"out": self.lake.uri(self.destination, ds)}) as out:
            target = out["out"]
            target.rmdir()  # Spark creates its output folder itself
            result = run_glue_script(
                paths.include_dir() / self.script,
                self.job_name(context),
                {
                    **self.script_args,
                    **{arg: file_uri(folder) for arg, folder in inputs.items()},
                    "output_path": file_uri(target),
                    "ds": ds,
                },
                self.worker_type,
                log=self.log.info,
            )
            rows_out = parquet_rows(target)
            checked = self.gate(ds, {self.destination: target})
        return {
            "rows_in": sum(parquet_rows(folder) for folder in inputs.values()),
            "rows_out": rows_out,
            "peak_rss_mb": round(result.peak_rss_bytes / 2**20, 1),
            **checked,
        }


class LocalPodOperator(LocalStageOperator):
    """A pod's entrypoint as a local process under the pod's CPU and memory limits.

    `inputs` and `outputs` map a command-line flag to a lake dataset; outputs also name how
    to count their rows: "parquet", "csv" or "csv_header". With `shard_output` (a route's
    name), each output goes to `<partition>/route=NAME/shard=NNNN` and a `shard` ({index,
    row_start, row_end}) adds --row-start/--row-end. With `classes` (a route's), the pod gets
    --classes a,b and reads only those classes' predictions. With an `escalation` policy, a pod killed for memory is run once
    more with the next tier's resources (twice the memory at the top tier).
    """

    template_fields = ("container_resources",)

    def __init__(
        self,
        *,
        entrypoint: str,
        arguments: dict[str, Any],
        inputs: dict[str, str],
        outputs: dict[str, tuple[str, str]],
        container_resources: dict[str, dict[str, str]],
        shard: dict[str, int] | None = None,
        shard_output: str | None = None,
        classes: list[str] | None = None,
        escalation: SizingPolicy | None = None,
        metric_definitions: list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.classes = list(classes or [])
        self.metric_definitions = list(metric_definitions or [])
        self.entrypoint, self.arguments = entrypoint, dict(arguments)
        self.inputs, self.outputs = dict(inputs), dict(outputs)
        self.container_resources = container_resources
        self.shard, self.shard_output, self.escalation = shard, shard_output, escalation

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        # rows_in counts the tabular inputs together (a shard's rows, a route's classes): per input only when one
        rows_in = figures.get("rows_in") if len(self.inputs) == 1 else None
        inputs = [self.seen(dataset, ds, rows=rows_in) for dataset in self.inputs.values()]
        below = f"route={self.shard_output}/shard={(self.shard or {}).get('index', 0):04d}" if self.shard_output else ""
        counts = figures.get("outputs") or {}
        outputs = [self.seen(dataset, ds, fmt, counts.get(flag), below) for flag, (dataset, fmt) in self.outputs.items()]
        return inputs, outputs

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.sizing import escalate
        from water.targets.local.engines.process import OutOfMemory

        resources = dict(self.container_resources)
        try:
            return self._run_pod(ds, resources)
        except OutOfMemory as oom:
            if self.escalation is None:
                raise
            label, bigger = escalate(self.escalation, resources)
            self.log.warning("%s; retrying once with %s (memory limit %s)", oom, label, bigger["limits"]["memory"])
            figures = self._run_pod(ds, bigger)
            figures["escalated"] = {
                "to": label,
                "from_memory_limit": resources["limits"]["memory"],
                "to_memory_limit": bigger["limits"]["memory"],
                "peak_before_kill_mb": round(oom.peak_bytes / 2**20, 1),
            }
            return figures

    def _output_uri(self, dataset: str, ds: str) -> str:
        uri = self.lake.uri(dataset, ds)
        if not self.shard_output:
            return uri
        return f"{uri}/route={self.shard_output}/shard={(self.shard or {}).get('index', 0):04d}"

    def _run_pod(self, ds: str, container_resources: dict[str, dict[str, str]]) -> dict[str, Any]:
        from water.targets.local.engines.process import python_executable, run_limited

        resources = Resources.model_validate(container_resources)
        argv = [python_executable(), str(paths.include_dir() / self.entrypoint)]
        for name, value in self.arguments.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        if self.classes:
            argv += ["--classes", ",".join(self.classes)]
        if self.shard:
            argv += ["--row-start", str(self.shard["row_start"]), "--row-end", str(self.shard["row_end"])]
        sources = {flag: self.require(dataset, ds) for flag, dataset in self.inputs.items()}
        for flag, folder in sources.items():
            argv += [f"--{flag}", file_uri(folder)]
        if self.shard:  # a shard knows its rows; counting the whole input per shard is waste
            rows_in = self.shard["row_end"] - self.shard["row_start"]
        elif self.classes:  # a route reads its classes' predictions: count those (an aggregate)
            from water.targets.local.engines.stats import count_predictions

            counts = count_predictions(sources["input"])
            rows_in = sum(counts.get(c, 0) for c in self.classes)
        else:  # rows of the tabular inputs (Parquet, CSV); a model's files are no rows
            rows_in = sum(self._count(folder, self._format_of(folder)) for folder in sources.values())
        with staged({flag: self._output_uri(dataset, ds) for flag, (dataset, _) in self.outputs.items()}) as out:
            for flag, folder in out.items():
                argv += [f"--{flag}", file_uri(folder)]
            metrics: dict[str, float] = {}
            patterns = [(name, re.compile(regex)) for name, regex in self.metric_definitions]

            def log(line: str) -> None:
                self.log.info("%s", line)
                for name, pattern in patterns:  # as SageMaker's metric_definitions read a job's log
                    if (match := pattern.search(line)) is not None:
                        metrics[name] = float(match.group(1))

            result = run_limited(
                argv,
                name=f"pod {self.task_id}",
                memory_bytes=resources.memory_limit_bytes,
                cpu=resources.cpu_limit,
                log=log,
            )
            counts = {flag: self._count(out[flag], fmt) for flag, (_, fmt) in self.outputs.items()}
            checked = self.gate(
                ds,
                {dataset: out[flag] for flag, (dataset, _) in self.outputs.items()},
                metrics if self.metric_definitions else None,
            )
        return {
            "rows_in": rows_in,
            "rows_out": sum(counts.values()),
            "outputs": counts,
            "peak_rss_mb": round(result.peak_rss_bytes / 2**20, 1),
            "memory_limit_mb": round(resources.memory_limit_bytes / 2**20, 1),
            "cpu_limit": resources.cpu_limit,
            "limits_enforced_by": result.enforcement,
            **({"metrics": metrics} if self.metric_definitions else {}),
            **({"shard": self.shard} if self.shard else {}),
            **checked,
        }

    @staticmethod
    def _format_of(folder: Path) -> str:
        names = [p.name for p in data_files(folder)]
        if any(n.endswith(".parquet") for n in names):
            return "parquet"
        return "csv" if any(n.endswith((".csv", ".out")) for n in names) else "files"

    @staticmethod
    def _count(folder: Path, fmt: str) -> int:
        if fmt == "parquet":
            return parquet_rows(folder)
        if fmt == "files":
            return 0
        return text_rows(folder, header=fmt == "csv_header")


class LocalCommitShardsOperator(LocalStageOperator):
    """Swaps the post-processing shards the sizing decision asked for into the outputs partition."""

    def __init__(self, *, source: str, destination: str, decision_task_id: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_dataset, self.destination, self.decision_task_id = source, destination, decision_task_id

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        source = lineage.Seen(lineage.lake_dataset(self.lake_root, self.pipeline, self.source_dataset), lineage.partition_of(ds))
        if figures.get("rows_in") is not None:  # the shards are gone once swapped in: their rows are the output's
            source = lineage.Seen(source.identity, source.partition, rows=figures["rows_in"])
        return [source], [self.seen(self.destination, ds, "parquet", figures.get("rows_out"))]

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.sizing import shard_folders

        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id, key="decision") or {}
        shards_dir = self.require(self.source_dataset, ds)
        folders = [shards_dir / relative for relative in shard_folders(decision)]
        missing = [str(f.relative_to(shards_dir)) for f in folders if not f.is_dir()]
        if missing:
            raise FileNotFoundError(f"post-processing shards missing for ds={ds}: {', '.join(missing)}")
        with staged({"out": self.lake.uri(self.destination, ds)}) as out:
            for folder in folders:
                for path in data_files(folder):
                    target = out["out"] / path.relative_to(folder)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.exists():
                        raise FileExistsError(f"two shards wrote {target.relative_to(out['out'])}")
                    os.link(path, target)  # shards stay intact until the swap succeeded
        shutil.rmtree(shards_dir, ignore_errors=True)
        rows = parquet_rows(self.partition(self.destination, ds))
        return {"rows_in": rows, "rows_out": rows, "shards": len(folders), "tier": decision.get("tier")}


class LocalTrainingOperator(LocalStageOperator):
    """A SageMaker script-mode training job, run locally under its contract."""

    def __init__(
        self,
        *,
        entry_point: str,
        hyperparameters: dict[str, Any],
        instance_type: str,
        metric_definitions: list[tuple[str, str]],
        channels: dict[str, str],
        destination: str,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.entry_point, self.hyperparameters = entry_point, dict(hyperparameters)
        self.instance_type, self.metric_definitions = instance_type, list(metric_definitions)
        self.channels, self.destination = dict(channels), destination

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        rows = figures.get("channels") or {}
        inputs = [self.seen(dataset, ds, "csv_header", rows.get(name)) for name, dataset in self.channels.items()]
        return inputs, [self.seen(self.destination, ds, "files")]  # a model: files, no rows

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        channels = {name: self.require(dataset, ds) for name, dataset in self.channels.items()}
        rows = {name: text_rows(folder, header=True) for name, folder in channels.items()}
        empty = [name for name, n in rows.items() if n == 0]
        if empty:  # as SageMaker would, after paying for an instance: say so before starting
            raise ValueError(
                f"{self.task_id}: channel {empty[0]} ({self.channels[empty[0]]}/ds={ds}) holds no rows: "
                "nothing to train on or validate with"
            )
        with staged({"model": self.lake.uri(self.destination, ds)}) as out:
            result = self.train(context, channels, out["model"])
            checked = self.gate(ds, {}, result.metrics)  # a model below the gate never replaces the day's
        return {
            "rows_in": sum(rows.values()),
            "channels": rows,
            "metrics": result.metrics,
            "peak_rss_mb": round(result.process.peak_rss_bytes / 2**20, 1),
            **checked,
        }

    def train(self, context: Context, channels: dict[str, Path], model_out: Path) -> TrainingResult:
        """Run the training job on the channels' folders; the model goes to model_out."""
        from water.targets.local.engines import sagemaker

        return sagemaker.train(
            job_name=self.job_name(context),
            entry_point=paths.include_dir() / self.entry_point,
            hyperparameters=self.hyperparameters,
            channels=channels,
            instance_type=self.instance_type,
            metric_definitions=self.metric_definitions,
            work_dir=paths.state_dir() / "sagemaker",
            model_out=model_out,
            log=self.log.info,
        )


class LocalTransformOperator(LocalStageOperator):
    """A SageMaker batch transform job with the inference script's handlers, run locally."""

    def __init__(
        self,
        *,
        entry_point: str,
        model: str,
        source: str,
        destination: str,
        instance_type: str,
        max_payload_mb: int,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.entry_point, self.model, self.source_dataset, self.destination = entry_point, model, source, destination
        self.instance_type, self.max_payload_mb = instance_type, max_payload_mb

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        # CSV lines without a header in and out: rows, no columns (an AutoML model's input has a header)
        source_format = "csv_header" if getattr(self, "automl", False) else "csv"
        inputs = [self.seen(self.model, ds, "files"), self.seen(self.source_dataset, ds, source_format, figures.get("rows_in"))]
        return inputs, [self.seen(self.destination, ds, "csv", figures.get("rows_out"))]

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        model = self.require(self.model, ds)
        # No input file fails (SageMaker finds no object under the prefix); zero-byte files
        # are zero records and give zero-byte predictions files: zero predictions.
        source = self.require_data(self.source_dataset, ds)
        with staged({"out": self.lake.uri(self.destination, ds)}) as out:
            result = self.predict(context, model, source, out["out"])
            rows_out = text_rows(out["out"])
            rows_in = text_rows(source)
            if rows_in != rows_out:
                raise RuntimeError(f"{self.task_id} answered {rows_out} lines for {rows_in} input lines")
            checked = self.gate(ds, {self.destination: out["out"]})
        return {
            "rows_in": rows_in,
            "rows_out": rows_out,
            "peak_rss_mb": round(result.peak_rss_bytes / 2**20, 1),
            **checked,
        }

    def predict(self, context: Context, model: Path, source: Path, output: Path) -> ProcessResult:
        """Score every file in source with the model partition `model`: `<file>.out` in output."""
        from water.targets.local.engines import sagemaker

        return sagemaker.transform(
            job_name=self.job_name(context),
            model_tar=model / "model.tar.gz",
            entry_point=paths.include_dir() / self.entry_point,
            input_dir=source,
            output_dir=output,
            instance_type=self.instance_type,
            max_payload_mb=self.max_payload_mb,
            work_dir=paths.state_dir() / "sagemaker",
            log=self.log.info,
        )


class LocalVertexTrainingOperator(LocalTrainingOperator):
    """A Vertex AI custom training job (CustomJob), run locally under Vertex's contract.

    As the SageMaker job but for the contract: the AIP_* environment, the model's files (no
    tar) in the step's folder, the limits of the spec's machine type (held as instance_type).
    """

    def train(self, context: Context, channels: dict[str, Path], model_out: Path) -> TrainingResult:
        from water.targets.local.engines import vertex

        return vertex.custom_training(
            job_name=self.job_name(context),
            entry_point=paths.include_dir() / self.entry_point,
            hyperparameters=self.hyperparameters,
            channels=channels,
            machine_type=self.instance_type,
            metric_definitions=self.metric_definitions,
            work_dir=paths.state_dir() / "vertex",
            model_dir=model_out,
            log=self.log.info,
        )


class LocalVertexBatchPredictionOperator(LocalTransformOperator):
    """A Vertex AI batch prediction, run locally: a custom model (its files) scored by the
    inference script's handlers as SageMaker's transform runs them; an AutoML model
    (`automl`: no entry point) by the local AutoML engine's own prediction."""

    def __init__(self, *, automl: bool = False, classes: list[str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.automl, self.classes = automl, list(classes) if classes is not None else None

    def predict(self, context: Context, model: Path, source: Path, output: Path) -> ProcessResult:
        if self.automl:
            from water.targets.local.engines import automl

            job = paths.state_dir() / "vertex" / self.job_name(context)
            shutil.rmtree(job, ignore_errors=True)  # the answers of an earlier run of this job
            return automl.predict(
                model_dir=model,
                input_dir=source,
                output_dir=output,
                log=self.log.info,
                classes=self.classes,  # a class the model knows outside the spec's fails
                work_dir=job,
            )
        from water.targets.local.engines import vertex

        return vertex.batch_prediction(
            job_name=self.job_name(context),
            model_dir=model,
            entry_point=paths.include_dir() / self.entry_point,
            input_dir=source,
            output_dir=output,
            machine_type=self.instance_type,
            max_payload_mb=self.max_payload_mb,
            work_dir=paths.state_dir() / "vertex",
            log=self.log.info,
        )


class LocalInferenceStatsOperator(LocalStageOperator):
    """Counts the predictions (rows, rows per class) with a DuckDB aggregate; never loads them."""

    def __init__(self, *, predictions: str, destination: str, classes: list[str], **kwargs: Any):
        super().__init__(**kwargs)
        self.predictions, self.destination, self.classes = predictions, destination, list(classes)

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        return [self.seen(self.predictions, ds, "csv", figures.get("rows_in"))], [self.seen(self.destination, ds, "files")]

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.targets.local.engines.stats import count_predictions

        counts = count_predictions(self.require(self.predictions, ds))
        unknown = set(counts) - set(self.classes)
        if unknown:
            raise ValueError(f"predictions hold classes the spec does not declare: {sorted(unknown)}")
        class_counts = {c: counts.get(c, 0) for c in self.classes}
        figures = {"rows_in": sum(class_counts.values()), "rows": sum(class_counts.values()), "class_counts": class_counts}
        with staged({"out": self.lake.uri(self.destination, ds)}) as out:
            (out["out"] / "inference_stats.json").write_text(json.dumps({"ds": ds, **figures}, indent=2, sort_keys=True))
        return figures


class LocalPublishOperator(LocalStageOperator):
    """Replaces the ds partition of a warehouse table (DuckDB) with the day's outputs."""

    def __init__(self, *, source: str, table: str, warehouse_dir: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_dataset, self.table, self.warehouse_dir = source, table, warehouse_dir

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        source = self.seen(self.source_dataset, ds, "parquet", figures.get("rows_in"))
        published = lineage.Seen(
            self.seen(self.table, None).identity, lineage.partition_of(ds), source.columns, figures.get("rows_out")
        )
        return [source], [published]  # the table holds what the source partition held

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.targets.local.engines.warehouse import publish_partition

        source = self.require(self.source_dataset, ds)
        if not any(p.suffix == ".parquet" for p in data_files(source)):  # zero rows is a Parquet file with none
            raise FileNotFoundError(
                f"{self.task_id}: {self.source_dataset}/ds={ds} holds no Parquet files at {source}: nothing to publish"
            )
        rows = publish_partition(Path(self.warehouse_dir), self.table, ds, source)
        return {"rows_in": parquet_rows(source), "rows_out": rows, "table": self.table}


class LocalRetractOperator(LocalStageOperator):
    """The day ended unpublished: removes what an earlier run of it published, the warehouse
    table's ds rows (DuckDB) and the `source` partition the publish step read."""

    ui_color = "#ffe0e0"

    def __init__(self, *, source: str, table: str, warehouse_dir: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_dataset, self.table, self.warehouse_dir = source, table, warehouse_dir

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        # It reads nothing: it deletes the day's partition of the table and of the source (lifecycleStateChange TRUNCATE)
        table = self.seen(self.table, ds, deleted=True)
        source = self.seen(self.source_dataset, ds, deleted=True)
        return [], [lineage.Seen(table.identity, table.partition, rows=figures.get("rows_retracted"), deleted=True), source]

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.targets.local.engines.warehouse import retract_partition

        rows = retract_partition(Path(self.warehouse_dir), self.table, ds)  # the table first: what readers see
        folder = self.partition(self.source_dataset, ds)
        removed = folder.is_dir()
        if removed:
            shutil.rmtree(folder)
        message = f"ds={ds} published nothing: retracted {rows:,} row(s) of {self.table} and " + (
            f"the {self.source_dataset} partition" if removed else f"no {self.source_dataset} partition (none there)"
        )
        self.log.warning(message)
        return {
            "flag": "retracted",
            "table": self.table,
            "rows_retracted": rows,
            "partition_removed": self.lake.uri(self.source_dataset, ds) if removed else None,
            "message": message,
        }


class LocalAutoMLTrainingOperator(LocalStageOperator):
    """Vertex AI AutoML tabular training, run locally: FLAML's AutoML search on the same rows
    for the spec's local time budget (water.targets.local.engines.automl); the model replaces
    the day's only when it passes the training gate (validation:accuracy)."""

    def __init__(
        self,
        *,
        channels: dict[str, str],
        destination: str,
        target_column: str,
        column_specs: dict[str, str],
        objective: str,
        time_budget_s: float,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.channels, self.destination = dict(channels), destination
        self.target_column, self.column_specs = target_column, dict(column_specs)
        self.objective, self.time_budget_s, self.seed = objective, time_budget_s, seed

    def lineage_io(self, ds: str | None, figures: dict[str, Any]) -> tuple[list[lineage.Seen], list[lineage.Seen]]:
        rows = figures.get("channels") or {}
        inputs = [self.seen(dataset, ds, "csv_header", rows.get(name)) for name, dataset in self.channels.items()]
        return inputs, [self.seen(self.destination, ds, "files")]  # a model: files, no rows

    def run(self, ds: str, context: Context) -> dict[str, Any]:
        from water.targets.local.engines import automl

        channels = {name: self.require(dataset, ds) for name, dataset in self.channels.items()}
        rows = {name: text_rows(folder, header=True) for name, folder in channels.items()}
        empty = [name for name, n in rows.items() if n == 0]
        if empty:  # Vertex would refuse the dataset; say so before the search starts
            raise ValueError(
                f"{self.task_id}: channel {empty[0]} ({self.channels[empty[0]]}/ds={ds}) holds no rows: "
                "nothing to train on or validate with"
            )
        with staged({"model": self.lake.uri(self.destination, ds)}) as out:
            result = automl.train(
                channels=channels,
                target_column=self.target_column,
                column_specs=self.column_specs,
                objective=self.objective,
                time_budget_s=self.time_budget_s,
                model_out=out["model"],
                log=self.log.info,
                seed=self.seed,
            )
            checked = self.gate(ds, {}, result.metrics)  # a model below the gate never replaces the day's
        return {
            "rows_in": sum(rows.values()),
            "channels": rows,
            "metrics": result.metrics,
            "peak_rss_mb": round(result.process.peak_rss_bytes / 2**20, 1),
            **checked,
        }
