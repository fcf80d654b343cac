"""water.lineage_names: provider operators' partition and object names trimmed to the dataset
water.lineage names, the day in the `version` facet, by the transform transport of every environment."""

from __future__ import annotations

import json

import pytest
from openlineage.client.event_v2 import DatasetEvent, InputDataset, Job, OutputDataset, Run, RunEvent, RunState, StaticDataset
from openlineage.client.facet_v2 import dataset_version_dataset, input_statistics_input_dataset, schema_dataset
from openlineage.client.serde import Serde

from tests.lineage import schema_errors
from water.lineage import Seen, input_dataset, lake_dataset, output_dataset
from water.lineage_names import LakeDatasetNames, split_partition

LAKE = "s3://acme-ml-lake/water"
DAY = "ds=2026-11-01"


def event(inputs=(), outputs=()) -> RunEvent:
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-01T07:00:00+00:00",
        run=Run(runId="0190b7a4-8f4e-7c3a-9d2e-123456789abc"),
        job=Job(namespace="water", name="recipe_engagement.train.fit"),
        producer="https://example.com/provider",
        inputs=list(inputs),
        outputs=list(outputs),
    )


def sent(before: RunEvent) -> RunEvent:
    """The event as the transform transport sends it (a copy is what it hands the transformer)."""
    import copy

    return LakeDatasetNames({}).transform(copy.deepcopy(before))


def version(dataset) -> str | None:
    found = dataset.facets.get("version")
    return found.datasetVersion if found else None


@pytest.mark.parametrize(
    ("namespace", "name", "dataset"),
    [
        # a partition, as S3ToGCSOperator names the one it copies
        ("s3://acme-ml-lake", f"water/p/outputs/{DAY}", "water/p/outputs"),
        ("s3://acme-ml-lake", f"water/p/channels/train/{DAY}/", "water/p/channels/train"),
        # a step's staged partition, as GCSToS3Operator and SageMaker transform name their output
        ("s3://acme-ml-lake", f"water/p/raw/_staging/{DAY}/", "water/p/raw"),
        ("s3://acme-ml-lake", f"water/p/predictions/_staging/{DAY}", "water/p/predictions"),
        # objects inside a partition: a part file, a model artifact
        ("s3://acme-ml-lake", f"water/p/features/{DAY}/part-0.parquet", "water/p/features"),
        ("s3://acme-ml-lake", f"water/p/model/{DAY}/job/output/model.tar.gz", "water/p/model"),
        # the exchange folders on GCS and a local lake
        ("gs://acme-water-staging", f"exchange/p/model/{DAY}/model/", "exchange/p/model"),
        ("file", f"/home/me/.water/lake/p/raw/{DAY}/part-0.parquet", "/home/me/.water/lake/p/raw"),
    ],
)
def test_a_partition_or_an_object_in_one_is_named_as_its_dataset(namespace, name, dataset):
    assert split_partition(namespace, name) == (dataset, DAY)
    (trimmed,) = sent(event(inputs=[InputDataset(namespace=namespace, name=name)])).inputs
    assert (trimmed.namespace, trimmed.name, version(trimmed)) == (namespace, dataset, DAY)
    assert trimmed.facets["version"] == dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=DAY)


def test_the_trimmed_name_is_waters_own():
    name = f"{lake_dataset(LAKE, 'p', 'features')[1]}/_staging/{DAY}/part-0.parquet"
    assert ("s3://acme-ml-lake", split_partition("s3://acme-ml-lake", name)[0]) == lake_dataset(LAKE, "p", "features")


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("bigquery", "acme-analytics.app.ds=2026-11-01"),  # not a lake: left as it is, even with a day in it
        ("bigquery", "acme-analytics.app.recipes"),
        ("s3://acme-ml-lake", "water/p/features"),  # already the dataset
        ("s3://acme-ml-lake", "water/p/features/_staging/"),  # no day
        ("s3://acme-ml-lake", "water/p/features/ds=2026-11"),  # not a day
        ("s3://acme-ml-lake", "water/p/features/ds=2026-11-01x/part-0"),  # not a day's folder
        ("s3://acme-ml-lake", f"{DAY}/part-0"),  # nothing above the day to name
        ("postgres://db:5432", f"lake/p/{DAY}"),
    ],
)
def test_other_datasets_are_left_as_they_are(namespace, name):
    assert split_partition(namespace, name) == (name, None)
    (kept,) = sent(event(outputs=[OutputDataset(namespace=namespace, name=name)])).outputs
    assert (kept.namespace, kept.name, kept.facets) == (namespace, name, {})


