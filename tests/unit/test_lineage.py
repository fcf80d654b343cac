"""water.lineage: OpenLineage dataset identities as the provider's extractors name them, and the facets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from water.lineage import Seen, lake_dataset, operator_lineage, partition_of, ran, step_datasets, warehouse_table
from water.spec import load_pipeline
from water.targets.local.target import LocalTarget


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("s3://acme-lake/lake", ("s3://acme-lake", "lake/recipe_engagement/raw")),
        ("s3://acme-lake/lake/", ("s3://acme-lake", "lake/recipe_engagement/raw")),
        ("s3://acme-lake", ("s3://acme-lake", "recipe_engagement/raw")),
        ("gs://acme-staging/water", ("gs://acme-staging", "water/recipe_engagement/raw")),
        ("file:///work/.water/lake", ("file", "/work/.water/lake/recipe_engagement/raw")),
    ],
)
def test_a_lake_dataset_is_named_as_the_provider_names_its_store(root, expected):
    assert lake_dataset(root, "recipe_engagement", "raw") == expected


def test_a_dataset_with_a_folder_keeps_it_and_the_partition_is_never_in_the_name():
    assert lake_dataset("s3://b/lake", "p", "channels/train") == ("s3://b", "lake/p/channels/train")
    assert "ds=" not in lake_dataset("file:///lake", "p", "raw")[1]


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="hdfs"):
        lake_dataset("hdfs://nn/lake", "p", "raw")


def test_a_table_is_bigquerys_in_the_cloud_and_its_warehouse_folder_locally():
    assert warehouse_table("app.users", gcp_project="acme-analytics") == ("bigquery", "acme-analytics.app.users")
    assert warehouse_table("app.users", warehouse_dir="/w/warehouse") == ("file", "/w/warehouse/app/users")
    with pytest.raises(ValueError, match="gcp_project"):
        warehouse_table("app.users")


def test_step_datasets_on_the_local_target(tmp_path):
    spec = load_pipeline("recipe_engagement")
    target = LocalTarget(lake_root=f"file://{tmp_path}/lake", warehouse_dir=str(tmp_path / "warehouse"))
    inputs, outputs = step_datasets(spec, target, "extract")
    assert inputs == [("file", f"{tmp_path}/warehouse/app/users"), ("file", f"{tmp_path}/warehouse/app/recipe_events")]
    assert outputs == [("file", f"{tmp_path}/lake/recipe_engagement/raw")]
    _, published = step_datasets(spec, target, "publish")
    assert published == [("file", f"{tmp_path}/warehouse/ml/engagement_segments")]


def test_step_datasets_on_the_cloud_target():
    """The cloud target as step_datasets reads it: the lake root and the settings' GCP project."""
    spec = load_pipeline("recipe_engagement")
    cloud = SimpleNamespace(lake_root="s3://acme-lake/lake", settings=SimpleNamespace(gcp_project="acme-analytics"))
    inputs, outputs = step_datasets(spec, cloud, "extract")
    assert inputs == [("bigquery", "acme-analytics.app.users"), ("bigquery", "acme-analytics.app.recipe_events")]
    assert outputs == [("s3://acme-lake", "lake/recipe_engagement/raw")]
    assert step_datasets(spec, cloud, "publish") == (
        [("s3://acme-lake", "lake/recipe_engagement/outputs")],
        [("bigquery", "acme-analytics.ml.engagement_segments")],
    )


def test_each_steps_outputs_are_the_next_steps_inputs():
    """Within a spec, a dataset is named the same wherever it is read and written: the graph joins."""
    spec = load_pipeline("recipe_engagement")
    cloud = SimpleNamespace(lake_root="s3://acme-lake/lake", settings=SimpleNamespace(gcp_project="acme-analytics"))
    written = {d for name in spec.steps for d in step_datasets(spec, cloud, name)[1]}
    for name in spec.steps:
        for dataset in step_datasets(spec, cloud, name)[0]:
            assert dataset in written or dataset[0] == "bigquery" or dataset[1].endswith("_labels"), (name, dataset)


def test_the_facets_of_what_a_task_read_and_wrote():
    from openlineage.client.serde import Serde

    lineage = operator_lineage(
        [Seen(("s3://b", "lake/p/raw"), partition_of("2026-11-01"), {"user_id": "integer"}, rows=10)],
        [
            Seen(("s3://b", "lake/p/out"), partition_of("2026-11-01", "route=cook/shard=0001"), rows=7),
            Seen(("s3://b", "lake/p/gone"), partition_of("2026-11-01"), deleted=True),
        ],
    )
    read = Serde.to_dict(lineage.inputs[0])
    assert read["namespace"] == "s3://b" and read["name"] == "lake/p/raw"
    assert [(f["name"], f["type"]) for f in read["facets"]["schema"]["fields"]] == [("user_id", "integer")]
    assert read["facets"]["version"]["datasetVersion"] == "ds=2026-11-01"
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 10
    written, gone = (Serde.to_dict(d) for d in lineage.outputs)
    assert written["facets"]["version"]["datasetVersion"] == "ds=2026-11-01/route=cook/shard=0001"
    assert written["outputFacets"]["outputStatistics"]["rowCount"] == 7
    assert "schema" not in written["facets"]  # no columns known: no facet
    assert gone["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "TRUNCATE"
    assert gone["facets"]["version"]["datasetVersion"] == "ds=2026-11-01" and not gone.get("outputFacets")


def test_an_operator_that_did_not_run_here_has_no_figures():
    assert ran(object()) == (None, {})
    assert ran(SimpleNamespace(lineage_run=("2026-11-01", {"rows_out": 3}))) == ("2026-11-01", {"rows_out": 3})
