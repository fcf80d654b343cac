"""Vertex AI requests built from a pipeline's spec, as plain dicts, and their offline check.

The cloud target's Vertex builders (water.targets.cloud.target) take their requests from here,
in the snake_case form google-cloud-aiplatform's types take (what the provider operators hand
to the API clients):

- `custom_training_job`: the CustomJob of a `vertex_custom_training` step: the training
  script from a Python package on the prebuilt image (CreateCustomJobOperator), the channels
  as AIP_TRAINING_DATA_URI, AIP_VALIDATION_DATA_URI, AIP_TEST_DATA_URI (CSV files by
  wildcard in the exchange), the model to AIP_MODEL_DIR, which Vertex sets to
  `<base_output_directory>/model/`: the exchange folder of the step's `writes`.
- `batch_prediction_custom_job`: the CustomJob of a `vertex_batch_prediction` step with a
  custom model: the handler driver (water/targets/local/engines/transform_container.py,
  packaged beside the inference script) runs the model's inference handlers over the input
  files, reading and writing through the Cloud Storage FUSE mount (/gcs/<bucket>/...).
- `tabular_dataset` and `automl_training_pipeline`: the managed tabular dataset of a
  `vertex_automl_tabular` step (CreateDatasetOperator) and the TrainingPipeline the SDK's
  AutoMLTabularTrainingJob sends for CreateAutoMLTabularTrainingJobOperator.
- `batch_prediction_job`: the BatchPredictionJob of a `vertex_batch_prediction` step with an
  AutoML model (CreateBatchPredictionJobOperator), JSONL instances in, JSONL predictions out.

Nothing here imports google.cloud: the DAG file builds these requests at every parse.
`validate()` checks them with google-cloud-aiplatform's own message types (proto-plus refuses
a field the API does not have; the AutoML inputs, a Struct, are checked against the training
definition's own message, AutoMlTablesInputs) and raises water.spec.SpecError naming the spec
file and the step field a bad value came from. `water validate` runs it for every spec with a
Vertex step, tests/contract/test_vertex_requests.py for the shipped specs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from water.spec import (
    VERTEX_CHANNEL_VARIABLES,
    VERTEX_PACKAGE,
    PipelineSpec,
    SpecError,
    VertexAutoMLTabularStep,
    VertexBatchPredictionStep,
    VertexCustomTrainingStep,
)
from water.vertex_predictions import ID_FIELD

# The schemata the SDK names (google.cloud.aiplatform.schema; tests check they are the same).
TABULAR_DATASET_SCHEMA = "gs://google-cloud-aiplatform/schema/dataset/metadata/tabular_1.0.0.yaml"
AUTOML_TABULAR_DEFINITION = "gs://google-cloud-aiplatform/schema/trainingjob/definition/automl_tabular_1.0.0.yaml"
GCS_MOUNT = "/gcs"  # where a Vertex job sees gs://<bucket>/<path>: /gcs/<bucket>/<path>
PACKAGE = VERTEX_PACKAGE  # the Python package a CustomJob installs (water.spec)
PACKAGE_VERSION = "0.0.0"
DRIVER = "transform_container.py"  # the handler driver, packaged beside the inference script
MODEL_FOLDER = "model"  # Vertex's AIP_MODEL_DIR is <base_output_directory>/model/
TEMPLATE = re.compile(r"\{\{.*?\}\}")
LABEL = re.compile(r"^[a-z0-9_\-]{0,63}$")  # Vertex label values (keys also start with a letter)


@dataclass(frozen=True)
class VertexPlace:
    """Where a pipeline's Vertex work runs: the Google Cloud project and region, the exchange on
    GCS (WATER_GCS_STAGING: `<exchange>/<pipeline>/<dataset>/ds=…/`, as the BigQuery steps
    use it) and the service account the jobs run as."""

    project: str
    region: str
    exchange: str  # gs://bucket/prefix
    service_account: str
    pipeline: str

    def folder(self, dataset: str, ds: str = "{{ ds }}") -> str:
        """A dataset's exchange folder for one day (no trailing slash)."""
        return f"{self.exchange}/{self.pipeline}/{dataset}/ds={ds}"

    def model_dir(self, dataset: str) -> str:
        """Where a model dataset's files are on GCS: AIP_MODEL_DIR of the job that trained it."""
        return f"{self.folder(dataset)}/{MODEL_FOLDER}"

    def code(self, step: str) -> str:
        """A step's code for one day: the package, and its files unpacked under src/."""
        return self.folder(f"_code/{step}")

    def package_uri(self, step: str) -> str:
        return f"{self.code(step)}/{PACKAGE}-{PACKAGE_VERSION}.tar.gz"

    def sources(self, step: str) -> str:
        return f"{self.code(step)}/src"

    def model_resource(self, model_id: str) -> str:
        return f"projects/{self.project}/locations/{self.region}/models/{model_id}"


