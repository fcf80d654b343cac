"""Row counts of lake partitions without loading them (Parquet footers, line counts)."""

from __future__ import annotations

from pathlib import Path

from water.targets.local.engines.partitions import data_files


def parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in data_files(folder) if p.suffix == ".parquet")


def text_rows(folder: Path, header: bool = False) -> int:
    """Non-empty lines in every file of the folder, less one header line per file if `header`."""
    total = 0
    for path in data_files(folder):
        lines = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
            if f.tell():
                f.seek(-1, 2)
                lines += f.read(1) != b"\n"  # a last line without a newline
        total += lines - (1 if header and lines else 0)
    return total
