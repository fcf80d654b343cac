"""Helm's handling of values files, in Python, for the contract tests.

`helm upgrade -f base.yaml -f ENV.yaml` merges the files (maps merge, lists and scalars
replace), coalesces the result over the chart's values.yaml (a null deletes a default) and
validates it with the chart's values.schema.json.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES_DIR = ROOT / "helm-values"
CHART = Path(__file__).resolve().parent / "chart"  # the chart's files, vendored (README there)
ENVIRONMENTS = ["dev", "prod"]

# Example values for the ${...} placeholders (docs/deploy.md), as a platform team fills them in.
EXAMPLE = {
    "AccountId": "123456789012",
    "Region": "eu-west-1",
    "LakeBucket": "acme-water-lake",
    "ImageRegistry": "registry.example/ml",
    "ImageTag": "2026.11.1",
    "GcpProject": "acme-analytics",
    "BigQueryLocation": "EU",
    "GcsStagingBucket": "acme-water-staging",
    "Namespace": "water",
    "OidcProvider": "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
    "SageMakerImageAccount": "141502667606",
}


def filled(value):
    """A values tree or IAM policy with each ${Name} placeholder replaced by its EXAMPLE value."""
    text = json.dumps(value)
    for name, example in EXAMPLE.items():
        text = text.replace("${" + name + "}", example)
    return json.loads(text)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Helm refuses a values file with a key twice; PyYAML would keep the last silently."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: Path):
    return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)


def _overlay(under: dict, over: dict, null_removes: bool) -> dict:
    out = copy.deepcopy(under)
    for key, value in over.items():
        if value is None and null_removes:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value, null_removes)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_files(base: dict, override: dict) -> dict:
    """Later -f files over earlier ones: maps merge key by key, anything else replaces."""
    return _overlay(base, override, null_removes=False)


def coalesce(defaults: dict, user: dict) -> dict:
    """User values over the chart's values.yaml; a user null removes the default."""
    return _overlay(defaults, user, null_removes=True)


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/definitions/"), ref
        schema = root["definitions"][ref.removeprefix("#/definitions/")]
    return schema


def unknown_keys(values, schema: dict, defaults, root: dict, path: str = "") -> list[str]:
    """Keys the chart does not know, at levels where the schema does not forbid them.

    Where a level lists `properties` but sets no `additionalProperties`, a key must be one
    of them or one that the chart's values.yaml declares there (templates read values.yaml's
    names: `securityContexts.containers` is read, the schema's `container` is not). Where
    `additionalProperties` is a schema (free-form maps: config sections, annotations), any
    key goes and its value is walked with that schema.
    """
    schema = _resolve(schema, root)
    found: list[str] = []
    if isinstance(values, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(values):
                found += unknown_keys(item, items, None, root, f"{path}[{i}]")
        return found
    if not isinstance(values, dict):
        return found
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    defaults = defaults if isinstance(defaults, dict) else {}
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key in props:
            found += unknown_keys(value, props[key], defaults.get(key), root, where)
        elif isinstance(extra, dict):
            found += unknown_keys(value, extra, defaults.get(key), root, where)
        elif extra is None and props and key not in defaults:
            found.append(where)
        # extra is False: the schema itself rejects the key (jsonschema reports it)
    return found


def user_values(env: str) -> dict:
    return merge_files(load_yaml(VALUES_DIR / "base.yaml"), load_yaml(VALUES_DIR / f"{env}.yaml"))


def settings_of(values: dict) -> dict[str, str]:
    """The water settings ConfigMap's data, as the chart renders it into a ConfigMap."""
    (config_map,) = [v for k, v in values["extraConfigMaps"].items() if k.endswith("-water-settings")]
    return yaml.safe_load(config_map["data"])


def deployed_settings(values: dict, release_namespace: str = EXAMPLE["Namespace"]) -> dict[str, str]:
    """The water settings as they reach the pods: placeholders filled in, and the two chart
    templates the settings use rendered."""
    values = filled(values)
    rendered = {
        "{{ .Release.Namespace }}": release_namespace,
        "{{ .Values.images.airflow.tag }}": values["images"]["airflow"]["tag"],
    }
    return {key: rendered.get(value, value) for key, value in settings_of(values).items()}
