"""The JSON schemas published for users (docs/events/) are water.events' own, and valid JSON Schema
that any validator reads (ECMA-262 patterns: no Python-only syntax)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from water import events

PUBLISHED = {
    "control-message.schema.json": events.CONTROL_SCHEMA,
    "completion-event.schema.json": events.COMPLETION_SCHEMA,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_schema_is_the_one_water_validates_with(name):
    path = ROOT / "docs" / "events" / name
    assert json.loads(path.read_text()) == PUBLISHED[name], (
        f"docs/events/{name} differs from water/events.py; rewrite it from there: "
        f"json.dumps(schema, indent=2) + newline (water.events is the one source)"
    )


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_schema_is_valid_json_schema_with_portable_patterns(name):
    from jsonschema import Draft202012Validator

    schema = PUBLISHED[name]
    Draft202012Validator.check_schema(schema)
    assert "(?P<" not in json.dumps(schema)


def test_a_completion_event_water_builds_matches_its_schema():
    from jsonschema import Draft202012Validator

    key = events.routing_key("recipe_engagement", "quarantined")
    event = {
        "event": key,
        "pipeline": "recipe_engagement",
        "ds": "2026-11-05",
        "run_id": "scheduled__2026-11-05T06:00:00+00:00",
        "outcome": "quarantined",
        "rows": None,
        "tiers": {},
        "message_id": "recipe_engagement.scheduled__2026-11-05T06:00:00+00:00.quarantined",
    }
    assert list(Draft202012Validator(events.COMPLETION_SCHEMA).iter_errors(event)) == []
    assert list(Draft202012Validator(events.COMPLETION_SCHEMA).iter_errors({**event, "event": "pipeline.x.done"}))
