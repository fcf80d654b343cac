"""Vertex AI batch prediction's JSON Lines contract for tabular classification, both ways.

The inference channel is CSV lines without a header: the row's id first, then the features in
the training set's order. A BatchPredictionJob on an AutoML tabular model reads JSON Lines
objects, one per instance, and writes one JSON Lines object per instance. Both targets convert
the same way: the cloud around the BatchPredictionJob, the local target around FLAML's model
(water.targets.local.engines.automl), so the lines the pipeline reads are the same.

- `instances_jsonl`: CSV lines -> `{"id": ..., "<feature>": "<value>", ...}` lines. The id
  travels in the instance as a field the job excludes from what the model sees
  (BatchPredictionJob.instanceConfig.excludedFields = [ID_FIELD]); Vertex attaches excluded
  fields to the output when no keyField is set, so every answer names its row. Values stay
  the CSV's text (Vertex reads CSV fields as strings too); an empty field is null (missing).
- `prediction_lines`: the job's output lines -> CSV lines `id,class,confidence` (the class
  with the highest score), what the SageMaker transform and the custom Vertex job write.

The output shape, from Vertex AI's reference: each output line is a PredictionResult,
`{"instance": {...}, "prediction": <value>}`, or `{"instance": {...}, "error": {"status",
"message"}}` for an instance that failed (those go to errors_NNNN files); for AutoML tabular
classification the prediction is a TabularClassificationPredictionResult,
`{"classes": [string], "scores": [number]}`, the N-th score being the confidence in the N-th
class (cloud.google.com/vertex-ai/docs: REST reference, Shared.Types PredictionResult and
TabularClassificationPredictionResult; BatchPredictionJob.InstanceConfig.excludedFields).

Standard library only: the cloud target's task runs it without the local engines.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

ID_FIELD = "id"  # the instance field that carries the row's id (excluded from the model's input)


class PredictionFormatError(ValueError):
    """A line that is not what the contract says, naming the file and the line."""

    def __init__(self, source: str, line: int, problem: str):
        self.source, self.line = source, line
        super().__init__(f"{source} line {line}: {problem}")


def instances_jsonl(
    rows: Iterable[str],
    feature_names: Sequence[str],
    *,
    source: str = "<instances>",
    id_field: str = ID_FIELD,
) -> Iterator[str]:
    """One JSON object per CSV line (no header; the id, then the features in `feature_names`'
    order), without a trailing newline. Blank lines are skipped; a line with another number of
    fields raises PredictionFormatError."""
    if id_field in feature_names:
        raise ValueError(f"feature {id_field!r} has the id field's name; name the id field otherwise")
    expected = len(feature_names) + 1
    for number, line in enumerate(rows, start=1):
        if not line.strip():
            continue
        fields = next(csv.reader([line.rstrip("\r\n")]))
        if len(fields) != expected:
            raise PredictionFormatError(
                source, number, f"{len(fields)} fields, expected {expected} (the id, then {len(feature_names)} features)"
            )
        instance: dict[str, str | None] = {id_field: fields[0]}
        instance.update((name, value if value != "" else None) for name, value in zip(feature_names, fields[1:], strict=True))
        yield json.dumps(instance, separators=(",", ":"))


def prediction_lines(
    lines: Iterable[str],
    classes: Sequence[str] | None = None,
    *,
    source: str = "<predictions>",
    id_field: str = ID_FIELD,
) -> Iterator[str]:
    """`id,class,confidence` for each output line of the job (no trailing newline): the class
    with the highest score (the first of equals) and that score, to 6 decimals. With `classes`
    (the spec's), a class the model answers that is not among them raises; so does any line
    that is not a prediction (malformed JSON, an error result, a missing id, classes and scores
    that do not pair up)."""
    allowed = set(classes) if classes is not None else None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionFormatError(source, number, f"not JSON ({exc.msg})") from None
        if not isinstance(result, dict):
            raise PredictionFormatError(source, number, "not a JSON object")
        if "error" in result:
            error = result["error"] if isinstance(result["error"], dict) else {}
            raise PredictionFormatError(
                source, number, f"the prediction failed: {error.get('status', '?')}: {error.get('message', result['error'])}"
            )
        instance, prediction = result.get("instance"), result.get("prediction")
        if not isinstance(instance, dict) or not isinstance(instance.get(id_field), str | int | float):
            raise PredictionFormatError(source, number, f'no "instance" object with the {id_field!r} field')
        if not isinstance(prediction, dict):
            raise PredictionFormatError(source, number, 'no "prediction" object')
        label, score = _best(prediction, source, number)
        if allowed is not None:
            unknown = [c for c in prediction["classes"] if c not in allowed]
            if unknown:
                raise PredictionFormatError(
                    source, number, f"class {unknown[0]!r} is not among the spec's classes {list(classes or [])}"
                )
        yield _csv_line([str(instance[id_field]), label, repr(round(score, 6))])


def _best(prediction: dict[str, Any], source: str, number: int) -> tuple[str, float]:
    labels, scores = prediction.get("classes"), prediction.get("scores")
    if not isinstance(labels, list) or not isinstance(scores, list) or not labels or len(labels) != len(scores):
        raise PredictionFormatError(
            source, number, 'the prediction needs "classes" and "scores" lists of the same, non-zero length'
        )
    if not all(isinstance(c, str) for c in labels):
        raise PredictionFormatError(source, number, '"classes" holds a value that is not a string')
    if not all(isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in scores):
        raise PredictionFormatError(source, number, '"scores" holds a value that is not a finite number')
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return labels[best], float(scores[best])


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()