# Stand-ins for the deployment's settings where a spec is validated without them (`water
# validate` on a laptop): no field's validity depends on these values.
EXAMPLE_PLACE = {
    "project": "water-example",
    "region": "europe-west4",
    "exchange": "gs://water-example-exchange/water",
    "service_account": "water-vertex@water-example.iam.gserviceaccount.com",
}


def mounted(uri: str) -> str:
    """gs://bucket/path as a Vertex job reads it: /gcs/bucket/path."""
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    return f"{GCS_MOUNT}/{uri.removeprefix('gs://')}"


def display_name(pipeline: str, step: str, per_try: bool = True) -> str:
    """A job's display name: water-<pipeline>-<step>, and the day and try where templated."""
    stem = f"water-{pipeline}-{step}".replace("_", "-")
    return f"{stem}-{{{{ ds_nodash }}}}-{{{{ ti.try_number }}}}" if per_try else stem


def labels(pipeline: str, step: str, per_day: bool = True) -> dict[str, str]:
    """Labels of every Vertex resource water creates (`ds` only where the field is templated)."""
    return {"app": "water", "pipeline": pipeline, "step": step, **({"ds": "{{ ds }}"} if per_day else {})}


def script_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """`--name value` for each hyperparameter: what SageMaker's script mode passes the script."""
    args: list[str] = []
    for name, value in hyperparameters.items():
        args += [f"--{name}", str(value)]
    return args


def module_of(entry_point: str) -> str:
    """The module a CustomJob runs (`python -m`): the script in the package `trainer`."""
    return f"{PACKAGE}.{Path(entry_point).stem}"


def seconds(duration: timedelta) -> str:
    """A google.protobuf.Duration as proto-plus and the REST API take it: '3600s'."""
    return f"{int(duration.total_seconds())}s"


def _worker_pool(machine_type: str, disk_gb: int, package: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine_spec": {"machine_type": machine_type},
        "replica_count": 1,
        "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": disk_gb},
        "python_package_spec": package,
    }


def custom_training_job(place: VertexPlace, name: str, step: VertexCustomTrainingStep) -> dict[str, Any]:
    """The CustomJob of a vertex_custom_training step (CreateCustomJobOperator's `custom_job`)."""
    env = [
        {"name": VERTEX_CHANNEL_VARIABLES[channel], "value": f"{place.folder(dataset)}/*.csv"}
        for channel, dataset in step.reads.items()
    ]
    env.append({"name": "AIP_DATA_FORMAT", "value": "csv"})
    package = {
        "executor_image_uri": step.executor_image,
        "package_uris": [place.package_uri(name)],
        "python_module": module_of(step.entry_point),
        "args": script_args(step.hyperparameters),
        "env": env,
    }
    return {
        "display_name": display_name(place.pipeline, name),
        "job_spec": {
            "worker_pool_specs": [_worker_pool(step.machine_type, step.boot_disk_size_gb, package)],
            "scheduling": {"timeout": seconds(step.max_runtime)},
            "service_account": place.service_account,
            # AIP_MODEL_DIR = <this>/model/: the exchange folder of the model (VertexPlace.model_dir)
            "base_output_directory": {"output_uri_prefix": place.folder(step.writes)},
        },
        "labels": labels(place.pipeline, name),
    }


