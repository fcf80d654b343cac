"""The local warehouse: a day's partition replaced in one transaction; new columns added."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers import table_rows
from water.targets.local.engines.warehouse import DATABASE, publish_partition


def day(root, ds: str, table: pa.Table):
    folder = root / f"ds={ds}" / "segment=cook"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    return folder.parent


def test_a_step_that_writes_a_new_column_adds_it_and_older_days_read_null(tmp_path):
    """A warehouse from before a change (the demo's lists gained recipe_ids) takes the new day."""
    import duckdb

    old = day(tmp_path / "lake", "2026-11-01", pa.table({"user_id": [1, 2]}))
    new = day(tmp_path / "lake", "2026-11-02", pa.table({"user_id": [3], "recipe_ids": [[7, 8]]}))
    assert publish_partition(tmp_path / "wh", "ml.lists", "2026-11-01", old) == 2
    assert publish_partition(tmp_path / "wh", "ml.lists", "2026-11-02", new) == 1
    assert publish_partition(tmp_path / "wh", "ml.lists", "2026-11-02", new) == 1  # replaced, not appended
    assert table_rows(tmp_path / "wh", "ml.lists") == 3
    con = duckdb.connect(str(tmp_path / "wh" / DATABASE), read_only=True)
    rows = con.execute("SELECT user_id, recipe_ids, segment FROM ml.lists ORDER BY user_id").fetchall()
    assert rows == [(1, None, "cook"), (2, None, "cook"), (3, [7, 8], "cook")]
