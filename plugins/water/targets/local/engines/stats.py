"""Counting predictions without loading them: a streaming DuckDB aggregate.

Batch-transform output lines follow water's inference contract: `id,class,confidence`.
"""

from __future__ import annotations

from pathlib import Path

PREDICTION_COLUMNS = {"id": "VARCHAR", "class": "VARCHAR", "confidence": "DOUBLE"}  # an id may be a string or a number


def count_predictions(folder: Path, threads: int = 2) -> dict[str, int]:
    """Rows per predicted class over every output file in the folder.

    A zero-byte file holds zero predictions (a transform of an empty input file writes one);
    CSV readers take it for a malformed file, so it is never read.
    """
    import duckdb

    files = [
        str(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith((".", "_")) and p.stat().st_size > 0
    ]
    if not files:
        return {}
    columns = ", ".join(f"'{k}': '{v}'" for k, v in PREDICTION_COLUMNS.items())
    query = f"SELECT class, count(*) FROM read_csv($file, header = false, columns = {{{columns}}}) GROUP BY class"
    counts: dict[str, int] = {}
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {int(threads)}")
        for file in files:  # one file at a time: memory stays flat however many files there are
            for cls, n in con.execute(query, {"file": file}).fetchall():
                counts[str(cls)] = counts.get(str(cls), 0) + int(n)
    finally:
        con.close()
    return dict(sorted(counts.items()))