def batch_prediction_custom_job(place: VertexPlace, name: str, step: VertexBatchPredictionStep) -> dict[str, Any]:
    """The CustomJob of a vertex_batch_prediction step with a custom model: the handler driver
    runs the inference handlers (`entry_point`) over the input files, one replica."""
    assert step.entry_point is not None, name  # the spec's validation: a custom model names its handlers
    args = [
        "--model-dir", mounted(place.model_dir(step.model)),
        "--code-dir", mounted(place.sources(name)),
        "--program", Path(step.entry_point).name,
        "--input", mounted(place.folder(step.input)),
        "--output", mounted(place.folder(step.writes)),
        "--max-payload-mb", str(step.max_payload_mb),
    ]  # fmt: skip
    package = {
        "executor_image_uri": step.executor_image,
        "package_uris": [place.package_uri(name)],
        "python_module": module_of(DRIVER),
        "args": args,
    }
    return {
        "display_name": display_name(place.pipeline, name),
        "job_spec": {
            "worker_pool_specs": [_worker_pool(step.machine_type, 100, package)],
            "scheduling": {"timeout": seconds(step.timeout)},
            "service_account": place.service_account,
        },
        "labels": labels(place.pipeline, name),
    }


def channel_uris(place: VertexPlace, step: VertexAutoMLTabularStep) -> list[str]:
    """The CSV files of the step's channels in the exchange (train, then validation, test)."""
    return [f"{place.folder(dataset)}/*.csv" for _, dataset in sorted(step.reads.items(), key=lambda kv: kv[0] != "train")]


def tabular_dataset(place: VertexPlace, name: str, step: VertexAutoMLTabularStep) -> dict[str, Any]:
    """The managed tabular dataset of an AutoML step, made of its channels' CSV files
    (CreateDatasetOperator's `dataset`, as the SDK's TabularDataset.create sends it)."""
    return {
        "display_name": display_name(place.pipeline, name),
        "metadata_schema_uri": TABULAR_DATASET_SCHEMA,
        "metadata": {"inputConfig": {"gcsSource": {"uri": channel_uris(place, step)}}},
        "labels": labels(place.pipeline, name),
    }


def automl_inputs(step: VertexAutoMLTabularStep) -> dict[str, Any]:
    """The training task inputs (AutoMlTablesInputs, as JSON) the SDK's AutoMLTabularTrainingJob
    sends for the operator's arguments (automl_arguments)."""
    return {
        "targetColumn": step.target_column,
        "predictionType": "classification",
        "transformations": [{kind: {"column_name": column}} for column, kind in step.column_specs.items()],
        "trainBudgetMilliNodeHours": step.budget_milli_node_hours,
        "optimizationObjective": step.optimization_objective,
        "disableEarlyStopping": step.disable_early_stopping,
    }


def automl_training_pipeline(place: VertexPlace, name: str, step: VertexAutoMLTabularStep, dataset_id: str) -> dict[str, Any]:
    """The TrainingPipeline CreateAutoMLTabularTrainingJobOperator has the SDK create."""
    return {
        "display_name": display_name(place.pipeline, name, per_try=False),  # the operator does not template it
        "training_task_definition": AUTOML_TABULAR_DEFINITION,
        "training_task_inputs": automl_inputs(step),
        "model_to_upload": {"display_name": display_name(place.pipeline, name, per_try=False)},
        "input_data_config": {"dataset_id": dataset_id},
        "labels": labels(place.pipeline, name, per_day=False),
    }


def automl_arguments(place: VertexPlace, name: str, step: VertexAutoMLTabularStep, dataset_id: str) -> dict[str, Any]:
    """CreateAutoMLTabularTrainingJobOperator's arguments, from the same TrainingPipeline."""
    pipeline = automl_training_pipeline(place, name, step, dataset_id)
    inputs = pipeline["training_task_inputs"]
    return {
        "project_id": place.project,
        "region": place.region,
        "display_name": pipeline["display_name"],
        "dataset_id": pipeline["input_data_config"]["dataset_id"],
        "target_column": inputs["targetColumn"],
        "optimization_prediction_type": inputs["predictionType"],
        "optimization_objective": inputs["optimizationObjective"],
        "column_specs": {next(iter(t.values()))["column_name"]: next(iter(t)) for t in inputs["transformations"]},
        "budget_milli_node_hours": inputs["trainBudgetMilliNodeHours"],
        "disable_early_stopping": inputs["disableEarlyStopping"],
        "model_display_name": pipeline["model_to_upload"]["display_name"],
        "labels": pipeline["labels"],
        "model_labels": pipeline["labels"],
    }


