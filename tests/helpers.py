"""Helpers the tests share that production code has no use for."""

from __future__ import annotations

from pathlib import Path

from water.targets.local.engines.warehouse import connect


def table_rows(warehouse_dir: Path, table: str, ds: str | None = None) -> int:
    """Rows of a local warehouse table (`schema.name`), of one `ds` or all."""
    con = connect(warehouse_dir, read_only=True)
    try:
        where = " WHERE ds = CAST($ds AS DATE)" if ds else ""
        return con.execute(f"SELECT count(*) FROM {table}{where}", {"ds": ds} if ds else {}).fetchone()[0]
    finally:
        con.close()


# The shipped Vertex example, and the same spec switched to AutoML (its comment's option).
VERTEX_SPEC = Path(__file__).resolve().parents[1] / "include" / "pipelines" / "recipe_engagement_vertex.yaml"
# The features include/jobs/recipe_engagement/preprocess.py writes, as an AutoML spec names them.
AUTOML_COLUMN_SPECS = {
    **dict.fromkeys(("is_ios", "is_android", "is_web"), "categorical"),
    **dict.fromkeys(
        (
            "tenure_days",
            "n_events",
            "n_sessions",
            "n_views",
            "n_saves",
            "n_cooks",
            "n_searches",
            "n_shares",
            "n_recipes",
            "total_duration_s",
            "cook_rate",
            "save_rate",
        ),
        "numeric",
    ),
}


def vertex_spec_data() -> dict:
    """The data of include/pipelines/recipe_engagement_vertex.yaml."""
    import yaml

    return yaml.safe_load(VERTEX_SPEC.read_text())


def switched_to_automl(data: dict, **changes) -> dict:
    """The Vertex example's data with `train` on vertex_automl_tabular and batch_inference without a script."""
    data["steps"]["train"] = {
        "kind": "vertex_automl_tabular",
        "reads": {"train": "channels/train", "validation": "channels/validation"},
        "writes": "model",
        "target_column": "label",
        "column_specs": dict(AUTOML_COLUMN_SPECS),
        **changes,
    }
    data["steps"]["batch_inference"].pop("entry_point")
    return data
