"""Vertex AI AutoML tabular classification, run locally: a real AutoML search (FLAML) on the same rows.

`train` runs FLAML's AutoML, as a process under limits (run_limited), on the step's train
channel (CSV files with a header) for the spec's local_time_budget, choosing among LightGBM's
and scikit-learn's learners by the metric the spec's optimization_objective names
(OBJECTIVE_METRICS); the validation channel is the search's holdout and gives the reported
`validation:accuracy` (without one, a seeded tenth of the training rows is held out, as
AutoML splits by itself). The features are column_specs' columns, typed as AutoML takes them:
numeric -> float (a value that is not a number is missing), categorical -> category, text ->
a string column (FLAML takes it as categorical: no tokens), timestamp -> datetime (FLAML adds
its parts), auto -> numeric when every value reads as a number, else categorical. It prints
`validation:accuracy=...` and writes into model_out:
- model.joblib: {"transformer": FLAML's fitted feature transformer, "estimator": the best
  learner, "classes": [...]}: what scoring needs, not the AutoML object (it keeps the rows);
- schema.json: the training CSV's feature order (what an inference line holds after its id),
  the features and their types, the classes, the best learner and its config, the budget;
- metrics.json: the metrics it printed.

`predict` scores every inference file (CSV lines without header: the id, then the training
CSV's features in order) as a BatchPredictionJob on the AutoML model does, through
water.vertex_predictions, the conversion the cloud target runs around the real job: CSV lines
-> JSONL instances -> the model -> `{"instance", "prediction": {"classes", "scores"}}` lines
(`<file>.jsonl`, kept in work_dir when given) -> `<file>.out`, CSV lines `id,class,confidence`.

The module is also the process both run (`python -m water.targets.local.engines.automl`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from water import vertex_predictions
from water.targets.local.engines.process import ProcessResult, python_executable, run_limited

if TYPE_CHECKING:
    import pandas as pd

# The spec's optimization_objective -> FLAML's metric. Vertex takes all three for two classes
# and only minimize-log-loss for more (AutoMLTabularTrainingJob's optimization_objective).
OBJECTIVE_METRICS: dict[str, str] = {
    "minimize-log-loss": "log_loss",
    "maximize-au-roc": "roc_auc",
    "maximize-au-prc": "ap",
}
MULTICLASS_OBJECTIVES = ("minimize-log-loss",)
# LightGBM and scikit-learn learners (FLAML's names); no XGBoost or CatBoost search.
LEARNERS = ("lgbm", "rf", "extra_tree", "lrl1")
MODEL_FILE, SCHEMA_FILE, METRICS_FILE = "model.joblib", "schema.json", "metrics.json"
METRIC_DEFINITIONS = [(name, rf"{name}=([0-9.]+)") for name in ("validation:accuracy", "test:accuracy")]
HOLDOUT_SHARE = 0.1  # of the training rows, when the step reads no validation channel
BATCH_ROWS = 20_000  # inference instances scored at a time
# The search's box: Vertex runs it on nodes of its own; locally, within this machine.
MAX_CPU, MAX_MEMORY = 4, 8 * 2**30


@dataclass(frozen=True)
class TrainingResult:
    process: ProcessResult
    metrics: dict[str, float]


def limits() -> tuple[float, int]:
    """(vCPU, memory bytes) the search and the scoring run with, within this machine."""
    cpu = float(min(MAX_CPU, psutil.cpu_count() or 1))
    return cpu, int(min(MAX_MEMORY, psutil.virtual_memory().total * 3 // 4))


def _environment() -> dict[str, str]:
    plugins = str(Path(__file__).resolve().parents[4])
    return {"PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))}


def train(
    *,
    channels: dict[str, Path],
    target_column: str,
    column_specs: dict[str, str],
    objective: str,
    time_budget_s: float,
    model_out: Path,
    log: Callable[[str], None],
    seed: int = 0,
) -> TrainingResult:
    """Search for `time_budget_s` seconds; write model.joblib, schema.json and metrics.json to model_out."""
    from water.quality import parse_metrics

    if "train" not in channels:
        raise ValueError("AutoML tabular needs a train channel")
    if objective not in OBJECTIVE_METRICS:
        raise ValueError(f"optimization_objective {objective!r} is not one of {', '.join(OBJECTIVE_METRICS)}")
    model_out.mkdir(parents=True, exist_ok=True)
    job = {
        "channels": {name: str(folder) for name, folder in channels.items()},
        "target_column": target_column,
        "column_specs": dict(column_specs),
        "objective": objective,
        "time_budget_s": float(time_budget_s),
        "model_out": str(model_out),
        "seed": seed,
    }
    cpu, memory = limits()
    argv = [python_executable(), "-m", __name__, "search", "--job", json.dumps(job)]
    process = run_limited(argv, name="AutoML tabular search", memory_bytes=memory, cpu=cpu, env=_environment(), log=log)
    metrics = parse_metrics(process.output, METRIC_DEFINITIONS)
    if "validation:accuracy" not in metrics:
        raise RuntimeError("the AutoML search reported no validation:accuracy")
    return TrainingResult(process, metrics)


def predict(
    model_dir: Path,
    input_dir: Path,
    output_dir: Path,
    log: Callable[[str], None],
    *,
    classes: Sequence[str] | None = None,
    work_dir: Path | None = None,
) -> ProcessResult:
    """Score every file of input_dir into output_dir/<file>.out (`id,class,confidence` lines);
    the Vertex JSONL answers are kept in work_dir (else a temporary folder). With `classes` (the
    spec's), a class the model knows that is not among them fails."""
    cpu, memory = limits()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="automl-predict-") as scratch:
        jsonl_dir = work_dir or Path(scratch)
        argv = [
            python_executable(),
            "-m",
            __name__,
            "predict",
            "--model-dir",
            str(model_dir),
            "--input",
            str(input_dir),
            "--output",
            str(output_dir),
            "--jsonl-dir",
            str(jsonl_dir),
        ]
        if classes is not None:
            argv += ["--classes", json.dumps(list(classes))]
        return run_limited(argv, name="AutoML batch prediction", memory_bytes=memory, cpu=cpu, env=_environment(), log=log)