def test_the_objects_of_one_partition_merge_into_its_dataset_keeping_the_first_facets():
    schema = schema_dataset.SchemaDatasetFacet(fields=[schema_dataset.SchemaDatasetFacetFields(name="id", type="string")])
    rows = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(rowCount=3)
    inputs = [
        InputDataset(namespace="s3://b", name=f"water/p/features/{DAY}/part-0.parquet"),
        InputDataset(namespace="bigquery", name="acme-analytics.app.recipes"),
        InputDataset(namespace="s3://b", name=f"water/p/features/{DAY}/part-1.parquet", facets={"schema": schema}),
        InputDataset(namespace="s3://b", name=f"water/p/features/{DAY}/", inputFacets={"inputStatistics": rows}),
        InputDataset(namespace="s3://b", name=f"water/p/labels/{DAY}/part-0.parquet"),
    ]
    after = sent(event(inputs=inputs)).inputs
    assert [(d.namespace, d.name) for d in after] == [
        ("s3://b", "water/p/features"),
        ("bigquery", "acme-analytics.app.recipes"),
        ("s3://b", "water/p/labels"),
    ]
    features = after[0]
    assert list(features.facets) == ["version", "schema"] and version(features) == DAY
    assert features.facets["schema"] == schema and features.inputFacets == {"inputStatistics": rows}


def test_inputs_and_outputs_merge_apart():
    name = f"water/p/raw/_staging/{DAY}/"
    after = sent(
        event(inputs=[InputDataset(namespace="s3://b", name=name)], outputs=[OutputDataset(namespace="s3://b", name=name)])
    )
    assert (
        [(d.namespace, d.name) for d in after.inputs]
        == [(d.namespace, d.name) for d in after.outputs]
        == [("s3://b", "water/p/raw")]
    )
    assert isinstance(after.inputs[0], InputDataset) and isinstance(after.outputs[0], OutputDataset)


def test_a_version_facet_the_dataset_has_is_kept():
    shard = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=f"{DAY}/route=cook/shard=0000")
    (kept,) = sent(
        event(outputs=[OutputDataset(namespace="s3://b", name=f"water/p/x/{DAY}/route=cook", facets={"version": shard})])
    ).outputs
    assert (kept.name, kept.facets) == ("water/p/x", {"version": shard})


def test_waters_own_datasets_pass_unchanged():
    before = event(
        inputs=[input_dataset(Seen(("s3://b", "water/p/raw"), partition=DAY, rows=3))],
        outputs=[output_dataset(Seen(("s3://b", "water/p/features"), partition=DAY, columns={"a": "int64"}, rows=3))],
    )
    assert Serde.to_json(sent(before)) == Serde.to_json(before)


def test_the_event_sent_still_validates_and_the_one_given_is_untouched():
    before = event(
        inputs=[
            InputDataset(namespace="s3://b", name=f"water/p/channels/train/{DAY}/"),
            InputDataset(namespace="s3://b", name=f"water/p/channels/train/{DAY}/part-1.parquet"),
        ],
        outputs=[OutputDataset(namespace="s3://b", name=f"water/p/model/{DAY}/job/output/model.tar.gz")],
    )
    given = Serde.to_json(before)
    after = LakeDatasetNames({}).transform(before)  # the transport hands it a copy; it may change that
    body = json.loads(Serde.to_json(after))
    assert schema_errors(body) == []
    assert [d["name"] for d in body["inputs"] + body["outputs"]] == ["water/p/channels/train", "water/p/model"]
    assert body["outputs"][0]["facets"]["version"]["datasetVersion"] == DAY
    assert json.loads(given)["inputs"][0]["name"] == f"water/p/channels/train/{DAY}/"


def test_an_event_is_never_dropped():
    dataset_event = DatasetEvent(
        eventTime="2026-11-01T07:00:00+00:00", dataset=StaticDataset(namespace="s3://b", name=f"x/{DAY}")
    )
    assert LakeDatasetNames({}).transform(dataset_event) is dataset_event  # no inputs or outputs: as it came
    empty = event()
    assert LakeDatasetNames({}).transform(empty) is empty
    odd = event(inputs=[object()])  # a dataset it cannot read: the event goes as it came
    assert LakeDatasetNames({}).transform(odd) is odd and len(odd.inputs) == 1


def test_the_local_transport_writes_the_trimmed_event(tmp_path):
    """`water run`'s transport (water.cli.local_airflow), built by the OpenLineage client's own
    factory: the transform transport, water's transformer, the file transport inside."""
    from openlineage.client.transport import get_default_factory
    from openlineage.client.transport.file import FileTransport
    from openlineage.client.transport.transform import TransformTransport

    from water.cli.local_airflow import named_transport

    events = tmp_path / "events.jsonl"
    transport = get_default_factory().create(named_transport({"type": "file", "log_file_path": str(events), "append": True}))
    assert isinstance(transport, TransformTransport) and isinstance(transport.transport, FileTransport)
    assert isinstance(transport.transformer, LakeDatasetNames)
    transport.emit(event(outputs=[OutputDataset(namespace="s3://b", name=f"water/p/raw/_staging/{DAY}/")]))
    (line,) = events.read_text().splitlines()
    written = json.loads(line)
    assert schema_errors(written) == []
    assert [(d["namespace"], d["name"], d["facets"]["version"]["datasetVersion"]) for d in written["outputs"]] == [
        ("s3://b", "water/p/raw", DAY)
    ]
