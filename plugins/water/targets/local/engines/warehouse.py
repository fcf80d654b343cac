"""The local warehouse: a DuckDB database file standing in for BigQuery's published tables."""

from __future__ import annotations

from pathlib import Path

DATABASE = "warehouse.duckdb"


def publish_partition(warehouse_dir: Path, table: str, ds: str, source: Path) -> int:
    """Replace the `ds` rows of `table` with the Parquet files under source, in one transaction.

    Hive folders in source (segment=cook/...) become columns. Returns the rows published.
    """
    import duckdb

    schema, name = table.split(".")
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    files = str(source / "**" / "*.parquet")
    con = duckdb.connect(str(warehouse_dir / DATABASE))
    try:
        # The lake path carries ds=... itself; the published column is the run's ds, as a DATE.
        select = (
            f"SELECT CAST($ds AS DATE) AS ds, * EXCLUDE (ds) "
            f"FROM read_parquet('{files}', hive_partitioning = true, hive_types = {{'ds': VARCHAR}})"
        )
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        con.execute(f'CREATE TABLE IF NOT EXISTS "{schema}"."{name}" AS {select} LIMIT 0', {"ds": ds})
        # A step that now writes more columns adds them (older days read NULL there), as
        # BigQuery's ALLOW_FIELD_ADDITION does in the cloud.
        have = {row[0] for row in con.execute(f'DESCRIBE "{schema}"."{name}"').fetchall()}
        for column, kind, *_ in con.execute(f"DESCRIBE {select}", {"ds": ds}).fetchall():
            if column not in have:
                con.execute(f'ALTER TABLE "{schema}"."{name}" ADD COLUMN "{column}" {kind}')
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f'DELETE FROM "{schema}"."{name}" WHERE ds = CAST($ds AS DATE)', {"ds": ds})
            con.execute(f'INSERT INTO "{schema}"."{name}" BY NAME {select}', {"ds": ds})
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return con.execute(
            f'SELECT count(*) FROM "{schema}"."{name}" WHERE ds = CAST($ds AS DATE)', {"ds": ds}
        ).fetchone()[0]
    finally:
        con.close()


def table_rows(warehouse_dir: Path, table: str, ds: str | None = None) -> int:
    import duckdb

    con = duckdb.connect(str(warehouse_dir / DATABASE), read_only=True)
    try:
        where = " WHERE ds = CAST($ds AS DATE)" if ds else ""
        return con.execute(f"SELECT count(*) FROM {table}{where}", {"ds": ds} if ds else {}).fetchone()[0]
    finally:
        con.close()