# --- the process ----------------------------------------------------------------------------


def _without_spark() -> None:
    """FLAML imports pyspark when it is there (for a Spark backend this engine does not use):
    a second or two of every process. This process keeps it out."""
    sys.modules.setdefault("pyspark", None)  # type: ignore[arg-type]


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))


def _read_channel(name: str, folder: Path, needed: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """A channel's rows (every value a string; "" is missing) and its header, the same in every file."""
    import pandas as pd

    frames: list[pd.DataFrame] = []
    header: list[str] | None = None
    for path in _data_files(folder):
        if path.stat().st_size == 0:
            continue
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        where = f"{name} channel file {path.relative_to(folder)}"
        missing = [column for column in needed if column not in frame.columns]
        if missing:
            raise SystemExit(
                f"{where}: no column {missing[0]!r} (named by column_specs or target_column); "
                f"its header: {', '.join(frame.columns)}"
            )
        if header is None:
            header = list(frame.columns)
        elif list(frame.columns) != header:
            raise SystemExit(f"{where}: its header differs from the channel's first file ({', '.join(header)})")
        frames.append(frame)
    if header is None or not sum(len(f) for f in frames):
        raise SystemExit(f"the {name} channel holds no rows ({folder})")
    return pd.concat(frames, ignore_index=True), header


def resolve_types(frame: pd.DataFrame, column_specs: dict[str, str]) -> dict[str, str]:
    """column -> its type, `auto` decided on the training rows: numeric when every value reads
    as a number, else categorical."""
    import pandas as pd

    resolved = {}
    for column, kind in column_specs.items():
        if kind != "auto":
            resolved[column] = kind
            continue
        values = frame[column][frame[column] != ""]
        resolved[column] = "numeric" if pd.to_numeric(values, errors="coerce").notna().all() else "categorical"
    return resolved


def typed(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """The feature columns (in `types`' order) as the model takes them; missing values are NaN/None."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for column, kind in types.items():
        values = frame[column].where(frame[column].notna() & (frame[column] != ""), None)
        if kind == "numeric":
            columns[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif kind == "categorical":
            columns[column] = values.astype("category")
        elif kind == "timestamp":
            stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
            columns[column] = stamps.dt.tz_localize(None)
        else:  # text
            columns[column] = values.astype(object)
    return pd.DataFrame(columns, index=frame.index)


def _search(job: dict[str, Any]) -> None:
    import warnings

    import numpy as np

    channels = {name: Path(folder) for name, folder in job["channels"].items()}
    target, specs = job["target_column"], dict(job["column_specs"])
    needed = [target, *specs]
    train, header = _read_channel("train", channels["train"], needed)
    features = [column for column in header if column in specs]  # the training CSV's order
    types = resolve_types(train, {column: specs[column] for column in features})
    x_train, y_train = typed(train, types), train[target]
    if (y_train == "").any():
        raise SystemExit(f"the train channel has rows without a {target!r} value")
    classes = sorted(set(y_train))
    if len(classes) < 2:
        raise SystemExit(f"the train channel's {target!r} holds one class ({classes[0]!r}): nothing to classify")
    objective = job["objective"]
    if len(classes) > 2 and objective not in MULTICLASS_OBJECTIVES:
        raise SystemExit(
            f"optimization_objective {objective!r} is for two classes; {target!r} holds {len(classes)} "
            f"({', '.join(classes)}), for which Vertex AutoML takes only {', '.join(MULTICLASS_OBJECTIVES)}"
        )
    if "validation" in channels:
        validation, _ = _read_channel("validation", channels["validation"], needed)
        x_val, y_val = typed(validation, types), validation[target]
        source = "the validation channel"
    else:
        from sklearn.model_selection import train_test_split

        x_train, x_val, y_train, y_val = train_test_split(
            x_train,
            y_train,
            test_size=HOLDOUT_SHARE,
            random_state=job["seed"],
            stratify=y_train if y_train.value_counts().min() >= 2 else None,  # a class of one row cannot be split
        )
        source = f"{HOLDOUT_SHARE:.0%} of the train channel"
    unknown = sorted(set(y_val) - set(classes))
    if unknown:
        raise SystemExit(f"the validation rows hold {target!r} values the training rows do not: {', '.join(unknown)}")

    _without_spark()  # the rows are read and checked: now the search's imports (seconds)
    import joblib
    from flaml import AutoML

    cpu = float(os.environ.get("WATER_CPU_LIMIT", "1"))
    metric = OBJECTIVE_METRICS[objective]
    print(
        f"automl: classification of {target!r} ({', '.join(classes)}) on {len(x_train)} rows, "
        f"{len(features)} features; holdout: {len(x_val)} rows of {source}; metric {metric} "
        f"({objective}); learners {', '.join(LEARNERS)}; budget {job['time_budget_s']:g} s",
        flush=True,
    )
    automl = AutoML()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        automl.fit(
            x_train,
            y_train,
            X_val=x_val,
            y_val=y_val,
            task="classification",
            metric=metric,
            time_budget=job["time_budget_s"],
            estimator_list=list(LEARNERS),
            retrain_full=False,  # the model scored on the holdout is the model kept
            n_jobs=max(1, math.floor(cpu)),
            seed=job["seed"],
            verbose=0,
        )
    if automl.model is None:
        raise SystemExit(f"no learner finished within the time budget of {job['time_budget_s']:g} s; raise local_time_budget")
    model = {"transformer": automl.feature_transformer, "estimator": automl.model, "classes": [str(c) for c in automl.classes_]}

    def accuracy(x: pd.DataFrame, y: pd.Series) -> float:
        best = np.asarray(model["classes"])[_scores(model, x).argmax(axis=1)]
        return float((best == y.to_numpy()).mean())

    metrics = {"validation:accuracy": accuracy(x_val, y_val)}
    if "test" in channels:
        test, _ = _read_channel("test", channels["test"], needed)
        metrics["test:accuracy"] = accuracy(typed(test, types), test[target])
    out = Path(job["model_out"])
    joblib.dump(model, out / MODEL_FILE)
    schema = {
        "inference_columns": [column for column in header if column != target],
        "features": types,
        "column_specs": specs,
        "target_column": target,
        "classes": model["classes"],
        "objective": objective,
        "metric": metric,
        "best_estimator": automl.best_estimator,
        "best_config": _plain(automl.best_config),
        "best_loss": _plain(automl.best_loss),
        "trials": len(automl.config_history),
        "time_budget_s": job["time_budget_s"],
        "rows": {"train": len(x_train), "validation": len(x_val)},
    }
    (out / SCHEMA_FILE).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(
        f"automl: {schema['trials']} trials; best {automl.best_estimator} {json.dumps(schema['best_config'], sort_keys=True)} "
        f"({metric} loss {automl.best_loss:.6f})",
        flush=True,
    )
    for name, value in metrics.items():
        print(f"{name}={value:.6f}", flush=True)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _scores(model: dict[str, Any], x: pd.DataFrame) -> Any:
    return model["estimator"].predict_proba(model["transformer"].transform(x))


def _batches(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(lines, size)):
        yield batch


def _predict(model_dir: Path, input_dir: Path, output_dir: Path, jsonl_dir: Path, classes: list[str] | None) -> None:
    import pandas as pd

    _without_spark()
    import joblib

    schema = json.loads((model_dir / SCHEMA_FILE).read_text())
    inputs = sorted(p for p in input_dir.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not inputs:
        raise SystemExit(f"no input files in {input_dir}")
    if classes is not None:
        unknown = [c for c in schema["classes"] if c not in classes]
        if unknown:
            raise SystemExit(f"the model's class {unknown[0]!r} is not among the spec's classes {classes}")
    model = joblib.load(model_dir / MODEL_FILE)
    features, columns = schema["features"], schema["inference_columns"]
    jsonl_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in inputs:
        answers = jsonl_dir / f"{path.name}.jsonl"
        records = 0
        with open(path, encoding="utf-8", newline="") as rows, open(answers, "w", encoding="utf-8") as out:
            instances = vertex_predictions.instances_jsonl(rows, columns, source=path.name)
            for batch in _batches(instances, BATCH_ROWS):
                parsed = [json.loads(line) for line in batch]
                frame = pd.DataFrame.from_records(parsed, columns=columns)
                scores = _scores(model, typed(frame, features))
                for instance, row in zip(parsed, scores.tolist(), strict=True):
                    prediction = {"classes": model["classes"], "scores": row}
                    out.write(json.dumps({"instance": instance, "prediction": prediction}, separators=(",", ":")) + "\n")
                records += len(parsed)
        with open(answers, encoding="utf-8") as lines, open(output_dir / f"{path.name}.out", "w", encoding="utf-8") as out:
            for line in vertex_predictions.prediction_lines(lines, classes, source=answers.name):
                out.write(line + "\n")
        print(f"predicted {path.name}: {records} instances", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The local AutoML tabular engine's process.")
    commands = parser.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search")
    search.add_argument("--job", required=True, help="the search as JSON (what train() passes)")
    scoring = commands.add_parser("predict")
    scoring.add_argument("--model-dir", required=True, type=Path)
    scoring.add_argument("--input", required=True, type=Path)
    scoring.add_argument("--output", required=True, type=Path)
    scoring.add_argument("--jsonl-dir", required=True, type=Path)
    scoring.add_argument("--classes", help="the spec's classes, a JSON list")
    args = parser.parse_args(argv)
    if args.command == "search":
        _search(json.loads(args.job))
    else:
        classes = json.loads(args.classes) if args.classes else None
        _predict(args.model_dir, args.input, args.output, args.jsonl_dir, classes)


if __name__ == "__main__":
    main()
