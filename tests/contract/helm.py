"""Helm's handling of values files, for the contract tests: the same code `water deploy` checks
the values with (water.cli.chart_values), here against the chart vendored in chart/.

`helm upgrade -f base.yaml -f ENV.yaml` merges the files (maps merge, lists and scalars
replace), coalesces the result over the chart's values.yaml (a null deletes a default) and
validates it with the chart's values.schema.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from water.cli.chart_values import coalesce, load_yaml, merge_files, schema_errors, unknown_keys, values_problems

__all__ = ["coalesce", "load_yaml", "merge_files", "schema_errors", "unknown_keys", "values_problems"]

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
    "VertexRegion": "europe-west4",
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