def batch_prediction_job(place: VertexPlace, name: str, step: VertexBatchPredictionStep, model: str) -> dict[str, Any]:
    """The BatchPredictionJob of a vertex_batch_prediction step with an AutoML model: the JSONL
    instances in the input's exchange folder, the predictions (JSONL) under the output's."""
    return {
        "display_name": display_name(place.pipeline, name),
        "model": model,
        "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [f"{place.folder(step.input)}/*.jsonl"]}},
        # the row's id travels in each instance; the model must not see it, the output names it
        "instance_config": {"excluded_fields": [ID_FIELD]},
        "output_config": {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": place.folder(step.writes)}},
        "dedicated_resources": {
            "machine_spec": {"machine_type": step.machine_type},
            "starting_replica_count": step.replica_count,
            "max_replica_count": step.replica_count,
        },
        "service_account": place.service_account,
        "labels": labels(place.pipeline, name),
    }


def batch_prediction_arguments(place: VertexPlace, name: str, step: VertexBatchPredictionStep, model: str) -> dict[str, Any]:
    """CreateBatchPredictionJobOperator's arguments, from the same BatchPredictionJob."""
    job = batch_prediction_job(place, name, step, model)
    resources = job["dedicated_resources"]
    return {
        "project_id": place.project,
        "region": place.region,
        "job_display_name": job["display_name"],
        "model_name": job["model"],
        "instances_format": job["input_config"]["instances_format"],
        "predictions_format": job["output_config"]["predictions_format"],
        "gcs_source": job["input_config"]["gcs_source"]["uris"],
        "gcs_destination_prefix": job["output_config"]["gcs_destination"]["output_uri_prefix"],
        "machine_type": resources["machine_spec"]["machine_type"],
        "starting_replica_count": resources["starting_replica_count"],
        "max_replica_count": resources["max_replica_count"],
        "labels": job["labels"],
    }


# --- every request of a spec, and where each field comes from --------------------------------


@dataclass(frozen=True)
class VertexRequest:
    """One request a Vertex step sends: the aiplatform_v1 type it is (`kind`), its body, and
    which step field each part of it comes from (request path prefix -> field)."""

    step: str
    kind: str  # CustomJob, Dataset, TrainingPipeline, BatchPredictionJob
    body: dict[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def field_of(self, path: str) -> str:
        """The spec field (`steps.<name>.<field>`) a request path comes from: its longest known prefix."""
        best = max((p for p in self.sources if path == p or path.startswith(p + ".")), key=len, default=None)
        return f"steps.{self.step}.{self.sources[best] if best is not None else 'kind'}"


_POOL = "job_spec.worker_pool_specs.0"
CUSTOM_TRAINING_SOURCES = {
    "display_name": "kind",
    "labels": "kind",
    f"{_POOL}.machine_spec": "machine_type",
    f"{_POOL}.disk_spec": "boot_disk_size_gb",
    f"{_POOL}.python_package_spec.executor_image_uri": "executor_image",
    f"{_POOL}.python_package_spec.python_module": "entry_point",
    f"{_POOL}.python_package_spec.args": "hyperparameters",
    f"{_POOL}.python_package_spec.env": "reads",
    "job_spec.scheduling": "max_runtime",
    "job_spec.base_output_directory": "writes",
}
CUSTOM_PREDICTION_SOURCES = {
    "display_name": "kind",
    "labels": "kind",
    f"{_POOL}.machine_spec": "machine_type",
    f"{_POOL}.python_package_spec.executor_image_uri": "executor_image",
    f"{_POOL}.python_package_spec.args": "entry_point",
    "job_spec.scheduling": "timeout",
}
DATASET_SOURCES = {"metadata": "reads"}
AUTOML_SOURCES = {
    "training_task_inputs.targetColumn": "target_column",
    "training_task_inputs.transformations": "column_specs",
    "training_task_inputs.trainBudgetMilliNodeHours": "budget_milli_node_hours",
    "training_task_inputs.optimizationObjective": "optimization_objective",
    "training_task_inputs.disableEarlyStopping": "disable_early_stopping",
}
BATCH_SOURCES = {
    "display_name": "kind",
    "labels": "kind",
    "model": "model",
    "input_config": "input",
    "output_config": "writes",
    "dedicated_resources.machine_spec": "machine_type",
    "dedicated_resources": "replica_count",
}


def spec_requests(spec: PipelineSpec, place: VertexPlace | None = None) -> list[VertexRequest]:
    """Every Vertex request the spec's steps send (with EXAMPLE_PLACE's settings by default)."""
    place = place or VertexPlace(pipeline=spec.name, **EXAMPLE_PLACE)
    found: list[VertexRequest] = []
    for name, step in spec.steps.items():
        if isinstance(step, VertexCustomTrainingStep):
            found.append(VertexRequest(name, "CustomJob", custom_training_job(place, name, step), CUSTOM_TRAINING_SOURCES))
        elif isinstance(step, VertexAutoMLTabularStep):
            found.append(VertexRequest(name, "Dataset", tabular_dataset(place, name, step), DATASET_SOURCES))
            dataset = "{{ ti.xcom_pull(task_ids='" + name + ".dataset', key='dataset_id') }}"
            pipeline = automl_training_pipeline(place, name, step, dataset)
            found.append(VertexRequest(name, "TrainingPipeline", pipeline, AUTOML_SOURCES))
        elif isinstance(step, VertexBatchPredictionStep):
            if step.entry_point is not None:
                job = batch_prediction_custom_job(place, name, step)
                found.append(VertexRequest(name, "CustomJob", job, CUSTOM_PREDICTION_SOURCES))
            else:
                model = place.model_resource("{{ model_id }}")
                found.append(
                    VertexRequest(name, "BatchPredictionJob", batch_prediction_job(place, name, step, model), BATCH_SOURCES)
                )
    return found


# --- the offline check ------------------------------------------------------------------------

# What a template renders to for the check (a label value must be one when rendered).
SAMPLE = {"{{ ds }}": "2026-11-01", "{{ ds_nodash }}": "20261101", "{{ ti.try_number }}": "1"}


def rendered(value: Any) -> Any:
    """The request as a run renders it: the day and try as a sample, any other template as `1`."""
    if isinstance(value, dict):
        return {k: rendered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rendered(v) for v in value]
    if isinstance(value, str):
        for template, sample in SAMPLE.items():
            value = value.replace(template, sample)
        return TEMPLATE.sub("1", value)
    return value


def _unknown_fields(descriptor: Any, body: Mapping[str, Any], path: str = "", json_names: bool = False) -> Iterator[str]:
    """The paths of the body's keys the message (a protobuf descriptor) has no field for."""
    by_name = dict(descriptor.fields_by_name)
    if json_names:
        by_name.update({f.json_name: f for f in descriptor.fields})
    for key, value in body.items():
        where = f"{path}{key}"
        spec = by_name.get(key)
        if spec is None:
            yield where
            continue
        message = spec.message_type
        if message is None or message.full_name.startswith("google.protobuf."):
            continue  # a scalar, or a well-known type (Struct, Duration): proto-plus checks its value
        if message.GetOptions().map_entry:
            entry = message.fields_by_name["value"].message_type
            if entry is not None and isinstance(value, Mapping):
                for k, item in value.items():
                    if isinstance(item, Mapping):
                        yield from _unknown_fields(entry, item, f"{where}.{k}.", json_names)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _unknown_fields(message, item, f"{where}.{i}.", json_names)
        elif isinstance(value, Mapping):
            yield from _unknown_fields(message, value, f"{where}.", json_names)


def _without(body: Any, path: list[str]) -> Any:
    """A copy of the body without the part at `path` (keys, list indexes as digits)."""
    if not path:
        return None
    if isinstance(body, dict) and path[0] in body:
        rest = _without(body[path[0]], path[1:])
        return {k: v for k, v in body.items() if k != path[0]} | ({path[0]: rest} if rest is not None else {})
    if isinstance(body, list) and path[0].isdigit() and int(path[0]) < len(body):
        at = int(path[0])
        rest = _without(body[at], path[1:])
        return [*body[:at], *([rest] if rest is not None else []), *body[at + 1 :]]
    return body


def _culprit(kind: Any, body: dict[str, Any], sources: Mapping[str, str]) -> str:
    """The request path (one of `sources`, the most specific first) without which the type
    takes the request: where a value it refuses is. "" when none is."""
    for path in sorted(sources, key=len, reverse=True):
        trimmed = _without(body, path.split("."))
        if trimmed == body:
            continue
        try:
            kind(trimmed)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        return path
    return ""


def request_problems(request: VertexRequest) -> list[tuple[str, str]]:
    """(spec field, message) for each way the request is not what the Vertex API takes."""
    from google.cloud import aiplatform_v1

    kind = getattr(aiplatform_v1, request.kind)
    body = rendered(request.body)
    what = f"the Vertex AI {request.kind} request"
    problems = [
        (request.field_of(path), f"{what} has no field {path!r} (google-cloud-aiplatform's aiplatform_v1.{request.kind})")
        for path in _unknown_fields(kind.pb().DESCRIPTOR, body)
    ]
    if not problems:
        try:
            kind(body)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            path = _culprit(kind, body, request.sources)
            at = f" at {path!r}" if path else ""
            problems.append((request.field_of(path), f"{what} is refused by aiplatform_v1.{request.kind}{at}: {exc}"))
    if request.kind == "TrainingPipeline":
        # the Vertex AI SDK's schema types: importing them imports the whole SDK (1.5 s)
        from google.cloud.aiplatform.v1.schema.trainingjob.definition_v1.types import AutoMlTablesInputs

        if body.get("training_task_definition") != AUTOML_TABULAR_DEFINITION:
            problems.append((request.field_of("training_task_definition"), f"{what} is not an AutoML tabular training"))
        inputs = body.get("training_task_inputs") or {}
        descriptor = AutoMlTablesInputs.pb().DESCRIPTOR
        for path in _unknown_fields(descriptor, inputs, "training_task_inputs.", json_names=True):
            problems.append(
                (request.field_of(path), f"{what} has no field {path!r} (AutoMlTablesInputs of {AUTOML_TABULAR_DEFINITION})")
            )
        if not problems:
            try:
                AutoMlTablesInputs.from_json(json.dumps(inputs))
            except Exception as exc:  # json_format.ParseError: a value of the wrong type
                problems.append((request.field_of("training_task_inputs"), f"{what}'s training_task_inputs: {exc}"))
    for key, value in (body.get("labels") or {}).items():
        if not (LABEL.match(str(value)) and re.match(r"^[a-z][a-z0-9_\-]{0,62}$", key)):
            problems.append(
                (
                    request.field_of("labels"),
                    f"{what}: label {key}={value!r} is not lower-case letters, digits, _ or - (at most 63)",
                )
            )
    if len(str(body.get("display_name", ""))) > 128:
        problems.append((request.field_of("display_name"), f"{what}: display name longer than 128 characters"))
    return problems


def validate(requests: list[VertexRequest], spec_file: Path | str) -> None:
    """Check each request with google-cloud-aiplatform's types; SpecError naming the spec file
    and the step field of every problem."""
    problems = [problem for request in requests for problem in request_problems(request)]
    if problems:
        raise SpecError(spec_file, problems)


def validate_spec(spec: PipelineSpec, spec_file: Path | str, place: VertexPlace | None = None) -> None:
    """The check of `water validate`: every Vertex request of the spec."""
    validate(spec_requests(spec, place), spec_file)


def has_vertex_steps(spec: PipelineSpec) -> bool:
    return any(
        isinstance(s, VertexCustomTrainingStep | VertexAutoMLTabularStep | VertexBatchPredictionStep) for s in spec.steps.values()
    )
