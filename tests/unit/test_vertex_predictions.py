"""Vertex AI batch prediction's JSON Lines contract (water.vertex_predictions), both ways."""

from __future__ import annotations

import json

import pytest

from water.vertex_predictions import ID_FIELD, PredictionFormatError, instances_jsonl, prediction_lines

FEATURES = ["is_ios", "n_events", "cook_rate"]
CLASSES = ["cook", "browse", "dormant"]


def answer(instance: dict, classes: list[str], scores: list[float]) -> str:
    """A line of a BatchPredictionJob's output for an AutoML tabular classification model."""
    return json.dumps({"instance": instance, "prediction": {"classes": classes, "scores": scores}})


def test_instances_carry_the_id_and_the_features_by_name():
    rows = ["17,1,12,0.25\n", "\n", "18,0,,0.5\r\n"]
    instances = [json.loads(line) for line in instances_jsonl(rows, FEATURES)]
    assert instances == [
        {ID_FIELD: "17", "is_ios": "1", "n_events": "12", "cook_rate": "0.25"},
        {ID_FIELD: "18", "is_ios": "0", "n_events": None, "cook_rate": "0.5"},  # an empty field is missing
    ]


def test_round_trip_gives_id_argmax_class_and_its_score():
    instances = [json.loads(line) for line in instances_jsonl(["17,1,12,0.25", "18,0,3,0.5", "19,0,0,0"], FEATURES)]
    scores = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.4, 0.4]]  # the last: a tie goes to the first
    output = [answer(instance, ["cook", "browse", "dormant"], row) for instance, row in zip(instances, scores, strict=True)]
    assert list(prediction_lines(output, CLASSES)) == ["17,cook,0.7", "18,dormant,0.6", "19,browse,0.4"]


def test_confidence_is_rounded_to_six_decimals_and_ids_stay_text():
    line = answer({ID_FIELD: "0042", "is_ios": "1"}, ["cook", "browse"], [0.123456789, 0.876543211])
    assert list(prediction_lines([line])) == ["0042,browse,0.876543"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (
            json.dumps({"instance": {ID_FIELD: "1"}, "error": {"status": "INVALID_ARGUMENT", "message": "bad row"}}),
            "INVALID_ARGUMENT: bad row",
        ),
        (json.dumps({"instance": {"is_ios": "1"}, "prediction": {"classes": ["cook"], "scores": [1.0]}}), "'id' field"),
        (json.dumps({"instance": {ID_FIELD: "1"}}), 'no "prediction" object'),
        (answer({ID_FIELD: "1"}, ["cook", "browse"], [1.0]), "same, non-zero length"),
        (answer({ID_FIELD: "1"}, [], []), "same, non-zero length"),
        (answer({ID_FIELD: "1"}, ["cook", "browse"], [0.5, "high"]), "not a finite number"),
        (answer({ID_FIELD: "1"}, ["cook", "browse"], [0.5, float("nan")]), "not a finite number"),
        (answer({ID_FIELD: "1"}, ["cook", "lurker"], [0.9, 0.1]), "class 'lurker' is not among the spec's classes"),
    ],
)
def test_a_line_that_is_not_a_prediction_fails_naming_file_and_line(line, problem):
    good = answer({ID_FIELD: "7"}, ["cook", "browse"], [0.9, 0.1])
    with pytest.raises(PredictionFormatError, match=r"^predictions_0001\.jsonl line 3: ") as failure:
        list(prediction_lines([good, "", line], CLASSES, source="predictions_0001.jsonl"))
    assert problem in str(failure.value)
    assert (failure.value.source, failure.value.line) == ("predictions_0001.jsonl", 3)


def test_without_the_spec_classes_any_class_is_taken():
    assert list(prediction_lines([answer({ID_FIELD: "1"}, ["lurker", "cook"], [0.9, 0.1])])) == ["1,lurker,0.9"]


def test_an_instance_line_with_another_number_of_fields_fails_naming_file_and_line():
    with pytest.raises(PredictionFormatError, match=r"^part-00003\.csv line 2: 3 fields, expected 4"):
        list(instances_jsonl(["1,0,3,0.5", "2,0,3"], FEATURES, source="part-00003.csv"))


def test_a_feature_named_like_the_id_field_is_refused():
    with pytest.raises(ValueError, match="id field"):
        list(instances_jsonl(["1,2"], [ID_FIELD]))


def test_no_lines_give_no_lines():
    assert list(instances_jsonl([], FEATURES)) == []
    assert list(prediction_lines([], CLASSES)) == []
