"""The local warehouse: a DuckDB database file standing in for BigQuery's published tables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

DATABASE = "warehouse.duckdb"
# DuckDB lets one process at a time write the file (another run's publish, a reader): wait
# for it, doubling the pause, this long in all before giving up.
LOCK_WAIT_SECONDS = 60.0


class WarehouseBusy(RuntimeError):
    """The warehouse file stayed locked by another process for the whole wait."""


def connect(warehouse_dir: Path, *, read_only: bool = False, wait_seconds: float | None = None) -> DuckDBPyConnection:
    """A DuckDB connection to the warehouse, waiting (bounded) while another process holds its lock."""
    import duckdb

    path = warehouse_dir / DATABASE
    wait_seconds = LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds
    deadline, pause = time.monotonic() + wait_seconds, 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() + pause > deadline:
                raise WarehouseBusy(
                    f"the warehouse {path} stayed locked by another process for {wait_seconds:.0f} s "
                    f"(DuckDB: {exc}); let that process finish, then re-run"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def publish_partition(warehouse_dir: Path, table: str, ds: str, source: Path) -> int:
    """Replace the `ds` rows of `table` with the Parquet files under source, in one transaction.

    Hive folders in source (segment=cook/...) become columns. Returns the rows published.
    """
    schema, name = table.split(".")
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    files = str(source / "**" / "*.parquet")
    con = connect(warehouse_dir)
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
        return _count(con, f'SELECT count(*) FROM "{schema}"."{name}" WHERE ds = CAST($ds AS DATE)', {"ds": ds})
    finally:
        con.close()


def retract_partition(warehouse_dir: Path, table: str, ds: str) -> int:
    """Delete the `ds` rows of `table` (what an earlier run of the day published). Returns how
    many there were: 0 when the warehouse or the table does not exist yet."""
    schema, name = table.split(".")
    if not (warehouse_dir / DATABASE).exists():
        return 0
    con = connect(warehouse_dir)
    try:
        exists = _count(
            con, "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
        )
        if not exists:
            return 0
        return _count(con, f'DELETE FROM "{schema}"."{name}" WHERE ds = CAST($ds AS DATE)', {"ds": ds})
    finally:
        con.close()


def _count(con: DuckDBPyConnection, query: str, parameters: object) -> int:
    """The one number a count(*) or a DELETE (its rows deleted) answers."""
    row = con.execute(query, parameters).fetchone()
    assert row is not None  # both answer one row
    return int(row[0])
