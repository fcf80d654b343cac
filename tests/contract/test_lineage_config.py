"""Where OpenLineage events go (docs/lineage.md): locally to <state>/lineage/events.jsonl from
every local Airflow home, in the cluster to the transport in the Secret water-lineage; the spec's
schemas vendored in openlineage/ and the validator the e2e tests use on real runs' events."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.helm import ENVIRONMENTS, ROOT, user_values
from tests.contract.test_helm_values import docs_secret_keys, plain_values_of
from tests.lineage import SCHEMAS, schema_errors

SHARED = ROOT.parent / "shared" / "openlineage"  # the workspace's copy, when beside this clone
TRANSPORT = "AIRFLOW__OPENLINEAGE__TRANSPORT"
SECRET = "water-lineage"


def test_vendored_openlineage_is_the_shared_copy():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not beside this clone; the vendored copy stands alone")
    shared = sorted(p.relative_to(SHARED) for p in SHARED.rglob("*.json"))
    assert shared == sorted(p.relative_to(SCHEMAS) for p in SCHEMAS.rglob("*.json"))
    for name in shared:
        assert (SCHEMAS / name).read_bytes() == (SHARED / name).read_bytes(), f"tests/contract/openlineage/{name}: re-vendor it"


def client_event(**overrides) -> dict:
    """A COMPLETE event as the OpenLineage client serializes it, with an input and an output and
    the facets water's operators attach (schema, row counts, the partition as version)."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    from water.lineage import Seen, input_dataset, output_dataset

    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-01T07:00:00+00:00",
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="water", name="recipe_engagement.features"),
        producer="https://example.com/water",
        inputs=[input_dataset(Seen(("file", "/lake/p/extract"), partition="ds=2026-11-01", rows=3))],
        outputs=[output_dataset(Seen(("file", "/lake/p/features"), partition="ds=2026-11-01", columns={"a": "int64"}, rows=3))],
    )
    return {**json.loads(Serde.to_json(event)), **overrides}


def test_an_event_the_client_writes_validates_and_a_broken_one_does_not():
    event = client_event()
    assert schema_errors(event) == []
    assert schema_errors(client_event(eventType="DONE")) != []
    del event["job"]["namespace"]
    assert schema_errors(event) == ["job: 'namespace' is a required property"]
    # a standard facet is held to its own schema, not only to the core's open facet
    event = client_event()
    event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] = "three"
    assert schema_errors(event) == ["outputs[0].outputFacets.outputStatistics.rowCount: 'three' is not of type 'integer'"]


def test_every_local_airflow_home_writes_events_to_the_state_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path / "state"))
    from water import paths
    from water.cli import local_airflow, stack

    assert paths.lineage_events() == tmp_path / "state" / "lineage" / "events.jsonl"
    homes = [local_airflow.run_home(), stack.home(8080, "sqlite")]
    for home in homes:
        settings = home.settings()["openlineage"]
        assert json.loads(settings["transport"]) == {
            "type": "transform",
            "transformer_class": "water.lineage_names.LakeDatasetNames",
            "transport": {"type": "file", "log_file_path": str(paths.lineage_events()), "append": True},
        }
        assert settings["namespace"] == "water"
        assert "include_full_task_info" not in settings and "debug_mode" not in settings  # both off
        env = home.environment()
        assert json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])["transport"]["log_file_path"] == str(paths.lineage_events())
    home = local_airflow.run_home()
    home.write_config()
    assert paths.lineage_dir().is_dir() and paths.lineage_dir().stat().st_mode & 0o077 == 0  # the transport makes no folder
    assert "[openlineage]" in (home.path / "airflow.cfg").read_text()


def test_the_provider_reads_the_local_settings_as_enabled(tmp_path, monkeypatch):
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path / "state"))
    from water import paths
    from water.cli import local_airflow

    for key, value in local_airflow.run_home().environment().items():
        monkeypatch.setenv(key, value)
    from airflow.providers.openlineage import conf  # (it caches nothing under pytest)

    assert conf.is_disabled() is False
    assert conf.transport()["transport"]["log_file_path"] == str(paths.lineage_events())
    assert conf.namespace() == "water" and conf.include_full_task_info() is False and conf.debug_mode() is False
    assert conf.execute_in_thread() is True


def built(transport: dict) -> Any:
    """The transport the provider's client builds from this config: the OpenLineage client's own
    factory (nothing is sent)."""
    from openlineage.client.transport import get_default_factory

    return get_default_factory().create(copy.deepcopy(transport))


def test_the_local_transport_builds_into_waters_transformer_around_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("WATER_STATE_DIR", str(tmp_path / "state"))
    from openlineage.client.transport.file import FileTransport
    from openlineage.client.transport.transform import TransformTransport

    from water.cli import local_airflow
    from water.lineage_names import LakeDatasetNames

    transport = built(json.loads(local_airflow.run_home().settings()["openlineage"]["transport"]))
    assert isinstance(transport, TransformTransport) and isinstance(transport.transformer, LakeDatasetNames)
    assert isinstance(transport.transport, FileTransport)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_cluster_sends_events_with_the_transport_in_the_secret(env):
    from water.cli.local_airflow import LINEAGE

    values = user_values(env)
    assert {"envName": TRANSPORT, "secretName": SECRET, "secretKey": "transport"} in values["secret"]
    config = values["config"]["openlineage"]
    assert {k: str(v) for k, v in config.items()} == LINEAGE  # the settings every environment shares
    assert plain_values_of(values, TRANSPORT) == []  # never a plain value: it holds the API key
    assert "transport" not in config
    assert not any("OPENLINEAGE" in str(e) for e in yaml.safe_load(values["extraEnv"]))


def test_the_deploy_docs_create_the_lineage_secret():
    keys = docs_secret_keys(SECRET)
    assert keys == {"transport": "lineage-transport.json"}  # from a file: the API key stays off the command line
    text = (ROOT / "docs" / "deploy.md").read_text()
    start = text.index("cat > lineage-transport.json")
    example = json.loads(text[text.index("\n", start) + 1 : text.index("\nJSON", start)])
    # the user's HTTP transport, inside the transform transport with water's transformer
    from water.cli.local_airflow import LINEAGE_NAMES, named_transport

    assert example == named_transport(example["transport"]) and LINEAGE_NAMES == "water.lineage_names.LakeDatasetNames"
    assert example["transport"]["type"] == "http" and example["transport"]["auth"]["type"] == "api_key"
    # …which the OpenLineage client's own factory builds as such, offline (nothing is sent)
    from openlineage.client.transport.http import HttpTransport
    from openlineage.client.transport.transform import TransformTransport

    from water.lineage_names import LakeDatasetNames

    transport = built(example)
    assert isinstance(transport, TransformTransport) and type(transport.transformer) is LakeDatasetNames
    assert isinstance(transport.transport, HttpTransport) and transport.transport.url == "https://LINEAGE_HOST"
    assert Path(ROOT / "docs" / "lineage.md").is_file()
