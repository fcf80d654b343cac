"""`water catalog PIPELINE`: the Glue Data Catalog DDL a pipeline's Athena SQL needs, from its spec.

The tables are the lake datasets its `athena_sql` steps read, in the pipeline's own database
(`water_<pipeline>`), over `<lake>/<pipeline>/<dataset>/`, partitioned by `ds` (a string) with
partition projection so no partition is ever added by hand. Their columns are what the
local target wrote for the same dataset (the same SQL and scripts production runs), read
from the newest local partition's Parquet schema: run the pipeline locally once first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from water.spec import PipelineSpec, is_table

if TYPE_CHECKING:
    import pyarrow as pa

# Arrow type (its str) -> the Hive type Athena's DDL takes; anything else is refused by name.
HIVE_TYPES = {
    "string": "string",
    "large_string": "string",
    "bool": "boolean",
    "int8": "tinyint",
    "int16": "smallint",
    "int32": "int",
    "int64": "bigint",
    "uint8": "smallint",
    "uint16": "int",
    "uint32": "bigint",
    "float": "float",
    "double": "double",
    "date32[day]": "date",
}


class CatalogError(ValueError):
    """A table whose columns cannot be known or typed yet."""


def catalog_tables(spec: PipelineSpec) -> list[str]:
    """The lake datasets the pipeline's Athena SQL reads, in step order, each once."""
    return list(dict.fromkeys(d for step in spec.steps_of("athena_sql").values() for d in step.inputs() if not is_table(d)))


def hive_type(arrow_type: pa.DataType) -> str:
    name = str(arrow_type)
    if name.startswith("timestamp"):
        return "timestamp"
    if name.startswith("decimal"):
        return name.replace("decimal128", "decimal")
    if name.startswith("dictionary<values=string"):
        return "string"
    if name in HIVE_TYPES:
        return HIVE_TYPES[name]
    raise CatalogError(f"no Athena type for Arrow type {name}")


def table_ddl(database: str, table: str, location: str, schema: pa.Schema) -> str:
    columns = ",\n  ".join(f"`{f.name}` {hive_type(f.type)}" for f in schema if f.name != "ds")
    location = location.rstrip("/")
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table.replace('/', '_')}` (\n  {columns}\n)\n"
        "PARTITIONED BY (`ds` string)\n"
        "STORED AS PARQUET\n"
        f"LOCATION '{location}/'\n"
        "TBLPROPERTIES (\n"
        "  'projection.enabled'='true', 'projection.ds.type'='date', 'projection.ds.format'='yyyy-MM-dd',\n"
        "  'projection.ds.range'='2000-01-01,NOW', 'projection.ds.interval'='1', 'projection.ds.interval.unit'='DAYS',\n"
        f"  'storage.location.template'='{location}/ds=${{ds}}'\n"
        ");"
    )


def catalog_ddl(spec: PipelineSpec, local_lake: Path, lake_root: str) -> str:
    """CREATE DATABASE and one CREATE EXTERNAL TABLE per table, for the lake at `lake_root`."""
    import pyarrow.dataset as ds

    statements = [f"CREATE DATABASE IF NOT EXISTS `{spec.database}`;"]
    for dataset in catalog_tables(spec):
        folder = local_lake / dataset
        days = sorted(p for p in folder.glob("ds=*") if p.is_dir())
        files = [p for p in (days[-1].rglob("*.parquet") if days else []) if not p.name.startswith((".", "_"))]
        if not files:
            raise CatalogError(
                f"{spec.name}: no local partition of {dataset} to read its columns from ({folder}); "
                f"run `water run {spec.name}` first"
            )
        schema = ds.dataset([str(f) for f in files], format="parquet").schema
        statements.append(table_ddl(spec.database, dataset, f"{lake_root.rstrip('/')}/{spec.name}/{dataset}", schema))
    return "\n\n".join(statements)
