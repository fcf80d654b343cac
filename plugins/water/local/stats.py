"""Counting predictions without loading them: a streaming DuckDB aggregate.

Batch-transform output lines follow water's inference contract: `id,class,confidence`.
"""

from __future__ import annotations

from pathlib import Path

PREDICTION_COLUMNS = {"id": "BIGINT", "class": "VARCHAR", "confidence": "DOUBLE"}


def count_predictions(folder: Path, threads: int = 2) -> dict[str, int]:
    """Rows per predicted class over every output file in the folder."""
    import duckdb

    files = [str(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith((".", "_"))]
    if not files:
        return {}
    columns = ", ".join(f"'{k}': '{v}'" for k, v in PREDICTION_COLUMNS.items())
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {int(threads)}")
        rows = con.execute(
            f"SELECT class, count(*) FROM read_csv($files, header = false, columns = {{{columns}}}) GROUP BY class",
            {"files": files},
        ).fetchall()
    finally:
        con.close()
    return {str(cls): int(n) for cls, n in sorted(rows)}
