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
