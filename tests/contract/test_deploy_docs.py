"""docs/deploy.md's Google Cloud permissions against what the cloud target and the shipped
specs use: every dataset a spec's BigQuery steps read gets a read grant, every dataset its
publish steps write a write grant, and every Google Cloud setting of the cloud target
(WATER_GCP_PROJECT, WATER_BQ_STAGING_DATASET, WATER_GCS_STAGING) its grant, with the value
helm-values/ gives it."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.contract.cloud import PIPELINES, spec_of
from tests.contract.helm import ENVIRONMENTS, ROOT, settings_of, user_values

SECTION = "### Google Cloud permissions"
READ, WRITE = "roles/bigquery.dataViewer", "roles/bigquery.dataEditor"
JOBS, OBJECTS = "roles/bigquery.jobUser", "roles/storage.objectAdmin"


def grants(text: str) -> list[tuple[str, str]]:
    """(role, what it is granted on) of each row of the section's table."""
    start = text.index(SECTION)
    end = text.find("\n## ", start)
    rows = re.findall(r"^\| `(roles/[A-Za-z.]+)` \| (.+?) \|", text[start : end if end > 0 else None], re.M)
    return rows


def granted(rows: list[tuple[str, str]], role: str, name: str) -> bool:
    return any(r == role and f"`{name}`" in on for r, on in rows)


def dataset_of(table: str) -> str:
    """`dataset` of dataset.table, `project.dataset` of project.dataset.table."""
    return table.rsplit(".", 1)[0]


def gcp_settings() -> list[str]:
    """The cloud target's settings that name a Google Cloud resource: a project, a BigQuery
    dataset or a GCS location (by the format each is validated with)."""
    from water.targets.cloud.target import CloudSettings

    kinds = ("a Google Cloud project id", "a BigQuery dataset id", "gs://")
    return [
        CloudSettings.variable(f.name)
        for f in dataclasses.fields(CloudSettings)
        if CloudSettings.FORMATS.get(f.name, ("", ""))[1].startswith(kinds)
    ]


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str]]:
    return grants((ROOT / "docs" / "deploy.md").read_text())


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_source_dataset_is_readable_and_every_output_dataset_writable(rows, pipeline):
    spec = spec_of(pipeline)
    sources = {dataset_of(t) for step in spec.steps_of("bigquery_sql").values() for t in step.reads}
    outputs = {dataset_of(step.table) for step in spec.steps_of("publish").values()}
    assert sources or outputs, f"{pipeline} uses no BigQuery"
    for dataset in sorted(sources):
        assert granted(rows, READ, dataset) or granted(rows, WRITE, dataset), f"{pipeline} reads {dataset}: no read grant"
    for dataset in sorted(outputs):
        assert granted(rows, WRITE, dataset), f"{pipeline} writes {dataset}: no {WRITE} grant"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_google_cloud_setting_has_its_grant(rows, env):
    settings = settings_of(user_values(env))
    wanted = {"WATER_GCP_PROJECT": JOBS, "WATER_BQ_STAGING_DATASET": WRITE, "WATER_GCS_STAGING": OBJECTS}
    assert set(gcp_settings()) == set(wanted), "a new Google Cloud setting: say here which grant it needs"
    for variable, role in wanted.items():
        value = settings[variable]
        name = re.match(r"^gs://([^/]+)", value).group(1) if value.startswith("gs://") else value
        assert granted(rows, role, name), (variable, value, role)
        assert any(r == role and f"`{variable}`" in on for r, on in rows), (variable, role)


def test_the_check_refuses_a_missing_dataset():
    text = (ROOT / "docs" / "deploy.md").read_text()
    rows = grants(text)
    assert granted(rows, READ, "app") and not granted(rows, READ, "not_a_dataset")
    without_outputs = [(role, on) for role, on in rows if not (role == WRITE and "output dataset" in on)]
    assert not any(
        granted(without_outputs, WRITE, dataset_of(s.table)) for p in PIPELINES for s in spec_of(p).steps_of("publish").values()
    )


VERTEX_SECTION = "### Vertex AI"


def test_the_vertex_section_grants_what_the_vertex_steps_use():
    """The Airflow identity may run Vertex AI jobs and act as the jobs' service account
    (WATER_VERTEX_SERVICE_ACCOUNT, with the value helm-values give it); that account may read
    and write the exchange bucket (WATER_GCS_STAGING), and nothing more is said of it."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    start = text.index(VERTEX_SECTION)
    section = text[start : text.index("\n### ", start + 1)]
    rows = re.findall(r"^\| `(roles/[A-Za-z.]+)` \| (.+?) \|", section, re.M)
    for env in ENVIRONMENTS:
        settings = settings_of(user_values(env))
        account = settings["WATER_VERTEX_SERVICE_ACCOUNT"]
        bucket = re.match(r"^gs://([^/]+)", settings["WATER_GCS_STAGING"]).group(1)
        assert granted(rows, "roles/aiplatform.user", settings["WATER_GCP_PROJECT"])
        assert granted(rows, "roles/iam.serviceAccountUser", account)
        assert any(r == "roles/iam.serviceAccountUser" and "`WATER_VERTEX_SERVICE_ACCOUNT`" in on for r, on in rows)
        for role in ("roles/storage.objectViewer", "roles/storage.objectCreator", "roles/storage.objectAdmin"):
            assert granted(rows, role, bucket), (role, bucket)
    assert "`WATER_VERTEX_REGION`" in section and "aiplatform.googleapis.com" in section
